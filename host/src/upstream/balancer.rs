//! Endpoint selection: the built-in balancers and the hand-off to a balancer plugin.
//!
//! Every balancer picks among the endpoints a `usable` predicate accepts (available, not
//! yet tried by this request, below `max_conns`), so health, draining, retries and
//! connection limits work the same for all of them. Invariants:
//! - State shared by all workers (round-robin cursor, smooth-weighted current weights) lives
//!   here, so the spread is even across the process, not per thread.
//! - Hash-based balancers use a Maglev table built from the endpoints' addresses with fixed
//!   hash functions, so every worker and every process with the same endpoints maps a key
//!   to the same endpoint; adding a fifth endpoint to four moves about a fifth of the keys.
//! - When the endpoint a hash points at is unusable, the key is re-hashed a few times and
//!   then falls back to the next usable endpoint, so one endpoint going down only moves the
//!   keys that were on it.

use super::endpoint::{Endpoint, hash_bytes, mix, now_ms};
use crate::config::{BalancerConfig, HashKey};
use crate::plugin::{BalanceTarget, ConnectionInfo, EndpointInfo, LoadedPlugin};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What is being balanced: an HTTP request or an L4 connection.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// An HTTP request (its head) from `client`.
    Request {
        /// The request head.
        parts: &'a http::request::Parts,
        /// The client's address.
        client: SocketAddr,
    },
    /// A TCP or TLS-passthrough connection.
    Connection(&'a ConnectionInfo<'a>),
}

impl Target<'_> {
    fn client_ip(&self) -> IpAddr {
        match self {
            Target::Request { client, .. } => client.ip(),
            Target::Connection(info) => info.client.ip(),
        }
    }
}

/// A balancing algorithm with its state.
pub enum Balancer {
    /// Each usable endpoint in turn.
    RoundRobin(Turns),
    /// Smooth weighted round-robin; the current weight of each endpoint.
    Weighted(Mutex<Vec<i64>>),
    /// Fewest in flight per unit of weight; the cursor breaks ties fairly.
    LeastConn(AtomicUsize),
    /// Maglev over the client's IP.
    IpHash(Maglev),
    /// Maglev over a key from the request.
    Hash(Maglev, HashKey),
    /// Two random choices, the better scored.
    P2c,
    /// A `balancer` plugin; `fallback` picks when it makes no (usable) choice.
    Plugin {
        /// The plugin.
        plugin: Arc<LoadedPlugin>,
        /// The upstream's name, for log lines.
        upstream: Arc<str>,
        /// Round-robin used when the plugin abstains.
        fallback: Turns,
    },
}

/// Round-robin cursors. Retries (`retry`: some endpoint was already tried for this
/// request) take their own turns, so a dead endpoint's turns spread over the others
/// instead of all landing on its successor.
#[derive(Default)]
pub struct Turns {
    first: AtomicUsize,
    retry: AtomicUsize,
}

impl Turns {
    fn next(&self, n: usize, usable: &dyn Fn(usize) -> bool, retry: bool) -> Option<usize> {
        round_robin(if retry { &self.retry } else { &self.first }, n, usable)
    }
}

impl Balancer {
    /// The balancer `config` describes, for the `endpoints` of upstream `upstream`;
    /// `plugin` resolves `plugin:NAME`.
    pub fn new(
        upstream: &str,
        config: &BalancerConfig,
        endpoints: &[Arc<Endpoint>],
        plugin: impl Fn(&str) -> Option<Arc<LoadedPlugin>>,
    ) -> Balancer {
        match config {
            BalancerConfig::RoundRobin => Balancer::RoundRobin(Turns::default()),
            BalancerConfig::Weighted => Balancer::Weighted(Mutex::new(vec![0; endpoints.len()])),
            BalancerConfig::LeastConn => Balancer::LeastConn(AtomicUsize::new(0)),
            BalancerConfig::IpHash => Balancer::IpHash(Maglev::new(endpoints)),
            BalancerConfig::Hash(key) => Balancer::Hash(Maglev::new(endpoints), key.clone()),
            BalancerConfig::P2c => Balancer::P2c,
            BalancerConfig::Plugin(name) => match plugin(name) {
                Some(plugin) => Balancer::Plugin {
                    plugin,
                    upstream: Arc::from(upstream),
                    fallback: Turns::default(),
                },
                // Validation guarantees the name exists; be safe anyway.
                None => Balancer::RoundRobin(Turns::default()),
            },
        }
    }

