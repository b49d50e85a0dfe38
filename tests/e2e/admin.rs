//! The admin API: `GET /status`, `GET /upstreams`, drain and undrain, `GET /metrics`
//! (Prometheus text), the bearer token, and the rule that an admin API off loopback needs
//! one.
//!
//! Metrics are process-wide (one recorder) and routes are labelled by index (`route[0]`),
//! so tests here compare counts before and after their own traffic, and give plugins,
//! listeners and upstreams names no other test uses.

use maitred_tests::ops::*;
use maitred_tests::*;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Starts a proxy from `toml` (a config with `[admin]`), from a file so it can reload.
fn start(cfg: &ConfigFile, toml: &str) -> maitred::Server {
    cfg.write(toml);
    cfg.start()
}

/// Config `admin_status`: listeners `web` (http) and `db` (tcp), two plugins from two
/// different `.wasm` builds, two routes.
fn status_config(
    main: SocketAddr,
    first: &std::path::Path,
    second: &std::path::Path,
    second_route: &str,
) -> String {
    format!(
        r#"[runtime]
workers = 2
[admin]
listen = "127.0.0.1:0"
[[listener]]
name = "web"
listen = "127.0.0.1:0"
[[listener]]
name = "db"
listen = "127.0.0.1:0"
protocol = "tcp"
upstream = "main"
[[route]]
upstream = "main"
plugins = ["first", "second"]
[[route]]
host = "api.test"
path_prefix = "{second_route}"
upstream = "main"
plugins = ["second"]
[upstream.main]
endpoints = ["{main}"]
[plugin.first]
wasm = {}
config = {{ response = {{ set = {{ "x-first" = "1" }} }} }}
[plugin.second]
wasm = {}
config = {{ response = {{ set = {{ "x-second" = "1" }} }} }}
"#,
        toml_path(first),
        toml_path(second)
    )
}

