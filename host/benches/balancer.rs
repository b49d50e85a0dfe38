//! Cost of one balancing decision (`Balancer::pick`) over four healthy endpoints, for each
//! built-in balancer and for the `balancer-affinity` plugin (pooled), on a typical request
//! head with an `x-user` header.
//!
//! Run: `cargo bench -p maitred --bench balancer` (the plugin case needs
//! `cargo xtask plugins` first and is skipped without it).

use criterion::Criterion;
use maitred::config::{BalancerConfig, EndpointConfig, HashKey, Isolation, OnError, PluginConfig};
use maitred::plugin::LoadedPlugin;
use maitred::upstream::balancer::{Balancer, Target};
use maitred::upstream::endpoint::Endpoint;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn endpoints() -> Vec<Arc<Endpoint>> {
    (1..=4)
        .map(|i| {
            Arc::new(Endpoint::new(&EndpointConfig {
                address: format!("10.0.0.{i}:8080").parse().expect("address"),
                weight: i,
                drain: false,
            }))
        })
        .collect()
}

/// `target/wasm32-wasip2/release/balancer_affinity.wasm`, if built.
fn affinity_plugin() -> Option<Arc<LoadedPlugin>> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let wasm = target.join("wasm32-wasip2/release/balancer_affinity.wasm");
    if !wasm.exists() {
        eprintln!("skipping the plugin balancer: {} not built", wasm.display());
        return None;
    }
    let config = PluginConfig {
        name: "affinity".into(),
        wasm,
        config_json: r#"{"header":"x-user"}"#.into(),
        on_error: OnError::FailOpen,
        isolation: Isolation::Pooled,
        timeout: Duration::from_millis(10),
        memory_limit: 64 << 20,
        pool_size: 4,
        files: Vec::new(),
    };
    Some(Arc::new(
        LoadedPlugin::load(&config, 1).expect("loading balancer_affinity.wasm"),
    ))
}

fn bench(c: &mut Criterion) {
    let endpoints = endpoints();
    let (parts, ()) = http::Request::get("/api/orders?page=2")
        .header("host", "example.test")
        .header("x-user", "alice")
        .header("cookie", "session=abc123")
        .body(())
        .expect("request")
        .into_parts();
    let target = Target::Request {
        parts: &parts,
        client: "192.0.2.7:50000".parse().expect("address"),
    };
    let plugin = affinity_plugin();
    let mut cases = vec![
        ("round_robin", BalancerConfig::RoundRobin),
        ("weighted", BalancerConfig::Weighted),
        ("least_conn", BalancerConfig::LeastConn),
        ("ip_hash", BalancerConfig::IpHash),
        (
            "hash_header",
            BalancerConfig::Hash(HashKey::Header(http::HeaderName::from_static("x-user"))),
        ),
        ("p2c", BalancerConfig::P2c),
    ];
    if plugin.is_some() {
        cases.push(("plugin_affinity", BalancerConfig::Plugin("affinity".into())));
    }
    let mut group = c.benchmark_group("pick");
    for (name, config) in cases {
        let balancer = Balancer::new("bench", &config, &endpoints, |_| plugin.clone());
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    balancer
                        .pick(&endpoints, &target, &|_| true, None, false)
                        .ok(),
                )
            })
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    bench(&mut c);
    c.final_summary();
}
