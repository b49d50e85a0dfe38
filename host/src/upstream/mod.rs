//! Upstreams: groups of endpoints, how one is chosen, and how requests reach it.
//!
//! - [`endpoint`]: one endpoint's live state (in flight, latency, health, draining).
//! - [`balancer`]: picks an endpoint per request (L7) or per connection (L4).
//! - [`health`]: active health checks, run in the background.
//! - [`pool`]: per-worker keep-alive connections to endpoints.
//! - [`client`]: connects, sends a request, and applies the upstream's timeouts.
//! - [`deadline`]: the response timeout's timer, reused across a connection's requests.
//! - [`request_body`]: the body sent upstream, checked before anything is forwarded.

pub mod balancer;
pub mod client;
pub mod deadline;
pub mod endpoint;
pub mod health;
pub mod pool;
pub mod request_body;

use crate::config::{
    ActiveHealth, PassiveHealth, ProxyProtocolVersion, StickyConfig, UpstreamConfig,
    UpstreamProtocol, UpstreamTls,
};
use crate::plugin::LoadedPlugin;
use balancer::{Balancer, Target};
use endpoint::{Endpoint, InFlight, now_ms};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

pub use client::{ForwardError, UpstreamBody};
pub use request_body::{Buffered, RequestBody};

/// An upstream as the request path uses it: its settings are immutable once built; the
/// endpoints' live state is shared by every worker.
pub struct Upstream {
    /// The name from the config.
    pub name: Arc<str>,
    /// The endpoints, in config order.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Chooses an endpoint for each request or connection.
    balancer: Balancer,
    /// Timeouts and pool limits for requests to this upstream.
    pub settings: UpstreamSettings,
    /// TLS to the endpoints, if configured.
    pub tls: Option<UpstreamTls>,
    /// PROXY protocol header sent first on L4 connections.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// HTTP version spoken to the endpoints.
    pub protocol: UpstreamProtocol,
    /// Cookie-based affinity, if configured.
    pub sticky: Option<StickyConfig>,
    /// Extra attempts for idempotent requests that failed before any response byte.
    pub retries: u32,
    retry_budget: f64,
    max_conns: Option<u32>,
    queue_timeout: Duration,
    slow_start: Option<Duration>,
    /// Passive health settings.
    pub passive: PassiveHealth,
    /// Active health checks, if configured (run by [`health`]).
    pub health: Option<ActiveHealth>,
    /// Requests and retries in flight, for the retry budget.
    requests_in_flight: Arc<AtomicU32>,
    retries_in_flight: Arc<AtomicU32>,
    /// Woken when a request ends, for requests queued by `max_conns`.
    freed: Arc<Notify>,
    /// Connect errors, retries and unavailability counters.
    pub metrics: crate::metrics::UpstreamMetrics,
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

/// No endpoint could take the request or connection.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Every endpoint is down, draining or already tried (503).
    #[error("no available endpoint (all down, draining or already tried)")]
    AllDown,
    /// Every available endpoint is at `max_conns`, and the queue timed out (503).
    #[error("every available endpoint is at max_conns")]
    AtCapacity,
    /// The upstream's fail-closed balancer plugin failed (503).
    #[error("the balancer plugin failed")]
    BalancerFailed,
}

/// An endpoint chosen for one attempt, counted in flight until dropped.
pub struct Chosen {
    /// Index into [`Upstream::endpoints`].
    pub index: usize,
    /// The in-flight count (and latency clock) of this attempt.
    pub in_flight: InFlight,
    /// Whether a sticky cookie must be set on the response (affinity is configured and
    /// the request did not carry a valid one).
    pub set_sticky: bool,
}

impl Upstream {
    /// Builds the runtime form of an upstream's config; `plugin` resolves balancer plugins.
    pub fn new(
        config: &UpstreamConfig,
        plugin: impl Fn(&str) -> Option<Arc<LoadedPlugin>>,
    ) -> Upstream {
        let endpoints: Vec<Arc<Endpoint>> = config
            .endpoints
            .iter()
            .map(|e| Arc::new(Endpoint::new(e)))
            .collect();
        Upstream {
            name: Arc::from(config.name.as_str()),
            balancer: Balancer::new(&config.name, &config.balancer, &endpoints, plugin),
            endpoints,
            settings: UpstreamSettings {
                connect_timeout: config.connect_timeout,
                response_timeout: config.response_timeout,
                idle_timeout: config.idle_timeout,
                max_idle: config.max_idle,
            },
            tls: config.tls.clone(),
            proxy_protocol: config.proxy_protocol,
            protocol: config.protocol,
            sticky: config.sticky.clone(),
            retries: config.retries,
            retry_budget: config.retry_budget,
            max_conns: config.max_conns,
            queue_timeout: config.queue_timeout,
            slow_start: config.slow_start,
            passive: config.passive,
            health: config.health.clone(),
            requests_in_flight: Arc::new(AtomicU32::new(0)),
            retries_in_flight: Arc::new(AtomicU32::new(0)),
            freed: Arc::new(Notify::new()),
            metrics: crate::metrics::UpstreamMetrics::new(&config.name),
        }
    }

