//! maitred plugin: answer matching requests directly (blocks, redirects, stubs).
//!
//! ```toml
//! [plugin.guard]
//! wasm = "target/wasm32-wasip2/release/respond.wasm"
//! config = { rules = [
//!     { path_prefix = "/admin/", status = 403, body = "forbidden" },
//!     { path_prefix = "/old/", status = 301, headers = { location = "/new/" } },
//!     { path = "/healthz", methods = ["GET", "HEAD"], host = "api.example.com", body = "ok" },
//! ] }
//! ```
//!
//! Each rule matches on any of `path` (exact), `path_prefix`, `methods` and `host` (the request's
//! authority, compared case-insensitively and without the port unless the rule has one); a rule
//! without conditions matches every request. The first matching rule answers with its `status`
//! (default 200), `headers` and `body`; `content-type: text/plain; charset=utf-8` is added when
//! there is a body and no `content-type`. Requests no rule matches go on unchanged.
//!
//! Request phase only.
use std::cell::OnceCell;
use std::collections::BTreeMap;

use maitred_sdk::{
    Action, Config, DirectResponse, Phases, Plugin, Request, export_plugin, validate,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: Option<String>,
    path_prefix: Option<String>,
    methods: Option<Vec<String>>,
    host: Option<String>,
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

fn ok() -> u16 {
    200
}

/// A checked rule with its response built once.
struct Rule {
    path: Option<String>,
    path_prefix: Option<String>,
    methods: Option<Vec<String>>,
    host: Option<String>,
    response: DirectResponse,
}

impl Rule {
    fn new(raw: RawRule) -> Result<Rule, String> {
        if raw.path.is_some() && raw.path_prefix.is_some() {
            return Err("give either `path` or `path_prefix`, not both".to_string());
        }
        if let Some(p) = raw
            .path
            .iter()
            .chain(&raw.path_prefix)
            .find(|p| !p.starts_with('/'))
        {
            return Err(format!("path {p:?} must start with '/'"));
        }
        if !(100..=999).contains(&raw.status) {
            return Err(format!(
                "status must be between 100 and 999, not {}",
                raw.status
            ));
        }
        let mut response = DirectResponse::new(raw.status);
        for (name, value) in &raw.headers {
            validate::header_name(name)?;
            validate::header_value(value.as_bytes())?;
            response = response.header(name.as_str(), value);
        }
        if let Some(body) = raw.body {
            if !response.has_header("content-type") {
                response = response.header("content-type", "text/plain; charset=utf-8");
            }
            response = response.body(body);
        }
        let methods = raw
            .methods
            .map(|ms| ms.iter().map(|m| m.to_ascii_uppercase()).collect());
        let host = raw.host.map(|h| h.to_ascii_lowercase());
        Ok(Rule {
            path: raw.path,
            path_prefix: raw.path_prefix,
            methods,
            host,
            response,
        })
    }

    fn matches(&self, req: &RequestInfo) -> bool {
        self.path.as_ref().is_none_or(|p| req.path() == p)
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| req.path().starts_with(p.as_str()))
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m == req.method()))
            && self
                .host
                .as_ref()
                .is_none_or(|h| host_matches(h, req.authority()))
    }
}

/// Whether a (lowercase) rule host matches an authority: without a port in the rule, the
/// authority's port is ignored.
fn host_matches(rule: &str, authority: Option<&str>) -> bool {
    let Some(authority) = authority else {
        return false;
    };
    let authority = authority.to_ascii_lowercase();
    if authority == rule {
        return true;
    }
    // Strip a `:port` (an IPv6 literal keeps its brackets).
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            host == rule
        }
        _ => false,
    }
}

/// The request fields rules look at, each fetched from the host at most once.
struct RequestInfo<'a> {
    req: &'a Request,
    path: OnceCell<String>,
    method: OnceCell<String>,
    authority: OnceCell<Option<String>>,
}

