//! Conditional requests around the cache (RFC 9110 §13, RFC 9111 §4.3):
//! - [`add_validators`]: turn a request for a stale stored response into a conditional one;
//! - [`refreshed_headers`]: merge a `304 Not Modified` into the stored headers;
//! - [`not_modified`]: whether a client's own `If-None-Match`/`If-Modified-Since` matches a
//!   stored response, so the cache can answer 304 itself.

use http::HeaderMap;
#[cfg(test)]
use http::HeaderValue;
use http::header::{self, HeaderName};

/// Headers of a 304 that must not replace stored ones (RFC 9111 §3.2): they describe the
/// 304's own (empty) content.
const KEEP_STORED: [HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
];

/// Headers sent with a 304 answer (RFC 9110 §15.4.5), taken from the stored response.
pub const NOT_MODIFIED_HEADERS: [HeaderName; 7] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
];

/// Makes `request` conditional on the stored response's validators: `If-None-Match` with
/// its `ETag`, `If-Modified-Since` with its `Last-Modified` (replacing the client's own).
/// Returns whether there was any validator to send (without, the request is a plain GET).
pub fn add_validators(request: &mut HeaderMap, stored: &HeaderMap) -> bool {
    request.remove(header::IF_NONE_MATCH);
    request.remove(header::IF_MODIFIED_SINCE);
    let mut any = false;
    if let Some(etag) = stored.get(header::ETAG) {
        request.insert(header::IF_NONE_MATCH, etag.clone());
        any = true;
    }
    if let Some(last_modified) = stored.get(header::LAST_MODIFIED) {
        request.insert(header::IF_MODIFIED_SINCE, last_modified.clone());
        any = true;
    }
    any
}

/// The stored headers updated with those of a 304 (RFC 9111 §4.3.4): each header in the
/// 304 replaces the stored one of that name, except those describing the 304's content.
pub fn refreshed_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut headers = stored.clone();
    for name in not_modified.keys() {
        if KEEP_STORED.contains(name) {
            continue;
        }
        headers.remove(name);
        for value in not_modified.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// Whether a GET/HEAD with `request` headers may be answered `304 Not Modified` from a
/// response with `response` headers (RFC 9110 §13.1.2, §13.1.3, §13.2.2): its
/// `If-None-Match` matches the `ETag` (weak comparison; `*` matches any), or, without
/// `If-None-Match`, its `If-Modified-Since` is not before `Last-Modified`.
pub fn not_modified(request: &HeaderMap, response: &HeaderMap) -> bool {
    let mut if_none_match = request.get_all(header::IF_NONE_MATCH).iter().peekable();
    if if_none_match.peek().is_some() {
        let Some(etag) = response.get(header::ETAG) else {
            return if_none_match.any(|line| line.as_bytes().trim_ascii() == b"*");
        };
        let etag = weak_opaque(etag.as_bytes());
        return if_none_match.any(|line| {
            line.as_bytes().split(|&b| b == b',').any(|candidate| {
                let candidate = candidate.trim_ascii();
                candidate == b"*" || weak_opaque(candidate) == etag
            })
        });
    }
    let since = |headers: &HeaderMap, name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
    };
    match (
        since(request, header::IF_MODIFIED_SINCE),
        since(response, header::LAST_MODIFIED),
    ) {
        (Some(if_modified_since), Some(last_modified)) => last_modified <= if_modified_since,
        _ => false,
    }
}

/// An entity tag without its weakness marker, for weak comparison.
fn weak_opaque(tag: &[u8]) -> &[u8] {
    let tag = tag.trim_ascii();
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// The headers of a 304 answered from a stored response's `headers`.
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in NOT_MODIFIED_HEADERS {
        for value in stored.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(n.clone(), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_star() {
        let resp = map(&[(header::ETAG, "W/\"v1\"")]);
        assert!(not_modified(
            &map(&[(header::IF_NONE_MATCH, "\"v1\"")]),
            &resp
        ));
        assert!(not_modified(
            &map(&[(header::IF_NONE_MATCH, "\"x\", W/\"v1\"")]),
            &resp
        ));
        assert!(not_modified(&map(&[(header::IF_NONE_MATCH, "*")]), &resp));
        assert!(!not_modified(
            &map(&[(header::IF_NONE_MATCH, "\"v2\"")]),
            &resp
        ));
        // If-None-Match present: If-Modified-Since is ignored.
        let both = map(&[
            (header::IF_NONE_MATCH, "\"v2\""),
            (header::IF_MODIFIED_SINCE, "Sun, 06 Nov 2044 08:49:37 GMT"),
        ]);
        let resp = map(&[
            (header::ETAG, "\"v1\""),
            (header::LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(!not_modified(&both, &resp));
    }

    #[test]
    fn if_modified_since_compares_dates() {
        let resp = map(&[(header::LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT")]);
        let at = |d| map(&[(header::IF_MODIFIED_SINCE, d)]);
        assert!(not_modified(&at("Sun, 06 Nov 1994 08:49:37 GMT"), &resp));
        assert!(not_modified(&at("Mon, 07 Nov 1994 08:49:37 GMT"), &resp));
        assert!(!not_modified(&at("Sat, 05 Nov 1994 08:49:37 GMT"), &resp));
        assert!(!not_modified(&at("garbage"), &resp));
        assert!(!not_modified(&HeaderMap::new(), &resp));
    }

    #[test]
    fn a_304_refreshes_headers_but_not_the_content_length() {
        let stored = map(&[
            (header::CONTENT_LENGTH, "10"),
            (header::CACHE_CONTROL, "max-age=1"),
            (header::ETAG, "\"v1\""),
        ]);
        let fresh = map(&[
            (header::CONTENT_LENGTH, "0"),
            (header::CACHE_CONTROL, "max-age=60"),
        ]);
        let merged = refreshed_headers(&stored, &fresh);
        assert_eq!(merged[header::CONTENT_LENGTH], "10");
        assert_eq!(merged[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(merged[header::ETAG], "\"v1\"");
    }

    #[test]
    fn validators_replace_the_clients_conditionals() {
        let mut request = map(&[(header::IF_NONE_MATCH, "\"client\"")]);
        let stored = map(&[
            (header::ETAG, "\"v1\""),
            (header::LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(add_validators(&mut request, &stored));
        assert_eq!(request[header::IF_NONE_MATCH], "\"v1\"");
        assert!(request.contains_key(header::IF_MODIFIED_SINCE));
        let mut plain = HeaderMap::new();
        assert!(!add_validators(&mut plain, &HeaderMap::new()));
        assert!(plain.is_empty());
    }
}
