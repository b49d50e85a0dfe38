//! Connection (layer 4) plugins: what they are asked when a client connects, what they
//! answer, and how a listener's chain of them comes to one decision.
//!
//! A listener runs its plugins in config order. `allow` passes the connection to the next
//! plugin; the first `deny` or `route` ends the chain; when every plugin allows, the
//! connection goes where the listener sends it. A plugin that fails (trap, deadline, memory
//! cap, a route to an unknown upstream) decides by its `on_error`: `fail-closed` denies,
//! `fail-open` allows (skips it).

use super::bindings::connection as wit;
use super::{LoadedPlugin, PluginFailure};
use crate::config::OnError;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a connection plugin is told about a new connection (borrowed from the listener).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo<'a> {
    /// The client's address (after an accepted PROXY protocol header: the one it names).
    pub client: SocketAddr,
    /// The listener's name in the config.
    pub listener: &'a str,
    /// The SNI from the ClientHello, on `tls-passthrough` listeners (any case: the plugin
    /// gets it lowercase).
    pub server_name: Option<&'a str>,
    /// The ALPN protocols the client offers, in its order, as raw bytes.
    pub alpn: &'a [Vec<u8>],
}

impl ConnectionInfo<'_> {
    /// The WIT record: IPv4-mapped IPv6 clients as IPv4, SNI lowercase, ALPN as text.
    pub(super) fn to_wit(self) -> wit::ConnectionInfo {
        wit::ConnectionInfo {
            client_ip: self.client.ip().to_canonical().to_string(),
            client_port: self.client.port(),
            listener: self.listener.to_owned(),
            server_name: self.server_name.map(str::to_ascii_lowercase),
            alpn: self
                .alpn
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
        }
    }
}

/// A connection plugin's decision (or a chain's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionAction {
    /// No objection: ask the next plugin; after the last, use the listener's own routing.
    Allow,
    /// Close the connection without connecting to any upstream.
    Deny,
    /// Send the connection to the upstream with this name.
    Route(String),
}

impl From<wit::ConnectionAction> for ConnectionAction {
    fn from(action: wit::ConnectionAction) -> Self {
        match action {
            wit::ConnectionAction::Allow => ConnectionAction::Allow,
            wit::ConnectionAction::Deny => ConnectionAction::Deny,
            wit::ConnectionAction::Route(name) => ConnectionAction::Route(name),
        }
    }
}

impl LoadedPlugin {
    /// What a failure of this plugin decides: `fail-closed` denies, `fail-open` allows (the
    /// plugin is skipped and the next one decides).
    pub fn on_error_action(&self) -> ConnectionAction {
        match self.on_error {
            OnError::FailClosed => ConnectionAction::Deny,
            OnError::FailOpen => ConnectionAction::Allow,
        }
    }

    /// Runs `on-connect` and always comes back with a decision: the plugin's own, or after a
    /// failure (logged) its [`on_error_action`](LoadedPlugin::on_error_action). A route to a
    /// name `upstream_exists` rejects is a failure of the plugin too.
    pub fn decide(
        &self,
        info: &ConnectionInfo<'_>,
        upstream_exists: impl Fn(&str) -> bool,
    ) -> ConnectionAction {
        let failure = match self.on_connect(info) {
            Ok(ConnectionAction::Route(name)) if !upstream_exists(&name) => {
                PluginFailure::Invalid(format!("route named unknown upstream {name:?}"))
            }
            Ok(action) => return action,
            Err(failure) => failure,
        };
        let action = self.on_error_action();
        let (plugin, listener, client) = (&*self.name, info.listener, info.client);
        match action {
            ConnectionAction::Deny => tracing::error!(
                plugin,
                listener,
                %client,
                "plugin failed, connection refused (fail-closed): {failure}"
            ),
            _ => tracing::warn!(
                plugin,
                listener,
                %client,
                "plugin failed, skipped (fail-open): {failure}"
            ),
        }
        action
    }
}

/// Runs a listener's connection plugins in order and returns the decision: the first `deny`
/// or `route` (a failing plugin's `on_error` counting as its answer), else `allow`.
/// `upstream_exists` tells whether a routed-to name is an upstream of the running config.
pub fn run_connection_chain(
    plugins: &[Arc<LoadedPlugin>],
    info: &ConnectionInfo<'_>,
    upstream_exists: impl Fn(&str) -> bool,
) -> ConnectionAction {
    for plugin in plugins {
        match plugin.decide(info, &upstream_exists) {
            ConnectionAction::Allow => continue,
            decided => return decided,
        }
    }
    ConnectionAction::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_sent_in_the_documented_shape() {
        let alpn = [b"h2".to_vec(), vec![b'x', 0xff]];
        let info = ConnectionInfo {
            client: "[::ffff:192.0.2.7]:4000".parse().unwrap(),
            listener: "edge",
            server_name: Some("WWW.Example.com"),
            alpn: &alpn,
        };
        let wit = info.to_wit();
        assert_eq!(
            (wit.client_ip.as_str(), wit.client_port),
            ("192.0.2.7", 4000)
        );
        assert_eq!(wit.listener, "edge");
        assert_eq!(wit.server_name.as_deref(), Some("www.example.com"));
        assert_eq!(wit.alpn, ["h2", "x\u{fffd}"]);
        let v6 = ConnectionInfo {
            client: "[2001:db8::1]:1".parse().unwrap(),
            server_name: None,
            alpn: &[],
            ..info
        };
        let wit = v6.to_wit();
        assert_eq!(
            (wit.client_ip.as_str(), wit.server_name),
            ("2001:db8::1", None)
        );
        assert!(wit.alpn.is_empty());
    }

    #[test]
    fn actions_convert_one_to_one() {
        assert_eq!(
            ConnectionAction::from(wit::ConnectionAction::Allow),
            ConnectionAction::Allow
        );
        assert_eq!(
            ConnectionAction::from(wit::ConnectionAction::Deny),
            ConnectionAction::Deny
        );
        assert_eq!(
            ConnectionAction::from(wit::ConnectionAction::Route("b".into())),
            ConnectionAction::Route("b".into())
        );
    }
}
