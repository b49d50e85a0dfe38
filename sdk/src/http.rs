//! Ergonomic wrappers over the WIT `request` and `response` resources.

use crate::bindings::maitred::plugin::http as raw;

/// The header methods requests and responses share, generated for both wrappers.
/// `$var` names the value in the doc examples.
macro_rules! header_methods {
    ($var:literal) => {
        /// The first value of a header, as raw bytes (names are case-insensitive).
        ///
        #[doc = concat!("```ignore\nlet id: Option<Vec<u8>> = ", $var, ".header(\"x-request-id\");\n```")]
        pub fn header(&self, name: &str) -> Option<Vec<u8>> {
            self.0.header(name)
        }

        /// The first value of a header as text; `None` if it is missing or not UTF-8.
        ///
        #[doc = concat!("```ignore\nlet kind = ", $var, ".header_str(\"content-type\").unwrap_or_default();\n```")]
        pub fn header_str(&self, name: &str) -> Option<String> {
            self.header(name).and_then(|v| String::from_utf8(v).ok())
        }

        /// Whether the header is there (with any value).
        ///
        #[doc = concat!("```ignore\nif ", $var, ".has_header(\"x-debug\") { /* ... */ }\n```")]
        pub fn has_header(&self, name: &str) -> bool {
            self.0.header(name).is_some()
        }

        /// Every value of a header, in order (empty if there is none).
        ///
        #[doc = concat!("```ignore\nlet values = ", $var, ".header_all(\"set-cookie\");\n```")]
        pub fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
            self.0.header_all(name)
        }

        /// The names of all headers, lowercase, each once.
        ///
        #[doc = concat!("```ignore\nfor name in ", $var, ".header_names() { /* ... */ }\n```")]
        pub fn header_names(&self) -> Vec<String> {
            self.0.header_names()
        }

        /// Replaces every value of a header with one value.
        ///
        #[doc = concat!("```ignore\n", $var, ".set_header(\"x-env\", \"demo\")?;\n```")]
        pub fn set_header(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), String> {
            self.0.set_header(name, value.as_ref())
        }

        /// Adds a value to a header, after any it already has.
        ///
        #[doc = concat!("```ignore\n", $var, ".append_header(\"via\", \"1.1 maitred\")?;\n```")]
        pub fn append_header(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), String> {
            self.0.append_header(name, value.as_ref())
        }

        /// Removes every value of a header (no-op if there is none).
        ///
        #[doc = concat!("```ignore\n", $var, ".remove_header(\"server\");\n```")]
        pub fn remove_header(&self, name: &str) {
            self.0.remove_header(name)
        }
    };
}

/// The request being handled, passed to [`Plugin::on_request`](crate::Plugin::on_request).
///
/// Every method is one call into the host: getters copy just what they return, setters send
/// just the change. Header names are case-insensitive. Setters fail with the host's message
/// on an invalid name or value; ignore the `Result` (`let _ = ...`) when that cannot happen.
///
/// ```ignore
/// fn on_request(&self, req: &Request) -> Action {
///     if req.path().starts_with("/api/") && req.header("x-api-key").is_none() {
///         return DirectResponse::new(401).into();
///     }
///     let _ = req.set_header("x-seen-by", "my-plugin");
///     Action::Continue
/// }
/// ```
#[repr(transparent)]
pub struct Request(raw::Request);

impl Request {
    pub(crate) fn from_raw(raw: &raw::Request) -> &Request {
        // SAFETY: `Request` is a `repr(transparent)` wrapper around `raw::Request`.
        unsafe { &*(raw as *const raw::Request as *const Request) }
    }

    /// The method, e.g. `GET`.
    ///
    /// ```ignore
    /// if req.method() == "POST" { /* ... */ }
    /// ```
    pub fn method(&self) -> String {
        self.0.method()
    }

    /// The path without the query, e.g. `/api/users`.
    ///
    /// ```ignore
    /// if req.path().starts_with("/admin/") { /* ... */ }
    /// ```
    pub fn path(&self) -> String {
        self.0.path()
    }

