//! Metrics: handles registered once per route, upstream, plugin and listener when a
//! snapshot is built, so the request path only bumps atomics (no name lookup, no lock).
//!
//! Recording goes through the `metrics` facade; [`install`] sets up the Prometheus recorder
//! (`metrics-exporter-prometheus`) that `GET /metrics` renders. Without it (no `[admin]`
//! section) every handle is a no-op. Histograms use fixed buckets, so memory stays bounded
//! whether or not anything scrapes.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Plugin call buckets in seconds: 1 µs to 10 ms (the default deadline).
const PLUGIN_BUCKETS: &[f64] = &[
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
    0.0025, 0.005, 0.01, 0.025,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder (once; later calls return the same handle).
/// `None` if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Prefix("maitred_plugin_".into()),
                        PLUGIN_BUCKETS,
                    )
                })
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            // Histograms keep samples until upkeep folds them into buckets.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("maitred-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// The methods counted by name; everything else is `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

/// Per-route request counters (by method and status class) and latency.
pub struct RouteMetrics {
    requests: Vec<Counter>,
    latency: Histogram,
}

impl RouteMetrics {
    /// Registers the handles of route `route` (its label, e.g. `route[3]`).
    pub fn new(route: &str) -> RouteMetrics {
        let mut requests = Vec::with_capacity(METHODS.len() * 5);
        for method in METHODS {
            for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                requests.push(counter!(
                    "maitred_requests_total",
                    "route" => route.to_owned(),
                    "method" => method,
                    "status" => class
                ));
            }
        }
        RouteMetrics {
            requests,
            latency: histogram!("maitred_request_duration_seconds", "route" => route.to_owned()),
        }
    }

    /// Counts one request and its time to the response head.
    pub fn record(
        &self,
        method: &http::Method,
        status: http::StatusCode,
        elapsed: std::time::Duration,
    ) {
        let m = METHODS
            .iter()
            .position(|m| *m == method.as_str())
            .unwrap_or(METHODS.len() - 1);
        let class = usize::from((status.as_u16() / 100).clamp(1, 5) - 1);
        self.requests[m * 5 + class].increment(1);
        self.latency.record(elapsed.as_secs_f64());
    }
}

/// How a cached route's requests were served, for `maitred_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Answered from the cache, fresh (or stale as the request allowed).
    Hit,
    /// Answered with a stale copy (`stale-while-revalidate`, `stale-if-error`).
    Stale,
    /// A stale copy was revalidated with the origin (`304`) and served.
    Revalidated,
    /// Fetched from the origin.
    Miss,
    /// Not cacheable (method, plugin bypass) and forwarded.
    Bypass,
    /// Answered from the cache after waiting for another request's fetch.
    Collapsed,
}

const CACHE_RESULTS: [&str; 6] = ["hit", "stale", "revalidated", "miss", "bypass", "collapsed"];

/// Per-route cache counters.
pub struct CacheMetrics {
    results: Vec<Counter>,
}

impl CacheMetrics {
    /// Registers the handles of route `route` (its label, e.g. `route[3]`).
    pub fn new(route: &str) -> CacheMetrics {
        CacheMetrics {
            results: CACHE_RESULTS
                .iter()
                .map(|result| {
                    counter!("maitred_cache_requests_total", "route" => route.to_owned(), "result" => *result)
                })
                .collect(),
        }
    }

    /// Counts one request.
    pub fn record(&self, result: CacheResult) {
        self.results[result as usize].increment(1);
    }
}

/// Sets the size gauges of a route's cache: `entries` keys holding `bytes`; called when
/// metrics are rendered.
pub fn update_cache_gauges(route: &str, entries: u64, bytes: u64) {
    gauge!("maitred_cache_entries", "route" => route.to_owned()).set(entries as f64);
    gauge!("maitred_cache_bytes", "route" => route.to_owned()).set(bytes as f64);
}

/// Per-upstream failure and retry counters.
pub struct UpstreamMetrics {
    /// Connections that could not be made (refused, timed out, TLS failed).
    pub connect_errors: Counter,
    /// Requests sent again to another endpoint.
    pub retries: Counter,
    /// Requests that found no endpoint (all down, at capacity).
    pub unavailable: Counter,
}

impl UpstreamMetrics {
    /// Registers the handles of upstream `name`.
    pub fn new(name: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            connect_errors: counter!("maitred_upstream_connect_errors_total", "upstream" => name.to_owned()),
            retries: counter!("maitred_upstream_retries_total", "upstream" => name.to_owned()),
            unavailable: counter!("maitred_upstream_unavailable_total", "upstream" => name.to_owned()),
        }
    }
}

/// Per-plugin call counters and call time.
pub struct PluginMetrics {
    /// Calls made.
    pub calls: Counter,
    /// Calls that trapped (including memory-limit failures).
    pub traps: Counter,
    /// Calls that ran past their deadline.
    pub timeouts: Counter,
    /// Time per call, in seconds.
    pub duration: Histogram,
}

impl PluginMetrics {
    /// Registers the handles of plugin `name`.
    pub fn new(name: &str) -> PluginMetrics {
        PluginMetrics {
            calls: counter!("maitred_plugin_calls_total", "plugin" => name.to_owned()),
            traps: counter!("maitred_plugin_traps_total", "plugin" => name.to_owned()),
            timeouts: counter!("maitred_plugin_timeouts_total", "plugin" => name.to_owned()),
            duration: histogram!("maitred_plugin_call_duration_seconds", "plugin" => name.to_owned()),
        }
    }
}

/// Open client connections of a listener.
pub fn open_connections(listener: &str) -> Gauge {
    gauge!("maitred_open_connections", "listener" => listener.to_owned())
}

/// Successful and failed reloads.
pub fn reloads(ok: bool) -> Counter {
    counter!("maitred_reloads_total", "result" => if ok { "ok" } else { "error" })
}

/// Sets the endpoint health gauges (1 up, 0 down) and in-flight gauges of `upstreams`;
/// called when metrics are rendered.
pub fn update_endpoint_gauges<'a>(upstreams: impl Iterator<Item = &'a crate::upstream::Upstream>) {
    let now = crate::upstream::endpoint::now_ms();
    for upstream in upstreams {
        for e in &upstream.endpoints {
            let labels = [
                ("upstream", upstream.name.to_string()),
                ("endpoint", e.address.to_string()),
            ];
            gauge!("maitred_endpoint_up", &labels).set(if e.is_healthy(now) { 1.0 } else { 0.0 });
            gauge!("maitred_endpoint_draining", &labels).set(if e.is_draining() {
                1.0
            } else {
                0.0
            });
            gauge!("maitred_endpoint_in_flight", &labels).set(f64::from(e.in_flight()));
        }
    }
}
