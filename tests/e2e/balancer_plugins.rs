//! Balancer plugins through the host API the upstreams call (`LoadedPlugin::pick`): the
//! first-party `balancer-affinity` (stickiness, spread, unavailable endpoints, key sources)
//! and the `balance-probe` test plugin (what the plugin is shown, containment, isolation,
//! the other worlds' calls).

use maitred::config::{Isolation, OnError, PluginConfig};
use maitred::plugin::{
    BalanceTarget, ConnectionInfo, EndpointInfo, LoadedPlugin, PluginFailure, PluginKind,
    RequestView,
};
use maitred_tests::plugin_config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn load_with(config: &PluginConfig) -> LoadedPlugin {
    LoadedPlugin::load(config, 1).unwrap_or_else(|e| panic!("loading {:?}: {e}", config.wasm))
}

fn load(wasm: &str, config_json: &str) -> LoadedPlugin {
    load_with(&plugin_config(wasm, config_json))
}

const AFFINITY: &str = r#"{"header": "x-user", "fallback": ["cookie:session", "client_ip"]}"#;

fn affinity() -> LoadedPlugin {
    load("balancer_affinity.wasm", AFFINITY)
}

/// `balance-probe` in `mode`, with `isolation`.
fn probe(mode: &str, isolation: Isolation) -> LoadedPlugin {
    let mut config = plugin_config("balance_probe.wasm", &format!(r#"{{"mode": "{mode}"}}"#));
    config.isolation = isolation;
    load_with(&config)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `n` healthy endpoints of weight 1, 127.0.0.1:9001 and up.
fn endpoints(n: u16) -> Vec<EndpointInfo> {
    (0..n)
        .map(|i| EndpointInfo {
            address: SocketAddr::from(([127, 0, 0, 1], 9001 + i)),
            weight: 1,
            healthy: true,
            draining: false,
            in_flight: 0,
            ewma_latency_micros: 0,
        })
        .collect()
}

/// A request head: `GET path` with `headers`.
fn parts(path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut req = http::Request::get(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(()).unwrap().into_parts().0
}

/// Asks `plugin` to pick for a request with `headers` from 192.0.2.7.
fn pick_request(
    plugin: &LoadedPlugin,
    headers: &[(&str, &str)],
    list: &[EndpointInfo],
) -> Result<Option<usize>, PluginFailure> {
    let parts = parts("/cart", headers);
    let target = BalanceTarget::Request {
        parts: &parts,
        client: addr("192.0.2.7:5000"),
    };
    plugin.pick(&target, list)
}

fn user(plugin: &LoadedPlugin, name: &str, list: &[EndpointInfo]) -> Option<usize> {
    pick_request(plugin, &[("x-user", name)], list).unwrap()
}

fn connection<'a>(client: &str, sni: Option<&'a str>) -> ConnectionInfo<'a> {
    ConnectionInfo {
        client: addr(client),
        listener: "edge",
        server_name: sni,
        alpn: &[],
    }
}

#[test]
fn affinity_is_a_balancer_plugin() {
    let p = affinity();
    assert_eq!(p.kind(), PluginKind::Balancer);
    assert_eq!(p.kind().world(), "balancer");
    assert_eq!(p.kind().to_string(), "a balancer plugin");
    assert!(!p.wants_request() && !p.wants_response());
}

#[test]
fn the_same_key_reaches_the_same_endpoint_across_calls_and_instances() {
    let list = endpoints(4);
    let pooled = affinity();
    let alice = user(&pooled, "alice", &list).expect("a key gives an endpoint");
    for _ in 0..200 {
        assert_eq!(user(&pooled, "alice", &list), Some(alice));
    }
    // Fresh instances (per-request isolation) and another loaded copy agree.
    let mut config = plugin_config("balancer_affinity.wasm", AFFINITY);
    config.isolation = Isolation::PerRequest;
    let fresh = load_with(&config);
    for _ in 0..20 {
        assert_eq!(user(&fresh, "alice", &list), Some(alice));
    }
    assert_eq!(user(&affinity(), "alice", &list), Some(alice));
}

#[test]
fn different_keys_spread_over_the_endpoints() {
    let p = affinity();
    let list = endpoints(4);
    let mut counts = [0usize; 4];
    for k in 0..800 {
        counts[user(&p, &format!("user-{k}"), &list).unwrap()] += 1;
    }
    assert!(counts.iter().all(|&c| c > 120), "{counts:?}");

    let mut weighted = endpoints(2);
    weighted[1].weight = 3;
    let mut counts = [0usize; 2];
    for k in 0..800 {
        counts[user(&p, &format!("user-{k}"), &weighted).unwrap()] += 1;
    }
    // Expected 200 and 600.
    assert!(counts[0].abs_diff(200) < 70, "{counts:?}");
}

#[test]
fn unavailable_endpoints_are_avoided_and_only_their_keys_move() {
    let p = affinity();
    let list = endpoints(4);
    let keys: Vec<String> = (0..200).map(|k| format!("user-{k}")).collect();
    let before: Vec<usize> = keys.iter().map(|k| user(&p, k, &list).unwrap()).collect();
    let alice = user(&p, "alice", &list).unwrap();
    for change in ["unhealthy", "draining"] {
        let mut changed = list.clone();
        match change {
            "unhealthy" => changed[alice].healthy = false,
            _ => changed[alice].draining = true,
        }
        let moved = user(&p, "alice", &changed).unwrap();
        assert_ne!(moved, alice, "{change}");
        for (k, &was) in keys.iter().zip(&before) {
            let now = user(&p, k, &changed).unwrap();
            assert_ne!(now, alice, "{change}: {k}");
            if was != alice {
                assert_eq!(now, was, "{change}: {k} left an available endpoint");
            }
        }
        // Back to health: back to its endpoint.
        assert_eq!(user(&p, "alice", &list), Some(alice));
    }
    let mut all_down = list.clone();
    all_down.iter_mut().for_each(|e| e.healthy = false);
    assert_eq!(user(&p, "alice", &all_down), None);
}

#[test]
fn key_sources_are_tried_in_order() {
    let p = affinity();
    let list = endpoints(16);
    let pick = |headers: &[(&str, &str)]| pick_request(&p, headers, &list).unwrap();
    // With the header, the cookie does not matter.
    let by_header = pick(&[("x-user", "alice")]);
    for session in ["s1", "s2", "s3"] {
        let cookie = format!("session={session}");
        assert_eq!(pick(&[("x-user", "alice"), ("cookie", &cookie)]), by_header);
    }
    // Without it, the session cookie decides: a key of its own, stable.
    let cookie_only =
        |session: &str| pick(&[("cookie", &format!("theme=dark; session={session}"))]);
    let sessions: std::collections::HashSet<_> =
        (0..40).map(|k| cookie_only(&format!("s{k}"))).collect();
    assert!(sessions.len() > 4, "sessions spread: {sessions:?}");
    assert_eq!(cookie_only("s1"), cookie_only("s1"));
    // Without both, the client address: the same for any request from 192.0.2.7.
    let by_ip = pick(&[]);
    assert!(by_ip.is_some());
    assert_eq!(pick(&[("x-other", "1")]), by_ip);
    assert_eq!(pick(&[("x-user", "")]), by_ip, "an empty header is no key");

    // Header only: no key, no preference (the host's round-robin decides).
    let header_only = load("balancer_affinity.wasm", r#"{"header": "x-user"}"#);
    assert_eq!(pick_request(&header_only, &[], &list).unwrap(), None);
}

#[test]
fn connections_are_keyed_by_sni_then_client_address() {
    let p = load(
        "balancer_affinity.wasm",
        r#"{"header": "x-user", "fallback": ["sni", "client_ip"]}"#,
    );
    let list = endpoints(16);
    let pick = |client: &str, sni: Option<&str>| {
        p.pick(&BalanceTarget::Connection(&connection(client, sni)), &list)
            .unwrap()
    };
    let a = pick("192.0.2.7:1000", Some("a.example.com"));
    assert!(a.is_some());
    // The same name from anywhere: the same endpoint.
    for port in 1..20 {
        assert_eq!(
            pick(&format!("198.51.100.{port}:4000"), Some("a.example.com")),
            a
        );
    }
    let names: std::collections::HashSet<_> = (0..40)
        .map(|k| pick("192.0.2.7:1000", Some(&format!("n{k}.example.com"))))
        .collect();
    assert!(names.len() > 4, "{names:?}");
    // No SNI: the client address, whatever its port.
    let by_ip = pick("192.0.2.7:1000", None);
    assert_eq!(pick("192.0.2.7:2000", None), by_ip);
    assert_eq!(
        pick("[::ffff:192.0.2.7]:3000", None),
        by_ip,
        "IPv4-mapped is IPv4"
    );
}

#[test]
fn a_bad_config_is_refused() {
    let e = LoadedPlugin::load(
        &plugin_config("balancer_affinity.wasm", r#"{"fallback": ["cookies:x"]}"#),
        1,
    )
    .err()
    .expect("a bad key source must not load");
    assert_eq!(
        e.to_string(),
        "init failed: fallback[0]: \"cookies:x\" is not a key source \
         (header:NAME, cookie:NAME, path, client_ip or sni)"
    );
}

#[test]
fn the_plugin_sees_what_the_host_saw() {
    let mut list = endpoints(2);
    list[0] = EndpointInfo {
        address: addr("[2001:db8::1]:443"),
        weight: 3,
        healthy: false,
        draining: true,
        in_flight: 7,
        ewma_latency_micros: 1500,
    };
    let expect = |expect: &str| {
        let json = serde_json::json!({"mode": "expect", "expect": expect}).to_string();
        load("balance_probe.wasm", &json)
    };
    let endpoints = "[2001:db8::1]:443/3/false/true/7/1500 127.0.0.1:9002/1/true/false/0/0";

    let p = expect(&format!(
        "request|GET|/cart|a=1&b=2|shop.test|192.0.2.7:5000|alice|a=1;session=s1 => {endpoints}"
    ));
    let head = parts(
        "/cart?a=1&b=2",
        &[
            ("host", "shop.test"),
            ("x-user", "alice"),
            ("cookie", "a=1"),
            ("cookie", "session=s1"),
        ],
    );
    let target = BalanceTarget::Request {
        parts: &head,
        // An IPv4 client of a dual-stack listener is shown as IPv4.
        client: addr("[::ffff:192.0.2.7]:5000"),
    };
    assert_eq!(p.pick(&target, &list).unwrap(), Some(0));
    // The request is the caller's, untouched.
    assert_eq!(head.headers.len(), 4);

    let bare = expect(&format!(
        "request|POST|/|-|-|[2001:db8::9]:1|-| => {endpoints}"
    ));
    let mut head = parts("/", &[]);
    head.method = http::Method::POST;
    let target = BalanceTarget::Request {
        parts: &head,
        client: addr("[2001:db8::9]:1"),
    };
    assert_eq!(bare.pick(&target, &list).unwrap(), Some(0));

    let p = expect(&format!(
        "connection|192.0.2.7|40000|edge|a.example.com|h2,http/1.1 => {endpoints}"
    ));
    let alpn = [b"h2".to_vec(), b"http/1.1".to_vec()];
    let info = ConnectionInfo {
        client: addr("[::ffff:192.0.2.7]:40000"),
        listener: "edge",
        server_name: Some("A.Example.com"),
        alpn: &alpn,
    };
    assert_eq!(
        p.pick(&BalanceTarget::Connection(&info), &list).unwrap(),
        Some(0)
    );
    // A mismatch traps (the probe's assertion), so the check above is real.
    let e = p
        .pick(
            &BalanceTarget::Connection(&connection("127.0.0.1:1", None)),
            &list,
        )
        .unwrap_err();
    assert!(matches!(e, PluginFailure::Trap(_)), "{e:?}");
}

#[test]
fn no_preference_and_indices_out_of_range() {
    let list = endpoints(3);
    let none = probe("none", Isolation::Pooled);
    assert_eq!(pick_request(&none, &[], &list).unwrap(), None);
    let first = probe("first", Isolation::Pooled);
    let mut down = list.clone();
    down[0].healthy = false;
    assert_eq!(pick_request(&first, &[], &down).unwrap(), Some(1));
    assert_eq!(pick_request(&first, &[], &[]).unwrap(), None);

    let past_end = load("balance_probe.wasm", r#"{"mode": "index", "index": 3}"#);
    let e = pick_request(&past_end, &[], &list).unwrap_err();
    assert!(matches!(e, PluginFailure::Invalid(_)), "{e:?}");
    assert_eq!(e.to_string(), "picked endpoint 3 of a list of 3");
    let e = pick_request(&past_end, &[], &[]).unwrap_err();
    assert_eq!(e.to_string(), "picked endpoint 3 of a list of 0");
    let last = load("balance_probe.wasm", r#"{"mode": "index", "index": 2}"#);
    assert_eq!(pick_request(&last, &[], &list).unwrap(), Some(2));
}

#[test]
fn a_trap_a_loop_or_a_memory_hog_fails_only_its_pick() {
    let p = probe("first", Isolation::Pooled);
    let list = endpoints(2);
    let e = pick_request(&p, &[("x-mode", "trap")], &list).unwrap_err();
    assert_eq!(
        e.to_string(),
        "trapped: wasm trap: wasm `unreachable` instruction executed"
    );

    let started = Instant::now();
    let e = pick_request(&p, &[("x-mode", "spin")], &list).unwrap_err();
    assert!(matches!(e, PluginFailure::Timeout), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the 10 ms deadline stopped the loop after {:?}",
        started.elapsed()
    );
    // The same on a connection.
    let e = p
        .pick(
            &BalanceTarget::Connection(&connection("127.0.0.1:1", Some("spin"))),
            &list,
        )
        .unwrap_err();
    assert!(matches!(e, PluginFailure::Timeout), "{e:?}");

    // A generous deadline, so that the cap and not the clock stops the hog.
    let mut config = plugin_config("balance_probe.wasm", r#"{"mode": "hog"}"#);
    (config.memory_limit, config.timeout) = (16 << 20, Duration::from_secs(5));
    let hog = load_with(&config);
    let e = pick_request(&hog, &[], &list).unwrap_err();
    assert!(matches!(e, PluginFailure::MemoryLimit), "{e:?}");

    assert_eq!(pick_request(&p, &[], &list).unwrap(), Some(0));
}

#[test]
fn pooled_instances_are_reused_and_dropped_after_a_failure() {
    let p = probe("count", Isolation::Pooled);
    let list = endpoints(10);
    let call = |mode: &[(&str, &str)]| pick_request(&p, mode, &list);
    assert_eq!(call(&[]).unwrap(), Some(0));
    assert_eq!(call(&[]).unwrap(), Some(1));
    assert!(call(&[("x-mode", "trap")]).is_err());
    // The instance that served 3 calls trapped and is gone: the next one is fresh.
    assert_eq!(call(&[]).unwrap(), Some(0));
    assert_eq!(call(&[]).unwrap(), Some(1));
    // An index out of range drops the instance too.
    for i in 2..10 {
        assert_eq!(call(&[]).unwrap(), Some(i));
    }
    assert!(matches!(call(&[]), Err(PluginFailure::Invalid(_))));
    assert_eq!(call(&[]).unwrap(), Some(0));
}

#[test]
fn per_request_isolation_gives_each_pick_a_fresh_instance() {
    let p = probe("count", Isolation::PerRequest);
    let list = endpoints(10);
    for _ in 0..3 {
        assert_eq!(pick_request(&p, &[], &list).unwrap(), Some(0));
    }
}

#[test]
fn on_error_decides_after_a_failure() {
    let list = endpoints(2);
    let parts = parts("/", &[]);
    let target = BalanceTarget::Request {
        parts: &parts,
        client: addr("127.0.0.1:1"),
    };
    let mut config = plugin_config("balance_probe.wasm", r#"{"mode": "trap"}"#);
    let closed = load_with(&config);
    let e = closed
        .pick_or_fallback("api", &target, &list)
        .expect_err("fail-closed returns the failure");
    assert!(matches!(e, PluginFailure::Trap(_)), "{e:?}");
    config.on_error = OnError::FailOpen;
    let open = load_with(&config);
    assert_eq!(open.pick_or_fallback("api", &target, &list).unwrap(), None);
    // Successes pass through either way.
    let first = probe("first", Isolation::Pooled);
    assert_eq!(
        first.pick_or_fallback("api", &target, &list).unwrap(),
        Some(0)
    );
}

#[test]
fn other_worlds_calls_are_refused_both_ways() {
    let list = endpoints(2);
    let filter = load("headers.wasm", "{}");
    let e = pick_request(&filter, &[], &list).unwrap_err();
    assert!(matches!(e, PluginFailure::WrongKind(..)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "pick cannot be called on an HTTP filter plugin"
    );
    let conn = load("sni_policy.wasm", "{}");
    let e = pick_request(&conn, &[], &list).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pick cannot be called on a connection plugin"
    );

    let balancer = affinity();
    let e = balancer
        .on_connect(&connection("127.0.0.1:1", None))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "on-connect cannot be called on a balancer plugin"
    );
    let mut instance = balancer.acquire().unwrap();
    let view = RequestView {
        parts: parts("/x", &[]),
        client: addr("127.0.0.1:1"),
        upstream: Arc::from("main"),
        upstream_override: None,
        cache: Default::default(),
        body: None,
    };
    let (view, result) = balancer.on_request(&mut instance, view);
    assert_eq!(view.parts.uri.path(), "/x", "the view comes back");
    assert_eq!(
        result.unwrap_err().to_string(),
        "on-request cannot be called on a balancer plugin"
    );
    // The instance is untouched and still picks.
    balancer.release(instance);
    assert!(user(&balancer, "alice", &list).is_some());
}

#[test]
fn init_errors_refuse_the_plugin() {
    let e = LoadedPlugin::load(
        &plugin_config(
            "balance_probe.wasm",
            r#"{"init_error": "no endpoints table"}"#,
        ),
        1,
    )
    .err()
    .expect("init failed");
    assert_eq!(e.to_string(), "init failed: no endpoints table");
}

/// Through a running proxy: upstreams with `balancer = "plugin:NAME"`, on an HTTP route and
/// on a `tcp` listener.
mod through_the_proxy {
    use maitred_tests::l4::*;
    use maitred_tests::*;
    use std::collections::HashMap;
    use std::time::Duration;

    /// Listener "web" with one route to upstream "app" (backends `a` and `b`, balanced by
    /// plugin "lb"), and the `[plugin.lb]` table's body `plugin`.
    fn http_proxy(a: &Backend, b: &Backend, plugin: &str) -> Proxy {
        Proxy::start(&format!(
            r#"[runtime]
workers = 1
[[listener]]
name = "web"
listen = "127.0.0.1:0"
[[route]]
upstream = "app"
[upstream.app]
endpoints = ["{}", "{}"]
balancer = "plugin:lb"
[plugin.lb]
{plugin}
"#,
            a.addr, b.addr
        ))
    }

    async fn backends() -> (Backend, Backend) {
        (Backend::start("a").await, Backend::start("b").await)
    }

    /// The backend that answered a `GET /` with `headers`.
    async fn backend_for(proxy: &Proxy, headers: &[(&str, &str)]) -> String {
        let reply = get(&format!("{}/", proxy.url("web")), headers).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.header("x-backend").to_string()
    }

    #[tokio::test]
    async fn a_user_always_reaches_the_same_backend() {
        let (a, b) = backends().await;
        let proxy = http_proxy(
            &a,
            &b,
            r#"wasm = "balancer_affinity.wasm"
config = { header = "x-user" }"#,
        );
        let alice = backend_for(&proxy, &[("x-user", "alice")]).await;
        for _ in 0..20 {
            assert_eq!(backend_for(&proxy, &[("x-user", "alice")]).await, alice);
        }
        // Users spread: both backends get some, each user sticks to one.
        let mut seen: HashMap<String, String> = HashMap::new();
        for k in 0..20 {
            let user = format!("user-{k}");
            let backend = backend_for(&proxy, &[("x-user", &user)]).await;
            assert_eq!(backend_for(&proxy, &[("x-user", &user)]).await, backend);
            seen.insert(user, backend);
        }
        let on_a = seen.values().filter(|b| *b == "a").count();
        assert!((1..20).contains(&on_a), "{seen:?}");
        // No header: no key, the host's round-robin answers.
        let mut anonymous = Vec::new();
        for _ in 0..4 {
            anonymous.push(backend_for(&proxy, &[]).await);
        }
        assert!(
            anonymous.contains(&"a".to_string()) && anonymous.contains(&"b".to_string()),
            "{anonymous:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_balancer_falls_back_or_fails_by_on_error() {
        let (a, b) = backends().await;
        let open = http_proxy(
            &a,
            &b,
            r#"wasm = "balance_probe.wasm"
config = { mode = "trap" }
on_error = "fail-open""#,
        );
        for _ in 0..4 {
            backend_for(&open, &[]).await;
        }
        let closed = http_proxy(
            &a,
            &b,
            r#"wasm = "balance_probe.wasm"
config = { mode = "trap" }
on_error = "fail-closed""#,
        );
        let reply = get(&format!("{}/", closed.url("web")), &[]).await;
        assert!(reply.status.is_server_error(), "{reply:?}");
        assert_eq!(
            a.requests() + b.requests(),
            4,
            "fail-closed reached no backend"
        );
    }

    #[tokio::test]
    async fn a_connection_always_reaches_the_same_backend() {
        let (a, b) = (
            TcpBackend::greeting_echo("A").await,
            TcpBackend::greeting_echo("B").await,
        );
        let proxy = Proxy::start(&format!(
            r#"[runtime]
workers = 1
[[listener]]
name = "db"
listen = "127.0.0.1:0"
protocol = "tcp"
upstream = "db"
[upstream.db]
endpoints = ["{}", "{}"]
balancer = "plugin:lb"
[plugin.lb]
wasm = "balancer_affinity.wasm"
config = {{ fallback = ["sni", "client_ip"] }}
"#,
            a.addr, b.addr
        ));
        let mut greetings = Vec::new();
        for _ in 0..6 {
            let mut s = connect(proxy.addr("db")).await;
            let line = tokio::time::timeout(Duration::from_secs(5), read_line(&mut s))
                .await
                .expect("greeting in time")
                .unwrap();
            greetings.push(line);
        }
        // Every connection comes from 127.0.0.1: one key, one backend.
        assert!(
            greetings.iter().all(|g| *g == greetings[0]),
            "{greetings:?}"
        );
        assert!(
            matches!((a.connections(), b.connections()), (6, 0) | (0, 6)),
            "{greetings:?}"
        );
    }

    #[test]
    fn a_balancer_must_be_named_by_an_upstream_and_only_a_balancer() {
        let start = |route_plugins: &str, balancer: &str| {
            let toml = format!(
                r#"[[listener]]
name = "web"
listen = "127.0.0.1:0"
[[route]]
upstream = "app"
plugins = [{route_plugins}]
[upstream.app]
endpoints = ["127.0.0.1:9"]
balancer = "{balancer}"
[plugin.lb]
wasm = "balancer_affinity.wasm"
config = {{ header = "x-user" }}
[plugin.tag]
wasm = "headers.wasm"
"#
            );
            let config = maitred::Config::from_toml(&toml, &plugin_dir().join("test.toml"))
                .unwrap_or_else(|e| panic!("config: {e}"));
            maitred::Server::start(config).err().map(|e| e.to_string())
        };
        let e = start("\"lb\"", "round_robin").expect("a balancer on a route is refused");
        assert!(e.contains("is a balancer plugin (world `balancer`)"), "{e}");
        let e = start("", "plugin:tag").expect("a filter as a balancer is refused");
        assert!(
            e.contains(
                "is an HTTP filter plugin (world `filter`) but is attached where a balancer plugin"
            ),
            "{e}"
        );
    }
}
