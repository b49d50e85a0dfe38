//! The config as written, and its checks: [`Settings`] becomes a [`Policy`].

use crate::device;
use crate::glob;
use crate::policy::{Bypass, Policy, TtlRule};
use crate::query::QueryFilter;
use crate::ttl::Seconds;
use maitred_sdk::validate;
use serde::Deserialize;

/// The plugin's `config` table. Every key is optional; see the crate docs for their meaning.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Query parameter name patterns left out of the key.
    #[serde(default)]
    pub ignore_query: Vec<String>,
    /// When given, only query parameters matching one of these patterns are in the key.
    pub keep_query: Option<Vec<String>>,
    /// Whether the key's query parameters are sorted by name.
    #[serde(default)]
    pub sort_query: bool,
    /// Whether the request sent upstream gets the filtered query too.
    #[serde(default)]
    pub rewrite_query: bool,
    /// Request headers whose values are added to the key.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Cookies whose values are added to the key.
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Whether to classify the client's device, send it upstream and key by it.
    #[serde(default)]
    pub device_class: bool,
    /// When requests skip the cache.
    #[serde(default)]
    pub bypass: BypassSettings,
    /// Lifetime overrides, first match wins.
    #[serde(default)]
    pub ttl: Vec<TtlSettings>,
    /// A request header to send the final key upstream in (for debugging and logging).
    pub key_header: Option<String>,
}

/// The `bypass` table: any match skips the cache.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct BypassSettings {
    /// Request methods, e.g. `["PURGE"]`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path prefixes, e.g. `["/account/"]`.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    /// Request header names; present with any value.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Cookie name patterns; present with any value.
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Query parameter name patterns; present with any value.
    #[serde(default)]
    pub query: Vec<String>,
}

/// One entry of `ttl`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct TtlSettings {
    /// The path must start with this.
    pub path_prefix: Option<String>,
    /// The path must end with this (e.g. `.css`).
    pub path_suffix: Option<String>,
    /// The lifetime: `"10m"`, `"1d"`, or seconds.
    pub ttl: Seconds,
}

impl Settings {
    /// Checks every value and builds the policy; errors start with the key at fault.
    pub fn into_policy(self) -> Result<Policy, String> {
        let query = QueryFilter {
            keep: self
                .keep_query
                .map(|keep| glob::parse_all("keep_query", &keep))
                .transpose()?,
            ignore: glob::parse_all("ignore_query", &self.ignore_query)?,
            sort: self.sort_query,
        };
        let mut headers = header_names("headers", &self.headers)?;
        if self.device_class && !headers.iter().any(|h| h == device::HEADER) {
            headers.push(device::HEADER.to_string());
        }
        let cookies = self
            .cookies
            .iter()
            .map(|c| token("cookies", "cookie name", c).map(|()| c.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        no_repeats("cookies", &cookies)?;
        let key_header = self
            .key_header
            .map(|h| {
                validate::header_name(&h).map_err(|e| format!("key_header: {e}"))?;
                Ok::<_, String>(h.to_ascii_lowercase())
            })
            .transpose()?;
        Ok(Policy {
            query,
            rewrite_query: self.rewrite_query,
            headers,
            cookies,
            device_class: self.device_class,
            bypass: self.bypass.check()?,
            ttl: self
                .ttl
                .into_iter()
                .enumerate()
                .map(|(i, rule)| rule.check(i))
                .collect::<Result<_, _>>()?,
            key_header,
        })
    }
}

impl BypassSettings {
    fn check(self) -> Result<Bypass, String> {
        let methods = self
            .methods
            .iter()
            .map(|m| token("bypass.methods", "method", m).map(|()| m.to_ascii_uppercase()))
            .collect::<Result<Vec<_>, _>>()?;
        for prefix in &self.path_prefixes {
            path("bypass.path_prefixes", prefix)?;
        }
        Ok(Bypass {
            methods,
            path_prefixes: self.path_prefixes,
            headers: header_names("bypass.headers", &self.headers)?,
            cookies: glob::parse_all("bypass.cookies", &self.cookies)?,
            query: glob::parse_all("bypass.query", &self.query)?,
        })
    }
}

impl TtlSettings {
    fn check(self, index: usize) -> Result<TtlRule, String> {
        if let Some(prefix) = &self.path_prefix {
            path(&format!("ttl[{index}].path_prefix"), prefix)?;
        }
        if self.path_suffix.as_deref() == Some("") {
            return Err(format!("ttl[{index}].path_suffix: cannot be empty"));
        }
        Ok(TtlRule {
            path_prefix: self.path_prefix,
            path_suffix: self.path_suffix,
            seconds: self.ttl.0,
        })
    }
}

/// Checked, lowercased header names, each once.
fn header_names(key: &str, names: &[String]) -> Result<Vec<String>, String> {
    let names = names
        .iter()
        .map(|n| {
            validate::header_name(n).map_err(|e| format!("{key}: {e}"))?;
            Ok(n.to_ascii_lowercase())
        })
        .collect::<Result<Vec<_>, String>>()?;
    no_repeats(key, &names)?;
    Ok(names)
}

fn no_repeats(key: &str, names: &[String]) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(format!("{key}: {name:?} is listed twice"));
        }
    }
    Ok(())
}

/// Checks an RFC 9110 token (method and cookie names).
fn token(key: &str, what: &str, text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{key}: {text:?} is not a valid {what}"))
    }
}

