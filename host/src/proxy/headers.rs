//! Header rules at the proxy boundary: request validation against smuggling shapes,
//! hop-by-hop stripping, and the forwarding headers upstreams see.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;

/// The hop-by-hop headers: those that describe one connection and are never forwarded
/// (RFC 9110 section 7.6.1), besides the ones a `Connection` header lists. `Connection`
/// comes first ([`strip_hop_by_hop`] relies on it).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// The index of `name` in [`HOP_BY_HOP`], if it is there.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let name = name.as_str();
    HOP_BY_HOP.iter().position(|hop| *hop == name)
}

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// More than one `Content-Length`, or one that is not a number.
    BadContentLength,
    /// A `Transfer-Encoding` other than plain `chunked`.
    BadTransferEncoding,
    /// No usable `Host` / `:authority`.
    MissingHost,
}

impl Rejection {
    /// Short reason for the 400 body and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::LengthAndChunked => "both Content-Length and Transfer-Encoding",
            Rejection::BadContentLength => "invalid or repeated Content-Length",
            Rejection::BadTransferEncoding => "unsupported Transfer-Encoding",
            Rejection::MissingHost => "missing or invalid Host",
        }
    }
}

/// Checks the framing headers for shapes used in request smuggling, and returns the
/// request's authority (see [`request_authority`]).
///
/// hyper has already rejected malformed request lines, header names and values, and (patched,
/// see `vendor/README.md`) HTTP/1 requests with both framings or repeated `Content-Length`
/// lines. These checks cover what remains for every protocol, HTTP/2 included: shapes a proxy
/// must not forward because another hop may read them differently.
pub fn validate_request(parts: &Parts) -> Result<&str, Rejection> {
    // One pass over the headers instead of a lookup per name.
    let (mut length, mut lengths, mut encoding, mut encodings, mut host) = (None, 0, None, 0, None);
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH {
            length = Some(value);
            lengths += 1;
        } else if *name == header::TRANSFER_ENCODING {
            encoding = Some(value);
            encodings += 1;
        } else if *name == header::HOST && host.is_none() {
            host = Some(value);
        }
    }
    if lengths > 1 {
        return Err(Rejection::BadContentLength);
    }
    if let Some(len) = length {
        let digits = len.as_bytes();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Rejection::BadContentLength);
        }
    }
    if let Some(te) = encoding {
        if length.is_some() {
            return Err(Rejection::LengthAndChunked);
        }
        if encodings > 1 || !te.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(Rejection::BadTransferEncoding);
        }
    }
    let authority = match parts.uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => host.and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty()),
    };
    authority.ok_or(Rejection::MissingHost)
}

/// The request's authority: the URI's (HTTP/2, absolute-form) or the `Host` header.
pub fn request_authority(parts: &Parts) -> Option<&str> {
    if let Some(authority) = parts.uri.authority() {
        return Some(authority.as_str());
    }
    parts
        .headers
        .get(header::HOST)?
        .to_str()
        .ok()
        .filter(|h| !h.is_empty())
}

/// The host part of an authority, without port, for routing (`Api.Example.com:80` -> `Api.Example.com`).
pub fn host_without_port(authority: &str) -> &str {
    let bytes = authority.as_bytes();
    let end = if bytes.first() == Some(&b'[') {
        // `[v6]:port`: up to and including the `]`.
        bytes
            .iter()
            .position(|&b| b == b']')
            .map_or(bytes.len(), |i| i + 1)
    } else {
        bytes
            .iter()
            .rposition(|&b| b == b':')
            .unwrap_or(bytes.len())
    };
    &authority[..end]
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
///
/// Most messages carry none or only `Connection: keep-alive`, so this makes one pass over the
/// names to see which are there, and removes only those.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8; // bit i: HOP_BY_HOP[i] is present
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        remove_connection_options(headers);
    }
    for (i, name) in HOP_BY_HOP.into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Removes the headers the `Connection` header lists (its connection options other than
/// `close` and `keep-alive`).
fn remove_connection_options(headers: &mut HeaderMap) {
    fn options(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|option| {
                !option.is_empty()
                    && !option.eq_ignore_ascii_case(b"close")
                    && !option.eq_ignore_ascii_case(b"keep-alive")
            })
    }
    if options(headers).next().is_none() {
        return;
    }
    let listed: Vec<HeaderName> = options(headers)
        .filter_map(|option| HeaderName::from_bytes(option).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
}

/// What the proxy says about a request's origin in the `X-Forwarded-*` headers.
pub struct Forwarding<'a> {
    /// The client's IP address, formatted once per connection.
    pub client_ip: &'a HeaderValue,
    /// `http` or `https`.
    pub proto: &'static str,
}

