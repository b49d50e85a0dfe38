//! The config as written, and its checks: [`Settings`] becomes a [`Policy`].

use crate::key::{KeySpec, Part};
use crate::limit::{Algorithm, Limit};
use crate::policy::{Policy, Refuse};
use crate::window::Window;
use maitred_sdk::validate;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// The plugin's `config` table; see the crate docs for the meaning of each key.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// What to count by: one part or a list (default `"client_ip"`).
    #[serde(default)]
    pub key: KeyList,
    /// Requests allowed per window.
    pub limit: u64,
    /// The window.
    pub window: Window,
    /// `"sliding_window"` (default) or `"fixed_window"`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `"pass"` (default) or `"shared"`: requests missing a key part.
    #[serde(default)]
    pub missing: Missing,
    /// IPv6 clients are grouped by this prefix (default 64).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// The refusal's status (default 429).
    #[serde(default = "default_status")]
    pub status: u16,
    /// The refusal's body (default `Too Many Requests\n`).
    #[serde(default = "default_body")]
    pub body: String,
    /// The refusal's `Content-Type` (default `text/plain; charset=utf-8`).
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Whether refusals carry `RateLimit-*` headers (default `true`).
    #[serde(default = "default_true")]
    pub headers: bool,
}

/// What happens to a request that lacks a key part (a header or cookie it did not send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// It is not limited (not counted).
    #[default]
    Pass,
    /// All such requests share one bucket per combination of the other parts.
    Shared,
}

fn default_ipv6_prefix() -> u8 {
    64
}
fn default_status() -> u16 {
    429
}
fn default_body() -> String {
    "Too Many Requests\n".into()
}
fn default_content_type() -> String {
    "text/plain; charset=utf-8".into()
}
fn default_true() -> bool {
    true
}

/// `key` as written: one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyList(pub Vec<String>);

impl Default for KeyList {
    fn default() -> Self {
        KeyList(vec!["client_ip".into()])
    }
}

impl<'de> Deserialize<'de> for KeyList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key part such as \"client_ip\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyList, E> {
                Ok(KeyList(vec![s.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<KeyList, A::Error> {
                let mut parts = Vec::new();
                while let Some(part) = seq.next_element::<String>()? {
                    parts.push(part);
                }
                Ok(KeyList(parts))
            }
        }
        d.deserialize_any(V)
    }
}