    /// Picks the index of a usable endpoint: `Err` when a fail-closed balancer plugin
    /// failed, `Ok(None)` when no endpoint is usable. `retry`: an endpoint was already
    /// tried for this request (see [`Turns`]).
    pub fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        target: &Target<'_>,
        usable: &dyn Fn(usize) -> bool,
        slow_start: Option<Duration>,
        retry: bool,
    ) -> Result<Option<usize>, BalancerFailed> {
        let n = endpoints.len();
        Ok(match self {
            Balancer::RoundRobin(turns) => turns.next(n, usable, retry),
            Balancer::Weighted(current) => {
                let now = now_ms();
                let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (i, e) in endpoints.iter().enumerate() {
                    if !usable(i) {
                        continue;
                    }
                    let weight = i64::from(e.effective_weight(now, slow_start));
                    current[i] += weight;
                    total += weight;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                if let Some(b) = best {
                    current[b] -= total;
                }
                best
            }
            Balancer::LeastConn(next) => {
                let now = now_ms();
                let start = next.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<(usize, u64, u64)> = None;
                for i in (0..n).map(|k| (start + k) % n).filter(|&i| usable(i)) {
                    let load = u64::from(endpoints[i].in_flight());
                    let weight = u64::from(endpoints[i].effective_weight(now, slow_start));
                    // load/weight < best_load/best_weight, without division.
                    if best.is_none_or(|(_, bl, bw)| load * bw < bl * weight) {
                        best = Some((i, load, weight));
                    }
                }
                best.map(|(i, _, _)| i)
            }
            Balancer::IpHash(maglev) => {
                let key = ip_key(target.client_ip());
                maglev.lookup(key, n, usable)
            }
            Balancer::Hash(maglev, key) => match hash_key(key, target) {
                Some(key) => maglev.lookup(key, n, usable),
                None => maglev.lookup(ip_key(target.client_ip()), n, usable),
            },
            Balancer::P2c => {
                let now = now_ms();
                let candidates: Vec<usize> = (0..n).filter(|&i| usable(i)).collect();
                match candidates.len() {
                    0 => None,
                    1 => Some(candidates[0]),
                    len => {
                        let a = fastrand::usize(..len);
                        let b = (a + 1 + fastrand::usize(..len - 1)) % len;
                        // An endpoint without a latency sample yet counts as average, not
                        // as the fastest (a backend that hangs from the start has none).
                        let sampled: Vec<u64> = candidates
                            .iter()
                            .map(|&i| endpoints[i].ewma_micros())
                            .filter(|&l| l > 0)
                            .collect();
                        let average = match sampled.len() {
                            0 => 1,
                            k => sampled.iter().sum::<u64>() / k as u64,
                        };
                        let score = |i: usize| {
                            let e = &endpoints[i];
                            let latency = match e.ewma_micros() {
                                0 => average,
                                l => l,
                            };
                            (f64::from(e.in_flight()) + 1.0) * (latency.max(1) as f64)
                                / f64::from(e.effective_weight(now, slow_start))
                        };
                        let (a, b) = (candidates[a], candidates[b]);
                        Some(if score(b) < score(a) { b } else { a })
                    }
                }
            }
            Balancer::Plugin {
                plugin,
                upstream,
                fallback,
            } => {
                let now = now_ms();
                let infos: Vec<EndpointInfo> = endpoints
                    .iter()
                    .map(|e| EndpointInfo {
                        address: e.address,
                        weight: e.effective_weight(now, slow_start),
                        healthy: e.is_healthy(now),
                        draining: e.is_draining(),
                        in_flight: e.in_flight(),
                        ewma_latency_micros: e.ewma_micros(),
                    })
                    .collect();
                let plugin_target = match target {
                    Target::Request { parts, client } => BalanceTarget::Request {
                        parts,
                        client: *client,
                    },
                    Target::Connection(info) => BalanceTarget::Connection(info),
                };
                let choice = plugin
                    .pick_or_fallback(upstream, &plugin_target, &infos)
                    .map_err(|_| BalancerFailed)?;
                match choice.filter(|&i| i < n && usable(i)) {
                    Some(i) => Some(i),
                    None => fallback.next(n, usable, retry),
                }
            }
        })
    }
}

