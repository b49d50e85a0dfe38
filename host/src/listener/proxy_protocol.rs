//! HAProxy PROXY protocol, versions 1 (text) and 2 (binary): parsing and encoding.
//!
//! [`parse`] takes the bytes received so far on a connection and either finds a complete
//! PROXY header at their start (returning it and how many bytes it took), says more bytes are
//! needed (`Ok(None)`), or says why the bytes are not a valid header ([`Error`]). It is a pure
//! function: no I/O, no state; the caller appends what it reads and calls it again, then drops
//! the consumed bytes and treats the rest as the proxied stream.
//!
//! Invariants:
//! - Never panics, on any input: all reads are bounds-checked, no arithmetic can overflow.
//! - Consumed length: a returned length is at least 15 and at most `buf.len()`.
//! - Bounded buffering: `Ok(None)` is only returned while `buf.len() < MAX_HEADER_LEN`. A v1
//!   line is at most [`MAX_V1_LEN`] bytes (spec §2.1); a v2 header at most
//!   16 + [`MAX_V2_PAYLOAD`] bytes, refused from its 16-byte fixed part if longer.
//! - Early rejection: input that cannot start a header (a first byte other than the first
//!   byte of `PROXY ` or of the v2 signature, e.g. an HTTP request or a TLS hello) is
//!   [`Error::NotProxyProtocol`] after one byte; invalid v1 characters and invalid v2
//!   version/command/family bytes are reported as soon as they arrive.
//! - Addresses: only TCP over IPv4/IPv6 (v1 `TCP4`/`TCP6`, v2 `AF_INET`/`AF_INET6` +
//!   `STREAM`) yields [`Header::Proxied`]. v1 `UNKNOWN` and the other valid v2 families and
//!   protocols (`UNSPEC`, `AF_UNIX`, `DGRAM`) yield [`Header::Unknown`]: the caller uses the
//!   connection's own endpoints, as the spec allows. v2 TLVs are skipped, but their framing
//!   must be consistent.
//! - Allocation: none in [`parse`]; the encoders append to a caller-provided `Vec`.

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

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 prefix, including its space.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v2 fixed part: signature, version/command, family/protocol, payload length.
const V2_FIXED_LEN: usize = 16;

/// The longest v1 header line, CRLF included (spec §2.1).
pub const MAX_V1_LEN: usize = 107;
/// The longest v2 payload (addresses and TLVs) accepted; the format allows 65535.
pub const MAX_V2_PAYLOAD: usize = 4096;
/// The most bytes [`parse`] may need before it decides: with `buf.len() >= MAX_HEADER_LEN`
/// it never returns `Ok(None)`.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + MAX_V2_PAYLOAD;

/// A parsed PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Header {
    /// A proxied TCP connection from `source` (the client) to `destination`.
    Proxied {
        /// The original client's address.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// v2 `LOCAL`: the proxy's own connection (e.g. a health check); use the real endpoints.
    Local,
    /// v1 `UNKNOWN`, or v2 `PROXY` with no usable addresses (`UNSPEC`, `AF_UNIX`, `DGRAM`):
    /// use the real endpoints.
    Unknown,
}

/// Why the bytes are not a valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes do not start with `PROXY ` or the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxyProtocol,
    /// The header is longer than [`MAX_V1_LEN`] (v1) or [`MAX_V2_PAYLOAD`] allows (v2).
    #[error("PROXY protocol header too long")]
    TooLarge,
    /// The header is malformed; the reason is static text for logs.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(&'static str),
}

use Error::Invalid;

/// Parses a PROXY protocol header (v1 or v2) at the start of `buf`.
///
/// Returns `Ok(Some((header, consumed)))` when a complete header was found in the first
/// `consumed` bytes, `Ok(None)` when `buf` is a valid prefix that ends too early, and an error
/// as soon as the bytes cannot begin a valid header.
///
/// # Errors
///
/// [`Error::NotProxyProtocol`] when `buf` does not start like a PROXY header,
/// [`Error::TooLarge`] when the header would exceed [`MAX_V1_LEN`] or [`MAX_V2_PAYLOAD`],
/// [`Error::Invalid`] for any other malformation.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'P' {
        parse_v1(buf)
    } else if first == b'\r' {
        parse_v2(buf)
    } else {
        Err(Error::NotProxyProtocol)
    }
}

