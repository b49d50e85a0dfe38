//! TLS ClientHello peeking, for routing TLS passthrough connections by SNI and ALPN.
//!
//! [`parse`] takes the bytes received so far from a client (none consumed) and either finds the
//! ClientHello in them, says more bytes are needed ([`Peek::Incomplete`]), or says why the
//! stream cannot be routed ([`ParseError`]). It is a pure function: no I/O, no state; the
//! caller appends what it reads and calls it again. The bytes are never modified, so after a
//! [`Peek::Hello`] the caller forwards the whole buffer to the chosen backend verbatim.
//!
//! Invariants:
//! - Never panics, on any input: all reads are bounds-checked, no arithmetic can overflow.
//! - Bounded buffering: [`Peek::Incomplete`] is only returned while
//!   `buf.len() < MAX_CLIENT_HELLO`, so a caller that stops reading at [`MAX_CLIENT_HELLO`]
//!   bytes always gets a decision. A ClientHello whose records would span more than
//!   [`MAX_CLIENT_HELLO`] bytes, or more than [`MAX_RECORDS`] records, is [`ParseError::TooLarge`],
//!   reported as soon as a record or handshake header shows it.
//! - Early rejection: a first byte that is not a TLS handshake record (HTTP, SSLv2-style
//!   hellos, garbage) is [`ParseError::NotTls`] after one byte.
//! - The handshake message may be fragmented over several consecutive handshake records
//!   (RFC 8446 §5.1); the fragments are reassembled, copying only in that case.
//! - Allocation: only the result (the server name, the ALPN list) and, for a fragmented
//!   message, one buffer for the reassembled message.
//! - Strictness: every length field must be consistent with its enclosing structure; an
//!   SNI or ALPN extension that appears twice, or an SNI list naming two host names, is
//!   [`ParseError::Malformed`] (so the proxy and the backend can never disagree on which name
//!   counts). Bytes after the ClientHello (e.g. early data) are not looked at.

// The invariants above, checked by clippy (the unit tests may index and unwrap).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::borrow::Cow;

/// Upper bound on the bytes (records with their 5-byte headers) a ClientHello may span.
///
/// Also the most a caller ever needs to buffer: with `buf.len() >= MAX_CLIENT_HELLO`,
/// [`parse`] never returns [`Peek::Incomplete`].
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// Upper bound on the number of TLS records a ClientHello may be fragmented over.
pub const MAX_RECORDS: usize = 32;

/// TLS record header: content type (1), legacy record version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// Largest legal TLSPlaintext fragment (RFC 8446 §5.1).
const MAX_RECORD_PAYLOAD: usize = 1 << 14;
/// Handshake message header: message type (1), length (3).
const HANDSHAKE_HEADER_LEN: usize = 4;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_TYPE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// Outcome of a successful [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// The bytes so far are a valid prefix of a ClientHello: read more and call again.
    Incomplete,
    /// A complete ClientHello was found.
    Hello(ClientHello),
}

/// What routing needs from a ClientHello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The SNI `host_name`, ASCII-lowercased and without a trailing dot; `None` when the
    /// client sent no SNI extension or no `host_name` entry in it.
    pub server_name: Option<String>,
    /// The ALPN protocol names in the client's order (raw bytes, e.g. `b"h2"`); empty when the
    /// client sent no ALPN extension.
    pub alpn: Vec<Vec<u8>>,
    /// How many bytes at the start of the buffer the records carrying the ClientHello occupy.
    pub len: usize,
}

/// Why a buffer cannot be (the start of) a routable ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The stream does not start with a TLS handshake record (e.g. plaintext HTTP, SSLv2).
    #[error("not a TLS handshake")]
    NotTls,
    /// The first handshake message is not a ClientHello.
    #[error("first TLS handshake message is not a ClientHello")]
    NotClientHello,
    /// The ClientHello would span more than [`MAX_CLIENT_HELLO`] bytes or [`MAX_RECORDS`] records.
    #[error("TLS ClientHello larger than {MAX_CLIENT_HELLO} bytes or {MAX_RECORDS} records")]
    TooLarge,
    /// A length or field is invalid; the reason is static text for logs.
    #[error("malformed TLS ClientHello: {0}")]
    Malformed(&'static str),
}

use ParseError::Malformed;

