//! The `ratelimit` plugin through the proxy (two workers): the limit holds across concurrent
//! connections and plugin instances, keys count separately, windows pass, and bad configs
//! fail `check`.
//!
//! The host keeps plugin state by plugin name for the whole process, so each test names its
//! plugin uniquely: tests run in parallel in one process.

use maitred_tests::*;
use std::time::{Duration, Instant};

/// A proxy with two workers and one route per `(path_prefix, plugin)` to `backend`;
/// `plugins` is raw TOML defining them.
fn proxy(backend: &Backend, routes: &[(&str, &str)], plugins: &str) -> Proxy {
    let mut toml = String::from(
        "[runtime]\nworkers = 2\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n",
    );
    for (prefix, plugin) in routes {
        toml.push_str(&format!(
            "[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"main\"\nplugins = [\"{plugin}\"]\n"
        ));
    }
    toml.push_str(&format!(
        "[upstream.main]\nendpoints = [\"{}\"]\n",
        backend.addr
    ));
    toml.push_str(plugins);
    Proxy::start(&toml)
}

/// A ratelimit plugin definition named `name` with config table `config` (inline TOML),
/// a generous deadline (the machine running tests may be busy) and extra settings `extra`.
fn plugin(name: &str, config: &str, extra: &str) -> String {
    format!(
        "[plugin.{name}]\nwasm = \"ratelimit.wasm\"\ntimeout = \"1s\"\n{extra}\nconfig = {config}\n"
    )
}

/// Sends `n` GETs to `url` at once, each on its own connection, and returns the replies.
async fn burst(url: &str, n: usize, headers: &[(&str, &str)]) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_string();
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            tokio::spawn(async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                get(&url, &headers).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    replies
}

fn count(replies: &[Reply], status: u16) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

/// Checks a refusal's status and headers for a limit of `limit` per `window_secs`.
fn assert_refusal(r: &Reply, limit: u64, window_secs: u64) {
    assert_eq!(r.status, 429, "{r:?}");
    let retry: u64 = r
        .header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("{r:?}"));
    assert!((1..=2 * window_secs).contains(&retry), "{r:?}");
    assert_eq!(r.header("ratelimit-limit"), limit.to_string());
    assert_eq!(r.header("ratelimit-remaining"), "0");
    assert_eq!(r.header("ratelimit-reset"), r.header("retry-after"));
    assert_eq!(
        r.header("ratelimit-policy"),
        format!("{limit};w={window_secs}")
    );
    assert_eq!(r.body, "Too Many Requests\n");
}

#[tokio::test]
async fn the_request_over_the_limit_gets_429_across_concurrent_connections() {
    let backend = Backend::start("main").await;
    let p = proxy(
        &backend,
        &[("/", "rl-concurrent")],
        &plugin(
            "rl-concurrent",
            r#"{ key = "client_ip", limit = 10, window = "1m" }"#,
            "",
        ),
    );
    let replies = burst(&format!("{}/x", p.url("web")), 25, &[]).await;
    assert_eq!(count(&replies, 200), 10, "{replies:?}");
    assert_eq!(count(&replies, 429), 15, "{replies:?}");
    for r in replies.iter().filter(|r| r.status == 429) {
        assert_refusal(r, 10, 60);
    }
    // Refusals never reach the backend.
    assert_eq!(backend.requests(), 10);
    // The limit holds for later requests too, on any path of the route.
    let later = get(&format!("{}/y", p.url("web")), &[]).await;
    assert_refusal(&later, 10, 60);
    assert_eq!(backend.requests(), 10);
}

#[tokio::test]
async fn fixed_window_limit_holds_across_connections_too() {
    let backend = Backend::start("main").await;
    let p = proxy(
        &backend,
        &[("/", "rl-fixed")],
        &plugin(
            "rl-fixed",
            r#"{ limit = 7, window = "1m", algorithm = "fixed_window" }"#,
            "",
        ),
    );
    let replies = burst(&p.url("web"), 12, &[]).await;
    assert_eq!(count(&replies, 200), 7, "{replies:?}");
    assert_eq!(count(&replies, 429), 5, "{replies:?}");
    for r in replies.iter().filter(|r| r.status == 429) {
        // A fixed window says when it ends: within the minute.
        let retry: u64 = r.header("retry-after").parse().unwrap();
        assert!((1..=60).contains(&retry), "{r:?}");
    }
}

#[tokio::test]
async fn per_request_instances_share_the_limit() {
    let backend = Backend::start("main").await;
    let p = proxy(
        &backend,
        &[("/", "rl-fresh")],
        &plugin(
            "rl-fresh",
            r#"{ limit = 4, window = "1m" }"#,
            "isolation = \"per-request\"",
        ),
    );
    let replies = burst(&p.url("web"), 9, &[]).await;
    assert_eq!(count(&replies, 200), 4, "{replies:?}");
    assert_eq!(count(&replies, 429), 5, "{replies:?}");
    assert_eq!(backend.requests(), 4);
}