/// Whether `buf` and `expected` agree on their common length.
fn prefix_matches(buf: &[u8], expected: &[u8]) -> bool {
    buf.iter().zip(expected).all(|(a, b)| a == b)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    if !prefix_matches(buf, V1_PREFIX) {
        return Err(Error::NotProxyProtocol);
    }
    // Find the CRLF, checking characters on the way: printable ASCII and spaces only. The CR
    // can be at most at index MAX_V1_LEN - 2, for the LF to fit.
    let mut line_len = None;
    for (i, &byte) in buf.iter().enumerate().take(MAX_V1_LEN - 1) {
        match byte {
            b'\r' => match buf.get(i.saturating_add(1)) {
                Some(b'\n') => {
                    line_len = Some(i);
                    break;
                }
                Some(_) => return Err(Invalid("CR not followed by LF in v1 header")),
                None => return Ok(None),
            },
            b' '..=b'~' => {}
            _ => return Err(Invalid("invalid character in v1 header")),
        }
    }
    let Some(line_len) = line_len else {
        return if buf.len() >= MAX_V1_LEN {
            Err(Error::TooLarge)
        } else {
            Ok(None)
        };
    };
    let line = buf
        .get(V1_PREFIX.len()..line_len)
        .ok_or(Invalid("truncated v1 header"))?;
    let line = std::str::from_utf8(line).map_err(|_| Invalid("invalid character in v1 header"))?;
    let consumed = line_len.saturating_add(2);

    let mut fields = line.split(' ');
    let header = match fields.next() {
        // Anything may follow UNKNOWN; the receiver ignores it (spec §2.1).
        Some("UNKNOWN") => Header::Unknown,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = || fields.next().ok_or(Invalid("missing field in v1 header"));
            let (src, dst) = (next()?, next()?);
            let (src_port, dst_port) = (parse_port(next()?)?, parse_port(next()?)?);
            if fields.next().is_some() {
                return Err(Invalid("extra field in v1 header"));
            }
            let (src, dst) = if family == "TCP4" {
                (IpAddr::V4(parse_ip(src)?), IpAddr::V4(parse_ip(dst)?))
            } else {
                (IpAddr::V6(parse_ip(src)?), IpAddr::V6(parse_ip(dst)?))
            };
            Header::Proxied {
                source: SocketAddr::new(src, src_port),
                destination: SocketAddr::new(dst, dst_port),
            }
        }
        _ => return Err(Invalid("unknown protocol in v1 header")),
    };
    Ok(Some((header, consumed)))
}

fn parse_ip<T: std::str::FromStr>(text: &str) -> Result<T, Error> {
    text.parse()
        .map_err(|_| Invalid("invalid address in v1 header"))
}

