//! Connection-level (layer 4) plugins: the host API the listeners call (loading either world,
//! `on-connect`, containment, `on_error`, the chain), with the first-party `sni-policy` and
//! the `connect-probe` test plugin.

use maitred::config::{Isolation, OnError};
use maitred::plugin::{
    ConnectionAction, ConnectionInfo, LoadedPlugin, PluginError, PluginFailure, PluginKind,
    RequestView, run_connection_chain,
};
use maitred_tests::plugin_config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn load(wasm: &str, config_json: &str) -> LoadedPlugin {
    LoadedPlugin::load(&plugin_config(wasm, config_json), 1)
        .unwrap_or_else(|e| panic!("loading {wasm}: {e}"))
}

/// `connect-probe` with `on_error` and `isolation` chosen.
fn probe(mode: &str, on_error: OnError, isolation: Isolation) -> Arc<LoadedPlugin> {
    let mut config = plugin_config("connect_probe.wasm", &format!(r#"{{"mode": "{mode}"}}"#));
    config.on_error = on_error;
    config.isolation = isolation;
    Arc::new(LoadedPlugin::load(&config, 1).unwrap())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A connection from `client` with server name `sni` on listener `edge`, no ALPN.
fn info<'a>(client: &str, sni: Option<&'a str>) -> ConnectionInfo<'a> {
    ConnectionInfo {
        client: addr(client),
        listener: "edge",
        server_name: sni,
        alpn: &[],
    }
}

fn route(upstream: &str) -> ConnectionAction {
    ConnectionAction::Route(upstream.to_string())
}

const POLICY: &str = r#"{
    "deny_clients": ["10.0.0.0/8"],
    "allow_clients": ["127.0.0.0/8", "::1/128"],
    "allow_sni": ["*.example.com", "a.test"],
    "routes": {"a.example.com": "backend-a", "*.b.example.com": "backend-b"},
    "default": "deny"
}"#;

#[test]
fn sni_policy_is_a_connection_plugin_and_decides() {
    let p = load("sni_policy.wasm", POLICY);
    assert_eq!(p.kind(), PluginKind::Connection);
    assert!(!p.wants_request() && !p.wants_response());
    let decide = |client, sni| p.on_connect(&info(client, sni)).unwrap();
    assert_eq!(
        decide("10.1.2.3:5000", Some("a.example.com")),
        ConnectionAction::Deny
    );
    assert_eq!(
        decide("192.0.2.1:5000", Some("a.example.com")),
        route("backend-a")
    );
    assert_eq!(
        decide("192.0.2.1:5000", Some("X.B.Example.com")),
        route("backend-b")
    );
    assert_eq!(
        decide("192.0.2.1:5000", Some("c.example.com")),
        ConnectionAction::Allow
    );
    assert_eq!(
        decide("192.0.2.1:5000", Some("a.test")),
        ConnectionAction::Allow
    );
    assert_eq!(
        decide("192.0.2.1:5000", Some("other.test")),
        ConnectionAction::Deny
    );
    assert_eq!(decide("192.0.2.1:5000", None), ConnectionAction::Deny);
    assert_eq!(decide("127.0.0.1:5000", None), ConnectionAction::Allow);
    assert_eq!(decide("[::1]:5000", None), ConnectionAction::Allow);
    // An IPv4 client of a dual-stack listener is matched as IPv4.
    assert_eq!(
        decide("[::ffff:10.0.0.1]:5000", Some("a.test")),
        ConnectionAction::Deny
    );
}