/// Looks for a ClientHello at the start of `buf`, the bytes received so far from a client.
///
/// Returns [`Peek::Incomplete`] when `buf` is a valid prefix that ends too early, [`Peek::Hello`]
/// when the whole ClientHello is in `buf` (trailing bytes are ignored), and an error as soon as
/// the bytes cannot begin a routable ClientHello.
///
/// # Errors
///
/// [`ParseError::NotTls`] when `buf` does not start with a TLS handshake record,
/// [`ParseError::NotClientHello`] when the first handshake message is something else,
/// [`ParseError::TooLarge`] when the hello would exceed [`MAX_CLIENT_HELLO`] or
/// [`MAX_RECORDS`], [`ParseError::Malformed`] for any other malformation.
pub fn parse(buf: &[u8]) -> Result<Peek, ParseError> {
    // The handshake fragment carried by each complete record, in order.
    let mut fragments: [&[u8]; MAX_RECORDS] = [&[]; MAX_RECORDS];
    let mut records = 0usize;
    // Bytes of `buf` taken by complete records so far; `rest` is what follows them.
    let mut consumed = 0usize;
    let mut rest = buf;
    // The handshake header, gathered across fragments (it may itself be fragmented).
    let mut header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut header_len = 0usize;
    // Handshake bytes in complete records so far, and the message length once known.
    let mut have = 0usize;
    let mut message_len: Option<usize> = None;

    loop {
        // Another record is needed; it takes a header and at least one byte.
        if records == MAX_RECORDS
            || consumed.saturating_add(RECORD_HEADER_LEN + 1) > MAX_CLIENT_HELLO
        {
            return Err(ParseError::TooLarge);
        }
        check_record_header(rest, records == 0)?;
        let Some((record_header, after)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            return Ok(Peek::Incomplete);
        };
        let record_len = usize::from(u16::from_be_bytes([record_header[3], record_header[4]]));
        if record_len == 0 {
            return Err(Malformed("empty handshake record"));
        }
        if record_len > MAX_RECORD_PAYLOAD {
            return Err(Malformed("record longer than 2^14 bytes"));
        }
        let record_end = consumed
            .saturating_add(RECORD_HEADER_LEN)
            .saturating_add(record_len);
        if record_end > MAX_CLIENT_HELLO {
            return Err(ParseError::TooLarge);
        }
        // What has arrived of this record's fragment (all of it when the record is complete).
        let available = after.get(..record_len).unwrap_or(after);

        for (slot, &byte) in header.iter_mut().skip(header_len).zip(available) {
            *slot = byte;
        }
        header_len = HANDSHAKE_HEADER_LEN.min(header_len.saturating_add(available.len()));
        if header_len >= 1 && header[0] != HANDSHAKE_TYPE_CLIENT_HELLO {
            return Err(ParseError::NotClientHello);
        }
        if header_len == HANDSHAKE_HEADER_LEN && message_len.is_none() {
            let [_, len @ ..] = header;
            let len = usize::try_from(u32::from_be_bytes([0, len[0], len[1], len[2]]))
                .map_or(usize::MAX, |len| len.saturating_add(HANDSHAKE_HEADER_LEN));
            // Fewest bytes the hello can still span: this record's header plus the rest of
            // the message.
            let fewest = consumed
                .saturating_add(RECORD_HEADER_LEN)
                .saturating_add(len.saturating_sub(have));
            if fewest > MAX_CLIENT_HELLO {
                return Err(ParseError::TooLarge);
            }
            message_len = Some(len);
        }

        let Some(rest_after) = after.get(record_len..) else {
            return Ok(Peek::Incomplete);
        };
        if let Some(slot) = fragments.get_mut(records) {
            *slot = available;
        }
        records = records.saturating_add(1);
        have = have.saturating_add(record_len);
        consumed = record_end;
        rest = rest_after;

        if let Some(len) = message_len
            && have >= len
        {
            let message = reassemble(fragments.get(..records).unwrap_or(&[]), len);
            let body = message.get(HANDSHAKE_HEADER_LEN..len).unwrap_or(&[]);
            let mut hello = parse_client_hello(body)?;
            hello.len = consumed;
            return Ok(Peek::Hello(hello));
        }
    }
}