    /// Chooses an endpoint for `target`, skipping those in `tried`: the sticky cookie's
    /// endpoint if it is usable, else the balancer's pick. With `max_conns`, waits up to
    /// the queue timeout for an endpoint to free up.
    pub async fn choose(
        &self,
        target: &Target<'_>,
        tried: &[usize],
    ) -> Result<Chosen, Unavailable> {
        match self.try_choose(target, tried) {
            Err(Unavailable::AtCapacity) if !self.queue_timeout.is_zero() => {
                Box::pin(self.wait_for_capacity(target, tried)).await
            }
            chosen => chosen,
        }
    }

    /// The `max_conns` queue: retries the choice whenever a request ends, until the queue
    /// timeout.
    async fn wait_for_capacity(
        &self,
        target: &Target<'_>,
        tried: &[usize],
    ) -> Result<Chosen, Unavailable> {
        let deadline = tokio::time::Instant::now() + self.queue_timeout;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a request ending in between is not missed.
            freed.as_mut().enable();
            match self.try_choose(target, tried) {
                Err(Unavailable::AtCapacity) => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(Unavailable::AtCapacity);
                    }
                }
                chosen => return chosen,
            }
        }
    }

    fn try_choose(&self, target: &Target<'_>, tried: &[usize]) -> Result<Chosen, Unavailable> {
        let now = now_ms();
        let available = |i: usize| self.endpoints[i].is_available(now) && !tried.contains(&i);
        let below_max = |i: usize| {
            self.max_conns
                .is_none_or(|max| self.endpoints[i].in_flight() < max)
        };
        let usable = |i: usize| available(i) && below_max(i);
        let mut set_sticky = false;
        let mut index = None;
        if let (Some(sticky), Target::Request { parts, .. }) = (&self.sticky, target) {
            let pinned = balancer::cookie(&parts.headers, &sticky.cookie)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .and_then(|id| self.endpoints.iter().position(|e| e.id == id));
            index = pinned.filter(|&i| usable(i));
            set_sticky = index.is_none();
        }
        let index = match index {
            Some(i) => i,
            None => match self.balancer.pick(
                &self.endpoints,
                target,
                &usable,
                self.slow_start,
                !tried.is_empty(),
            ) {
                Ok(Some(i)) => i,
                Err(balancer::BalancerFailed) => return Err(Unavailable::BalancerFailed),
                Ok(None) if (0..self.endpoints.len()).any(available) => {
                    return Err(Unavailable::AtCapacity);
                }
                Ok(None) => return Err(Unavailable::AllDown),
            },
        };
        Ok(Chosen {
            index,
            in_flight: self.endpoints[index].start(self.max_conns.map(|_| self.freed.clone())),
            set_sticky,
        })
    }

    /// The pool key of connections to `endpoint` with this upstream's TLS settings.
    pub fn peer(&self, endpoint: std::net::SocketAddr) -> pool::PeerKey {
        pool::PeerKey {
            endpoint,
            identity: self.tls.as_ref().map_or(0, |t| t.identity),
        }
    }

    /// The `Set-Cookie` value pinning a client to endpoint `index`.
    pub fn sticky_cookie(&self, index: usize) -> Option<http::HeaderValue> {
        let sticky = self.sticky.as_ref()?;
        http::HeaderValue::from_str(&format!(
            "{}={:016x}; Path=/; Max-Age={}; HttpOnly",
            sticky.cookie,
            self.endpoints[index].id,
            sticky.ttl.as_secs()
        ))
        .ok()
    }

    /// Records a failed attempt at endpoint `index` for passive health (ignored when the
    /// upstream has a single endpoint: there is nowhere else to go, as in nginx).
    pub fn record_failure(&self, index: usize) {
        if self.endpoints.len() > 1 && self.endpoints[index].record_failure(&self.passive, now_ms())
        {
            tracing::warn!(
                upstream = %self.name,
                endpoint = %self.endpoints[index].address,
                "endpoint marked down for {:?} after {} failure(s)",
                self.passive.fail_timeout,
                self.passive.max_fails
            );
        }
    }

    /// Counts a request in flight on this upstream until the guard drops (retry budget).
    pub fn start_request(&self) -> BudgetGuard {
        self.requests_in_flight.fetch_add(1, Ordering::Relaxed);
        BudgetGuard(self.requests_in_flight.clone())
    }

    /// A retry allowed by the budget (retries in flight at most `retry_budget` of requests
    /// in flight, and always at least 3), counted until the guard drops; `None` if over.
    pub fn start_retry(&self) -> Option<BudgetGuard> {
        let requests = self.requests_in_flight.load(Ordering::Relaxed);
        let allowed = ((f64::from(requests) * self.retry_budget) as u32).max(3);
        if self.retries_in_flight.fetch_add(1, Ordering::Relaxed) >= allowed {
            self.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(BudgetGuard(self.retries_in_flight.clone()))
    }
}

/// One request or retry counted against the retry budget until dropped.
pub struct BudgetGuard(Arc<AtomicU32>);

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