/// A fail-closed balancer plugin failed: the request gets no endpoint.
#[derive(Debug, Clone, Copy)]
pub struct BalancerFailed;

/// The next of the usable endpoints in turn: the cursor counts over the usable ones, so
/// an unusable endpoint's share spreads evenly over the others.
fn round_robin(next: &AtomicUsize, n: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
    let turn = next.fetch_add(1, Ordering::Relaxed);
    if usable(turn % n) && (0..n).all(usable) {
        return Some(turn % n);
    }
    let count = (0..n).filter(|&i| usable(i)).count();
    if count == 0 {
        return None;
    }
    (0..n).filter(|&i| usable(i)).nth(turn % count)
}

/// The hash of the key `key` names, from `target`; `None` if the request has no such key.
fn hash_key(key: &HashKey, target: &Target<'_>) -> Option<u64> {
    let Target::Request { parts, client } = target else {
        return None;
    };
    match key {
        HashKey::Header(name) => parts.headers.get(name).map(|v| hash_bytes(v.as_bytes())),
        HashKey::Cookie(name) => cookie(&parts.headers, name).map(|v| hash_bytes(v.as_bytes())),
        HashKey::Path => Some(hash_bytes(parts.uri.path().as_bytes())),
        HashKey::ClientIp => Some(ip_key(client.ip())),
    }
}

fn ip_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => hash_bytes(&v6.octets()),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A Maglev lookup table (Eisenbud et al., NSDI 2016), weighted: each endpoint fills a
/// share of the slots proportional to its weight.
pub struct Maglev {
    table: Vec<u16>,
}

impl Maglev {
    /// Slots in the table: a prime well above 100x the largest endpoint count expected.
    const SIZE: usize = 65_537;