/// Checks the bytes available of a record header: a handshake record of TLS (major version 3).
fn check_record_header(header: &[u8], first: bool) -> Result<(), ParseError> {
    let (not_handshake, bad_version) = if first {
        (ParseError::NotTls, ParseError::NotTls)
    } else {
        (
            Malformed("ClientHello interrupted by a non-handshake record"),
            Malformed("record version is not TLS"),
        )
    };
    if header.first().is_some_and(|&t| t != CONTENT_TYPE_HANDSHAKE) {
        return Err(not_handshake);
    }
    if header.get(1).is_some_and(|&major| major != 3) {
        return Err(bad_version);
    }
    Ok(())
}

/// The first `len` bytes of the concatenated fragments; borrowed when one fragment holds them.
fn reassemble<'a>(fragments: &[&'a [u8]], len: usize) -> Cow<'a, [u8]> {
    if let [first, ..] = fragments
        && let Some(message) = first.get(..len)
    {
        return Cow::Borrowed(message);
    }
    let mut message = Vec::with_capacity(len);
    for fragment in fragments {
        message.extend_from_slice(fragment);
    }
    message.truncate(len);
    Cow::Owned(message)
}

/// Parses a ClientHello body (RFC 8446 §4.1.2; extensions optional as in RFC 5246 §7.4.1.2).
fn parse_client_hello(body: &[u8]) -> Result<ClientHello, ParseError> {
    let mut r = Reader(body);
    r.take(2 + 32, "truncated version or random")?;
    let session_id = r.vec_u8("truncated session id")?;
    if session_id.len() > 32 {
        return Err(Malformed("session id longer than 32 bytes"));
    }
    let cipher_suites = r.vec_u16("truncated cipher suites")?;
    if cipher_suites.is_empty() || cipher_suites.len() % 2 != 0 {
        return Err(Malformed("invalid cipher suites length"));
    }
    if r.vec_u8("truncated compression methods")?.is_empty() {
        return Err(Malformed("no compression methods"));
    }
    let mut hello = ClientHello::default();
    if r.is_empty() {
        return Ok(hello); // A hello without extensions (TLS 1.2 and older).
    }
    let mut extensions = Reader(r.vec_u16("truncated extensions")?);
    if !r.is_empty() {
        return Err(Malformed("bytes after extensions"));
    }
    let (mut seen_sni, mut seen_alpn) = (false, false);
    while !extensions.is_empty() {
        let kind = extensions.u16("truncated extension type")?;
        let data = extensions.vec_u16("truncated extension")?;
        match kind {
            EXTENSION_SERVER_NAME => {
                if std::mem::replace(&mut seen_sni, true) {
                    return Err(Malformed("duplicate server_name extension"));
                }
                hello.server_name = parse_server_name(data)?;
            }
            EXTENSION_ALPN => {
                if std::mem::replace(&mut seen_alpn, true) {
                    return Err(Malformed("duplicate ALPN extension"));
                }
                hello.alpn = parse_alpn(data)?;
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// Parses a `server_name` extension (RFC 6066 §3); entries other than `host_name` are skipped.
fn parse_server_name(data: &[u8]) -> Result<Option<String>, ParseError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec_u16("truncated server name list")?);
    if !r.is_empty() || list.is_empty() {
        return Err(Malformed("invalid server name list length"));
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8("truncated server name type")?;
        let name = list.vec_u16("truncated server name")?;
        if name_type == NAME_TYPE_HOST_NAME {
            if host.is_some() {
                return Err(Malformed("more than one host_name"));
            }
            host = Some(normalize_host(name)?);
        }
    }
    Ok(host)
}

/// Validates a `host_name` (printable ASCII, at most 255 bytes) and normalizes it for routing:
/// lowercased, one trailing dot removed.
fn normalize_host(name: &[u8]) -> Result<String, ParseError> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > 255 {
        return Err(Malformed("invalid host_name length"));
    }
    if !name.iter().all(u8::is_ascii_graphic) {
        return Err(Malformed("host_name is not printable ASCII"));
    }
    Ok(name
        .iter()
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect())
}

/// Parses an ALPN extension (RFC 7301 §3.1): a non-empty list of non-empty protocol names.
fn parse_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec_u16("truncated ALPN list")?);
    if !r.is_empty() || list.is_empty() {
        return Err(Malformed("invalid ALPN list length"));
    }
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let protocol = list.vec_u8("truncated ALPN protocol")?;
        if protocol.is_empty() {
            return Err(Malformed("empty ALPN protocol name"));
        }
        protocols.push(protocol.to_vec());
    }
    Ok(protocols)
}