/// A port: 1 to 5 decimal digits, at most 65535 (`u16::from_str` would also take a `+`).
fn parse_port(text: &str) -> Result<u16, Error> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid("invalid port in v1 header"));
    }
    text.parse()
        .map_err(|_| Invalid("invalid port in v1 header"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    if !prefix_matches(buf, &V2_SIGNATURE) {
        return Err(Error::NotProxyProtocol);
    }
    let command = match buf.get(12) {
        None => return Ok(None),
        Some(&b) if b >> 4 != 2 => return Err(Invalid("unsupported v2 version")),
        Some(&b) if b & 0x0F > 1 => return Err(Invalid("invalid v2 command")),
        Some(&b) => b & 0x0F,
    };
    let (family, protocol) = match buf.get(13) {
        None => return Ok(None),
        Some(&b) if b >> 4 > 3 => return Err(Invalid("invalid v2 address family")),
        Some(&b) if b & 0x0F > 2 => return Err(Invalid("invalid v2 transport protocol")),
        Some(&b) => (b >> 4, b & 0x0F),
    };
    let Some(&[hi, lo]) = buf.get(14..16) else {
        return Ok(None);
    };
    let payload_len = usize::from(u16::from_be_bytes([hi, lo]));
    if payload_len > MAX_V2_PAYLOAD {
        return Err(Error::TooLarge);
    }
    let consumed = V2_FIXED_LEN + payload_len;
    let Some(payload) = buf.get(V2_FIXED_LEN..consumed) else {
        return Ok(None);
    };

    // LOCAL: the address block, whatever its family, is ignored (spec §2.2).
    if command == 0 {
        return Ok(Some((Header::Local, consumed)));
    }
    let addresses_len = match family {
        1 => 12,  // AF_INET: 4 + 4 + 2 + 2
        2 => 36,  // AF_INET6: 16 + 16 + 2 + 2
        3 => 216, // AF_UNIX: 108 + 108
        _ => 0,   // AF_UNSPEC
    };
    let (addresses, tlvs) = payload
        .split_at_checked(addresses_len)
        .ok_or(Invalid("v2 payload shorter than its addresses"))?;
    check_tlvs(tlvs)?;
    let header = match (family, protocol) {
        (1, 1) => proxied::<4, Ipv4Addr>(addresses)?,
        (2, 1) => proxied::<16, Ipv6Addr>(addresses)?,
        _ => Header::Unknown,
    };
    Ok(Some((header, consumed)))
}

/// Reads a v2 address block: source and destination addresses of `N` bytes, then the source
/// and destination ports.
fn proxied<const N: usize, A>(block: &[u8]) -> Result<Header, Error>
where
    A: From<[u8; N]> + Into<IpAddr>,
{
    const TRUNCATED: Error = Invalid("truncated v2 address block");
    let (src, rest) = block.split_first_chunk::<N>().ok_or(TRUNCATED)?;
    let (dst, rest) = rest.split_first_chunk::<N>().ok_or(TRUNCATED)?;
    let &[sp0, sp1, dp0, dp1] = rest else {
        return Err(TRUNCATED);
    };
    Ok(Header::Proxied {
        source: SocketAddr::new(A::from(*src).into(), u16::from_be_bytes([sp0, sp1])),
        destination: SocketAddr::new(A::from(*dst).into(), u16::from_be_bytes([dp0, dp1])),
    })
}

/// Checks that the TLVs after the addresses tile exactly: type (1), length (2), value.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), Error> {
    while !tlvs.is_empty() {
        let Some((&[_kind, hi, lo], rest)) = tlvs.split_first_chunk::<3>() else {
            return Err(Invalid("truncated v2 TLV"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = rest
            .get(len..)
            .ok_or(Invalid("v2 TLV overruns the header"))?;
    }
    Ok(())
}

/// Both addresses in one family: as they are if they share one, else IPv6 with the IPv4 one
/// mapped (`::ffff:a.b.c.d`), since a header carries a single family.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (IpAddr, IpAddr) {
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V6(d)) => (s.to_ipv6_mapped().into(), d.into()),
        (IpAddr::V6(s), IpAddr::V4(d)) => (s.into(), d.to_ipv6_mapped().into()),
        (s, d) => (s, d),
    }
}

/// Appends a v1 header line for a TCP connection from `source` to `destination`.
///
/// Mixed families are sent as `TCP6` with the IPv4 address mapped; IPv6 scope ids and flow
/// labels are not carried.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    let (src, dst) = same_family(source, destination);
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "PROXY {family} {src} {dst} {} {}\r\n",
        source.port(),
        destination.port()
    );
}

/// Appends a v2 `PROXY` header (TCP over IPv4 or IPv6, no TLVs) for a connection from
/// `source` to `destination`.
///
/// Mixed families are sent as `AF_INET6` with the IPv4 address mapped; IPv6 scope ids and flow
/// labels are not carried.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match same_family(source, destination) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.extend_from_slice(&[0x11, 0, 12]); // AF_INET, STREAM; length
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            out.extend_from_slice(&[0x21, 0, 36]); // AF_INET6, STREAM; length
            out.extend_from_slice(&to_v6(src).octets());
            out.extend_from_slice(&to_v6(dst).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
}

