//! What the plugin does to one request, decided without touching the host: [`Policy::plan`]
//! reads the request through [`RequestView`] and returns a [`Plan`].

use crate::device::{self, Device};
use crate::glob::{self, Glob};
use crate::query::{self, QueryFilter};
use crate::{cookie, key};
use std::cell::OnceCell;

/// The request as the policy reads it. Implemented by the SDK's `Request` (each method is one
/// host call) and by a plain struct in the tests.
pub trait RequestView {
    /// The method, e.g. `GET`.
    fn method(&self) -> String;
    /// The path without the query.
    fn path(&self) -> String;
    /// The query without `?`, if there is one.
    fn query(&self) -> Option<String>;
    /// Every value of a header, in order.
    fn header_all(&self, name: &str) -> Vec<Vec<u8>>;
    /// The cache key so far (the host's default, or one an earlier plugin set).
    fn cache_key(&self) -> String;
}

/// The checked config.
#[derive(Debug)]
pub struct Policy {
    /// The query filter for the key (and, with `rewrite_query`, the forwarded request).
    pub query: QueryFilter,
    /// Whether the forwarded request's query is filtered too.
    pub rewrite_query: bool,
    /// Lowercase header names keyed by, in order; `x-device-class` last with
    /// `device_class` unless listed.
    pub headers: Vec<String>,
    /// Cookie names keyed by, in order.
    pub cookies: Vec<String>,
    /// Whether the device class is computed and sent upstream.
    pub device_class: bool,
    /// The bypass rules.
    pub bypass: Bypass,
    /// Lifetime overrides, first match wins.
    pub ttl: Vec<TtlRule>,
    /// The request header the final key is sent upstream in.
    pub key_header: Option<String>,
}

/// The `bypass` rules, checked in this order; the first match names the reason.
#[derive(Debug, Default)]
pub struct Bypass {
    /// Uppercase methods.
    pub methods: Vec<String>,
    /// Path prefixes.
    pub path_prefixes: Vec<String>,
    /// Lowercase header names.
    pub headers: Vec<String>,
    /// Cookie name patterns.
    pub cookies: Vec<Glob>,
    /// Query parameter name patterns.
    pub query: Vec<Glob>,
}

/// One lifetime override: both conditions (when given) must hold.
#[derive(Debug)]
pub struct TtlRule {
    /// The path starts with this.
    pub path_prefix: Option<String>,
    /// The path ends with this.
    pub path_suffix: Option<String>,
    /// The lifetime in seconds.
    pub seconds: u32,
}

impl TtlRule {
    fn matches(&self, path: &str) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|p| path.starts_with(p))
            && self
                .path_suffix
                .as_deref()
                .is_none_or(|s| path.ends_with(s))
    }
}

/// The changes to make to one request; `None` fields change nothing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Set `x-device-class` to this class.
    pub device: Option<Device>,
    /// Replace the forwarded query (`Some(None)` removes it).
    pub query: Option<Option<String>>,
    /// Skip the cache, with this reason.
    pub bypass: Option<String>,
    /// Set this cache key.
    pub key: Option<String>,
    /// Set this request header (name, value) to the final key.
    pub key_header: Option<(String, String)>,
    /// Override the lifetime with this many seconds.
    pub ttl: Option<u32>,
}

impl Policy {
    /// Decides what to do with a request, reading each part of it from `req` at most once
    /// and only when a setting needs it.
    pub fn plan(&self, req: &impl RequestView) -> Plan {
        let path = OnceCell::new();
        let path = || path.get_or_init(|| req.path()).as_str();
        let query = OnceCell::new();
        let query = || query.get_or_init(|| req.query()).as_deref();
        let cookies = OnceCell::new();
        let cookies = || cookies.get_or_init(|| req.header_all("cookie")).as_slice();

        let mut plan = Plan {
            device: self
                .device_class
                .then(|| Device::classify(req.header_all("user-agent").first().map(Vec::as_slice))),
            ..Plan::default()
        };
        if self.rewrite_query
            && !self.query.is_identity()
            && let Some(q) = query()
        {
            let filtered = self.query.apply(q);
            if filtered != q {
                plan.query = Some((!filtered.is_empty()).then(|| filtered.into_owned()));
            }
        }
        plan.bypass = self.bypass.reason(req, path, query, cookies);

        // (A rewritten query implies a query filter, so `shapes_key` holds then too.)
        if self.shapes_key() {
            let original = req.cache_key();
            let key = self.key(&original, req, plan.device, cookies);
            if let Some(header) = &self.key_header {
                plan.key_header = Some((header.clone(), key.clone()));
            }
            if key != original || plan.query.is_some() {
                plan.key = Some(key);
            }
        }
        if plan.bypass.is_none() {
            plan.ttl = self
                .ttl
                .iter()
                .find(|r| r.matches(path()))
                .map(|r| r.seconds);
        }
        plan
    }

