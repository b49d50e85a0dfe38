//! WebSocket through the proxy: L7 upgrades on `http` and `https` listeners (through the
//! route's plugins), and L4 on `tcp` listeners. (Over `tls-passthrough`: see `tls.rs`.)

use maitred_tests::l4::connect;
use maitred_tests::tls::{Ca, ClientTls, Negotiated};
use maitred_tests::ws::WsBackend;
use maitred_tests::*;

const PLUGINS: &str = r#"
[plugin.tag]
wasm = "headers.wasm"
config = { request = { set = { "x-ws-plugin" = "seen" } } }
[plugin.guard]
wasm = "respond.wasm"
config = { rules = [ { path_prefix = "/blocked", status = 403, body = "no" } ] }
"#;

/// An `http` listener "web" (and `https_listener`, raw TOML, if any) with one route through
/// the `tag` and `guard` plugins to `backend`.
fn l7_proxy(backend: &WsBackend, https_listener: &str) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{https_listener}\n\
         [[route]]\nupstream = \"ws\"\nplugins = [\"tag\", \"guard\"]\n[upstream.ws]\nendpoints = [\"{}\"]\n{PLUGINS}",
        backend.tcp.addr
    ))
}

#[tokio::test]
async fn websocket_over_l7_http_passes_through_plugins() {
    let backend = WsBackend::start("ws").await;
    let proxy = l7_proxy(&backend, "");
    let tcp = connect(proxy.addr("web")).await;
    let mut socket = ws::client("ws://chat.example.com/chat?room=1", tcp)
        .await
        .unwrap();
    ws::echo_round_trip(&mut socket).await;
    let hs = backend.handshakes();
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].uri, "/chat?room=1");
    assert_eq!(hs[0].header("host"), "chat.example.com");
    assert_eq!(
        hs[0].header("x-ws-plugin"),
        "seen",
        "the upgrade request should pass through the route's plugins"
    );
    assert!(hs[0].header("upgrade").eq_ignore_ascii_case("websocket"));
    assert_eq!(hs[0].header("x-forwarded-proto"), "http");
    // Several sockets at once through one proxy.
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let tcp = connect(proxy.addr("web")).await;
        sockets.push(ws::client("ws://chat.example.com/chat", tcp).await.unwrap());
    }
    for s in &mut sockets {
        ws::echo_round_trip(s).await;
    }
}

#[tokio::test]
async fn websocket_upgrade_answered_by_a_plugin_never_reaches_the_backend() {
    let backend = WsBackend::start("ws").await;
    let proxy = l7_proxy(&backend, "");
    let tcp = connect(proxy.addr("web")).await;
    let e = ws::client("ws://chat.example.com/blocked", tcp)
        .await
        .expect_err("the guard plugin answers 403");
    assert!(e.contains("403"), "{e}");
    assert_eq!(backend.tcp.connections(), 0);
}

#[tokio::test]
async fn websocket_over_l7_https() {
    let backend = WsBackend::start("ws").await;
    let dir = TempDir::new("wss");
    let ca = Ca::new("wss-ca");
    let site = ca.server_cert(&["chat.example.com"]);
    let (pem, key) = site.write(&dir, "site");
    let proxy = l7_proxy(
        &backend,
        &format!(
            "[[listener]]\nname = \"web-tls\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"https\"\n\
             certificates = [ {{ cert = {}, key = {} }} ]\n",
            toml_path(&pem),
            toml_path(&key)
        ),
    );
    // WebSocket upgrades are HTTP/1.1: the client offers only http/1.1.
    let tls = ClientTls::trusting(&ca)
        .alpn(&["http/1.1"])
        .connect(proxy.addr("web-tls"), "chat.example.com")
        .await
        .expect("handshake");
    assert!(Negotiated::of(&tls).peer_cert.unwrap() == site.der);
    let mut socket = ws::client("wss://chat.example.com/secure", tls)
        .await
        .unwrap();
    ws::echo_round_trip(&mut socket).await;
    let hs = backend.handshakes();
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].uri, "/secure");
    assert_eq!(hs[0].header("x-ws-plugin"), "seen");
    assert_eq!(hs[0].header("x-forwarded-proto"), "https");
}

#[tokio::test]
async fn websocket_over_l4_tcp() {
    let backend = WsBackend::start("ws").await;
    let proxy = Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"raw\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tcp\"\nupstream = \"ws\"\n\
         [upstream.ws]\nendpoints = [\"{}\"]\n",
        backend.tcp.addr
    ));
    let tcp = connect(proxy.addr("raw")).await;
    let mut socket = ws::client("ws://chat.example.com/raw", tcp).await.unwrap();
    ws::echo_round_trip(&mut socket).await;
    let hs = backend.handshakes();
    assert_eq!(hs.len(), 1);
    // L4: the handshake is the client's, byte for byte (no forwarding headers added).
    assert_eq!(hs[0].header("x-forwarded-for"), "");
}