    /// Builds the table for `endpoints` (at most 65 535 of them).
    pub fn new(endpoints: &[Arc<Endpoint>]) -> Maglev {
        let n = endpoints.len().min(usize::from(u16::MAX));
        let m = Self::SIZE as u64;
        if n == 0 {
            return Maglev { table: Vec::new() };
        }
        let (offsets, skips): (Vec<u64>, Vec<u64>) = endpoints[..n]
            .iter()
            .map(|e| {
                let h = e.id;
                (h % m, mix(h ^ 0x9e37_79b9_7f4a_7c15) % (m - 1) + 1)
            })
            .unzip();
        let gcd = endpoints[..n].iter().fold(0, |g, e| gcd(g, e.weight));
        let turns: Vec<u32> = endpoints[..n]
            .iter()
            .map(|e| e.weight / gcd.max(1))
            .collect();
        let mut next = vec![0u64; n];
        let mut table = vec![u16::MAX; Self::SIZE];
        let mut filled = 0;
        'fill: loop {
            for i in 0..n {
                for _ in 0..turns[i] {
                    // The endpoint's next preferred slot that is still free.
                    let mut slot = ((offsets[i] + next[i] * skips[i]) % m) as usize;
                    while table[slot] != u16::MAX {
                        next[i] += 1;
                        slot = ((offsets[i] + next[i] * skips[i]) % m) as usize;
                    }
                    table[slot] = i as u16;
                    next[i] += 1;
                    filled += 1;
                    if filled == Self::SIZE {
                        break 'fill;
                    }
                }
            }
        }
        Maglev { table }
    }

    /// The endpoint for `key` among `n`, skipping unusable ones.
    pub fn lookup(&self, key: u64, n: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let mut k = key;
        for _ in 0..8 {
            let i = usize::from(self.table[(k % Self::SIZE as u64) as usize]);
            if i < n && usable(i) {
                return Some(i);
            }
            k = mix(k.wrapping_add(0x9e37_79b9_7f4a_7c15));
        }
        let start = (key % n.max(1) as u64) as usize;
        (0..n).map(|i| (start + i) % n).find(|&i| usable(i))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EndpointConfig;

    fn endpoints(weights: &[u32]) -> Vec<Arc<Endpoint>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                Arc::new(Endpoint::new(&EndpointConfig {
                    address: format!("10.0.0.{}:80", i + 1).parse().unwrap(),
                    weight,
                    drain: false,
                }))
            })
            .collect()
    }

    fn counts(
        balancer: &Balancer,
        endpoints: &[Arc<Endpoint>],
        picks: usize,
        usable: &dyn Fn(usize) -> bool,
    ) -> Vec<usize> {
        let parts = http::Request::new(()).into_parts().0;
        let target = Target::Request {
            parts: &parts,
            client: "192.0.2.1:5000".parse().unwrap(),
        };
        let mut counts = vec![0; endpoints.len()];
        for _ in 0..picks {
            counts[balancer
                .pick(endpoints, &target, usable, None, false)
                .unwrap()
                .unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_skips_unusable() {
        let e = endpoints(&[1, 1, 1]);
        let b = Balancer::new("u", &BalancerConfig::RoundRobin, &e, |_| None);
        assert_eq!(counts(&b, &e, 300, &|_| true), [100, 100, 100]);
        assert_eq!(counts(&b, &e, 300, &|i| i != 1), [150, 0, 150]);
    }

    #[test]
    fn smooth_weighted_follows_weights_and_interleaves() {
        let e = endpoints(&[5, 1, 1]);
        let b = Balancer::new("u", &BalancerConfig::Weighted, &e, |_| None);
        assert_eq!(counts(&b, &e, 700, &|_| true), [500, 100, 100]);
        // nginx's example sequence for weights 5,1,1: a a b a c a a.
        let parts = http::Request::new(()).into_parts().0;
        let target = Target::Request {
            parts: &parts,
            client: "192.0.2.1:5000".parse().unwrap(),
        };
        let b = Balancer::new("u", &BalancerConfig::Weighted, &e, |_| None);
        let seq: Vec<usize> = (0..7)
            .map(|_| {
                b.pick(&e, &target, &|_| true, None, false)
                    .unwrap()
                    .unwrap()
            })
            .collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_conn_prefers_the_least_loaded_per_weight() {
        let e = endpoints(&[1, 2]);
        let _a: Vec<_> = (0..2).map(|_| e[0].start(None)).collect();
        let _b: Vec<_> = (0..3).map(|_| e[1].start(None)).collect();
        let b = Balancer::new("u", &BalancerConfig::LeastConn, &e, |_| None);
        // 2/1 > 3/2: endpoint 1 is less loaded per weight.
        assert_eq!(counts(&b, &e, 10, &|_| true), [0, 10]);
    }

    #[test]
    fn maglev_moves_about_a_fifth_of_keys_from_four_to_five() {
        let four = endpoints(&[1, 1, 1, 1]);
        let five = endpoints(&[1, 1, 1, 1, 1]);
        let (m4, m5) = (Maglev::new(&four), Maglev::new(&five));
        let keys = 100_000u64;
        let mut moved = 0;
        let mut spread = [0usize; 5];
        for k in 0..keys {
            let key = mix(k);
            let a = m4.lookup(key, 4, &|_| true).unwrap();
            let b = m5.lookup(key, 5, &|_| true).unwrap();
            spread[b] += 1;
            if a != b {
                moved += 1;
            }
        }
        let share = moved as f64 / keys as f64;
        assert!(share <= 0.25 + 0.03, "moved {share}");
        for s in spread {
            assert!((s as f64 / keys as f64 - 0.2).abs() < 0.03, "{spread:?}");
        }
    }

    #[test]
    fn maglev_weights_and_unusable_endpoints() {
        let e = endpoints(&[3, 1]);
        let m = Maglev::new(&e);
        let mut counts = [0usize; 2];
        for k in 0..40_000u64 {
            counts[m.lookup(mix(k), 2, &|_| true).unwrap()] += 1;
        }
        let share = counts[0] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.03, "{counts:?}");
        for k in 0..1000u64 {
            assert_eq!(m.lookup(mix(k), 2, &|i| i == 1), Some(1));
        }
    }

    #[test]
    fn cookie_lookup() {
        let mut h = http::HeaderMap::new();
        h.append("cookie", "a=1; session=xyz".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, "session"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
