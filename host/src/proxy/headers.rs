//! Header rules at the proxy boundary: request validation against smuggling shapes,
//! hop-by-hop stripping, and the forwarding headers upstreams see.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use std::net::SocketAddr;

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

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

/// Checks the framing headers for shapes used in request smuggling.
///
/// hyper has already rejected malformed request lines, header names and values; these are the
/// shapes it tolerates but a proxy must not forward because another hop may read them
/// differently.
pub fn validate_request(parts: &Parts) -> Result<(), Rejection> {
    let headers = &parts.headers;
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(Rejection::BadContentLength);
    }
    if let Some(len) = length {
        let digits = len.as_bytes();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Rejection::BadContentLength);
        }
    }
    let mut encodings = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(te) = encodings.next() {
        if length.is_some() {
            return Err(Rejection::LengthAndChunked);
        }
        if encodings.next().is_some() || !te.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(Rejection::BadTransferEncoding);
        }
    }
    if request_authority(parts).is_none() {
        return Err(Rejection::MissingHost);
    }
    Ok(())
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
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Prepares a request head for the upstream: hop-by-hop headers out; `Host` kept (HTTP/2's
/// `:authority` becomes `Host`); `X-Forwarded-For` appended; `X-Forwarded-Proto` and
/// `X-Forwarded-Host` set; origin-form URI; HTTP/1.1.
pub fn prepare_upstream_request(parts: &mut Parts, client: SocketAddr, proto: &'static str) {
    strip_hop_by_hop(&mut parts.headers);
    let authority = request_authority(parts).and_then(|a| HeaderValue::from_str(a).ok());
    if let Some(host) = authority {
        parts.headers.insert(header::HOST, host.clone());
        parts
            .headers
            .insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let client_ip = client.ip().to_string();
    let forwarded_for = match parts.headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(previous) => HeaderValue::from_str(&format!("{previous}, {client_ip}")),
        None => HeaderValue::from_str(&client_ip),
    };
    if let Ok(value) = forwarded_for {
        parts.headers.insert(xff, value);
    }
    parts.headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let origin_form = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = origin_form.parse() {
            parts.uri = uri;
        }
    }
    parts.version = http::Version::HTTP_11;
}

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
            Ok(())
        );
        assert_eq!(
            validate_request(&parts(&[host, ("content-length", "12")])),
            Ok(())
        );
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
    }

    #[test]
    fn hosts_without_ports() {
        assert_eq!(host_without_port("a.example.com:8080"), "a.example.com");
        assert_eq!(host_without_port("a.example.com"), "a.example.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn appends_forwarded_for() {
        let mut p = parts(&[("host", "a"), ("x-forwarded-for", "10.0.0.1")]);
        prepare_upstream_request(&mut p, "127.0.0.2:5000".parse().unwrap(), "http");
        assert_eq!(p.headers["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        assert_eq!(p.headers["x-forwarded-host"], "a");
    }
}
