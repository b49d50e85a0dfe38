//! maitred plugin: send marked requests, and a share of the others, to a canary upstream.
//!
//! ```toml
//! [plugin.canary]
//! wasm = "target/wasm32-wasip2/release/canary.wasm"
//! config = { upstream = "api-v2", percent = 10,
//!            header = { name = "x-canary", value = "1" },
//!            cookie = { name = "canary", value = "always" } }
//! ```
//!
//! - `upstream` (required): the upstream, by its name in the config, that canary requests go to.
//! - `header`, `cookie` (optional): a request with this header or cookie always goes to the
//!   canary. Without `value`, any value matches (the header or cookie only has to be present).
//! - `percent` (0-100, default 0): the share of the other requests sent to the canary, at random.
//!
//! Request phase only.
use maitred_sdk::{
    Action, Config, Phases, Plugin, Request, export_plugin, log, random_u64, validate,
};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Canary {
    upstream: String,
    #[serde(default)]
    percent: u8,
    header: Option<Matcher>,
    cookie: Option<Matcher>,
}

/// A header or cookie name, and the value it must have (`None`: any value).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Matcher {
    name: String,
    value: Option<String>,
}

impl Matcher {
    fn matches(&self, value: &[u8]) -> bool {
        self.value
            .as_ref()
            .is_none_or(|want| want.as_bytes() == value)
    }
}

impl Canary {
    fn is_marked(&self, req: &Request) -> bool {
        let header = self
            .header
            .as_ref()
            .is_some_and(|h| req.header_all(&h.name).iter().any(|v| h.matches(v)));
        header
            || self
                .cookie
                .as_ref()
                .is_some_and(|c| req.cookie(&c.name).is_some_and(|v| c.matches(v.as_bytes())))
    }
}

impl Plugin for Canary {
    fn init(config: Config) -> Result<Self, String> {
        let canary: Canary = config.get()?;
        if canary.upstream.is_empty() {
            return Err("`upstream` cannot be empty".to_string());
        }
        if canary.percent > 100 {
            return Err(format!(
                "`percent` must be between 0 and 100, not {}",
                canary.percent
            ));
        }
        if let Some(header) = &canary.header {
            validate::header_name(&header.name).map_err(|e| format!("header: {e}"))?;
        }
        if canary.cookie.as_ref().is_some_and(|c| c.name.is_empty()) {
            return Err("cookie: the cookie name cannot be empty".to_string());
        }
        Ok(canary)
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&self, req: &Request) -> Action {
        let percent = u64::from(self.percent);
        let chosen = self.is_marked(req) || (percent > 0 && random_u64() % 100 < percent);
        if chosen && let Err(e) = req.set_upstream(&self.upstream) {
            let upstream = &self.upstream;
            log::warn(format!(
                "cannot send the request to upstream {upstream:?}: {e}"
            ));
        }
        Action::Continue
    }
}

export_plugin!(Canary);

#[cfg(test)]
mod tests {
    use super::*;

    fn init(json: &str) -> Result<Canary, String> {
        Canary::init(Config::new(json))
    }

    #[test]
    fn parses_config() {
        let c = init(r#"{"upstream": "v2"}"#).unwrap();
        assert_eq!((c.upstream.as_str(), c.percent), ("v2", 0));
        assert!(c.header.is_none() && c.cookie.is_none());
        let c = init(r#"{"upstream": "v2", "percent": 100, "header": {"name": "x-canary"}, "cookie": {"name": "c", "value": "always"}}"#).unwrap();
        assert_eq!(c.percent, 100);
        assert!(c.header.unwrap().matches(b"anything"));
        let cookie = c.cookie.unwrap();
        assert!(cookie.matches(b"always") && !cookie.matches(b"never"));
    }

    #[test]
    fn rejects_bad_config() {
        let err = |json| init(json).unwrap_err();
        assert!(err("{}").starts_with("invalid config: missing field `upstream`"));
        assert_eq!(err(r#"{"upstream": ""}"#), "`upstream` cannot be empty");
        assert_eq!(
            err(r#"{"upstream": "v2", "percent": 101}"#),
            "`percent` must be between 0 and 100, not 101"
        );
        assert!(
            err(r#"{"upstream": "v2", "percent": -1}"#)
                .starts_with("invalid config: invalid value: integer `-1`")
        );
        assert!(
            err(r#"{"upstream": "v2", "header": {"name": "a b"}}"#)
                .starts_with("header: invalid header name")
        );
        assert!(
            err(r#"{"upstream": "v2", "header": {"value": "1"}}"#)
                .starts_with("invalid config: missing field `name`")
        );
        assert_eq!(
            err(r#"{"upstream": "v2", "cookie": {"name": ""}}"#),
            "cookie: the cookie name cannot be empty"
        );
    }
}