/// `GET /status`: config version and load time, listeners with their addresses, routes
/// with their plugin chains (name, SHA-256 of the `.wasm`, load time), no error. A reload
/// that keeps a plugin keeps its hash and load time; a new build changes both.
#[tokio::test]
async fn status_reports_config_listeners_and_plugin_chains() {
    let backend = Backend::start("main").await;
    let cfg = ConfigFile::new("admin-status", "");
    let first = salted_plugin("headers.wasm", &cfg.file("first.wasm"), &unique_salt());
    let second = salted_plugin("headers.wasm", &cfg.file("second.wasm"), &unique_salt());
    let hash = |p: &std::path::Path| sha256_hex(&std::fs::read(p).unwrap());
    let before = now();
    let server = start(&cfg, &status_config(backend.addr, &first, &second, "/api/"));
    let after = now();
    let admin = Admin::of(&server);
    let status = admin.status().await;

    assert_eq!(status["version"], 1, "{status:#}");
    assert_eq!(status["config"], cfg.path.display().to_string());
    let loaded_at = status["loaded_at"].as_f64().expect("loaded_at");
    assert!(
        (before - 1.0..=after + 1.0).contains(&loaded_at),
        "loaded_at {loaded_at} not in [{before}, {after}]"
    );
    assert!(
        status["load_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{status:#}"
    );
    assert_eq!(status["reloads"], 0);
    assert_eq!(status["reload_failures"], 0);
    assert!(status["last_error"].is_null(), "{status:#}");

    let listeners = status["listeners"].as_array().expect("listeners");
    let listener = |name: &str| {
        listeners
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("listener {name} in {status:#}"))
    };
    assert_eq!(listener("web")["protocol"], "http");
    assert_eq!(
        listener("web")["address"],
        server.local_addr("web").unwrap().to_string()
    );
    assert_eq!(listener("db")["protocol"], "tcp");
    assert_eq!(
        listener("db")["address"],
        server.local_addr("db").unwrap().to_string()
    );

    let routes = status["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 2, "{status:#}");
    assert_eq!(routes[0]["route"], "route[0]");
    assert_eq!(routes[0]["path_prefix"], "/");
    assert_eq!(routes[0]["upstream"], "main");
    assert_eq!(routes[1]["host"], "api.test");
    assert_eq!(routes[1]["path_prefix"], "/api/");
    let chain: Vec<(&str, &str)> = routes[0]["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["sha256"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            ("first", hash(&first).as_str()),
            ("second", hash(&second).as_str())
        ]
    );
    assert_eq!(routes[1]["plugins"][0]["name"], "second");
    assert_eq!(routes[1]["plugins"][0]["sha256"], hash(&second));
    let plugin_loaded = |s: &serde_json::Value, route: usize, i: usize| {
        s["routes"][route]["plugins"][i]["loaded_at"]
            .as_f64()
            .unwrap_or_else(|| panic!("plugin loaded_at in {s:#}"))
    };
    let first_loaded = plugin_loaded(&status, 0, 0);
    let second_loaded = plugin_loaded(&status, 0, 1);
    assert!((before - 1.0..=after + 1.0).contains(&first_loaded));

    // A route changes, the plugins do not: same hashes, same load times.
    cfg.write(&status_config(backend.addr, &first, &second, "/v2/"));
    let reply = admin.post("/reload").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let status = admin.status().await;
    assert_eq!(status["version"], 2);
    assert_eq!(status["reloads"], 1);
    assert!(status["loaded_at"].as_f64().unwrap() >= loaded_at);
    assert_eq!(status["routes"][1]["path_prefix"], "/v2/");
    assert_eq!(status["routes"][0]["plugins"][0]["sha256"], hash(&first));
    assert_eq!(
        plugin_loaded(&status, 0, 0),
        first_loaded,
        "unchanged plugin reloaded"
    );
    assert_eq!(
        plugin_loaded(&status, 0, 1),
        second_loaded,
        "unchanged plugin reloaded"
    );

    // A new build of `second`: its hash and load time change, `first`'s do not.
    salted_plugin("headers.wasm", &second, &unique_salt());
    let reply = admin.post("/reload").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let status = admin.status().await;
    assert_eq!(status["version"], 3);
    assert_eq!(status["routes"][0]["plugins"][1]["sha256"], hash(&second));
    assert_eq!(status["routes"][1]["plugins"][0]["sha256"], hash(&second));
    assert!(plugin_loaded(&status, 0, 1) > second_loaded, "{status:#}");
    assert_eq!(plugin_loaded(&status, 0, 0), first_loaded);
}

/// Two backends behind upstream `main` (round robin, one worker).
fn drain_config(a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "[runtime]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nupstream = \"main\"\n\
         [upstream.main]\nendpoints = [\"{a}\", \"{b}\"]\n"
    )
}

