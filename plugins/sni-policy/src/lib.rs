//! maitred connection plugin: allow and deny connections by client network and TLS server
//! name (SNI), and send server names to upstreams of their own. For `tcp` and
//! `tls-passthrough` listeners.
//!
//! ```toml
//! [[listener]]
//! name = "edge"
//! listen = "0.0.0.0:443"
//! protocol = "tls-passthrough"
//! default_upstream = "web"
//! plugins = ["edge-policy"]
//!
//! [plugin.edge-policy]
//! wasm = "target/wasm32-wasip2/release/sni_policy.wasm"
//! config = { deny_clients = ["10.66.0.0/16"],
//!            allow_sni = ["*.example.com", "a.test"],
//!            allow_clients = ["127.0.0.0/8", "::1"],
//!            routes = { "a.example.com" = "backend-a", "*.b.example.com" = "backend-b" },
//!            default = "deny" }
//! ```
//!
//! Every key is optional. Each connection is decided in this order:
//!
//! 1. **Deny lists.** A client in `deny_clients` (CIDR networks or single addresses) or a
//!    server name matching `deny_sni` is denied, whatever else matches.
//! 2. **Allow lists.** A client in `allow_clients` or a server name matching `allow_sni` is
//!    let in. Anything else is decided by `default`: `"allow"` (the default) lets it in,
//!    `"deny"` closes it. So allow lists only matter with `default = "deny"`, as an
//!    nginx `allow` only matters before a `deny all`.
//! 3. **Routes.** A connection let in whose server name is in `routes` goes to that upstream
//!    (an exact name beats the longest matching wildcard); any other goes where the listener
//!    sends it (its `upstream`, or its own `sni` table).
//!
//! Name patterns are an exact name (`a.test`) or `*.suffix`, which matches any name ending
//! in `.suffix` (`*.example.com` matches `x.example.com` and `x.y.example.com`, not
//! `example.com`); names compare case-insensitively. A connection without a server name (any
//! connection on a `tcp` listener) matches no name pattern.
//!
//! To require both a client network and a server name, chain two instances: the first with
//! `allow_clients` and `default = "deny"`, the second with `allow_sni` and `default = "deny"`
//! (the first `deny` in a listener's chain closes the connection).
mod cidr;

use cidr::Cidr;
use maitred_sdk::connection::{ConnectionAction, ConnectionInfo, ConnectionPolicy};
use maitred_sdk::{Config, export_connection_policy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The config as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    deny_clients: Vec<String>,
    #[serde(default)]
    deny_sni: Vec<String>,
    #[serde(default)]
    allow_clients: Vec<String>,
    #[serde(default)]
    allow_sni: Vec<String>,
    #[serde(default)]
    routes: BTreeMap<String, String>,
    #[serde(default)]
    default: Default,
}

/// What happens to a connection no allow list lets in.
#[derive(Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Default {
    #[default]
    Allow,
    Deny,
}

/// A server-name pattern: `Exact("a.test")` or `Suffix(".example.com")` for `*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Exact(String),
    Suffix(String),
}

impl Name {
    fn parse(pattern: &str) -> Result<Name, String> {
        let lower = pattern.to_ascii_lowercase();
        let (name, wildcard) = match lower.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (lower.as_str(), false),
        };
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && !name.ends_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        match (valid, wildcard) {
            (false, _) => Err(format!(
                "{pattern:?} is not a server name or `*.suffix` pattern"
            )),
            (true, true) => Ok(Name::Suffix(format!(".{name}"))),
            (true, false) => Ok(Name::Exact(name.to_owned())),
        }
    }

    /// Whether `name` (lowercase, as the host sends it) matches.
    fn matches(&self, name: &str) -> bool {
        match self {
            Name::Exact(exact) => name == exact,
            Name::Suffix(suffix) => name.len() > suffix.len() && name.ends_with(suffix.as_str()),
        }
    }
}

