//! Upstreams: groups of endpoints, how one is chosen, and how requests reach it.
//!
//! - [`balancer`]: picks an endpoint per request.
//! - [`pool`]: per-worker keep-alive connections to endpoints.
//! - [`client`]: connects, sends a request, and applies the upstream's timeouts.
//! - [`request_body`]: the body sent upstream, checked before anything is forwarded.

pub mod balancer;
pub mod client;
pub mod pool;
pub mod request_body;

use crate::config::{ProxyProtocolVersion, UpstreamConfig, UpstreamProtocol, UpstreamTls};
use balancer::RoundRobin;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use client::{ForwardError, UpstreamBody};
pub use request_body::RequestBody;

/// An upstream as the request path uses it: immutable once built.
pub struct Upstream {
    /// The name from the config.
    pub name: Arc<str>,
    /// The endpoints' addresses.
    pub endpoints: Vec<SocketAddr>,
    /// Chooses an endpoint for each request.
    balancer: RoundRobin,
    /// Timeouts and pool limits for requests to this upstream.
    pub settings: UpstreamSettings,
    /// TLS to the endpoints, if configured.
    pub tls: Option<UpstreamTls>,
    /// PROXY protocol header sent first on L4 connections.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// HTTP version spoken to the endpoints.
    pub protocol: UpstreamProtocol,
}

/// Timeouts and keep-alive limits of one upstream.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the response head.
    pub response_timeout: Duration,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// Most idle connections kept per endpoint and worker.
    pub max_idle: usize,
}

impl Upstream {
    /// Builds the runtime form of an upstream's config.
    pub fn new(config: &UpstreamConfig) -> Upstream {
        Upstream {
            name: Arc::from(config.name.as_str()),
            endpoints: config.endpoints.clone(),
            balancer: match config.balancer {
                crate::config::BalancerKind::RoundRobin => RoundRobin::default(),
            },
            settings: UpstreamSettings {
                connect_timeout: config.connect_timeout,
                response_timeout: config.response_timeout,
                idle_timeout: config.idle_timeout,
                max_idle: config.max_idle,
            },
            tls: config.tls.clone(),
            proxy_protocol: config.proxy_protocol,
            protocol: config.protocol,
        }
    }

    /// The endpoint the next request (or L4 connection) goes to.
    pub fn pick(&self) -> SocketAddr {
        self.endpoints[self.balancer.next(self.endpoints.len())]
    }

    /// The pool key of connections to `endpoint` with this upstream's TLS settings.
    pub fn peer(&self, endpoint: SocketAddr) -> pool::PeerKey {
        pool::PeerKey {
            endpoint,
            identity: self.tls.as_ref().map_or(0, |t| t.identity),
        }
    }
}