/// `GET /upstreams` lists every endpoint with its live state; draining an endpoint moves
/// new requests off it, undraining brings them back; unknown upstreams and endpoints are
/// 404, unknown resources 404, wrong methods 405.
#[tokio::test]
async fn upstreams_and_drain_undrain() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let cfg = ConfigFile::new("admin-upstreams", "");
    let server = start(&cfg, &drain_config(a.addr, b.addr));
    let admin = Admin::of(&server);
    let url = format!("http://{}/", server.local_addr("web").unwrap());
    for _ in 0..4 {
        assert_eq!(get(&url, &[]).await.status, 200);
    }

    let upstreams = admin.json("/upstreams").await;
    let endpoints = upstreams["main"]["endpoints"]
        .as_array()
        .expect("main's endpoints");
    assert_eq!(endpoints.len(), 2, "{upstreams:#}");
    for (e, addr) in endpoints.iter().zip([a.addr, b.addr]) {
        assert_eq!(e["address"], addr.to_string());
        assert!(e["weight"].is_number(), "{e}");
        assert_eq!(e["healthy"], true, "{e}");
        assert_eq!(e["draining"], false, "{e}");
        assert_eq!(e["in_flight"], 0, "{e}");
        assert!(e["ewma_latency_us"].is_number(), "{e}");
        assert_eq!(e["recent_failures"], 0, "{e}");
    }
    assert!(
        endpoints
            .iter()
            .any(|e| e["ewma_latency_us"].as_f64().is_some_and(|l| l > 0.0)),
        "no latency recorded after 4 requests: {upstreams:#}"
    );

    let send_20 = || async {
        let before = (a.requests(), b.requests());
        for _ in 0..20 {
            assert_eq!(get(&url, &[]).await.status, 200);
        }
        (a.requests() - before.0, b.requests() - before.1)
    };
    let drained = admin
        .post(&format!("/upstreams/main/endpoints/{}/drain", b.addr))
        .await;
    assert_eq!(drained.status, 200, "{}", drained.body);
    let json: serde_json::Value = serde_json::from_str(&drained.body).unwrap();
    assert_eq!(json["draining"], true, "{json}");
    assert_eq!(
        send_20().await,
        (20, 0),
        "a drained endpoint got new requests"
    );
    let upstreams = admin.json("/upstreams").await;
    assert_eq!(
        upstreams["main"]["endpoints"][1]["draining"], true,
        "{upstreams:#}"
    );
    assert_eq!(upstreams["main"]["endpoints"][0]["draining"], false);

    let undrained = admin
        .post(&format!("/upstreams/main/endpoints/{}/undrain", b.addr))
        .await;
    assert_eq!(undrained.status, 200, "{}", undrained.body);
    let (to_a, to_b) = send_20().await;
    assert!(to_a > 0 && to_b > 0, "after undrain: a {to_a}, b {to_b}");
    assert_eq!(
        admin.json("/upstreams").await["main"]["endpoints"][1]["draining"],
        false
    );

    for (path, status) in [
        (format!("/upstreams/nope/endpoints/{}/drain", b.addr), 404),
        (
            "/upstreams/main/endpoints/127.0.0.1:1/drain".to_string(),
            404,
        ),
        (
            "/upstreams/main/endpoints/not-an-address/undrain".to_string(),
            404,
        ),
        ("/nothing-here".to_string(), 404),
    ] {
        let reply = admin.post(&path).await;
        assert_eq!(reply.status, status, "POST {path}: {}", reply.body);
        assert!(
            serde_json::from_str::<serde_json::Value>(&reply.body)
                .is_ok_and(|j| j["error"].is_string()),
            "POST {path}: {}",
            reply.body
        );
    }
    assert_eq!(admin.get("/nothing-here").await.status, 404);
    assert_eq!(admin.get("/reload").await.status, 405);
    assert_eq!(admin.post("/status").await.status, 405);
    // The failed drains changed nothing: b still gets requests.
    assert!(send_20().await.1 > 0);
}