/// The policy, parsed and checked once per instance.
#[derive(Debug)]
struct SniPolicy {
    deny_clients: Vec<Cidr>,
    deny_sni: Vec<Name>,
    allow_clients: Vec<Cidr>,
    allow_sni: Vec<Name>,
    /// Exact names first, then wildcards, longest suffix first: the first match wins.
    routes: Vec<(Name, String)>,
    default: Default,
}

impl SniPolicy {
    fn decide(&self, client: IpAddr, server_name: Option<&str>) -> ConnectionAction {
        let in_net = |nets: &[Cidr]| nets.iter().any(|n| n.contains(client));
        let named =
            |names: &[Name]| server_name.is_some_and(|s| names.iter().any(|n| n.matches(s)));
        if in_net(&self.deny_clients) || named(&self.deny_sni) {
            return ConnectionAction::Deny;
        }
        let allowed = in_net(&self.allow_clients) || named(&self.allow_sni);
        if !allowed && self.default == Default::Deny {
            return ConnectionAction::Deny;
        }
        let route = server_name.and_then(|s| self.routes.iter().find(|(n, _)| n.matches(s)));
        match route {
            Some((_, upstream)) => ConnectionAction::route(upstream),
            None => ConnectionAction::Allow,
        }
    }
}

fn networks(key: &str, list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter()
        .map(|n| Cidr::parse(n).map_err(|e| format!("{key}: {e}")))
        .collect()
}

fn names(key: &str, list: &[String]) -> Result<Vec<Name>, String> {
    list.iter()
        .map(|n| Name::parse(n).map_err(|e| format!("{key}: {e}")))
        .collect()
}

impl ConnectionPolicy for SniPolicy {
    fn init(config: Config) -> Result<Self, String> {
        let s: Settings = config.get()?;
        let mut routes = Vec::new();
        for (pattern, upstream) in &s.routes {
            if upstream.is_empty() {
                return Err(format!("routes: {pattern:?}: the upstream name is empty"));
            }
            routes.push((
                Name::parse(pattern).map_err(|e| format!("routes: {e}"))?,
                upstream.clone(),
            ));
        }
        routes.sort_by_key(|(name, _)| match name {
            Name::Exact(_) => (0, 0),
            Name::Suffix(suffix) => (1, usize::MAX - suffix.len()),
        });
        Ok(SniPolicy {
            deny_clients: networks("deny_clients", &s.deny_clients)?,
            deny_sni: names("deny_sni", &s.deny_sni)?,
            allow_clients: networks("allow_clients", &s.allow_clients)?,
            allow_sni: names("allow_sni", &s.allow_sni)?,
            routes,
            default: s.default,
        })
    }

    fn on_connect(&self, info: &ConnectionInfo) -> ConnectionAction {
        self.decide(info.client_ip, info.server_name.as_deref())
    }
}

