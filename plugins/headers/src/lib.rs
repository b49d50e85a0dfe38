//! maitred plugin: set, append and remove request and response headers.
//!
//! ```toml
//! [plugin.tag]
//! wasm = "target/wasm32-wasip2/release/headers.wasm"
//! config = { request = { set = { "x-env" = "demo" }, remove = ["x-internal"] },
//!            response = { append = { "vary" = "accept-encoding", "x-tag" = ["a", "b"] } } }
//! ```
//!
//! `request` and `response` each take optional `set` (name = value: replaces every value),
//! `append` (name = value or [values]: adds after existing ones) and `remove` ([names]).
//! Operations run in that order: remove, then set, then append. The plugin is only called for
//! the phases that have operations. Header names and values are checked when the config loads.
use std::collections::BTreeMap;

use maitred_sdk::{
    Action, Config, Phases, Plugin, Request, Response, export_plugin, log, validate,
};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    request: Ops,
    #[serde(default)]
    response: Ops,
}

/// The operations for one phase, in the order they are applied.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Ops {
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    append: BTreeMap<String, OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> &[String] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(vs) => vs,
        }
    }
}

impl Ops {
    fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.append.is_empty()
    }

    fn validate(&self, phase: &str) -> Result<(), String> {
        let names = self
            .remove
            .iter()
            .chain(self.set.keys())
            .chain(self.append.keys());
        for name in names {
            validate::header_name(name).map_err(|e| format!("{phase}: {e}"))?;
        }
        let values = self
            .set
            .values()
            .chain(self.append.values().flat_map(OneOrMany::values));
        for value in values {
            validate::header_value(value.as_bytes()).map_err(|e| format!("{phase}: {e}"))?;
        }
        Ok(())
    }

    fn apply(&self, headers: &dyn Headers) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            warn_on_error(name, headers.set(name, value));
        }
        for (name, values) in &self.append {
            for value in values.values() {
                warn_on_error(name, headers.append(name, value));
            }
        }
    }
}

fn warn_on_error(name: &str, result: Result<(), String>) {
    if let Err(e) = result {
        log::warn(format!("cannot change header {name:?}: {e}"));
    }
}

/// The header operations requests and responses share.
trait Headers {
    fn remove(&self, name: &str);
    fn set(&self, name: &str, value: &str) -> Result<(), String>;
    fn append(&self, name: &str, value: &str) -> Result<(), String>;
}

impl Headers for Request {
    fn remove(&self, name: &str) {
        self.remove_header(name)
    }
    fn set(&self, name: &str, value: &str) -> Result<(), String> {
        self.set_header(name, value)
    }
    fn append(&self, name: &str, value: &str) -> Result<(), String> {
        self.append_header(name, value)
    }
}

impl Headers for Response {
    fn remove(&self, name: &str) {
        self.remove_header(name)
    }
    fn set(&self, name: &str, value: &str) -> Result<(), String> {
        self.set_header(name, value)
    }
    fn append(&self, name: &str, value: &str) -> Result<(), String> {
        self.append_header(name, value)
    }
}

struct HeadersPlugin(Settings);

impl Plugin for HeadersPlugin {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.get()?;
        settings.request.validate("request")?;
        settings.response.validate("response")?;
        Ok(HeadersPlugin(settings))
    }

    fn phases(&self) -> Phases {
        let mut phases = Phases::empty();
        phases.set(Phases::REQUEST, !self.0.request.is_empty());
        phases.set(Phases::RESPONSE, !self.0.response.is_empty());
        phases
    }

    fn on_request(&self, req: &Request) -> Action {
        self.0.request.apply(req);
        Action::Continue
    }

    fn on_response(&self, resp: &Response) {
        self.0.response.apply(resp);
    }
}

export_plugin!(HeadersPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn init(json: &str) -> Result<HeadersPlugin, String> {
        HeadersPlugin::init(Config::new(json))
    }

    #[test]
    fn phases_follow_operations() {
        assert_eq!(init("{}").unwrap().phases(), Phases::empty());
        let p = init(r#"{"request": {"set": {"x-env": "demo"}}}"#).unwrap();
        assert_eq!(p.phases(), Phases::REQUEST);
        let p = init(r#"{"response": {"remove": ["server"]}, "request": {}}"#).unwrap();
        assert_eq!(p.phases(), Phases::RESPONSE);
        let p = init(
            r#"{"request": {"append": {"a": ["1", "2"]}}, "response": {"append": {"b": "1"}}}"#,
        )
        .unwrap();
        assert_eq!(p.phases(), Phases::REQUEST | Phases::RESPONSE);
    }

    #[test]
    fn rejects_bad_config() {
        let err = init(r#"{"request": {"set": {"bad name": "x"}}}"#)
            .err()
            .unwrap();
        assert_eq!(
            err,
            "request: invalid header name \"bad name\": ' ' is not allowed in a header name"
        );
        let err = init(r#"{"response": {"append": {"x": ["ok", "a\nb"]}}}"#)
            .err()
            .unwrap();
        assert!(err.starts_with("response: invalid header value"), "{err}");
        let err = init(r#"{"response": {"remove": [""]}}"#).err().unwrap();
        assert!(err.starts_with("response: invalid header name"), "{err}");
        let err = init(r#"{"request": {"sett": {}}}"#).err().unwrap();
        assert!(
            err.starts_with("invalid config: unknown field `sett`"),
            "{err}"
        );
        let err = init(r#"{"request": {"set": {"x": 1}}}"#).err().unwrap();
        assert!(
            err.starts_with("invalid config: invalid type: integer `1`"),
            "{err}"
        );
    }
}
