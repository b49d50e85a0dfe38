//! The `Cache-Status` response header (RFC 9211): how the cache handled a request.
//!
//! Examples: `maitred; hit; ttl=42`, `maitred; fwd=uri-miss; stored`,
//! `maitred; fwd=stale; fwd-status=304`, `maitred; fwd=bypass; detail=logged-in`.

use http::HeaderValue;
use std::fmt::Write;

/// The cache's name in `Cache-Status`.
const NAME: &str = "maitred";

/// Why a request was forwarded (RFC 9211 §2.2 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// A plugin asked to bypass the cache.
    Bypass,
    /// The method is not one the cache answers (POST, PUT, ...).
    Method,
    /// Nothing stored for the key.
    UriMiss,
    /// Responses stored for the key, but not for this request's `Vary` values.
    VaryMiss,
    /// The stored response is stale and was revalidated.
    Stale,
    /// The request asked not to be answered from the cache (`no-cache`).
    Request,
}

impl Forward {
    fn token(self) -> &'static str {
        match self {
            Forward::Bypass => "bypass",
            Forward::Method => "method",
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Stale => "stale",
            Forward::Request => "request",
        }
    }
}

/// The parameters of one `Cache-Status` entry.
#[derive(Debug, Clone, Default)]
pub struct CacheStatus {
    /// Answered from the cache.
    pub hit: bool,
    /// Why the request went to the origin, when it did.
    pub fwd: Option<Forward>,
    /// The origin's status, when a forwarded request got one.
    pub fwd_status: Option<u16>,
    /// Seconds the answered response stays fresh (negative: stale by that much).
    pub ttl: Option<i64>,
    /// The response was stored (or is being stored as it streams).
    pub stored: bool,
    /// The request waited for another request's fetch of the same key.
    pub collapsed: bool,
    /// Extra detail: why a response was not stored, why a stale one was served.
    pub detail: Option<String>,
}

impl CacheStatus {
    /// A status for a forwarded request.
    pub fn forwarded(fwd: Forward) -> CacheStatus {
        CacheStatus {
            fwd: Some(fwd),
            ..CacheStatus::default()
        }
    }

    /// The header value.
    pub fn header_value(&self) -> HeaderValue {
        let mut s = String::with_capacity(48);
        s.push_str(NAME);
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            let _ = write!(s, "; fwd={}", fwd.token());
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(s, "; fwd-status={status}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(s, "; ttl={ttl}");
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(detail) = &self.detail {
            // sf-token characters only; anything else would break the structured field.
            let token: String = detail
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-._:/*".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            if token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '*') {
                let _ = write!(s, "; detail={token}");
            } else {
                let _ = write!(s, "; detail=\"{token}\"");
            }
        }
        HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static(NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc_9211_shapes() {
        let hit = CacheStatus {
            hit: true,
            ttl: Some(42),
            collapsed: true,
            ..CacheStatus::default()
        };
        assert_eq!(hit.header_value(), "maitred; hit; ttl=42; collapsed");
        let mut stale = CacheStatus::forwarded(Forward::Stale);
        stale.fwd_status = Some(304);
        assert_eq!(stale.header_value(), "maitred; fwd=stale; fwd-status=304");
        let mut bypass = CacheStatus::forwarded(Forward::Bypass);
        bypass.detail = Some("logged in".into());
        assert_eq!(
            bypass.header_value(),
            "maitred; fwd=bypass; detail=logged-in"
        );
        let mut miss = CacheStatus::forwarded(Forward::UriMiss);
        miss.detail = Some("9lives".into());
        assert_eq!(
            miss.header_value(),
            "maitred; fwd=uri-miss; detail=\"9lives\""
        );
    }
}
