//! Cost of one call into a plugin, measured on the `headers` plugin (the one the proxy
//! benchmark in `bench/run.sh` uses, with the same config):
//!
//! - `on_request/pooled`: acquire an instance from the pool, run `on-request`, release it;
//! - `on_request/per_request`: the same with `isolation = "per-request"`, i.e. a fresh
//!   instance with `init` run on it, the call, and the instance dropped;
//! - `on_request/call_only`: `on-request` alone on an instance held across iterations;
//! - `on_response/pooled`: acquire, run `on-response`, release.
//!
//! Each iteration gets a fresh request/response head (built outside the timed section).
//!
//! On a busy machine criterion's wall-clock times are noisy; `PLUGIN_CALL_CPU=per_request:200000`
//! (or `pooled:N`) instead runs N rounds of acquire + `on-request` + release and prints the
//! thread's CPU time per round (`cargo bench -p maitred --bench plugin_call` with it set).
//! Needs the plugin built: `cargo xtask plugins`, then `cargo bench -p maitred --bench plugin_call`.

use criterion::{BatchSize, Criterion};
use maitred::config::{Isolation, OnError, PluginConfig};
use maitred::plugin::{LoadedPlugin, RequestAction, RequestView, ResponseView};
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The plugin's config: one request header set, one response header removed.
const CONFIG_JSON: &str =
    r#"{"request":{"set":{"x-env":"bench"}},"response":{"remove":["server"]}}"#;

/// `<workspace>/target/wasm32-wasip2/release/headers.wasm` (or under `$CARGO_TARGET_DIR`).
fn headers_wasm() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("wasm32-wasip2/release/headers.wasm")
}

fn load(wasm: &Path, isolation: Isolation) -> LoadedPlugin {
    let config = PluginConfig {
        name: "tag".into(),
        wasm: wasm.to_path_buf(),
        config_json: CONFIG_JSON.into(),
        on_error: OnError::FailClosed,
        isolation,
        timeout: Duration::from_millis(10),
        memory_limit: 64 << 20,
        pool_size: 64,
        files: Vec::new(),
    };
    LoadedPlugin::load(&config, 1).unwrap_or_else(|e| panic!("loading {}: {e}", wasm.display()))
}

/// A typical small GET, as a client like curl or a browser would send it.
fn request_view() -> RequestView {
    let (parts, ()) = http::Request::builder()
        .method("GET")
        .uri("/api/hello?x=1")
        .header("host", "example.test")
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .header("x-request-id", "0123456789abcdef")
        .body(())
        .expect("valid request")
        .into_parts();
    RequestView {
        parts,
        client: SocketAddr::from(([127, 0, 0, 1], 40000)),
        upstream: Arc::from("backend"),
        upstream_override: None,
        cache: Default::default(),
        body: None,
    }
}

/// A typical small upstream response head (nginx's).
fn response_view() -> ResponseView {
    let (parts, ()) = http::Response::builder()
        .status(200)
        .header("server", "nginx/1.22.1")
        .header("date", "Mon, 23 Nov 2026 00:00:00 GMT")
        .header("content-type", "text/plain")
        .header("content-length", "6")
        .body(())
        .expect("valid response")
        .into_parts();
    ResponseView { parts }
}

/// acquire + on-request + release: what the proxy does per request for one plugin.
fn request_round(plugin: &LoadedPlugin, view: RequestView) -> RequestView {
    let mut instance = plugin.acquire().expect("acquire");
    let (view, result) = plugin.on_request(&mut instance, view);
    assert!(
        matches!(result, Ok(RequestAction::Continue)),
        "on-request failed: {:?}",
        result.err()
    );
    plugin.release(instance);
    view
}

fn response_round(plugin: &LoadedPlugin, view: ResponseView) -> ResponseView {
    let mut instance = plugin.acquire().expect("acquire");
    let (view, result) = plugin.on_response(&mut instance, view);
    result.expect("on-response failed");
    plugin.release(instance);
    view
}

fn benches(c: &mut Criterion, wasm: &Path) {
    let pooled = load(wasm, Isolation::Pooled);
    let per_request = load(wasm, Isolation::PerRequest);
    assert!(
        pooled.wants_request() && pooled.wants_response(),
        "the headers plugin should ask for both phases"
    );

    // The plugin really does its job (so the benchmark measures real work).
    let view = request_round(&pooled, request_view());
    assert_eq!(
        view.parts.headers.get("x-env").map(|v| v.as_bytes()),
        Some(&b"bench"[..])
    );
    let view = response_round(&pooled, response_view());
    assert!(view.parts.headers.get("server").is_none());

    let mut group = c.benchmark_group("on_request");
    group.bench_function("pooled", |b| {
        b.iter_batched(
            request_view,
            |view| request_round(&pooled, black_box(view)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("per_request", |b| {
        b.iter_batched(
            request_view,
            |view| request_round(&per_request, black_box(view)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("call_only", |b| {
        let mut instance = pooled.acquire().expect("acquire");
        b.iter_batched(
            request_view,
            |view| {
                let (view, result) = pooled.on_request(&mut instance, black_box(view));
                (view, result.expect("on-request failed"))
            },
            BatchSize::SmallInput,
        );
        pooled.release(instance);
    });
    group.finish();

    let mut group = c.benchmark_group("on_response");
    group.bench_function("pooled", |b| {
        b.iter_batched(
            response_view,
            |view| response_round(&pooled, black_box(view)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// `PLUGIN_CALL_CPU=pooled:N` or `per_request:N`: runs N request rounds (after 1000 to warm
/// up) and prints the thread's CPU time per round. Unlike criterion's wall-clock times it
/// does not count time the thread waited for a core, so A/B comparisons stay readable on a
/// machine shared with other work.
fn cpu_loop(wasm: &Path, spec: &str) {
    let parsed = spec.split_once(':').and_then(|(variant, n)| {
        let isolation = match variant {
            "pooled" => Isolation::Pooled,
            "per_request" => Isolation::PerRequest,
            _ => return None,
        };
        Some((isolation, n.parse::<u32>().ok()?))
    });
    let Some((isolation, rounds)) = parsed else {
        eprintln!("error: PLUGIN_CALL_CPU is `pooled:N` or `per_request:N`, not {spec:?}");
        std::process::exit(2);
    };
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write to.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
    let plugin = load(wasm, isolation);
    let mut view = request_view();
    for _ in 0..1000 {
        view = request_round(&plugin, black_box(view));
    }
    let (wall, cpu) = (std::time::Instant::now(), thread_cpu());
    for _ in 0..rounds {
        view = request_round(&plugin, black_box(view));
    }
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    println!(
        "{spec}: {:.3} µs CPU per round ({:.3} µs wall)",
        cpu.as_secs_f64() * 1e6 / f64::from(rounds),
        wall.as_secs_f64() * 1e6 / f64::from(rounds)
    );
}

fn main() {
    let wasm = headers_wasm();
    if !wasm.is_file() {
        eprintln!(
            "error: {} not found.\nBuild the plugins first: `cargo xtask plugins` (then rerun `cargo bench -p maitred --bench plugin_call`).",
            wasm.display()
        );
        std::process::exit(1);
    }
    if let Ok(spec) = std::env::var("PLUGIN_CALL_CPU") {
        cpu_loop(&wasm, &spec);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &wasm);
    c.final_summary();
}