/// A cursor over untrusted bytes; every read is checked and names what was truncated.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        let (head, tail) = self.0.split_at_checked(n).ok_or(Malformed(what))?;
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        let (&byte, tail) = self.0.split_first().ok_or(Malformed(what))?;
        self.0 = tail;
        Ok(byte)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ParseError> {
        let (bytes, tail) = self.0.split_first_chunk::<2>().ok_or(Malformed(what))?;
        self.0 = tail;
        Ok(u16::from_be_bytes(*bytes))
    }

    /// A vector with a one-byte length prefix.
    fn vec_u8(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        let len = self.u8(what)?;
        self.take(usize::from(len), what)
    }

    /// A vector with a two-byte length prefix.
    fn vec_u16(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    // --- Real ClientHellos, from rustls -------------------------------------------------

    /// The bytes a rustls client sends first: its ClientHello in TLS records.
    fn rustls_hello(server_name: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .expect("valid server name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).expect("write to Vec");
        }
        out
    }

    fn default_hello() -> Vec<u8> {
        rustls_hello("example.com", &[b"h2", b"http/1.1"])
    }

    /// Splits a single-record hello into its handshake message.
    fn message_of(records: &[u8]) -> Vec<u8> {
        assert_eq!(records[0], CONTENT_TYPE_HANDSHAKE);
        let len = usize::from(u16::from_be_bytes([records[3], records[4]]));
        assert_eq!(records.len(), RECORD_HEADER_LEN + len, "one record");
        records[RECORD_HEADER_LEN..].to_vec()
    }

    /// Frames a handshake message into records whose fragments have the given sizes; the
    /// last record takes whatever is left.
    fn frame(message: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = message;
        for (i, &size) in sizes.iter().enumerate() {
            let size = if i + 1 == sizes.len() {
                rest.len()
            } else {
                size
            };
            let (fragment, tail) = rest.split_at(size);
            out.push(CONTENT_TYPE_HANDSHAKE);
            out.extend_from_slice(&[3, 1]);
            out.extend_from_slice(&u16::try_from(size).unwrap().to_be_bytes());
            out.extend_from_slice(fragment);
            rest = tail;
        }
        assert!(rest.is_empty());
        out
    }

    /// Frames a handshake message into records of `chunk` bytes (the last may be shorter).
    fn frame_chunks(message: &[u8], chunk: usize) -> Vec<u8> {
        let sizes = vec![chunk; message.len().div_ceil(chunk)];
        frame(message, &sizes)
    }

    fn expect_hello(buf: &[u8]) -> ClientHello {
        match parse(buf) {
            Ok(Peek::Hello(hello)) => hello,
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    #[test]
    fn rustls_hello_with_sni_and_alpn() {
        let bytes = default_hello();
        let hello = expect_hello(&bytes);
        assert_eq!(hello.server_name.as_deref(), Some("example.com"));
        assert_eq!(hello.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(hello.len, bytes.len());
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut bytes = default_hello();
        let len = bytes.len();
        // e.g. a ChangeCipherSpec and early data after the hello.
        bytes.extend_from_slice(&[20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xAA, 0xBB]);
        let hello = expect_hello(&bytes);
        assert_eq!(hello.server_name.as_deref(), Some("example.com"));
        assert_eq!(hello.len, len);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let bytes = default_hello();
        for end in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..end]),
                Ok(Peek::Incomplete),
                "prefix of {end} bytes"
            );
        }
        assert!(matches!(parse(&bytes), Ok(Peek::Hello(_))));
    }

    #[test]
    fn no_sni_for_ip_address() {
        let bytes = rustls_hello("192.0.2.1", &[]);
        let hello = expect_hello(&bytes);
        assert_eq!(hello.server_name, None);
        assert!(hello.alpn.is_empty());
        let bytes = rustls_hello("2001:db8::1", &[b"h2"]);
        let hello = expect_hello(&bytes);
        assert_eq!(hello.server_name, None);
        assert_eq!(hello.alpn, vec![b"h2".to_vec()]);
    }

    #[test]
    fn handshake_split_across_two_records() {
        let message = message_of(&default_hello());
        // Every split point, including inside the 4-byte handshake header.
        for split in 1..message.len() {
            let bytes = frame(&message, &[split, 0]);
            let hello = expect_hello(&bytes);
            assert_eq!(
                hello.server_name.as_deref(),
                Some("example.com"),
                "split at {split}"
            );
            assert_eq!(hello.len, bytes.len());
        }
    }

    #[test]
    fn fragmented_prefixes_are_incomplete() {
        let message = message_of(&default_hello());
        let bytes = frame(&message, &[1, 3, 100, 7, 0]);
        for end in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..end]),
                Ok(Peek::Incomplete),
                "prefix of {end} bytes"
            );
        }
        assert_eq!(
            expect_hello(&bytes).server_name.as_deref(),
            Some("example.com")
        );
    }

    #[test]
    fn record_count_is_capped() {
        let message = message_of(&default_hello());
        let mut sizes = vec![1; MAX_RECORDS - 1];
        sizes.push(0);
        assert!(matches!(
            parse(&frame(&message, &sizes)),
            Ok(Peek::Hello(_))
        ));
        let mut sizes = vec![1; MAX_RECORDS];
        sizes.push(0);
        assert_eq!(parse(&frame(&message, &sizes)), Err(ParseError::TooLarge));
    }

    #[test]
    fn non_handshake_record_inside_hello() {
        let message = message_of(&default_hello());
        let mut bytes = frame(&message, &[10, 0]);
        bytes[RECORD_HEADER_LEN + 10] = 23; // second record: application data
        assert!(matches!(parse(&bytes), Err(Malformed(_))));
        // Detected from the record's first byte.
        assert!(matches!(
            parse(&bytes[..RECORD_HEADER_LEN + 11]),
            Err(Malformed(_))
        ));
    }

    #[test]
    fn not_tls() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
            b"G",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            // SSLv2-compatible ClientHello: 2-byte header with the high bit set, msg type 1.
            &[
                0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
            ],
            &[0x16, 0x02],       // handshake type byte but SSL 2 version
            &[0x16, 0xFE, 0xFD], // DTLS 1.2
            &[0x00; 64],
        ] {
            assert_eq!(parse(input), Err(ParseError::NotTls), "{input:?}");
        }
    }

    #[test]
    fn short_inputs_are_incomplete() {
        for input in [&[][..], &[0x16], &[0x16, 0x03], &[0x16, 0x03, 0x01, 0x02]] {
            assert_eq!(parse(input), Ok(Peek::Incomplete), "{input:?}");
        }
    }

    #[test]
    fn other_handshake_messages() {
        // A ServerHello (type 2), seen from its first byte.
        assert_eq!(
            parse(&[0x16, 0x03, 0x03, 0x00, 0x30, 0x02]),
            Err(ParseError::NotClientHello)
        );
        // The type byte alone in a one-byte first record.
        let mut message = message_of(&default_hello());
        message[0] = 2;
        assert_eq!(
            parse(&frame(&message, &[1, 0])),
            Err(ParseError::NotClientHello)
        );
    }

    #[test]
    fn record_length_limits() {
        // Empty handshake record.
        assert!(matches!(
            parse(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            Err(Malformed(_))
        ));
        // Record longer than 2^14.
        assert!(matches!(
            parse(&[0x16, 0x03, 0x01, 0x40, 0x01]),
            Err(Malformed(_))
        ));
        // A full-size record would make the hello span more than MAX_CLIENT_HELLO.
        assert_eq!(
            parse(&[0x16, 0x03, 0x01, 0x40, 0x00]),
            Err(ParseError::TooLarge)
        );
    }

    #[test]
    fn handshake_length_limits() {
        // A 64 KiB ClientHello is refused from its 9-byte prefix.
        let bytes = [0x16, 0x03, 0x01, 0x00, 0x20, 0x01, 0x01, 0x00, 0x00];
        assert_eq!(parse(&bytes), Err(ParseError::TooLarge));
        // The largest hello that fits: one record of MAX_CLIENT_HELLO - 5 bytes.
        let fits = MAX_CLIENT_HELLO - RECORD_HEADER_LEN - HANDSHAKE_HEADER_LEN;
        let too_big = fits + 1;
        for (len, expect_incomplete) in [(fits, true), (too_big, false)] {
            let mut bytes = vec![0x16, 0x03, 0x01, 0x00, 0x00, 0x01];
            bytes.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes()[1..]);
            let record_len = u16::try_from(bytes.len() - RECORD_HEADER_LEN).unwrap();
            bytes[3..5].copy_from_slice(&record_len.to_be_bytes());
            let result = parse(&bytes);
            if expect_incomplete {
                // The first record is complete; the hello goes on in more records.
                assert_eq!(result, Ok(Peek::Incomplete));
            } else {
                assert_eq!(result, Err(ParseError::TooLarge));
            }
        }
    }

    #[test]
    fn large_hello_in_many_records_is_refused_before_the_cap() {
        // A valid-looking hello, padded by a large unknown extension to ~20 KiB, in
        // 2 KiB records: refused once the header shows it cannot fit.
        let message = build_message(&[(0xFFCE, vec![0; 20_000])], true);
        let bytes = frame(&message, &[2048; 10]);
        assert_eq!(parse(&bytes), Err(ParseError::TooLarge));
        assert_eq!(
            parse(&bytes[..RECORD_HEADER_LEN + 4]),
            Err(ParseError::TooLarge)
        );
    }

    #[test]
    fn incomplete_only_below_cap() {
        // A hello that needs almost exactly MAX_CLIENT_HELLO bytes across many records:
        // every prefix that is Incomplete is shorter than the cap.
        let pad = MAX_CLIENT_HELLO - 600;
        let message = build_message(&[(0xFFCE, vec![0; pad])], true);
        let bytes = frame_chunks(&message, 600);
        assert!(bytes.len() <= MAX_CLIENT_HELLO, "{}", bytes.len());
        for end in (0..bytes.len()).step_by(97) {
            assert_eq!(parse(&bytes[..end]), Ok(Peek::Incomplete));
        }
        assert_eq!(
            expect_hello(&bytes).server_name.as_deref(),
            Some("example.com")
        );
        // Grow the padding until it no longer fits: TooLarge, never Incomplete at the cap.
        let (mut fit, mut too_large) = (0, 0);
        for extra in 0..700 {
            let message = build_message(&[(0xFFCE, vec![0; pad + extra])], true);
            let bytes = frame_chunks(&message, 600);
            match parse(&bytes) {
                Ok(Peek::Hello(_)) => {
                    assert!(bytes.len() <= MAX_CLIENT_HELLO);
                    fit += 1;
                }
                Ok(Peek::Incomplete) => panic!("incomplete for a full hello"),
                Err(e) => {
                    assert_eq!(e, ParseError::TooLarge);
                    assert!(bytes.len() > MAX_CLIENT_HELLO);
                    // Refused before the cap is reached.
                    assert_eq!(
                        parse(&bytes[..MAX_CLIENT_HELLO - 1]),
                        Err(ParseError::TooLarge)
                    );
                    too_large += 1;
                }
            }
        }
        assert!(fit > 0 && too_large > 0, "{fit} fit, {too_large} too large");
    }

    #[test]
    fn truncated_bodies_are_malformed() {
        // Shorten the message body to every length, fixing up the handshake and record
        // lengths so only the inner structure is inconsistent.
        let message = message_of(&default_hello());
        let body = &message[HANDSHAKE_HEADER_LEN..];
        let session_id_len = usize::from(body[34]);
        let suites_at = 35 + session_id_len;
        let suites_len = usize::from(u16::from_be_bytes([body[suites_at], body[suites_at + 1]]));
        let compression_at = suites_at + 2 + suites_len;
        let extensions_at = compression_at + 1 + usize::from(body[compression_at]);
        for cut in 0..body.len() {
            let mut message = vec![HANDSHAKE_TYPE_CLIENT_HELLO];
            message.extend_from_slice(&u32::try_from(cut).unwrap().to_be_bytes()[1..]);
            message.extend_from_slice(&body[..cut]);
            let result = parse(&frame(&message, &[0]));
            if cut == extensions_at {
                // Cut exactly before the extensions: a valid extension-less hello.
                assert_eq!(
                    result,
                    Ok(Peek::Hello(ClientHello {
                        len: 9 + cut,
                        ..Default::default()
                    }))
                );
            } else {
                assert!(
                    matches!(result, Err(Malformed(_))),
                    "cut at {cut}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn inconsistent_lengths_are_malformed() {
        let message = message_of(&default_hello());
        // Lengthen the extension block length by one: it overruns the body.
        let mut bad = message.clone();
        let at = bad.len() - extensions_len_from_end(&bad);
        let len = u16::from_be_bytes([bad[at], bad[at + 1]]) + 1;
        bad[at..at + 2].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(parse(&frame(&bad, &[0])), Err(Malformed(_))));
        // Extra byte after the extensions (handshake length grown to include it).
        let mut bad = message.clone();
        bad.push(0);
        let len = u32::try_from(bad.len() - HANDSHAKE_HEADER_LEN).unwrap();
        bad[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
        assert!(matches!(parse(&frame(&bad, &[0])), Err(Malformed(_))));
    }

    /// Offset from the end of `message` of its extensions length field.
    fn extensions_len_from_end(message: &[u8]) -> usize {
        let body = &message[HANDSHAKE_HEADER_LEN..];
        let mut at = 35 + usize::from(body[34]);
        at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        at += 1 + usize::from(body[at]);
        body.len() - at
    }

    #[test]
    fn single_byte_mutations_never_panic() {
        let bytes = default_hello();
        for at in 0..bytes.len() {
            for value in [
                0x00,
                0x01,
                0x16,
                0x7F,
                0x80,
                0xFF,
                bytes[at] ^ 0x01,
                bytes[at] ^ 0x40,
            ] {
                let mut mutated = bytes.clone();
                mutated[at] = value;
                for end in [mutated.len(), at + 1] {
                    if let Ok(Peek::Incomplete) = parse(&mutated[..end]) {
                        assert!(end < MAX_CLIENT_HELLO);
                    }
                }
            }
        }
    }

    // --- Hand-built ClientHellos, for what rustls does not send ---------------------------

    /// A ClientHello handshake message with the given extensions (SNI "example.com" first
    /// when `sni`).
    fn build_message(extensions: &[(u16, Vec<u8>)], sni: bool) -> Vec<u8> {
        let mut all = Vec::new();
        if sni {
            all.push((EXTENSION_SERVER_NAME, sni_ext(&[(0, b"example.com")])));
        }
        all.extend_from_slice(extensions);
        build_message_with(&all)
    }

    type Extensions = Vec<(u16, Vec<u8>)>;

    fn build_message_with(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x42; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        let mut block = Vec::new();
        for (kind, data) in extensions {
            block.extend_from_slice(&kind.to_be_bytes());
            block.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            block.extend_from_slice(data);
        }
        body.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&block);
        let mut message = vec![HANDSHAKE_TYPE_CLIENT_HELLO];
        message.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }

    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (kind, name) in names {
            list.push(*kind);
            list.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
            list.extend_from_slice(name);
        }
        let mut data = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        data
    }

    fn alpn_ext(protocols: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for protocol in protocols {
            list.push(u8::try_from(protocol.len()).unwrap());
            list.extend_from_slice(protocol);
        }
        let mut data = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        data
    }

    fn parse_exts(extensions: &[(u16, Vec<u8>)]) -> Result<Peek, ParseError> {
        parse(&frame(&build_message_with(extensions), &[0]))
    }

    #[test]
    fn hand_built_hello() {
        let result = parse_exts(&[
            (0x0A0A, vec![]), // GREASE
            (EXTENSION_SERVER_NAME, sni_ext(&[(0, b"Api.Example.COM.")])),
            (EXTENSION_ALPN, alpn_ext(&[b"h2", b"\xFF\x00"])),
        ]);
        let Ok(Peek::Hello(hello)) = result else {
            panic!("{result:?}")
        };
        assert_eq!(hello.server_name.as_deref(), Some("api.example.com"));
        assert_eq!(hello.alpn, vec![b"h2".to_vec(), vec![0xFF, 0x00]]);
    }

    #[test]
    fn no_extensions_at_all() {
        let mut message = build_message_with(&[]);
        message.truncate(message.len() - 2); // drop the empty extensions block
        let len = u32::try_from(message.len() - HANDSHAKE_HEADER_LEN).unwrap();
        message[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
        let result = parse(&frame(&message, &[0]));
        let Ok(Peek::Hello(hello)) = result else {
            panic!("{result:?}")
        };
        assert_eq!((hello.server_name, hello.alpn), (None, vec![]));
        // An empty extensions block is fine too.
        let Ok(Peek::Hello(hello)) = parse_exts(&[]) else {
            panic!()
        };
        assert_eq!(hello.server_name, None);
    }

    #[test]
    fn other_name_types_are_ignored() {
        let sni = sni_ext(&[(1, b"\x00\x01opaque"), (0, b"example.org"), (7, b"")]);
        let Ok(Peek::Hello(hello)) = parse_exts(&[(EXTENSION_SERVER_NAME, sni)]) else {
            panic!()
        };
        assert_eq!(hello.server_name.as_deref(), Some("example.org"));
        let sni = sni_ext(&[(1, b"example.net")]);
        let Ok(Peek::Hello(hello)) = parse_exts(&[(EXTENSION_SERVER_NAME, sni)]) else {
            panic!()
        };
        assert_eq!(hello.server_name, None);
    }

    #[test]
    fn malformed_extensions() {
        let host = |name: &[u8]| (EXTENSION_SERVER_NAME, sni_ext(&[(0, name)]));
        let cases: Vec<(&str, Extensions)> = vec![
            (
                "duplicate SNI",
                vec![host(b"a.example"), host(b"b.example")],
            ),
            (
                "two host names",
                vec![(0, sni_ext(&[(0, b"a.example"), (0, b"b.example")]))],
            ),
            ("empty SNI extension", vec![(0, vec![])]),
            ("empty server name list", vec![(0, vec![0, 0])]),
            (
                "list longer than extension",
                vec![(0, vec![0, 5, 0, 0, 1, b'a'])],
            ),
            (
                "bytes after list",
                vec![(0, [sni_ext(&[(0, b"a")]), vec![0]].concat())],
            ),
            ("truncated name", vec![(0, vec![0, 3, 0, 0, 9])]),
            ("empty host", vec![host(b"")]),
            ("only a dot", vec![host(b".")]),
            ("space in host", vec![host(b"a b")]),
            ("NUL in host", vec![host(b"a\0b")]),
            ("non-ASCII host", vec![host("bücher.example".as_bytes())]),
            ("host too long", vec![host(&[b'a'; 256])]),
            (
                "duplicate ALPN",
                vec![(16, alpn_ext(&[b"h2"])), (16, alpn_ext(&[b"h2"]))],
            ),
            ("empty ALPN extension", vec![(16, vec![])]),
            ("empty ALPN list", vec![(16, vec![0, 0])]),
            ("empty protocol", vec![(16, alpn_ext(&[b""]))]),
            (
                "protocol overruns list",
                vec![(16, vec![0, 3, 5, b'h', b'2'])],
            ),
        ];
        for (what, extensions) in cases {
            let result = parse_exts(&extensions);
            assert!(matches!(result, Err(Malformed(_))), "{what}: {result:?}");
        }
        // A host name of 255 bytes is the longest accepted.
        let Ok(Peek::Hello(hello)) = parse_exts(&[host(&[b'a'; 255])]) else {
            panic!()
        };
        assert_eq!(hello.server_name.map(|n| n.len()), Some(255));
    }

    #[test]
    fn malformed_fixed_fields() {
        let good = build_message_with(&[]);
        let body_at = HANDSHAKE_HEADER_LEN;
        let with = |at: usize, bytes: &[u8]| {
            let mut message = good.clone();
            message[body_at + at..body_at + at + bytes.len()].copy_from_slice(bytes);
            parse(&frame(&message, &[0]))
        };
        assert!(
            matches!(with(34, &[33]), Err(Malformed(_))),
            "session id > 32"
        );
        assert!(
            matches!(with(35, &[0, 0]), Err(Malformed(_))),
            "no cipher suites"
        );
        assert!(
            matches!(with(35, &[0, 1]), Err(Malformed(_))),
            "odd cipher suites"
        );
        assert!(
            matches!(with(39, &[0]), Err(Malformed(_))),
            "no compression methods"
        );
        assert!(
            matches!(with(39, &[2]), Err(Malformed(_))),
            "compression overruns"
        );
        assert!(
            matches!(with(41, &[0, 1]), Err(Malformed(_))),
            "extensions overrun"
        );
        assert!(matches!(with(41, &[0xFF, 0xFF]), Err(Malformed(_))));
    }

    #[test]
    fn errors_display() {
        assert_eq!(ParseError::NotTls.to_string(), "not a TLS handshake");
        assert_eq!(
            ParseError::TooLarge.to_string(),
            "TLS ClientHello larger than 16384 bytes or 32 records"
        );
        assert_eq!(Malformed("x").to_string(), "malformed TLS ClientHello: x");
    }
}