    /// The query string without the leading `?`, if the request has one.
    ///
    /// ```ignore
    /// let debug = req.query().is_some_and(|q| q.split('&').any(|p| p == "debug=1"));
    /// ```
    pub fn query(&self) -> Option<String> {
        self.0.query()
    }

    /// The authority (`Host` header, or HTTP/2 `:authority`), e.g. `example.com:8080`.
    ///
    /// ```ignore
    /// let host = req.authority().unwrap_or_default();
    /// ```
    pub fn authority(&self) -> Option<String> {
        self.0.authority()
    }

    /// The client's address as `ip:port`.
    ///
    /// ```ignore
    /// maitred_sdk::log::info(format!("request from {}", req.client_addr()));
    /// ```
    pub fn client_addr(&self) -> String {
        self.0.client_addr()
    }

    /// The name of the upstream the request will be sent to (as named in the config).
    ///
    /// ```ignore
    /// if req.upstream() == "legacy" { /* ... */ }
    /// ```
    pub fn upstream(&self) -> String {
        self.0.upstream()
    }

    header_methods!("req");

    /// Rewrites the path, keeping the query. Must start with `/`.
    ///
    /// ```ignore
    /// if let Some(rest) = req.path().strip_prefix("/v1") {
    ///     req.set_path(rest)?;
    /// }
    /// ```
    pub fn set_path(&self, path: &str) -> Result<(), String> {
        self.0.set_path(path)
    }

    /// Replaces the query string (without `?`); `None` removes it.
    ///
    /// ```ignore
    /// req.set_query(None)?;
    /// ```
    pub fn set_query(&self, query: Option<&str>) -> Result<(), String> {
        self.0.set_query(query)
    }

    /// Sends the request to another upstream, by its name in the config. Fails on an unknown
    /// name.
    ///
    /// ```ignore
    /// req.set_upstream("api-v2")?;
    /// ```
    pub fn set_upstream(&self, name: &str) -> Result<(), String> {
        self.0.set_upstream(name)
    }

    /// The client's HTTP version: `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    ///
    /// ```ignore
    /// let line = format!("{} {} {}", req.method(), req.path(), req.protocol());
    /// ```
    pub fn protocol(&self) -> String {
        self.0.protocol()
    }

    /// The whole request body, if this plugin asked for it by returning a [`Phases`] with
    /// [`Phases::REQUEST_BODY`] and it fit in the route's `max_body`; `None` otherwise.
    ///
    /// ```ignore
    /// fn phases(&self) -> Phases {
    ///     Phases::REQUEST | Phases::REQUEST_BODY
    /// }
    /// // in on_request:
    /// if let Some(body) = req.body() {
    ///     let form = maitred_sdk::body::form_args(&body);
    /// }
    /// ```
    ///
    /// [`Phases`]: crate::Phases
    /// [`Phases::REQUEST_BODY`]: crate::Phases::REQUEST_BODY
    pub fn body(&self) -> Option<Vec<u8>> {
        self.0.body()
    }

    /// The key the route's cache uses for this request: the one set with
    /// [`set_cache_key`](Self::set_cache_key), else the default `authority` + `path` +
    /// `?query` (authority lowercase), e.g. `example.com/img/a.png?v=2`.
    ///
    /// ```ignore
    /// let key = req.cache_key();
    /// ```
    pub fn cache_key(&self) -> String {
        self.0.cache_key()
    }

    /// Replaces the cache key (routes with a `cache` only): requests with equal keys share
    /// cached responses, subject to the response's `Vary`.
    ///
    /// ```ignore
    /// // one cache entry per device class
    /// req.set_cache_key(&format!("{}#{}", req.cache_key(), device_class));
    /// ```
    pub fn set_cache_key(&self, key: &str) {
        self.0.set_cache_key(key)
    }

    /// Skips the cache for this request: not answered from it, not stored in it. `reason`
    /// shows in the `Cache-Status` response header.
    ///
    /// ```ignore
    /// if req.cookie("session").is_some() {
    ///     req.bypass_cache("logged-in");
    /// }
    /// ```
    pub fn bypass_cache(&self, reason: &str) {
        self.0.bypass_cache(reason)
    }