#[test]
fn sni_policy_refuses_a_bad_config_naming_the_key() {
    let e = LoadedPlugin::load(
        &plugin_config("sni_policy.wasm", r#"{"allow_clients": ["10.0.0.1/8"]}"#),
        1,
    )
    .err()
    .expect("a bad network must not load");
    assert!(matches!(e, PluginError::Init(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "init failed: allow_clients: \"10.0.0.1/8\" has bits set after the /8 prefix"
    );
}

#[test]
fn the_plugin_sees_what_the_listener_saw() {
    let p = load("connect_probe.wasm", r#"{"mode": "echo"}"#);
    let alpn = [b"h2".to_vec(), b"http/1.1".to_vec(), vec![0xff, b'x']];
    let seen = p
        .on_connect(&ConnectionInfo {
            client: addr("[::ffff:192.0.2.7]:40000"),
            listener: "edge",
            server_name: Some("A.Example.COM"),
            alpn: &alpn,
        })
        .unwrap();
    assert_eq!(
        seen,
        route("192.0.2.7|40000|edge|a.example.com|h2,http/1.1,\u{fffd}x")
    );
    let seen = p.on_connect(&info("[2001:db8::1]:1", None)).unwrap();
    assert_eq!(seen, route("2001:db8::1|1|edge|-|"));
}

#[test]
fn filters_and_connection_plugins_refuse_each_others_calls() {
    let filter = load("headers.wasm", "{}");
    assert_eq!(filter.kind(), PluginKind::Filter);
    let e = filter.on_connect(&info("127.0.0.1:1", None)).unwrap_err();
    assert!(matches!(e, PluginFailure::WrongKind(..)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "on-connect cannot be called on an HTTP filter plugin"
    );

    let conn = load("sni_policy.wasm", "{}");
    let mut instance = conn.acquire().unwrap();
    let (parts, ()) = http::Request::get("/x").body(()).unwrap().into_parts();
    let view = RequestView {
        parts,
        client: addr("127.0.0.1:1"),
        upstream: Arc::from("main"),
        upstream_override: None,
        cache: Default::default(),
        body: None,
    };
    let (view, result) = conn.on_request(&mut instance, view);
    assert_eq!(view.parts.uri.path(), "/x", "the view comes back");
    let e = result.expect_err("on-request on a connection plugin fails");
    assert_eq!(
        e.to_string(),
        "on-request cannot be called on a connection plugin"
    );
    // The instance is untouched and still answers on-connect.
    conn.release(instance);
    assert_eq!(
        conn.on_connect(&info("127.0.0.1:1", None)).unwrap(),
        ConnectionAction::Allow
    );
}

#[test]
fn a_trap_a_loop_or_a_memory_hog_fails_only_its_call() {
    let p = probe("allow", OnError::FailClosed, Isolation::Pooled);
    let e = p
        .on_connect(&info("127.0.0.1:1", Some("trap")))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "trapped: wasm trap: wasm `unreachable` instruction executed"
    );

    let started = Instant::now();
    let e = p
        .on_connect(&info("127.0.0.1:1", Some("spin")))
        .unwrap_err();
    assert!(matches!(e, PluginFailure::Timeout), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the 10 ms deadline stopped the loop after {:?}",
        started.elapsed()
    );

    // A generous deadline, so that the cap and not the clock stops the hog.
    let mut config = plugin_config("connect_probe.wasm", r#"{"mode": "hog"}"#);
    (config.memory_limit, config.timeout) = (16 << 20, Duration::from_secs(5));
    let hog = LoadedPlugin::load(&config, 1).unwrap();
    let e = hog.on_connect(&info("127.0.0.1:1", None)).unwrap_err();
    assert!(matches!(e, PluginFailure::MemoryLimit), "{e:?}");

    assert_eq!(
        p.on_connect(&info("127.0.0.1:1", None)).unwrap(),
        ConnectionAction::Allow
    );
}

#[test]
fn pooled_instances_are_reused_and_dropped_after_a_failure() {
    let p = probe("count", OnError::FailClosed, Isolation::Pooled);
    let call = |sni| p.on_connect(&info("127.0.0.1:1", sni));
    assert_eq!(call(None).unwrap(), route("1"));
    assert_eq!(call(None).unwrap(), route("2"));
    assert!(call(Some("trap")).is_err());
    // The instance that served 3 calls trapped and is gone: the next one is fresh.
    assert_eq!(call(None).unwrap(), route("1"));
}

#[test]
fn per_request_isolation_gives_each_connection_a_fresh_instance() {
    let p = probe("count", OnError::FailClosed, Isolation::PerRequest);
    for _ in 0..3 {
        assert_eq!(
            p.on_connect(&info("127.0.0.1:1", None)).unwrap(),
            route("1")
        );
    }
}

#[test]
fn on_error_decides_after_a_failure() {
    let known = |_: &str| true;
    let closed = probe("trap", OnError::FailClosed, Isolation::Pooled);
    assert_eq!(closed.on_error_action(), ConnectionAction::Deny);
    assert_eq!(
        closed.decide(&info("127.0.0.1:1", None), known),
        ConnectionAction::Deny
    );
    let open = probe("trap", OnError::FailOpen, Isolation::Pooled);
    assert_eq!(open.on_error_action(), ConnectionAction::Allow);
    assert_eq!(
        open.decide(&info("127.0.0.1:1", None), known),
        ConnectionAction::Allow
    );
    // A route to an upstream that does not exist is a failure too.
    let lost = probe("route-nowhere", OnError::FailClosed, Isolation::Pooled);
    let only_main = |name: &str| name == "main";
    assert_eq!(
        lost.decide(&info("127.0.0.1:1", None), only_main),
        ConnectionAction::Deny
    );
    assert_eq!(
        lost.decide(&info("127.0.0.1:1", Some("route-main")), only_main),
        route("main")
    );
}

#[test]
fn the_chain_asks_in_order_until_a_deny_or_a_route() {
    let allow = probe("allow", OnError::FailClosed, Isolation::Pooled);
    let deny = probe("deny", OnError::FailClosed, Isolation::Pooled);
    let to_alt = probe("route-alt", OnError::FailClosed, Isolation::Pooled);
    let broken_open = probe("trap", OnError::FailOpen, Isolation::Pooled);
    let broken_closed = probe("trap", OnError::FailClosed, Isolation::Pooled);
    let c = info("127.0.0.1:1", None);
    let known = |name: &str| name == "alt";
    let run = |chain: &[&Arc<LoadedPlugin>]| {
        let chain: Vec<Arc<LoadedPlugin>> = chain.iter().map(|p| Arc::clone(p)).collect();
        run_connection_chain(&chain, &c, known)
    };
    assert_eq!(run(&[]), ConnectionAction::Allow);
    assert_eq!(run(&[&allow, &allow]), ConnectionAction::Allow);
    assert_eq!(run(&[&allow, &to_alt, &deny]), route("alt"));
    assert_eq!(run(&[&allow, &deny, &to_alt]), ConnectionAction::Deny);
    assert_eq!(run(&[&broken_open, &to_alt]), route("alt"));
    assert_eq!(run(&[&broken_closed, &to_alt]), ConnectionAction::Deny);
}

#[test]
fn init_errors_refuse_the_plugin() {
    let e = LoadedPlugin::load(
        &plugin_config("connect_probe.wasm", r#"{"init_error": "no rules given"}"#),
        1,
    )
    .err()
    .expect("init failed");
    assert_eq!(e.to_string(), "init failed: no rules given");
}

/// Through a running proxy: `tcp` and `tls-passthrough` listeners with `plugins = [...]`.
mod through_the_proxy {
    use maitred_tests::l4::*;
    use maitred_tests::tls::*;
    use maitred_tests::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// A `tcp` listener "db" to upstream "echo-a" with connection plugins `chain` (raw TOML
    /// list items), upstreams "echo-a" and "echo-b", and plugin tables `plugins`.
    fn tcp_proxy(a: &TcpBackend, b: &TcpBackend, chain: &str, plugins: &str) -> Proxy {
        Proxy::start(&format!(
            r#"[runtime]
workers = 1
[[listener]]
name = "db"
listen = "127.0.0.1:0"
protocol = "tcp"
upstream = "echo-a"
plugins = [{chain}]
[upstream.echo-a]
endpoints = ["{}"]
[upstream.echo-b]
endpoints = ["{}"]
{plugins}"#,
            a.addr, b.addr
        ))
    }

    /// The first line the backend sends through the proxy (its name), or the ending of a
    /// connection the proxy closed.
    async fn greeting(proxy: &Proxy) -> Result<String, Ending> {
        let mut s = connect(proxy.addr("db")).await;
        match tokio::time::timeout(Duration::from_secs(5), read_line(&mut s)).await {
            Ok(Ok(line)) if !line.is_empty() => Ok(line),
            _ => Err(read_until_closed(&mut s, Duration::from_secs(5)).await),
        }
    }

    async fn backends() -> (TcpBackend, TcpBackend) {
        (
            TcpBackend::greeting_echo("A").await,
            TcpBackend::greeting_echo("B").await,
        )
    }

    #[tokio::test]
    async fn deny_closes_the_connection_without_reaching_the_backend() {
        let (a, b) = backends().await;
        let policy = r#"
[plugin.policy]
wasm = "sni_policy.wasm"
config = { deny_clients = ["127.0.0.0/8"] }
"#;
        let proxy = tcp_proxy(&a, &b, "\"policy\"", policy);
        let ending = greeting(&proxy)
            .await
            .expect_err("the connection is refused");
        assert!(ending.is_closed_empty(), "{ending:?}");
        assert_eq!((a.connections(), b.connections()), (0, 0));
    }

    #[tokio::test]
    async fn allow_uses_the_listeners_upstream() {
        let (a, b) = backends().await;
        let policy = r#"
[plugin.policy]
wasm = "sni_policy.wasm"
config = { allow_clients = ["127.0.0.0/8", "::1/128"], deny_clients = ["10.0.0.0/8"], default = "deny" }
"#;
        let proxy = tcp_proxy(&a, &b, "\"policy\"", policy);
        for _ in 0..3 {
            assert_eq!(greeting(&proxy).await.unwrap(), "A");
        }
        assert_eq!((a.connections(), b.connections()), (3, 0));
    }

    #[tokio::test]
    async fn route_picks_the_named_upstream() {
        let (a, b) = backends().await;
        let plugins = r#"
[plugin.to-b]
wasm = "connect_probe.wasm"
config = { mode = "route-echo-b" }
"#;
        let proxy = tcp_proxy(&a, &b, "\"to-b\"", plugins);
        let mut s = connect(proxy.addr("db")).await;
        assert_eq!(read_line(&mut s).await.unwrap(), "B");
        s.write_all(b"ping\n").await.unwrap();
        assert_eq!(read_line(&mut s).await.unwrap(), "ping");
        assert_eq!((a.connections(), b.connections()), (0, 1));
    }

    #[tokio::test]
    async fn the_chain_runs_in_order_and_the_first_deny_or_route_wins() {
        let (a, b) = backends().await;
        let plugins = r#"
[plugin.open]
wasm = "connect_probe.wasm"
[plugin.to-b]
wasm = "connect_probe.wasm"
config = { mode = "route-echo-b" }
[plugin.closed]
wasm = "connect_probe.wasm"
config = { mode = "deny" }
"#;
        let routed = tcp_proxy(&a, &b, "\"open\", \"to-b\", \"closed\"", plugins);
        assert_eq!(greeting(&routed).await.unwrap(), "B");
        let denied = tcp_proxy(&a, &b, "\"open\", \"closed\", \"to-b\"", plugins);
        assert!(greeting(&denied).await.unwrap_err().is_closed_empty());
        assert_eq!((a.connections(), b.connections()), (0, 1));
    }

    #[tokio::test]
    async fn a_failing_plugin_follows_on_error() {
        let (a, b) = backends().await;
        let plugins = r#"
[plugin.trap-closed]
wasm = "connect_probe.wasm"
config = { mode = "trap" }
on_error = "fail-closed"
[plugin.trap-open]
wasm = "connect_probe.wasm"
config = { mode = "trap" }
on_error = "fail-open"
[plugin.spin-open]
wasm = "connect_probe.wasm"
config = { mode = "spin" }
on_error = "fail-open"
[plugin.lost]
wasm = "connect_probe.wasm"
config = { mode = "route-no-such-upstream" }
"#;
        let closed = tcp_proxy(&a, &b, "\"trap-closed\"", plugins);
        for _ in 0..2 {
            assert!(greeting(&closed).await.unwrap_err().is_closed_empty());
        }
        // A route to an upstream the config does not have is a failure (fail-closed here).
        let lost = tcp_proxy(&a, &b, "\"lost\"", plugins);
        assert!(greeting(&lost).await.unwrap_err().is_closed_empty());
        assert_eq!(a.connections(), 0);
        let open = tcp_proxy(&a, &b, "\"trap-open\", \"spin-open\"", plugins);
        for _ in 0..2 {
            assert_eq!(greeting(&open).await.unwrap(), "A");
        }
        assert_eq!((a.connections(), b.connections()), (2, 0));
    }

    /// Two TLS echo backends behind a `tls-passthrough` listener that routes by its own
    /// `sni` table, with `sni-policy` in front of it.
    #[tokio::test]
    async fn sni_policy_on_passthrough_denies_and_reroutes_by_server_name() {
        let ca = Ca::new("conn-plugins-ca");
        let a_cert = ca.server_cert(&["a.example.com", "special.b.example.com"]);
        let b_cert = ca.server_cert(&["*.b.example.com"]);
        let a = TlsServer::echo("backend-a", server_config(&a_cert, None, &[])).await;
        let b = TlsServer::echo("backend-b", server_config(&b_cert, None, &[])).await;
        let proxy = Proxy::start(&format!(
            r#"[runtime]
workers = 1
[[listener]]
name = "edge"
listen = "127.0.0.1:0"
protocol = "tls-passthrough"
sni = {{ "a.example.com" = "backend-a", "*.b.example.com" = "backend-b" }}
plugins = ["policy"]
[upstream.backend-a]
endpoints = ["{}"]
[upstream.backend-b]
endpoints = ["{}"]
[plugin.policy]
wasm = "sni_policy.wasm"
config = {{ deny_sni = ["blocked.b.example.com"], routes = {{ "special.b.example.com" = "backend-a" }} }}
"#,
            a.addr(),
            b.addr()
        ));
        let client = ClientTls::trusting(&ca).alpn(&["h2"]);
        let hello = |name: &'static str| {
            let client = &client;
            let proxy = &proxy;
            async move {
                let mut tls = client.connect(proxy.addr("edge"), name).await?;
                let greeting = read_line(&mut tls).await?;
                let cert = Negotiated::of(&tls).peer_cert.expect("a certificate");
                Ok::<_, std::io::Error>((greeting, cert))
            }
        };
        // Allowed, routed by the listener's own table.
        let (greeting, cert) = hello("x.b.example.com").await.unwrap();
        assert_eq!(greeting, "backend-b sni=x.b.example.com");
        assert!(cert == b_cert.der);
        // Rerouted by the plugin: the client sees backend A's certificate.
        let (greeting, cert) = hello("special.b.example.com").await.unwrap();
        assert_eq!(greeting, "backend-a sni=special.b.example.com");
        assert!(cert == a_cert.der);
        // Denied by name: no handshake, and backend B never sees the connection.
        let before = b.tcp.connections();
        assert!(hello("blocked.b.example.com").await.is_err());
        assert_eq!(b.tcp.connections(), before);
        assert_eq!((a.tcp.connections(), b.tcp.connections()), (1, 1));
    }
}