/// Prepares a request head for the upstream: hop-by-hop headers out; `Host` kept (HTTP/2's
/// `:authority` becomes `Host`); `X-Forwarded-For` appended; `X-Forwarded-Proto` and
/// `X-Forwarded-Host` set; origin-form URI; HTTP/1.1.
pub fn prepare_upstream_request(parts: &mut Parts, forwarding: Forwarding<'_>) {
    strip_hop_by_hop(&mut parts.headers);
    let headers = &mut parts.headers;
    let host = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str())
            .ok()
            .inspect(|host| {
                headers.insert(header::HOST, host.clone());
            }),
        None => headers.get(header::HOST).cloned(),
    };
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(entry) => {
            entry.insert(forwarding.client_ip.clone());
        }
        // Every earlier hop's list (there may be several lines), then the client.
        header::Entry::Occupied(mut entry) => {
            let mut joined = Vec::with_capacity(64);
            for previous in entry.iter() {
                joined.extend_from_slice(previous.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(forwarding.client_ip.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                entry.insert(value);
            }
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(forwarding.proto),
    );
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let origin_form = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = origin_form.parse() {
            parts.uri = uri;
        }
    }
    parts.version = http::Version::HTTP_11;
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Replaces the path and query of `uri`, keeping the rest. Fails on an invalid path.
pub fn rewrite_path_and_query(
    uri: &mut http::Uri,
    path: &str,
    query: Option<&str>,
) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path must start with '/': {path:?}"));
    }
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|e| format!("invalid path {path:?}: {e}"))?,
    );
    *uri = http::Uri::from_parts(parts).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn rejects_smuggling_shapes() {
        let host = ("host", "a");
        assert_eq!(
            validate_request(&parts(&[
                host,
                ("content-length", "5"),
                ("transfer-encoding", "chunked")
            ])),
            Err(Rejection::LengthAndChunked)
        );
        assert_eq!(
            validate_request(&parts(&[
                host,
                ("content-length", "5"),
                ("content-length", "5")
            ])),
            Err(Rejection::BadContentLength)
        );
        assert_eq!(
            validate_request(&parts(&[host, ("content-length", "+5")])),
            Err(Rejection::BadContentLength)
        );
        assert_eq!(
            validate_request(&parts(&[host, ("transfer-encoding", "gzip, chunked")])),
            Err(Rejection::BadTransferEncoding)
        );
        assert_eq!(validate_request(&parts(&[])), Err(Rejection::MissingHost));
        assert_eq!(
            validate_request(&parts(&[host, ("transfer-encoding", "Chunked")])),
            Ok("a")
        );
        assert_eq!(
            validate_request(&parts(&[host, ("content-length", "12")])),
            Ok("a")
        );
        assert_eq!(
            validate_request(&parts(&[
                host,
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ])),
            Err(Rejection::BadTransferEncoding)
        );
        assert_eq!(
            validate_request(&parts(&[("host", "")])),
            Err(Rejection::MissingHost)
        );
        // HTTP/2 and absolute-form requests carry the authority in the URI.
        let absolute = http::Request::get("http://b.example:8080/x")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(validate_request(&absolute), Ok("b.example:8080"));
    }

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.into_iter().enumerate() {
            assert_eq!(hop_by_hop_index(&HeaderName::from_static(name)), Some(i));
        }
        assert_eq!(hop_by_hop_index(&header::HOST), None);
    }

    #[test]
    fn strips_connection_named_headers() {
        let mut p = parts(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut p.headers);
        assert!(
            p.headers.get("x-secret").is_none()
                && p.headers.get("connection").is_none()
                && p.headers.get("keep-alive").is_none()
        );
        assert!(p.headers.get("x-kept").is_some());

        // Every hop-by-hop header, options over several `Connection` lines in any case.
        let mut p = parts(&[
            ("connection", "keep-alive"),
            ("connection", " X-One ,,x-two"),
            ("x-one", "1"),
            ("x-two", "2"),
            ("proxy-connection", "close"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authenticate", "Basic"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut p.headers);
        let left: Vec<&str> = p.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn hosts_without_ports() {
        assert_eq!(host_without_port("a.example.com:8080"), "a.example.com");
        assert_eq!(host_without_port("a.example.com"), "a.example.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port(""), "");
    }

    #[test]
    fn appends_forwarded_for() {
        let mut p = parts(&[("host", "a"), ("x-forwarded-for", "10.0.0.1")]);
        let client_ip = HeaderValue::from_static("127.0.0.2");
        prepare_upstream_request(
            &mut p,
            Forwarding {
                client_ip: &client_ip,
                proto: "http",
            },
        );
        assert_eq!(p.headers["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        assert_eq!(p.headers["x-forwarded-host"], "a");

        // Several lines from earlier hops are joined into one list.
        let mut p = parts(&[
            ("host", "a"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
        ]);
        prepare_upstream_request(
            &mut p,
            Forwarding {
                client_ip: &client_ip,
                proto: "http",
            },
        );
        let all: Vec<_> = p.headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.2"]);
    }
}