impl RequestInfo<'_> {
    fn path(&self) -> &str {
        self.path.get_or_init(|| self.req.path())
    }
    fn method(&self) -> &str {
        self.method.get_or_init(|| self.req.method())
    }
    fn authority(&self) -> Option<&str> {
        self.authority
            .get_or_init(|| self.req.authority())
            .as_deref()
    }
}

struct Respond {
    rules: Vec<Rule>,
}

impl Plugin for Respond {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.get()?;
        if settings.rules.is_empty() {
            return Err("`rules` is empty: give at least one rule".to_string());
        }
        let rules = settings
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, raw)| Rule::new(raw).map_err(|e| format!("rules[{i}]: {e}")));
        Ok(Respond {
            rules: rules.collect::<Result<_, _>>()?,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&self, req: &Request) -> Action {
        let info = RequestInfo {
            req,
            path: OnceCell::new(),
            method: OnceCell::new(),
            authority: OnceCell::new(),
        };
        match self.rules.iter().find(|rule| rule.matches(&info)) {
            Some(rule) => Action::Respond(rule.response.clone()),
            None => Action::Continue,
        }
    }
}

export_plugin!(Respond);

#[cfg(test)]
mod tests {
    use super::*;

    fn init(json: &str) -> Result<Respond, String> {
        Respond::init(Config::new(json))
    }

    #[test]
    fn builds_responses() {
        let p = init(
            r#"{"rules": [
                {"path_prefix": "/admin/", "status": 403, "body": "forbidden"},
                {"path_prefix": "/old/", "status": 301, "headers": {"location": "/new/"}},
                {"path": "/x", "headers": {"Content-Type": "application/json"}, "body": "{}"}
            ]}"#,
        )
        .unwrap();
        let text = "text/plain; charset=utf-8";
        assert_eq!(
            p.rules[0].response,
            DirectResponse::new(403)
                .header("content-type", text)
                .body("forbidden")
        );
        assert_eq!(
            p.rules[1].response,
            DirectResponse::new(301).header("location", "/new/")
        );
        assert_eq!(
            p.rules[2].response,
            DirectResponse::new(200)
                .header("Content-Type", "application/json")
                .body("{}")
        );
    }

    #[test]
    fn rejects_bad_config() {
        let err = |json| init(json).err().unwrap();
        assert!(err("{}").starts_with("invalid config: missing field `rules`"));
        assert_eq!(
            err(r#"{"rules": []}"#),
            "`rules` is empty: give at least one rule"
        );
        assert_eq!(
            err(r#"{"rules": [{}, {"status": 1000}]}"#),
            "rules[1]: status must be between 100 and 999, not 1000"
        );
        assert_eq!(
            err(r#"{"rules": [{"path": "/a", "path_prefix": "/"}]}"#),
            "rules[0]: give either `path` or `path_prefix`, not both"
        );
        assert_eq!(
            err(r#"{"rules": [{"path_prefix": "a/"}]}"#),
            "rules[0]: path \"a/\" must start with '/'"
        );
        assert!(
            err(r#"{"rules": [{"headers": {"a b": "1"}}]}"#)
                .starts_with("rules[0]: invalid header name")
        );
        assert!(
            err(r#"{"rules": [{"paths": "/"}]}"#)
                .starts_with("invalid config: unknown field `paths`")
        );
    }

    #[test]
    fn matches_hosts() {
        assert!(host_matches("example.com", Some("example.com")));
        assert!(host_matches("example.com", Some("Example.COM:8080")));
        assert!(host_matches("example.com:8080", Some("example.com:8080")));
        assert!(!host_matches("example.com:8080", Some("example.com:9090")));
        assert!(!host_matches("example.com", Some("api.example.com")));
        assert!(!host_matches("example.com", None));
        assert!(host_matches("[::1]", Some("[::1]:80")));
        assert!(!host_matches("[::1]", Some("[::2]")));
    }
}