export_connection_policy!(SniPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionAction::{Allow, Deny};

    fn policy(json: &str) -> SniPolicy {
        SniPolicy::init(Config::new(json)).unwrap()
    }

    fn decide(p: &SniPolicy, client: &str, sni: Option<&str>) -> ConnectionAction {
        p.decide(client.parse().unwrap(), sni)
    }

    fn route(upstream: &str) -> ConnectionAction {
        ConnectionAction::route(upstream)
    }

    #[test]
    fn empty_config_allows_everything() {
        let p = policy("{}");
        assert_eq!(decide(&p, "203.0.113.9", None), Allow);
        assert_eq!(decide(&p, "::1", Some("a.test")), Allow);
    }

    #[test]
    fn name_patterns() {
        let exact = Name::parse("A.Test").unwrap();
        assert!(exact.matches("a.test"));
        assert!(!exact.matches("b.a.test"));
        let wild = Name::parse("*.example.com").unwrap();
        assert!(wild.matches("x.example.com"));
        assert!(wild.matches("x.y.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("xexample.com"));
        for bad in ["", "*.", "a..b*", "*", "a.*.b", ".a.b", "a b", "*.*.a"] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deny_lists_win_over_everything() {
        let p = policy(
            r#"{"deny_clients": ["10.0.0.0/8"], "deny_sni": ["bad.example.com"],
                "allow_clients": ["10.1.0.0/16"], "allow_sni": ["*.example.com"],
                "routes": {"bad.example.com": "x"}, "default": "allow"}"#,
        );
        assert_eq!(decide(&p, "10.1.2.3", Some("ok.example.com")), Deny);
        assert_eq!(decide(&p, "192.0.2.1", Some("bad.example.com")), Deny);
        assert_eq!(decide(&p, "192.0.2.1", Some("ok.example.com")), Allow);
    }

    #[test]
    fn allow_lists_matter_with_default_deny() {
        let p = policy(
            r#"{"allow_clients": ["127.0.0.0/8", "::1/128"], "allow_sni": ["a.test"],
                "default": "deny"}"#,
        );
        assert_eq!(decide(&p, "127.0.0.1", None), Allow);
        assert_eq!(decide(&p, "::1", None), Allow);
        assert_eq!(decide(&p, "192.0.2.1", Some("a.test")), Allow);
        assert_eq!(decide(&p, "192.0.2.1", Some("b.test")), Deny);
        assert_eq!(decide(&p, "192.0.2.1", None), Deny);
        let open = policy(r#"{"allow_clients": ["127.0.0.0/8"]}"#);
        assert_eq!(decide(&open, "192.0.2.1", None), Allow);
    }

    #[test]
    fn routes_pick_exact_then_longest_wildcard() {
        let p = policy(
            r#"{"routes": {"*.example.com": "wide", "*.b.example.com": "narrow",
                           "a.b.example.com": "exact"}}"#,
        );
        assert_eq!(
            decide(&p, "192.0.2.1", Some("a.b.example.com")),
            route("exact")
        );
        assert_eq!(
            decide(&p, "192.0.2.1", Some("c.b.example.com")),
            route("narrow")
        );
        assert_eq!(
            decide(&p, "192.0.2.1", Some("c.example.com")),
            route("wide")
        );
        assert_eq!(decide(&p, "192.0.2.1", Some("example.com")), Allow);
        assert_eq!(decide(&p, "192.0.2.1", None), Allow);
    }

    #[test]
    fn routes_apply_only_to_connections_let_in() {
        let p = policy(
            r#"{"allow_sni": ["*.example.com"], "routes": {"a.example.com": "backend-a",
                "a.other.test": "backend-o"}, "default": "deny"}"#,
        );
        assert_eq!(
            decide(&p, "192.0.2.1", Some("a.example.com")),
            route("backend-a")
        );
        assert_eq!(decide(&p, "192.0.2.1", Some("a.other.test")), Deny);
    }

    #[test]
    fn on_connect_reads_the_info() {
        let p = policy(r#"{"routes": {"a.test": "a"}, "deny_clients": ["::1"]}"#);
        let mut info = ConnectionInfo {
            client_ip: "127.0.0.1".parse().unwrap(),
            client_port: 40000,
            listener: "edge".into(),
            server_name: Some("a.test".into()),
            alpn: vec![],
        };
        assert_eq!(p.on_connect(&info), route("a"));
        info.client_ip = "::1".parse().unwrap();
        assert_eq!(p.on_connect(&info), Deny);
    }

    #[test]
    fn bad_configs_are_refused_with_the_key() {
        let err = |json: &str| SniPolicy::init(Config::new(json)).unwrap_err();
        assert_eq!(
            err(r#"{"deny_clients": ["10.0.0.1/8"]}"#),
            "deny_clients: \"10.0.0.1/8\" has bits set after the /8 prefix"
        );
        assert_eq!(
            err(r#"{"allow_sni": ["a.*"]}"#),
            "allow_sni: \"a.*\" is not a server name or `*.suffix` pattern"
        );
        assert_eq!(
            err(r#"{"routes": {"a.test": ""}}"#),
            "routes: \"a.test\": the upstream name is empty"
        );
        assert!(err(r#"{"default": "maybe"}"#).starts_with("invalid config: unknown variant"));
        assert!(err(r#"{"allow_snis": []}"#).starts_with("invalid config: unknown field"));
    }
}