    /// Whether any setting changes or reports the key (else it is not even read).
    fn shapes_key(&self) -> bool {
        !self.query.is_identity()
            || !self.headers.is_empty()
            || !self.cookies.is_empty()
            || self.key_header.is_some()
    }

    /// The key built from the key so far: its query filtered, then the header, device and
    /// cookie components (see the crate docs for the format).
    fn key<'a>(
        &self,
        original: &str,
        req: &impl RequestView,
        device: Option<Device>,
        cookies: impl Fn() -> &'a [Vec<u8>],
    ) -> String {
        let (url, suffix) = key::split(original);
        let mut k = key::filter_url(url, &self.query);
        k.push_str(suffix);
        for name in &self.headers {
            match device {
                Some(device) if name == device::HEADER => {
                    key::push_component(&mut k, name, device.as_str().as_bytes())
                }
                _ => {
                    let values = req.header_all(name);
                    if !values.is_empty() {
                        key::push_component(&mut k, name, &values.join(&b","[..]));
                    }
                }
            }
        }
        for name in &self.cookies {
            if let Some(value) = cookie::find(cookies(), name) {
                key::push_component(&mut k, &format!("cookie:{name}"), value);
            }
        }
        k
    }
}

impl Bypass {
    /// The reason to skip the cache (`method-PURGE`, `path-/account/`, `header-authorization`,
    /// `cookie-session`, `query-preview`: the rule's kind and its text as configured), or
    /// `None`.
    fn reason<'a>(
        &self,
        req: &impl RequestView,
        path: impl Fn() -> &'a str,
        query: impl Fn() -> Option<&'a str>,
        cookies: impl Fn() -> &'a [Vec<u8>],
    ) -> Option<String> {
        if !self.methods.is_empty() {
            let method = req.method();
            if let Some(m) = self.methods.iter().find(|m| **m == method) {
                return Some(format!("method-{m}"));
            }
        }
        if let Some(p) = self
            .path_prefixes
            .iter()
            .find(|p| path().starts_with(p.as_str()))
        {
            return Some(format!("path-{p}"));
        }
        if let Some(h) = self.headers.iter().find(|h| !req.header_all(h).is_empty()) {
            return Some(format!("header-{h}"));
        }
        if !self.cookies.is_empty() {
            let hit = cookies()
                .iter()
                .flat_map(|h| cookie::pairs(h))
                .find_map(|(name, _)| {
                    glob::any_matches(&self.cookies, &String::from_utf8_lossy(name)).cloned()
                });
            if let Some(g) = hit {
                return Some(format!("cookie-{}", g.as_str()));
            }
        }
        if !self.query.is_empty()
            && let Some(q) = query()
            && let Some(g) = query::names(q).find_map(|n| glob::any_matches(&self.query, &n))
        {
            return Some(format!("query-{}", g.as_str()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maitred_sdk::Config;

    /// A request as plain data; its default key is built as the host builds it.
    struct Fake {
        method: &'static str,
        authority: &'static str,
        path: &'static str,
        query: Option<&'static str>,
        headers: Vec<(&'static str, &'static [u8])>,
        key: Option<&'static str>,
        key_reads: std::cell::Cell<usize>,
    }

    fn get(target: &'static str, headers: &[(&'static str, &'static str)]) -> Fake {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        Fake {
            method: "GET",
            authority: "shop.test",
            path,
            query,
            headers: headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect(),
            key: None,
            key_reads: Default::default(),
        }
    }

    impl RequestView for Fake {
        fn method(&self) -> String {
            self.method.into()
        }
        fn path(&self) -> String {
            self.path.into()
        }
        fn query(&self) -> Option<String> {
            self.query.map(Into::into)
        }
        fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
            self.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_vec())
                .collect()
        }
        fn cache_key(&self) -> String {
            self.key_reads.set(self.key_reads.get() + 1);
            match (self.key, self.query) {
                (Some(key), _) => key.into(),
                (None, Some(q)) => format!("{}{}?{q}", self.authority, self.path),
                (None, None) => format!("{}{}", self.authority, self.path),
            }
        }
    }

    fn policy(json: &str) -> Policy {
        Config::new(json)
            .get::<crate::config::Settings>()
            .and_then(|s| s.into_policy())
            .unwrap()
    }

    /// The key a request ends up with.
    fn key(p: &Policy, req: &Fake) -> String {
        p.plan(req).key.unwrap_or_else(|| req.cache_key())
    }

    #[test]
    fn empty_policy_changes_nothing() {
        let p = policy("{}");
        let req = get("/p?b=1&a=2", &[("user-agent", "iPhone"), ("cookie", "s=1")]);
        assert_eq!(p.plan(&req), Plan::default());
    }

    #[test]
    fn marketing_parameters_leave_the_key() {
        let p = policy(r#"{"ignore_query": ["utm_*", "fbclid", "gclid"], "sort_query": true}"#);
        assert_eq!(key(&p, &get("/p?utm_source=a", &[])), "shop.test/p");
        assert_eq!(
            key(&p, &get("/p?utm_source=b&utm_medium=x", &[])),
            "shop.test/p"
        );
        assert_eq!(key(&p, &get("/p", &[])), "shop.test/p");
        assert_eq!(
            key(&p, &get("/p?id=2&fbclid=z&color=red", &[])),
            "shop.test/p?color=red&id=2"
        );
        assert_eq!(
            key(&p, &get("/p?color=red&gclid=q&id=2", &[])),
            "shop.test/p?color=red&id=2"
        );
        assert_ne!(key(&p, &get("/p?id=1", &[])), key(&p, &get("/p?id=2", &[])));
        // Only the key changes, unless asked.
        assert_eq!(p.plan(&get("/p?utm_source=a", &[])).query, None);
        // A key that is already right is not set again.
        assert_eq!(p.plan(&get("/p?a=1&b=2", &[])).key, None);
    }

    #[test]
    fn rewrite_query_filters_the_forwarded_request_too() {
        let p = policy(r#"{"ignore_query": ["utm_*"], "sort_query": true, "rewrite_query": true}"#);
        let plan = p.plan(&get("/p?utm_source=a&b=1&a=2", &[]));
        assert_eq!(plan.query, Some(Some("a=2&b=1".into())));
        assert_eq!(plan.key.as_deref(), Some("shop.test/p?a=2&b=1"));
        assert_eq!(p.plan(&get("/p?utm_source=a", &[])).query, Some(None));
        assert_eq!(p.plan(&get("/p?a=1", &[])).query, None);
        assert_eq!(p.plan(&get("/p", &[])).query, None);
    }

    #[test]
    fn headers_cookies_and_device_make_variants() {
        let p = policy(
            r#"{"headers": ["Accept-Language", "x-missing"], "cookies": ["currency", "nope"],
                "device_class": true}"#,
        );
        let plan = p.plan(&get(
            "/p?x=1",
            &[
                ("accept-language", "de"),
                ("user-agent", "Mozilla/5.0 (iPhone) Mobile/15E148"),
                ("cookie", "a=1; currency=EUR"),
                ("x-device-class", "desktop"),
            ],
        ));
        assert_eq!(plan.device, Some(Device::Mobile));
        assert_eq!(
            plan.key.as_deref(),
            Some("shop.test/p?x=1#accept-language=de#x-device-class=mobile#cookie:currency=EUR")
        );
        // No headers or cookies: only the device class, which is always known.
        assert_eq!(
            key(&p, &get("/p", &[])),
            "shop.test/p#x-device-class=desktop"
        );
        // Several values are joined; an empty value is not a missing one.
        assert_eq!(
            key(
                &p,
                &get(
                    "/p",
                    &[("accept-language", "de"), ("accept-language", "en")]
                )
            ),
            "shop.test/p#accept-language=de,en#x-device-class=desktop"
        );
        assert_eq!(
            key(&p, &get("/p", &[("accept-language", "")])),
            "shop.test/p#accept-language=#x-device-class=desktop"
        );
        // Values cannot forge components.
        assert_eq!(
            key(
                &p,
                &get("/p", &[("cookie", "currency=\"E#x-device-class=mobile\"")])
            ),
            "shop.test/p#x-device-class=desktop#cookie:currency=E%23x-device-class=mobile"
        );
    }

    #[test]
    fn components_follow_an_earlier_plugins_key() {
        let p = policy(r#"{"ignore_query": ["utm_*"], "headers": ["x-tenant"]}"#);
        let mut req = get("/p?utm_source=a", &[("x-tenant", "t1")]);
        req.key = Some("shop.test/p?utm_source=a#region=eu");
        assert_eq!(key(&p, &req), "shop.test/p#region=eu#x-tenant=t1");
    }

    #[test]
    fn bypass_reasons_in_order() {
        let p = policy(
            r#"{"bypass": {"methods": ["purge"], "path_prefixes": ["/account/"],
                           "headers": ["Authorization"], "cookies": ["session", "wp_*"],
                           "query": ["preview"]}, "ttl": [{"ttl": 60}]}"#,
        );
        let reason = |req: &Fake| p.plan(req).bypass;
        assert_eq!(reason(&get("/p", &[])), None);
        let mut purge = get("/account/x", &[]);
        purge.method = "PURGE";
        assert_eq!(reason(&purge).as_deref(), Some("method-PURGE"));
        assert_eq!(
            reason(&get("/account/x", &[("authorization", "Bearer x")])).as_deref(),
            Some("path-/account/")
        );
        assert_eq!(
            reason(&get(
                "/p",
                &[("authorization", ""), ("cookie", "session=1")]
            ))
            .as_deref(),
            Some("header-authorization")
        );
        assert_eq!(
            reason(&get("/p", &[("cookie", "a=1; session=")])).as_deref(),
            Some("cookie-session")
        );
        assert_eq!(
            reason(&get("/p", &[("cookie", "wp_logged_in=abc")])).as_deref(),
            Some("cookie-wp_*")
        );
        assert_eq!(reason(&get("/p", &[("cookie", "sessionid=1")])), None);
        assert_eq!(
            reason(&get("/p?a=1&preview", &[])).as_deref(),
            Some("query-preview")
        );
        assert_eq!(reason(&get("/accounts", &[])), None);
        // Bypassed requests get no lifetime override; the others do.
        assert_eq!(p.plan(&get("/p?preview=1", &[])).ttl, None);
        assert_eq!(p.plan(&get("/p", &[])).ttl, Some(60));
    }

    #[test]
    fn the_key_is_read_only_when_a_setting_shapes_it() {
        let p = policy(r#"{"bypass": {"headers": ["authorization"]}, "ttl": [{"ttl": 5}]}"#);
        let req = get("/p?a=1", &[]);
        assert_eq!(p.plan(&req).ttl, Some(5));
        assert_eq!(req.key_reads.get(), 0);
        let p = policy(r#"{"headers": ["x-a"]}"#);
        p.plan(&req);
        assert_eq!(req.key_reads.get(), 1);
    }

    #[test]
    fn first_matching_ttl_rule_wins() {
        let p = policy(
            r#"{"ttl": [{"path_prefix": "/static/", "path_suffix": ".css", "ttl": "1h"},
                        {"path_prefix": "/static/", "ttl": "1d"},
                        {"path_suffix": ".html", "ttl": "5m"}]}"#,
        );
        let ttl = |path: &'static str| p.plan(&get(path, &[])).ttl;
        assert_eq!(ttl("/static/a.css"), Some(3600));
        assert_eq!(ttl("/static/a.js"), Some(86_400));
        assert_eq!(ttl("/static/a.html"), Some(86_400));
        assert_eq!(ttl("/b/a.html"), Some(300));
        assert_eq!(ttl("/b/a.css"), None);
    }

    #[test]
    fn key_header_carries_the_final_key() {
        let p = policy(r#"{"ignore_query": ["utm_*"], "key_header": "X-Cache-Key"}"#);
        assert_eq!(
            p.plan(&get("/p?utm_x=1&a=1", &[])).key_header,
            Some(("x-cache-key".into(), "shop.test/p?a=1".into()))
        );
        assert_eq!(
            p.plan(&get("/p", &[])).key_header,
            Some(("x-cache-key".into(), "shop.test/p".into()))
        );
    }
}