    /// Overrides how long the response stays fresh once stored (in seconds), in place of
    /// its `Cache-Control`/`Expires` lifetime. Responses that must not be stored still are
    /// not.
    ///
    /// ```ignore
    /// if req.path().starts_with("/static/") {
    ///     req.set_cache_ttl(86_400);
    /// }
    /// ```
    pub fn set_cache_ttl(&self, seconds: u32) {
        self.0.set_cache_ttl(seconds)
    }

    /// The value of a cookie from the `Cookie` header(s), surrounding quotes removed; the
    /// first one wins if the name repeats. Names are case-sensitive.
    ///
    /// ```ignore
    /// let always = req.cookie("canary").as_deref() == Some("always");
    /// ```
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.header_all("cookie")
            .iter()
            .find_map(|header| find_cookie(header, name))
    }
}

/// The upstream's response, passed to [`Plugin::on_response`](crate::Plugin::on_response).
///
/// As with [`Request`], each method is one call into the host and header names are
/// case-insensitive. The body is not available: plugins see and change the head only.
///
/// ```ignore
/// fn on_response(&self, resp: &Response) {
///     if resp.status() >= 500 {
///         let _ = resp.set_header("cache-control", "no-store");
///     }
/// }
/// ```
#[repr(transparent)]
pub struct Response(raw::Response);

impl Response {
    pub(crate) fn from_raw(raw: &raw::Response) -> &Response {
        // SAFETY: `Response` is a `repr(transparent)` wrapper around `raw::Response`.
        unsafe { &*(raw as *const raw::Response as *const Response) }
    }

    /// The status code.
    ///
    /// ```ignore
    /// if resp.status() == 404 { /* ... */ }
    /// ```
    pub fn status(&self) -> u16 {
        self.0.status()
    }

    /// Replaces the status code (100-999).
    ///
    /// ```ignore
    /// resp.set_status(503)?;
    /// ```
    pub fn set_status(&self, status: u16) -> Result<(), String> {
        self.0.set_status(status)
    }

    header_methods!("resp");
}

/// Finds cookie `name` in one `Cookie` header value (`a=1; b="2"`): pairs are split on `;`,
/// trimmed, and split at the first `=`; a value in double quotes loses them. Pairs without
/// `=` are skipped. A value that is not UTF-8 is converted lossily.
pub(crate) fn find_cookie(header: &[u8], name: &str) -> Option<String> {
    header.split(|&b| b == b';').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        if key != name.as_bytes() {
            return None;
        }
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            other => other,
        };
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::find_cookie;

    #[test]
    fn finds_cookies() {
        let h = b"a=1; canary=always;b=2 ;  c = 3 ";
        assert_eq!(find_cookie(h, "a").as_deref(), Some("1"));
        assert_eq!(find_cookie(h, "canary").as_deref(), Some("always"));
        assert_eq!(find_cookie(h, "b").as_deref(), Some("2"));
        assert_eq!(find_cookie(h, "c").as_deref(), Some("3"));
        assert_eq!(find_cookie(h, "d"), None);
        assert_eq!(find_cookie(h, "Canary"), None);
        assert_eq!(find_cookie(h, "anary"), None);
    }

    #[test]
    fn cookie_edge_cases() {
        assert_eq!(find_cookie(b"", "a"), None);
        assert_eq!(find_cookie(b"a", "a"), None);
        assert_eq!(find_cookie(b"a=", "a").as_deref(), Some(""));
        assert_eq!(find_cookie(b"a=\"x y\"", "a").as_deref(), Some("x y"));
        assert_eq!(find_cookie(b"a=\"", "a").as_deref(), Some("\""));
        assert_eq!(find_cookie(b"a=b=c", "a").as_deref(), Some("b=c"));
        assert_eq!(find_cookie(b"a=1; a=2", "a").as_deref(), Some("1"));
        assert_eq!(find_cookie(b"x=\xff; a=ok", "a").as_deref(), Some("ok"));
        assert_eq!(find_cookie(b"a=\xff", "a").as_deref(), Some("\u{fffd}"));
        assert_eq!(find_cookie(b"flag; a=1", "a").as_deref(), Some("1"));
    }
}