/// Appends a v2 `LOCAL` header (no addresses): the proxy's own connection, e.g. a health check.
pub fn encode_v2_local(out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    out.extend_from_slice(&[0x20, 0x00, 0, 0]);
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied {
            source: addr(src),
            destination: addr(dst),
        }
    }

    fn v1(s: &str) -> Result<Option<(Header, usize)>, Error> {
        parse(s.as_bytes())
    }

    fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[ver_cmd, fam]);
        out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Every strict prefix of `bytes` is incomplete, and so is `Ok(None)` only below the cap.
    fn assert_prefixes_incomplete(bytes: &[u8]) {
        for end in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..end]),
                Ok(None),
                "prefix of {end} bytes of {bytes:?}"
            );
        }
    }

    // --- v1 -----------------------------------------------------------------------------

    #[test]
    fn v1_spec_examples() {
        let cases = [
            (
                "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
                proxied("192.168.0.1:56324", "192.168.0.11:443"),
            ),
            (
                "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
                proxied("255.255.255.255:65535", "255.255.255.255:65535"),
            ),
            (
                "PROXY TCP6 ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
                    .replace("ffff:f...f:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
                    .leak(),
                proxied(
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                ),
            ),
            ("PROXY UNKNOWN\r\n", Header::Unknown),
            (
                "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
                    .replace("ffff:f...f:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
                    .leak(),
                Header::Unknown,
            ),
            (
                "PROXY TCP6 ::1 2001:db8::1 1 0\r\n",
                proxied("[::1]:1", "[2001:db8::1]:0"),
            ),
            (
                "PROXY TCP6 ::ffff:1.2.3.4 ::2 80 81\r\n",
                proxied("[::ffff:1.2.3.4]:80", "[::2]:81"),
            ),
        ];
        for (line, header) in cases {
            let mut bytes = line.as_bytes().to_vec();
            assert_prefixes_incomplete(&bytes);
            assert_eq!(parse(&bytes), Ok(Some((header, line.len()))), "{line:?}");
            // Followed by the proxied stream.
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse(&bytes), Ok(Some((header, line.len()))), "{line:?}");
        }
    }

    #[test]
    fn v1_worst_case_is_107_bytes() {
        let ff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY UNKNOWN {ff} {ff} 65535 65535\r\n");
        assert_eq!(line.len(), MAX_V1_LEN);
        assert_eq!(v1(&line), Ok(Some((Header::Unknown, MAX_V1_LEN))));
        // One byte more and the CRLF is past the limit.
        let line = format!("PROXY UNKNOWN {ff} {ff} 65535 655350\r\n");
        assert_eq!(v1(&line), Err(Error::TooLarge));
        assert_eq!(v1(&line[..MAX_V1_LEN]), Err(Error::TooLarge));
        assert_eq!(v1(&line[..MAX_V1_LEN - 1]), Ok(None));
        // A line with no CR at all.
        assert_eq!(parse(&[b'P'; 1][..]), Ok(None));
        let long = format!("PROXY {}", "A".repeat(200));
        assert_eq!(v1(&long), Err(Error::TooLarge));
    }

    #[test]
    fn v1_malformed() {
        for line in [
            "PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n",       // missing field
            "PROXY TCP4 1.2.3.4 5.6.7.8 80 81 82\r\n", // extra field
            "PROXY TCP4 1.2.3.4 5.6.7.8 80 81 \r\n",   // trailing space
            "PROXY TCP4  1.2.3.4 5.6.7.8 80 81\r\n",   // double space
            "PROXY TCP4 1.2.3.4 5.6.7.8 80 65536\r\n", // port out of range
            "PROXY TCP4 1.2.3.4 5.6.7.8 +80 81\r\n",   // sign
            "PROXY TCP4 1.2.3.4 5.6.7.8 -1 81\r\n",
            "PROXY TCP4 1.2.3.4 5.6.7.8 080000 81\r\n", // too many digits
            "PROXY TCP4 1.2.3.4 5.6.7.8 0x50 81\r\n",
            "PROXY TCP4 1.2.3 5.6.7.8 80 81\r\n", // short IPv4
            "PROXY TCP4 1.2.3.256 5.6.7.8 80 81\r\n",
            "PROXY TCP4 01.2.3.4 5.6.7.8 80 81\r\n", // leading zero (octal-looking)
            "PROXY TCP4 ::1 ::2 80 81\r\n",          // IPv6 in TCP4
            "PROXY TCP6 1.2.3.4 5.6.7.8 80 81\r\n",  // IPv4 in TCP6
            "PROXY TCP6 [::1] [::2] 80 81\r\n",
            "PROXY TCP6 fe80::1%eth0 ::2 80 81\r\n", // zone id
            "PROXY TCP5 1.2.3.4 5.6.7.8 80 81\r\n",  // unknown protocol
            "PROXY tcp4 1.2.3.4 5.6.7.8 80 81\r\n",
            "PROXY UDP4 1.2.3.4 5.6.7.8 80 81\r\n",
            "PROXY \r\n",
            "PROXY UNKNOWNX\r\n",
            "PROXY\r\n", // no space after PROXY
        ] {
            let result = v1(line);
            assert!(
                matches!(result, Err(Invalid(_) | Error::NotProxyProtocol)),
                "{line:?}: {result:?}"
            );
        }
        // Bad characters are reported before the line ends.
        assert!(matches!(v1("PROXY TCP4 1.2.3.4\n"), Err(Invalid(_))));
        assert!(matches!(v1("PROXY TCP4 1.2.3.4\r5"), Err(Invalid(_))));
        assert!(matches!(v1("PROXY TCP4 1.2\t"), Err(Invalid(_))));
        assert!(matches!(parse(b"PROXY TCP4 1.2\xC3\xA9"), Err(Invalid(_))));
        assert!(matches!(parse(b"PROXY TCP4 1.2\0"), Err(Invalid(_))));
        // A CR at the end of the input waits for its LF.
        assert_eq!(v1("PROXY TCP4 1.2.3.4 5.6.7.8 80 81\r"), Ok(None));
    }

    #[test]
    fn not_proxy_protocol() {
        for input in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"G",
            b"\x16\x03\x01\x02\x00\x01",
            b"PROXZ",
            b"proxy TCP4",
            b"PROX\r\n",
            b"\r\n\r\n\0\r\nQUIT\r",
            b"\r\r",
            b"\r\n\r\n\x01",
            b"\x00",
        ] {
            assert_eq!(parse(input), Err(Error::NotProxyProtocol), "{input:?}");
        }
        for input in [&b""[..], b"P", b"PROXY", b"\r", b"\r\n\r\n\0\r\nQUIT"] {
            assert_eq!(parse(input), Ok(None), "{input:?}");
        }
    }

    // --- v2 -----------------------------------------------------------------------------

    #[test]
    fn v2_spec_examples() {
        // PROXY, AF_INET, STREAM: 192.168.0.1:56324 -> 192.168.0.11:443.
        let ipv4 = v2(
            0x21,
            0x11,
            &[192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB],
        );
        assert_eq!(ipv4.len(), 28);
        assert_eq!(
            &ipv4[..16],
            b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A\x21\x11\x00\x0C"
        );
        // PROXY, AF_INET6, STREAM: [2001:db8::1]:1234 -> [2001:db8::2]:443.
        let mut payload = Vec::new();
        payload.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        payload.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        payload.extend_from_slice(&[0x04, 0xD2, 0x01, 0xBB]);
        let ipv6 = v2(0x21, 0x21, &payload);
        assert_eq!(ipv6.len(), 52);
        // LOCAL with an empty address block (a health check).
        let local = v2(0x20, 0x00, &[]);
        assert_eq!(local.len(), 16);
        // LOCAL with an address block, which is ignored.
        let local_with_addresses = v2(0x20, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        // PROXY, AF_UNSPEC: no addresses.
        let unspec = v2(0x21, 0x00, &[]);
        // PROXY, AF_UNIX, STREAM: two 108-byte paths.
        let unix = v2(0x21, 0x31, &[0; 216]);
        // PROXY, AF_INET, DGRAM.
        let udp = v2(0x21, 0x12, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        // PROXY, AF_INET, UNSPEC protocol.
        let inet_unspec = v2(0x21, 0x10, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        // With TLVs: ALPN "h2", AUTHORITY "example.com", NOOP padding, CRC32C.
        let mut with_tlvs = vec![10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0x00, 0x50];
        with_tlvs.extend_from_slice(b"\x01\x00\x02h2");
        with_tlvs.extend_from_slice(b"\x02\x00\x0Bexample.com");
        with_tlvs.extend_from_slice(b"\x04\x00\x03\x00\x00\x00");
        with_tlvs.extend_from_slice(b"\x03\x00\x04\x12\x34\x56\x78");
        with_tlvs.extend_from_slice(b"\x05\x00\x00"); // empty UNIQUE_ID
        let with_tlvs = v2(0x21, 0x11, &with_tlvs);

        let cases = [
            (ipv4, proxied("192.168.0.1:56324", "192.168.0.11:443")),
            (ipv6, proxied("[2001:db8::1]:1234", "[2001:db8::2]:443")),
            (local, Header::Local),
            (local_with_addresses, Header::Local),
            (unspec, Header::Unknown),
            (unix, Header::Unknown),
            (udp, Header::Unknown),
            (inet_unspec, Header::Unknown),
            (with_tlvs, proxied("10.0.0.1:12345", "10.0.0.2:80")),
        ];
        for (bytes, header) in cases {
            assert_prefixes_incomplete(&bytes);
            assert_eq!(parse(&bytes), Ok(Some((header, bytes.len()))), "{bytes:?}");
            let mut followed = bytes.clone();
            followed.extend_from_slice(b"\x16\x03\x01");
            assert_eq!(parse(&followed), Ok(Some((header, bytes.len()))));
        }
    }

    #[test]
    fn v2_malformed() {
        let inet = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("version 1", v2(0x11, 0x11, &inet)),
            ("version 3", v2(0x31, 0x11, &inet)),
            ("command 2", v2(0x22, 0x11, &inet)),
            ("command 15", v2(0x2F, 0x11, &inet)),
            ("family 4", v2(0x21, 0x41, &inet)),
            ("protocol 3", v2(0x21, 0x13, &inet)),
            ("short IPv4 block", v2(0x21, 0x11, &inet[..11])),
            ("IPv4 block for IPv6", v2(0x21, 0x21, &inet)),
            ("short unix block", v2(0x21, 0x31, &[0; 215])),
            (
                "truncated TLV",
                v2(0x21, 0x11, &[&inet[..], &[0x01, 0x00]].concat()),
            ),
            (
                "TLV overrun",
                v2(
                    0x21,
                    0x11,
                    &[&inet[..], &[0x01, 0x00, 0x03, b'h', b'2']].concat(),
                ),
            ),
            (
                "TLV overrun by max",
                v2(0x21, 0x11, &[&inet[..], &[0x01, 0xFF, 0xFF]].concat()),
            ),
        ];
        for (what, bytes) in cases {
            let result = parse(&bytes);
            assert!(matches!(result, Err(Invalid(_))), "{what}: {result:?}");
        }
        // Invalid version/command/family bytes are reported before the rest arrives.
        assert!(matches!(
            parse(&v2(0x11, 0x11, &inet)[..13]),
            Err(Invalid(_))
        ));
        assert!(matches!(
            parse(&v2(0x21, 0x51, &inet)[..14]),
            Err(Invalid(_))
        ));
    }

    #[test]
    fn v2_length_cap() {
        let mut payload = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        // One NOOP TLV filling the payload to exactly MAX_V2_PAYLOAD.
        let fill = MAX_V2_PAYLOAD - payload.len() - 3;
        payload.extend_from_slice(&[0x04]);
        payload.extend_from_slice(&u16::try_from(fill).unwrap().to_be_bytes());
        payload.resize(MAX_V2_PAYLOAD, 0);
        let bytes = v2(0x21, 0x11, &payload);
        assert_eq!(bytes.len(), MAX_HEADER_LEN);
        assert_eq!(
            parse(&bytes),
            Ok(Some((proxied("1.2.3.4:1", "5.6.7.8:2"), MAX_HEADER_LEN)))
        );
        assert_eq!(parse(&bytes[..MAX_HEADER_LEN - 1]), Ok(None));
        // One more byte is refused from the fixed part alone.
        let mut too_long = v2(0x21, 0x11, &[]);
        too_long[14..16].copy_from_slice(&u16::try_from(MAX_V2_PAYLOAD + 1).unwrap().to_be_bytes());
        assert_eq!(parse(&too_long), Err(Error::TooLarge));
        too_long[14..16].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(parse(&too_long), Err(Error::TooLarge));
    }

    // --- encoders -----------------------------------------------------------------------

    const PAIRS: [(&str, &str); 7] = [
        ("192.168.0.1:56324", "192.168.0.11:443"),
        ("0.0.0.0:0", "255.255.255.255:65535"),
        ("[::1]:1", "[2001:db8::2]:443"),
        ("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[::]:0"),
        ("[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.2]:81"),
        ("[fe80::1%7]:80", "[::2]:81"),         // scope id is dropped
        ("10.1.2.3:5000", "[2001:db8::9]:443"), // mixed: mapped
    ];

    /// What a header carries of `source` and `destination`.
    fn expected(source: SocketAddr, destination: SocketAddr) -> Header {
        let (src, dst) = same_family(source, destination);
        Header::Proxied {
            source: SocketAddr::new(src, source.port()),
            destination: SocketAddr::new(dst, destination.port()),
        }
    }

    #[test]
    fn v1_round_trip() {
        for (src, dst) in PAIRS {
            let (src, dst) = (addr(src), addr(dst));
            let mut out = b"prefix".to_vec();
            encode_v1(src, dst, &mut out);
            let bytes = &out[6..];
            assert!(bytes.len() <= MAX_V1_LEN);
            assert_prefixes_incomplete(bytes);
            assert_eq!(
                parse(bytes),
                Ok(Some((expected(src, dst), bytes.len()))),
                "{src} {dst}"
            );
        }
        let mut out = Vec::new();
        encode_v1(
            addr("192.168.0.1:56324"),
            addr("192.168.0.11:443"),
            &mut out,
        );
        assert_eq!(out, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        out.clear();
        encode_v1(addr("10.1.2.3:5000"), addr("[2001:db8::9]:443"), &mut out);
        assert_eq!(out, b"PROXY TCP6 ::ffff:10.1.2.3 2001:db8::9 5000 443\r\n");
    }

    #[test]
    fn v2_round_trip() {
        for (src, dst) in PAIRS {
            let (src, dst) = (addr(src), addr(dst));
            let mut out = Vec::new();
            encode_v2(src, dst, &mut out);
            let len = if src.is_ipv4() && dst.is_ipv4() {
                28
            } else {
                52
            };
            assert_eq!(out.len(), len);
            assert_prefixes_incomplete(&out);
            assert_eq!(
                parse(&out),
                Ok(Some((expected(src, dst), len))),
                "{src} {dst}"
            );
        }
        let mut out = Vec::new();
        encode_v2(
            addr("192.168.0.1:56324"),
            addr("192.168.0.11:443"),
            &mut out,
        );
        assert_eq!(
            out,
            v2(
                0x21,
                0x11,
                &[192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB]
            )
        );
        out.clear();
        encode_v2_local(&mut out);
        assert_eq!(out, v2(0x20, 0x00, &[]));
        assert_eq!(parse(&out), Ok(Some((Header::Local, 16))));
    }

    // --- robustness ---------------------------------------------------------------------

    #[test]
    fn single_byte_mutations_never_panic() {
        let mut inputs = Vec::new();
        for (src, dst) in PAIRS {
            let mut out = Vec::new();
            encode_v1(addr(src), addr(dst), &mut out);
            inputs.push(out);
            let mut out = Vec::new();
            encode_v2(addr(src), addr(dst), &mut out);
            inputs.push(out);
        }
        for input in inputs {
            for at in 0..input.len() {
                for value in [0x00, b' ', b'\r', b'\n', b'0', b'9', b':', b'.', 0x7F, 0xFF] {
                    let mut mutated = input.clone();
                    mutated[at] = value;
                    for end in [mutated.len(), at + 1] {
                        match parse(&mutated[..end]) {
                            Ok(Some((_, consumed))) => assert!((15..=end).contains(&consumed)),
                            Ok(None) => assert!(end < MAX_HEADER_LEN),
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            Error::NotProxyProtocol.to_string(),
            "not a PROXY protocol header"
        );
        assert_eq!(Invalid("x").to_string(), "invalid PROXY protocol header: x");
    }
}