fn path(key: &str, path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(format!("{key}: {path:?} must start with '/'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maitred_sdk::Config;

    fn policy(json: &str) -> Result<Policy, String> {
        Config::new(json).get::<Settings>()?.into_policy()
    }

    #[test]
    fn empty_config_changes_nothing() {
        let p = policy("{}").unwrap();
        assert!(p.query.is_identity());
        assert!(p.headers.is_empty() && p.cookies.is_empty() && p.ttl.is_empty());
        assert!(!p.device_class && !p.rewrite_query);
        assert_eq!(p.key_header, None);
    }

    #[test]
    fn full_config() {
        let p = policy(
            r#"{"ignore_query": ["utm_*", "fbclid"], "keep_query": ["q", "page"],
                "sort_query": true, "rewrite_query": true,
                "headers": ["Accept-Language"], "cookies": ["currency"], "device_class": true,
                "bypass": {"methods": ["purge"], "path_prefixes": ["/account/"],
                           "headers": ["Authorization"], "cookies": ["session", "wp_*"],
                           "query": ["preview"]},
                "ttl": [{"path_prefix": "/static/", "ttl": "1d"},
                        {"path_suffix": ".css", "ttl": 600}, {"ttl": "1h 30m"}],
                "key_header": "X-Cache-Key"}"#,
        )
        .unwrap();
        assert_eq!(p.query.ignore.len(), 2);
        assert_eq!(p.query.keep.as_ref().map(Vec::len), Some(2));
        assert!(p.query.sort && p.rewrite_query && p.device_class);
        assert_eq!(p.headers, ["accept-language", "x-device-class"]);
        assert_eq!(p.cookies, ["currency"]);
        assert_eq!(p.bypass.methods, ["PURGE"]);
        assert_eq!(p.bypass.headers, ["authorization"]);
        assert_eq!(p.bypass.cookies.len(), 2);
        assert_eq!(
            p.ttl.iter().map(|r| r.seconds).collect::<Vec<_>>(),
            [86_400, 600, 5400]
        );
        assert_eq!(p.key_header.as_deref(), Some("x-cache-key"));
    }

    #[test]
    fn device_header_listed_keeps_its_place() {
        let p = policy(r#"{"headers": ["x-device-class", "a"], "device_class": true}"#).unwrap();
        assert_eq!(p.headers, ["x-device-class", "a"]);
    }

    #[test]
    fn bad_configs_name_the_key() {
        let err = |json: &str| policy(json).unwrap_err();
        assert!(
            err(r#"{"ignore_qeury": []}"#)
                .starts_with("invalid config: unknown field `ignore_qeury`")
        );
        assert!(
            err(r#"{"bypass": {"cookie": []}}"#)
                .starts_with("invalid config: unknown field `cookie`")
        );
        assert!(
            err(r#"{"ttl": [{"prefix": "/", "ttl": 1}]}"#)
                .starts_with("invalid config: unknown field `prefix`")
        );
        assert!(err(r#"{"sort_query": "yes"}"#).starts_with("invalid config: invalid type"));
        assert_eq!(
            err(r#"{"ignore_query": ["utm source"]}"#),
            "ignore_query: \"utm source\": ' ' cannot be part of a name pattern"
        );
        assert_eq!(
            err(r#"{"keep_query": [""]}"#),
            "keep_query: a name pattern cannot be empty"
        );
        assert_eq!(
            err(r#"{"headers": ["bad header"]}"#),
            "headers: invalid header name \"bad header\": ' ' is not allowed in a header name"
        );
        assert_eq!(
            err(r#"{"headers": ["a", "A"]}"#),
            "headers: \"a\" is listed twice"
        );
        assert_eq!(
            err(r#"{"cookies": ["a;b"]}"#),
            "cookies: \"a;b\" is not a valid cookie name"
        );
        assert_eq!(
            err(r#"{"bypass": {"path_prefixes": ["account/"]}}"#),
            "bypass.path_prefixes: \"account/\" must start with '/'"
        );
        assert_eq!(
            err(r#"{"bypass": {"methods": ["GE T"]}}"#),
            "bypass.methods: \"GE T\" is not a valid method"
        );
        assert_eq!(
            err(r#"{"bypass": {"cookies": ["a=b"]}}"#),
            "bypass.cookies: \"a=b\": '=' cannot be part of a name pattern"
        );
        assert_eq!(
            err(r#"{"ttl": [{"path_prefix": "static/", "ttl": 1}]}"#),
            "ttl[0].path_prefix: \"static/\" must start with '/'"
        );
        assert_eq!(
            err(r#"{"ttl": [{"ttl": 1}, {"path_suffix": "", "ttl": 1}]}"#),
            "ttl[1].path_suffix: cannot be empty"
        );
        assert_eq!(
            err(r#"{"ttl": [{"ttl": "1 fortnight"}]}"#),
            "invalid config: invalid TTL \"1 fortnight\"; write e.g. \"500ms\", \"90s\", \"10m\", \"1h 30m\", \"1d\" or a number of seconds"
        );
        assert_eq!(
            err(r#"{"ttl": [{"ttl": -1}]}"#),
            "invalid config: TTL -1 is negative"
        );
        assert!(
            err(r#"{"ttl": [{"ttl": 1.5}]}"#)
                .starts_with("invalid config: invalid type: floating point")
        );
        assert!(
            err(r#"{"ttl": [{"path_prefix": "/"}]}"#)
                .starts_with("invalid config: missing field `ttl`")
        );
        assert_eq!(
            err(r#"{"key_header": "x key"}"#),
            "key_header: invalid header name \"x key\": ' ' is not allowed in a header name"
        );
    }
}
