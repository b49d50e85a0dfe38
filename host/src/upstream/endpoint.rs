//! One endpoint of an upstream and its live state: in-flight count, latency EWMA, health
//! (passive and active), draining and slow start.
//!
//! Invariants: the state is shared by every worker, so it is all atomics (no lock on the
//! request path); times are milliseconds since a process-wide origin ([`now_ms`]), so they
//! fit in an `AtomicU64`; an endpoint is *available* when it is not draining, the active
//! checks (if any) call it healthy, and no passive mark-down is in force.

use crate::config::{EndpointConfig, PassiveHealth};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Milliseconds since the first call in this process (a monotonic clock).
pub fn now_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// An endpoint and its live state.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it listens.
    pub address: SocketAddr,
    /// Configured weight (at least 1).
    pub weight: u32,
    /// Stable identifier, used in sticky cookies: a hash of the address.
    pub id: u64,
    in_flight: AtomicU32,
    /// Latency EWMA of response heads, in microseconds (0: no sample yet).
    ewma_micros: AtomicU64,
    draining: AtomicBool,
    /// What active checks last concluded (true when there are none).
    active_up: AtomicBool,
    /// Passive health: failures in the current window, the window's start, and the time
    /// until which the endpoint is out.
    fails: AtomicU32,
    window_start_ms: AtomicU64,
    down_until_ms: AtomicU64,
    /// When the endpoint last became available (slow start ramps from here).
    up_since_ms: AtomicU64,
}

impl Endpoint {
    /// A fresh endpoint: healthy, nothing in flight, slow start (if any) beginning now.
    pub fn new(config: &EndpointConfig) -> Endpoint {
        Endpoint {
            address: config.address,
            weight: config.weight,
            id: endpoint_id(config.address),
            in_flight: AtomicU32::new(0),
            ewma_micros: AtomicU64::new(0),
            draining: AtomicBool::new(config.drain),
            active_up: AtomicBool::new(true),
            fails: AtomicU32::new(0),
            window_start_ms: AtomicU64::new(0),
            down_until_ms: AtomicU64::new(0),
            up_since_ms: AtomicU64::new(now_ms()),
        }
    }

    /// Whether new requests or connections may go here now.
    pub fn is_available(&self, now: u64) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && self.active_up.load(Ordering::Relaxed)
            && now >= self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Whether health checks (active and passive) currently consider it up.
    pub fn is_healthy(&self, now: u64) -> bool {
        self.active_up.load(Ordering::Relaxed) && now >= self.down_until_ms.load(Ordering::Relaxed)
    }

    /// Requests (or L4 connections) in flight to it, over all workers.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Latency EWMA of its response heads, in microseconds (0 before the first).
    pub fn ewma_micros(&self) -> u64 {
        self.ewma_micros.load(Ordering::Relaxed)
    }

    /// Failures counted in the current passive-health window.
    pub fn recent_failures(&self) -> u32 {
        self.fails.load(Ordering::Relaxed)
    }

    /// Whether it is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts or stops draining.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// The weight balancers use now: during slow start a share of the configured weight
    /// growing linearly from 10% to 100% over `slow_start`.
    pub fn effective_weight(&self, now: u64, slow_start: Option<Duration>) -> u32 {
        let Some(ramp) = slow_start else {
            return self.weight;
        };
        let ramp_ms = ramp.as_millis().max(1) as u64;
        let up_for = now.saturating_sub(self.up_since_ms.load(Ordering::Relaxed));
        if up_for >= ramp_ms {
            return self.weight;
        }
        let share = (up_for as f64 / ramp_ms as f64).max(0.1);
        ((self.weight as f64 * share).ceil() as u32).max(1)
    }

    /// Counts a request or connection in flight until the guard is dropped; `freed` (if
    /// any) is notified then, for requests queued by `max_conns`.
    pub fn start(self: &Arc<Self>, freed: Option<Arc<Notify>>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint: self.clone(),
            started: Instant::now(),
            freed,
        }
    }

    /// Counts one failed request (connect error, timeout, reset) for passive health.
    /// Returns true when this failure took the endpoint out.
    pub fn record_failure(&self, passive: &PassiveHealth, now: u64) -> bool {
        if passive.max_fails == 0 {
            return false;
        }
        let window = passive.fail_timeout.as_millis() as u64;
        if now.saturating_sub(self.window_start_ms.load(Ordering::Relaxed)) > window {
            self.window_start_ms.store(now, Ordering::Relaxed);
            self.fails.store(0, Ordering::Relaxed);
        }
        if self.fails.fetch_add(1, Ordering::Relaxed) + 1 < passive.max_fails {
            return false;
        }
        self.fails.store(0, Ordering::Relaxed);
        let until = now + window;
        self.down_until_ms.store(until, Ordering::Relaxed);
        // Slow start begins when it comes back.
        self.up_since_ms.store(until, Ordering::Relaxed);
        true
    }

    /// Records the verdict of the active checks; returns true if it changed.
    pub fn set_active_health(&self, up: bool, now: u64) -> bool {
        let was = self.active_up.swap(up, Ordering::Relaxed);
        if up && !was {
            self.up_since_ms.store(now, Ordering::Relaxed);
        }
        was != up
    }

    fn record_latency(&self, micros: u64) {
        // EWMA with alpha = 1/8; a lost race between workers only drops one sample.
        let old = self.ewma_micros.load(Ordering::Relaxed);
        let new = if old == 0 {
            micros.max(1)
        } else {
            (old * 7 + micros) / 8
        };
        self.ewma_micros.store(new.max(1), Ordering::Relaxed);
    }
}

/// A request or connection in flight to an endpoint; dropping it ends it.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    started: Instant,
    freed: Option<Arc<Notify>>,
}

impl InFlight {
    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Records the time from start to now (the response head) in the latency EWMA.
    pub fn record_latency(&self) {
        self.endpoint
            .record_latency(self.started.elapsed().as_micros() as u64);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(freed) = &self.freed {
            freed.notify_waiters();
        }
    }
}

/// A stable 64-bit identifier of an address (FNV-1a over its text), the same in every
/// process and worker, for sticky cookies and hashing.
pub fn endpoint_id(address: SocketAddr) -> u64 {
    hash_bytes(address.to_string().as_bytes())
}

/// FNV-1a, then a final avalanche (splitmix64), so nearby inputs spread well.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint::new(&EndpointConfig {
            address: "127.0.0.1:1".parse().unwrap(),
            weight: 10,
            drain: false,
        })
    }

    #[test]
    fn passive_marks_down_after_max_fails_within_the_window_and_recovers() {
        let e = endpoint();
        let passive = PassiveHealth {
            max_fails: 2,
            fail_timeout: Duration::from_millis(1000),
        };
        assert!(!e.record_failure(&passive, 100));
        assert!(e.is_available(100));
        // The window has passed: the count starts over.
        assert!(!e.record_failure(&passive, 1200));
        assert!(e.record_failure(&passive, 1300));
        assert!(!e.is_available(1300));
        assert!(!e.is_available(2299));
        assert!(e.is_available(2300));
    }

    #[test]
    fn slow_start_ramps_the_weight() {
        let e = endpoint();
        let ramp = Some(Duration::from_millis(1000));
        let start = e.up_since_ms.load(Ordering::Relaxed);
        assert_eq!(e.effective_weight(start, ramp), 1);
        assert_eq!(e.effective_weight(start + 500, ramp), 5);
        assert_eq!(e.effective_weight(start + 1000, ramp), 10);
        assert_eq!(e.effective_weight(start, None), 10);
    }
}