#[tokio::test]
async fn keys_count_separately() {
    let backend = Backend::start("main").await;
    let plugins = plugin(
        "rl-api-key",
        r#"{ key = "header:x-api-key", limit = 2, window = "1m" }"#,
        "",
    ) + &plugin(
        "rl-ip-path",
        r#"{ key = ["client_ip", "path"], limit = 1, window = "1m" }"#,
        "",
    ) + &plugin(
        "rl-shared",
        r#"{ key = "header:x-api-key", limit = 2, window = "1m", missing = "shared" }"#,
        "",
    );
    let p = proxy(
        &backend,
        &[
            ("/api/", "rl-api-key"),
            ("/page/", "rl-ip-path"),
            ("/shared/", "rl-shared"),
        ],
        &plugins,
    );
    let url = p.url("web");

    // Per API key: each key has its own two requests.
    let api = format!("{url}/api/");
    for key in ["alice", "bob"] {
        let replies = burst(&api, 3, &[("x-api-key", key)]).await;
        assert_eq!(count(&replies, 200), 2, "{key}: {replies:?}");
        assert_eq!(count(&replies, 429), 1, "{key}: {replies:?}");
    }
    // Requests without the header are not limited (missing = "pass").
    let replies = burst(&api, 5, &[]).await;
    assert_eq!(count(&replies, 200), 5, "{replies:?}");

    // Per client and path: each path has its own single request.
    for path in ["/page/a", "/page/b"] {
        assert_eq!(get(&format!("{url}{path}"), &[]).await.status, 200);
        assert_refusal(&get(&format!("{url}{path}"), &[]).await, 1, 60);
    }

    // missing = "shared": requests without the header share one counter.
    let shared = format!("{url}/shared/");
    let replies = burst(&shared, 4, &[]).await;
    assert_eq!(count(&replies, 200), 2, "{replies:?}");
    let replies = burst(&shared, 2, &[("x-api-key", "carol")]).await;
    assert_eq!(count(&replies, 200), 2, "{replies:?}");
}

/// Polls `url` every 50 ms until it answers 200; returns how long that took (at most 10 s).
async fn until_allowed(url: &str) -> Duration {
    let start = Instant::now();
    loop {
        if get(url, &[]).await.status == 200 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{url} still refused after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_limit_comes_back_when_the_window_passes() {
    let backend = Backend::start("main").await;
    let plugins = plugin("rl-sliding-1s", r#"{ limit = 3, window = "1s" }"#, "")
        + &plugin(
            "rl-fixed-1s",
            r#"{ limit = 3, window = "1s", algorithm = "fixed_window" }"#,
            "",
        );
    let p = proxy(
        &backend,
        &[("/sliding/", "rl-sliding-1s"), ("/fixed/", "rl-fixed-1s")],
        &plugins,
    );
    for path in ["/sliding/", "/fixed/"] {
        let url = format!("{}{path}", p.url("web"));
        let replies = burst(&url, 5, &[]).await;
        assert_eq!(count(&replies, 200), 3, "{path}: {replies:?}");
        let refused = replies.iter().find(|r| r.status == 429).unwrap();
        assert_refusal(refused, 3, 1);
        let retry_after: u64 = refused.header("retry-after").parse().unwrap();
        // Allowed again within Retry-After (plus scheduling slack), and the polling that
        // was refused meanwhile did not count against the client.
        let waited = until_allowed(&url).await;
        assert!(
            waited <= Duration::from_secs(retry_after) + Duration::from_secs(1),
            "{path}: allowed only after {waited:?} (Retry-After: {retry_after})"
        );
    }
}

#[tokio::test]
async fn custom_refusal_status_and_body() {
    let backend = Backend::start("main").await;
    let p = proxy(
        &backend,
        &[("/", "rl-custom")],
        &plugin(
            "rl-custom",
            r#"{ limit = 1, window = "1m", status = 503, body = "{\"error\":\"busy\"}", content_type = "application/json", headers = false }"#,
            "",
        ),
    );
    assert_eq!(get(&p.url("web"), &[]).await.status, 200);
    let r = get(&p.url("web"), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "{\"error\":\"busy\"}");
    assert_eq!(r.header("content-type"), "application/json");
    assert!(!r.header("retry-after").is_empty(), "{r:?}");
    assert_eq!(r.header("ratelimit-limit"), "");
}

#[test]
fn bad_config_fails_check_naming_the_plugin() {
    let dir = TempDir::new("ratelimit-check");
    let config = |plugin_config: &str| {
        format!(
            r#"
[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
path_prefix = "/"
upstream = "origin"
plugins = ["limit"]

[upstream.origin]
endpoints = ["127.0.0.1:9001"]

[plugin.limit]
wasm = {}
config = {plugin_config}
"#,
            toml_path(&plugin_dir().join("ratelimit.wasm"))
        )
    };
    let good = dir.write(
        "good.toml",
        config(r#"{ key = "client_ip", limit = 100, window = "1m" }"#),
    );
    maitred::check(&good).unwrap_or_else(|e| panic!("{e}"));
    for (name, plugin_config, want) in [
        (
            "no-limit",
            r#"{ key = "client_ip", window = "1m" }"#,
            "missing field `limit`",
        ),
        (
            "zero",
            r#"{ limit = 0, window = "1m" }"#,
            "limit: must be at least 1",
        ),
        (
            "window",
            r#"{ limit = 10, window = "1 fortnight" }"#,
            "invalid window \"1 fortnight\"",
        ),
        (
            "key",
            r#"{ key = ["client_ip", "ip"], limit = 10, window = "1m" }"#,
            "key: unknown key part \"ip\"",
        ),
        (
            "typo",
            r#"{ limt = 10, window = "1m" }"#,
            "unknown field `limt`",
        ),
    ] {
        let path = dir.write(&format!("{name}.toml"), config(plugin_config));
        let e = maitred::check(&path)
            .expect_err(&format!("{name}: accepted"))
            .to_string();
        assert!(e.contains("plugin.limit: init failed"), "{name}: {e}");
        assert!(e.contains(want), "{name}: {e}");
    }
}