impl Settings {
    /// Checks every value and builds the policy; errors start with the key at fault.
    pub fn into_policy(self) -> Result<Policy, String> {
        if self.key.0.is_empty() {
            return Err("key: give at least one part, e.g. \"client_ip\"".into());
        }
        let mut parts = Vec::new();
        for spec in &self.key.0 {
            let part = Part::parse(spec).map_err(|e| format!("key: {e}"))?;
            if parts.contains(&part) {
                return Err(format!("key: {spec:?} is listed twice"));
            }
            parts.push(part);
        }
        if self.limit == 0 {
            return Err("limit: must be at least 1".into());
        }
        if self.ipv6_prefix > 128 {
            return Err(format!(
                "ipv6_prefix: {} is not a prefix length (0-128)",
                self.ipv6_prefix
            ));
        }
        if !(400..=599).contains(&self.status) {
            return Err(format!(
                "status: {} is not an error status (400-599)",
                self.status
            ));
        }
        validate::header_value(self.content_type.as_bytes())
            .map_err(|e| format!("content_type: {e}"))?;
        Ok(Policy {
            key: KeySpec {
                parts,
                ipv6_prefix: self.ipv6_prefix,
                missing_shared: self.missing == Missing::Shared,
            },
            limit: Limit {
                limit: self.limit,
                window: self.window.0,
                algorithm: self.algorithm,
            },
            refuse: Refuse {
                status: self.status,
                body: self.body,
                content_type: self.content_type,
                headers: self.headers,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maitred_sdk::Config;
    use std::time::Duration;

    fn policy(json: &str) -> Result<Policy, String> {
        Config::new(json).get::<Settings>()?.into_policy()
    }

    #[test]
    fn the_documented_minimal_config() {
        let p = policy(r#"{"key": "client_ip", "limit": 100, "window": "1m"}"#).unwrap();
        assert_eq!(p.key.parts, [Part::ClientIp]);
        assert_eq!(
            p.limit,
            Limit {
                limit: 100,
                window: Duration::from_secs(60),
                algorithm: Algorithm::SlidingWindow
            }
        );
        assert!(!p.key.missing_shared);
        assert_eq!(p.key.ipv6_prefix, 64);
        assert_eq!(p.refuse.status, 429);
        assert!(p.refuse.headers);
        // The key defaults to the client's address.
        let p = policy(r#"{"limit": 5, "window": 10}"#).unwrap();
        assert_eq!(p.key.parts, [Part::ClientIp]);
        assert_eq!(p.limit.window, Duration::from_secs(10));
    }

    #[test]
    fn every_setting() {
        let p = policy(
            r#"{"key": ["client_ip", "header:X-Api-Key", "cookie:sid", "path", "method", "host"],
                "limit": 3, "window": "500ms", "algorithm": "fixed_window", "missing": "shared",
                "ipv6_prefix": 128, "status": 503, "body": "{\"error\":\"slow down\"}",
                "content_type": "application/json", "headers": false}"#,
        )
        .unwrap();
        assert_eq!(p.key.parts.len(), 6);
        assert_eq!(p.key.parts[1], Part::Header("x-api-key".into()));
        assert!(p.key.missing_shared);
        assert_eq!(p.key.ipv6_prefix, 128);
        assert_eq!(p.limit.algorithm, Algorithm::FixedWindow);
        assert_eq!(p.limit.window, Duration::from_millis(500));
        assert_eq!(p.refuse.status, 503);
        assert_eq!(p.refuse.content_type, "application/json");
        assert!(!p.refuse.headers);
        let p = policy(r#"{"limit": 1, "window": "1s", "algorithm": "sliding"}"#).unwrap();
        assert_eq!(p.limit.algorithm, Algorithm::SlidingWindow);
    }

    #[test]
    fn errors_name_the_key() {
        for (json, want) in [
            (r#"{"window": "1m"}"#, "missing field `limit`"),
            (r#"{"limit": 1}"#, "missing field `window`"),
            (
                r#"{"limit": 0, "window": "1m"}"#,
                "limit: must be at least 1",
            ),
            (r#"{"limit": -1, "window": "1m"}"#, "invalid value"),
            (
                r#"{"limit": 1, "window": "1 fortnight"}"#,
                "invalid window \"1 fortnight\"",
            ),
            (r#"{"limit": 1, "window": 0}"#, "at least 1ms"),
            (
                r#"{"limit": 1, "window": "1m", "key": "ip"}"#,
                "key: unknown key part \"ip\"",
            ),
            (
                r#"{"limit": 1, "window": "1m", "key": []}"#,
                "key: give at least one part",
            ),
            (
                r#"{"limit": 1, "window": "1m", "key": ["path", "path"]}"#,
                "key: \"path\" is listed twice",
            ),
            (
                r#"{"limit": 1, "window": "1m", "key": "header:bad name"}"#,
                "key: \"header:bad name\"",
            ),
            (r#"{"limit": 1, "window": "1m", "key": 5}"#, "a key part"),
            (
                r#"{"limit": 1, "window": "1m", "algorithm": "token_bucket"}"#,
                "unknown variant `token_bucket`",
            ),
            (
                r#"{"limit": 1, "window": "1m", "missing": "deny"}"#,
                "unknown variant `deny`",
            ),
            (
                r#"{"limit": 1, "window": "1m", "ipv6_prefix": 129}"#,
                "ipv6_prefix: 129",
            ),
            (
                r#"{"limit": 1, "window": "1m", "status": 200}"#,
                "status: 200 is not an error status",
            ),
            (
                r#"{"limit": 1, "window": "1m", "content_type": "a\nb"}"#,
                "content_type:",
            ),
            (
                r#"{"limit": 1, "window": "1m", "limt": 2}"#,
                "unknown field `limt`",
            ),
        ] {
            let e = policy(json)
                .err()
                .unwrap_or_else(|| panic!("{json} accepted"));
            assert!(e.contains(want), "{json}: {e}");
        }
    }
}
