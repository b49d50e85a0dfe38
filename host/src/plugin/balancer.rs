//! Balancer plugins: what they are shown when an upstream with `balancer = "plugin:NAME"`
//! chooses an endpoint, and what their answer means. The call itself is
//! [`LoadedPlugin::pick`](super::LoadedPlugin::pick).
//!
//! A balancer sees the request read-only (the `request-info` resource has getters only, and
//! the host lends it `&Parts`), or the connection's [`ConnectionInfo`], plus every endpoint of
//! the upstream with its live state, and answers an index into that list or "no preference".

use super::bindings::balancer::maitred::plugin::balancing as wit;
use super::connection::ConnectionInfo;
use super::{LoadedPlugin, PluginFailure};
use crate::config::OnError;
use std::net::SocketAddr;
use wasmtime::component::Resource;

/// One endpoint and its live state, as a balancer plugin is shown it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The endpoint's address.
    pub address: SocketAddr,
    /// The effective weight (the configured one, lowered during slow start); 0 = send
    /// nothing new.
    pub weight: u32,
    /// Whether health checks consider it up.
    pub healthy: bool,
    /// Whether it is draining (no new requests or connections).
    pub draining: bool,
    /// Requests or connections in flight to it.
    pub in_flight: u32,
    /// EWMA of its response latency in microseconds; 0 when nothing has been measured.
    pub ewma_latency_micros: u64,
}

impl EndpointInfo {
    /// The WIT record.
    pub(super) fn to_wit(self) -> wit::Endpoint {
        wit::Endpoint {
            address: self.address.to_string(),
            weight: self.weight,
            healthy: self.healthy,
            draining: self.draining,
            in_flight: self.in_flight,
            ewma_latency_micros: self.ewma_latency_micros,
        }
    }
}

/// What is being balanced (borrowed from the caller for the duration of the call).
#[derive(Debug, Clone, Copy)]
pub enum BalanceTarget<'a> {
    /// An HTTP request: the plugin reads its method, path, query, authority, client and the
    /// headers it asks for, on demand; nothing is copied up front and nothing can be changed.
    Request {
        /// The request head.
        parts: &'a http::request::Parts,
        /// The client's address.
        client: SocketAddr,
    },
    /// A layer-4 connection.
    Connection(&'a ConnectionInfo<'a>),
}

impl BalanceTarget<'_> {
    /// The WIT target of a request: a borrow of the one `request-info` in the store.
    pub(super) fn wit_request() -> wit::Target {
        wit::Target::Request(Resource::new_borrow(0))
    }

    /// The WIT target of a connection.
    pub(super) fn wit_connection(info: &ConnectionInfo<'_>) -> wit::Target {
        wit::Target::Connection(info.to_wit())
    }

    /// The client's address, for log lines.
    fn client(&self) -> SocketAddr {
        match self {
            BalanceTarget::Request { client, .. } => *client,
            BalanceTarget::Connection(info) => info.client,
        }
    }
}

impl LoadedPlugin {
    /// [`pick`](LoadedPlugin::pick) with a failure logged and the plugin's `on_error` applied:
    /// `fail-open` turns a failure into `Ok(None)` (the default balancing decides),
    /// `fail-closed` returns it (the caller fails the request or closes the connection).
    /// `upstream` names the upstream in the log line.
    pub fn pick_or_fallback(
        &self,
        upstream: &str,
        target: &BalanceTarget<'_>,
        endpoints: &[EndpointInfo],
    ) -> Result<Option<usize>, PluginFailure> {
        let failure = match self.pick(target, endpoints) {
            Ok(picked) => return Ok(picked),
            Err(failure) => failure,
        };
        let (plugin, client) = (&*self.name, target.client());
        match self.on_error {
            OnError::FailClosed => {
                tracing::error!(plugin, upstream, %client, "balancer plugin failed (fail-closed): {failure}");
                Err(failure)
            }
            OnError::FailOpen => {
                tracing::warn!(plugin, upstream, %client, "balancer plugin failed, default balancing used (fail-open): {failure}");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_sent_in_the_documented_shape() {
        let e = EndpointInfo {
            address: "[2001:db8::1]:443".parse().unwrap(),
            weight: 3,
            healthy: true,
            draining: false,
            in_flight: 7,
            ewma_latency_micros: 1500,
        };
        let wit = e.to_wit();
        assert_eq!(wit.address, "[2001:db8::1]:443");
        assert_eq!((wit.weight, wit.healthy, wit.draining), (3, true, false));
        assert_eq!((wit.in_flight, wit.ewma_latency_micros), (7, 1500));
    }
}