/// `GET /metrics` after traffic: requests by route, method and status class, the latency
/// histogram, plugin calls, traps and call times, upstream connect errors, endpoint
/// gauges and open connections per listener.
#[tokio::test]
async fn metrics_after_traffic() {
    let backend = Backend::start("main").await;
    let cfg = ConfigFile::new("admin-metrics", "");
    let id = unique_salt().replace('-', "_");
    let (tag, trap, web, dead) = (
        format!("mtag_{id}"),
        format!("mtrap_{id}"),
        format!("mweb_{id}"),
        format!("mdead_{id}"),
    );
    let toml = format!(
        r#"[runtime]
workers = 2
[admin]
listen = "127.0.0.1:0"
[[listener]]
name = "{web}"
listen = "127.0.0.1:0"
[[route]]
upstream = "main"
plugins = ["{tag}"]
[[route]]
path_prefix = "/dead/"
upstream = "{dead}"
[[route]]
path_prefix = "/trap/"
upstream = "main"
plugins = ["{trap}"]
[upstream.main]
endpoints = ["{}"]
[upstream.{dead}]
endpoints = ["{}"]
retries = 0
[plugin.{tag}]
wasm = {}
config = {{ request = {{ set = {{ "x-a" = "1" }} }}, response = {{ set = {{ "x-b" = "1" }} }} }}
[plugin.{trap}]
wasm = {}
"#,
        backend.addr,
        maitred_tests::l4::dead_port(),
        toml_path(&plugin_dir().join("headers.wasm")),
        toml_path(&plugin_dir().join("trap.wasm")),
    );
    let server = start(&cfg, &toml);
    let admin = Admin::of(&server);
    let base = format!("http://{}", server.local_addr(&web).unwrap());
    let requests = |route: &str, method: &str, status: &str, m: &Metrics| {
        m.sum(
            "maitred_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    let m0 = admin.metrics().await;

    const N: usize = 15;
    for _ in 0..N {
        let reply = get(&format!("{base}/"), &[]).await;
        assert_eq!((reply.status.as_u16(), reply.header("x-b")), (200, "1"));
    }
    let post = http::Request::post(format!("{base}/"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
        .unwrap();
    assert_eq!(send(&http1_client(), post).await.status, 200);
    assert_eq!(get(&format!("{base}/dead/"), &[]).await.status, 502);
    let trapped = get(&format!("{base}/trap/"), &[("x-trap", "1")]).await;
    assert!(trapped.status.is_server_error(), "trap: {}", trapped.status);
    // One connection held open for the gauge.
    let mut open = KeepAlive::connect(server.local_addr(&web).unwrap())
        .await
        .unwrap();
    assert_eq!(open.get("/", &[]).await.map(|r| r.status.as_u16()), Ok(200));

    let m1 = admin.metrics().await;
    let text = &m1.text;
    let got = requests("route[0]", "GET", "2xx", &m1) - requests("route[0]", "GET", "2xx", &m0);
    assert!(
        got >= (N + 1) as f64,
        "maitred_requests_total route[0] GET 2xx grew by {got}:\n{text}"
    );
    let got = requests("route[0]", "POST", "2xx", &m1) - requests("route[0]", "POST", "2xx", &m0);
    assert!(got >= 1.0, "POST not counted:\n{text}");
    let got = requests("route[1]", "GET", "5xx", &m1) - requests("route[1]", "GET", "5xx", &m0);
    assert!(got >= 1.0, "502 on route[1] not counted as 5xx:\n{text}");

    let buckets = m1.find(
        "maitred_request_duration_seconds_bucket",
        &[("route", "route[0]")],
    );
    assert!(
        buckets.len() >= 5,
        "latency histogram buckets for route[0]:\n{text}"
    );
    assert!(
        buckets
            .iter()
            .any(|s| s.labels.iter().any(|(k, v)| k == "le" && v == "+Inf"))
    );
    let count = m1.sum(
        "maitred_request_duration_seconds_count",
        &[("route", "route[0]")],
    ) - m0.sum(
        "maitred_request_duration_seconds_count",
        &[("route", "route[0]")],
    );
    assert!(
        count >= (N + 1) as f64,
        "latency histogram count grew by {count}:\n{text}"
    );

    let calls = m1.sum("maitred_plugin_calls_total", &[("plugin", &tag)]);
    assert!(
        calls >= (N + 1) as f64,
        "plugin {tag} calls: {calls}:\n{text}"
    );
    assert!(
        m1.has(
            "maitred_plugin_call_duration_seconds_bucket",
            &[("plugin", &tag)]
        ) || m1.has("maitred_plugin_call_duration_seconds", &[("plugin", &tag)]),
        "plugin call time of {tag}:\n{text}"
    );
    assert_eq!(
        m1.sum("maitred_plugin_traps_total", &[("plugin", &trap)]),
        1.0,
        "traps of {trap}:\n{text}"
    );
    assert_eq!(
        m1.sum("maitred_plugin_timeouts_total", &[("plugin", &tag)]),
        0.0
    );
    assert!(
        m1.sum(
            "maitred_upstream_connect_errors_total",
            &[("upstream", &dead)]
        ) >= 1.0,
        "connect errors of {dead}:\n{text}"
    );
    assert_eq!(
        m1.sum(
            "maitred_endpoint_up",
            &[
                ("upstream", "main"),
                ("endpoint", &backend.addr.to_string())
            ]
        ),
        1.0,
        "endpoint gauge:\n{text}"
    );
    let open_now = m1.sum("maitred_open_connections", &[("listener", &web)]);
    assert!(
        open_now >= 1.0,
        "maitred_open_connections of {web} = {open_now} with a connection open:\n{text}"
    );
    drop(open);
}

fn token_config(token: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nupstream = \"main\"\n[upstream.main]\nendpoints = [\"127.0.0.1:9\"]\n"
    )
}

/// With `token`, every admin request needs `Authorization: Bearer TOKEN`: 401 without it or
/// with a wrong one (and nothing happens), 200 with it.
#[tokio::test]
async fn admin_token_is_required_when_configured() {
    let cfg = ConfigFile::new("admin-token", "");
    let server = start(&cfg, &token_config("s3cret"));
    let anonymous = Admin::of(&server);
    let wrong = anonymous.with_token("guess");
    let right = anonymous.with_token("s3cret");
    for path in ["/status", "/upstreams", "/metrics"] {
        assert_eq!(
            anonymous.get(path).await.status,
            401,
            "GET {path} without a token"
        );
        assert_eq!(
            wrong.get(path).await.status,
            401,
            "GET {path} with a wrong token"
        );
        assert_eq!(
            right.get(path).await.status,
            200,
            "GET {path} with the token"
        );
    }
    let reply = anonymous.post("/reload").await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        anonymous
            .post("/upstreams/main/endpoints/127.0.0.1:9/drain")
            .await
            .status,
        401
    );
    assert_eq!(
        server.status().version,
        1,
        "an unauthenticated reload happened"
    );
    assert_eq!(
        right.json("/upstreams").await["main"]["endpoints"][0]["draining"],
        false
    );
    // Not `Basic`, not the bare token.
    let raw = raw(
        server.local_addr("admin").unwrap(),
        b"GET /status HTTP/1.1\r\nhost: x\r\nauthorization: s3cret\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 401, "{raw}");
    let reply = right.post("/reload").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(server.status().version, 2);
}

/// An admin address off loopback without a token is a config error naming `admin.listen`;
/// with a token it is accepted.
#[test]
fn non_loopback_admin_needs_a_token() {
    let config = |listen: &str, token: &str| {
        format!(
            "[admin]\nlisten = \"{listen}\"\n{token}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
             [[route]]\nupstream = \"main\"\n[upstream.main]\nendpoints = [\"127.0.0.1:9\"]\n"
        )
    };
    let path = plugin_dir().join("admin.toml");
    for (listen, token) in [
        ("0.0.0.0:9901", ""),
        ("0.0.0.0:9901", "token = \"\""),
        ("[::]:9901", ""),
        ("192.0.2.1:9901", ""),
    ] {
        let error = maitred::Config::from_toml(&config(listen, token), &path)
            .expect_err(&format!(
                "admin on {listen} with {token:?} must be rejected"
            ))
            .to_string();
        assert!(
            error.contains("admin.listen"),
            "{listen} {token:?}: {error}"
        );
        assert!(
            error.contains("token"),
            "{listen} {token:?}: the error should say a token is needed: {error}"
        );
    }
    let ok = maitred::Config::from_toml(&config("0.0.0.0:9901", "token = \"s3cret\""), &path)
        .unwrap_or_else(|e| panic!("non-loopback admin with a token: {e}"));
    assert_eq!(ok.admin.unwrap().token.as_deref(), Some("s3cret"));
    for listen in ["127.0.0.1:9901", "[::1]:9901"] {
        maitred::Config::from_toml(&config(listen, ""), &path)
            .unwrap_or_else(|e| panic!("loopback admin {listen} without a token: {e}"));
    }
}
