//! TLS: passthrough routed by SNI (the proxy never decrypts), termination on `https`
//! listeners (certificates by SNI, ALPN, versions, client certificates, config errors), and
//! upstream TLS (bridging: verification, client certificates, pooling by identity).

use maitred_tests::l4::{Ending, connect, read_line, read_until_closed};
use maitred_tests::tls::*;
use maitred_tests::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------
// Passthrough
// ---------------------------------------------------------------------------------------

/// Two TLS echo backends with their own certificates behind a `tls-passthrough` listener.
struct Passthrough {
    ca: Ca,
    a_cert: Leaf,
    b_cert: Leaf,
    a: TlsServer,
    b: TlsServer,
    proxy: Proxy,
}

/// `listener_extra` goes into the listener table (e.g. `default_upstream = "backend-a"`).
async fn passthrough(listener_extra: &str, upstream_extra: &str) -> Passthrough {
    let ca = Ca::new("passthrough-ca");
    // A also answers for a name no SNI rule matches, and for 127.0.0.1 (no SNI at all), so
    // a verifying client can reach it through default_upstream.
    let a_cert = ca.server_cert(&["a.example.com", "other.example.org", "127.0.0.1"]);
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
{listener_extra}
[upstream.backend-a]
endpoints = ["{}"]
{upstream_extra}
[upstream.backend-b]
endpoints = ["{}"]
"#,
        a.addr(),
        b.addr()
    ));
    Passthrough {
        ca,
        a_cert,
        b_cert,
        a,
        b,
        proxy,
    }
}

/// Handshakes through the proxy as `server_name` (verifying against the test CA), checks
/// the certificate is `expected`'s, reads the backend's greeting and echoes a message.
async fn through_passthrough(
    p: &Passthrough,
    client: &ClientTls,
    server_name: &str,
    expected: &Leaf,
) -> String {
    let mut tls = client
        .connect(p.proxy.addr("edge"), server_name)
        .await
        .unwrap_or_else(|e| panic!("handshake for {server_name:?} through the proxy: {e}"));
    let seen = Negotiated::of(&tls);
    let cert = seen.peer_cert.expect("a server certificate");
    assert!(
        cert == expected.der,
        "{server_name:?}: the client should see the backend's own certificate ({:?})",
        expected.names
    );
    assert!(Leaf::der_names(&cert, &expected.names[0]));
    let greeting = read_line(&mut tls).await.expect("greeting");
    tls.write_all(b"ping over tls\n").await.unwrap();
    tls.flush().await.unwrap();
    assert_eq!(read_line(&mut tls).await.unwrap(), "ping over tls");
    greeting
}

#[tokio::test]
async fn passthrough_routes_by_exact_and_wildcard_sni() {
    let p = passthrough("", "").await;
    let client = ClientTls::trusting(&p.ca);
    for _ in 0..2 {
        assert_eq!(
            through_passthrough(&p, &client, "a.example.com", &p.a_cert).await,
            "backend-a sni=a.example.com"
        );
        assert_eq!(
            through_passthrough(&p, &client, "x.b.example.com", &p.b_cert).await,
            "backend-b sni=x.b.example.com"
        );
    }
    assert_eq!((p.a.tcp.connections(), p.b.tcp.connections()), (2, 2));
    // The client's SNI and ALPN reach the backend unchanged (the proxy did not terminate).
    let alpn_client = ClientTls::trusting(&p.ca).alpn(&["h2", "http/1.1"]);
    through_passthrough(&p, &alpn_client, "y.b.example.com", &p.b_cert).await;
    let last = p.b.accepted().pop().unwrap();
    assert_eq!(last.sni.as_deref(), Some("y.b.example.com"));
}

#[tokio::test]
async fn passthrough_unknown_or_missing_sni_goes_to_the_default() {
    let p = passthrough("default_upstream = \"backend-a\"", "").await;
    let client = ClientTls::trusting(&p.ca);
    assert_eq!(
        through_passthrough(&p, &client, "other.example.org", &p.a_cert).await,
        "backend-a sni=other.example.org"
    );
    // An IP address as the server name: the ClientHello carries no SNI at all.
    assert_eq!(
        through_passthrough(&p, &client, "127.0.0.1", &p.a_cert).await,
        "backend-a sni=-"
    );
    assert_eq!(p.b.tcp.connections(), 0);
}

#[tokio::test]
async fn passthrough_without_default_closes_unknown_and_missing_sni() {
    let p = passthrough("", "").await;
    let client = ClientTls::trusting(&p.ca);
    for name in ["other.example.org", "127.0.0.1"] {
        let started = Instant::now();
        let r = client.connect(p.proxy.addr("edge"), name).await;
        assert!(r.is_err(), "{name}: the handshake should fail");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: not closed promptly"
        );
    }
    assert_eq!((p.a.tcp.connections(), p.b.tcp.connections()), (0, 0));
}

#[tokio::test]
async fn passthrough_closes_a_silent_client_after_preread_timeout() {
    let p = passthrough("preread_timeout = \"300ms\"", "").await;
    let started = Instant::now();
    let mut s = connect(p.proxy.addr("edge")).await;
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(ending.is_closed_empty(), "{ending:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}, expected about 300ms"
    );
    // A partial ClientHello that never completes is closed too.
    let mut s = connect(p.proxy.addr("edge")).await;
    s.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01])
        .await
        .unwrap();
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(ending.is_closed_empty(), "{ending:?}");
    assert_eq!((p.a.tcp.connections(), p.b.tcp.connections()), (0, 0));
}

#[tokio::test]
async fn passthrough_client_hello_in_pieces_still_routes() {
    let p = passthrough("", "").await;
    // (1-byte writes, records of at most 64 bytes)
    for (trickle, fragment) in [(true, None), (false, Some(64)), (true, Some(64))] {
        let mut client = ClientTls::trusting(&p.ca);
        if let Some(size) = fragment {
            client = client.max_fragment(size);
        }
        let tcp = connect(p.proxy.addr("edge")).await;
        let bytes = if trickle { 4096 } else { 0 };
        let stream = Trickle::new(tcp, bytes, Duration::from_millis(1));
        let mut tls = client
            .handshake(stream, "x.b.example.com")
            .await
            .unwrap_or_else(|e| {
                panic!("trickled={trickle} fragment={fragment:?}: handshake failed: {e}")
            });
        let cert = Negotiated::of(&tls).peer_cert.unwrap();
        assert!(cert == p.b_cert.der);
        assert_eq!(
            read_line(&mut tls).await.unwrap(),
            "backend-b sni=x.b.example.com",
            "trickled={trickle} fragment={fragment:?}"
        );
    }
}

#[tokio::test]
async fn passthrough_sends_proxy_protocol_before_the_client_hello() {
    let ca = Ca::new("pp-ca");
    let cert = ca.server_cert(&["a.example.com"]);
    let n = "backend-a".to_string();
    let backend = TlsServer::start(
        "backend-a",
        server_config(&cert, None, &[]),
        true,
        Arc::new(move |mut tls: ServerTls| {
            let n = n.clone();
            Box::pin(async move {
                let _ = tls.write_all(format!("{n}\n").as_bytes()).await;
                let _ = tls.flush().await;
                let mut rest = Vec::new();
                let _ = tls.read_to_end(&mut rest).await;
            })
        }),
    )
    .await;
    let proxy = Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"edge\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tls-passthrough\"\n\
         sni = {{ \"a.example.com\" = \"backend-a\" }}\n[upstream.backend-a]\nendpoints = [\"{}\"]\nproxy_protocol = \"v1\"\n",
        backend.addr()
    ));
    let tcp = connect(proxy.addr("edge")).await;
    let client_addr = tcp.local_addr().unwrap();
    let mut tls = ClientTls::trusting(&ca)
        .handshake(tcp, "a.example.com")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "handshake: {e}; headers seen: {:?}",
                backend.tcp.proxy_headers()
            )
        });
    assert_eq!(read_line(&mut tls).await.unwrap(), "backend-a");
    let seen = backend.tcp.proxy_headers();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].is_v1(), "{seen:?}");
    assert_eq!(
        seen[0].header,
        Ok(maitred::listener::proxy_protocol::Header::Proxied {
            source: client_addr,
            destination: proxy.addr("edge"),
        })
    );
}

#[tokio::test]
async fn passthrough_carries_a_websocket() {
    let ca = Ca::new("ws-ca");
    let cert = ca.server_cert(&["ws.example.com"]);
    let handshakes: ws::Handshakes = Default::default();
    let seen = handshakes.clone();
    let backend = TlsServer::start(
        "ws",
        server_config(&cert, None, &["http/1.1"]),
        false,
        Arc::new(move |tls: ServerTls| Box::pin(ws::serve_echo(tls, seen.clone()))),
    )
    .await;
    let proxy = Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"edge\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tls-passthrough\"\n\
         sni = {{ \"ws.example.com\" = \"ws\" }}\n[upstream.ws]\nendpoints = [\"{}\"]\n",
        backend.addr()
    ));
    let tls = ClientTls::trusting(&ca)
        .alpn(&["http/1.1"])
        .connect(proxy.addr("edge"), "ws.example.com")
        .await
        .expect("handshake through the proxy");
    assert!(Negotiated::of(&tls).peer_cert.unwrap() == cert.der);
    let mut socket = ws::client("wss://ws.example.com/live", tls).await.unwrap();
    ws::echo_round_trip(&mut socket).await;
    let hs = handshakes.lock().unwrap().clone();
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].uri, "/live");
}

// ---------------------------------------------------------------------------------------
// Termination
// ---------------------------------------------------------------------------------------

/// An `https` listener with two certificates (`a.example.com`, `*.b.example.com`) in front
/// of an HTTP backend.
struct Terminating {
    ca: Ca,
    site_a: Leaf,
    site_b: Leaf,
    backend: Backend,
    proxy: Proxy,
    _dir: TempDir,
}

/// `listener_extra` goes into the listener table; `write_extra` may add files to the folder
/// and returns more listener lines.
async fn terminating(listener_extra: impl FnOnce(&TempDir) -> String) -> Terminating {
    let dir = TempDir::new("https");
    let ca = Ca::new("site-ca");
    let site_a = ca.server_cert(&["a.example.com"]);
    let site_b = ca.server_cert(&["*.b.example.com"]);
    let (a_pem, a_key) = site_a.write(&dir, "site-a");
    let (b_pem, b_key) = site_b.write(&dir, "site-b");
    let backend = Backend::start("app").await;
    let extra = listener_extra(&dir);
    let proxy = Proxy::start(&format!(
        r#"[runtime]
workers = 1
[[listener]]
name = "web-tls"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [ {{ cert = {}, key = {} }}, {{ cert = {}, key = {} }} ]
{extra}
[[route]]
upstream = "app"
[upstream.app]
endpoints = ["{}"]
"#,
        toml_path(&a_pem),
        toml_path(&a_key),
        toml_path(&b_pem),
        toml_path(&b_key),
        backend.addr
    ));
    Terminating {
        ca,
        site_a,
        site_b,
        backend,
        proxy,
        _dir: dir,
    }
}

fn expect_ok(r: Result<HttpsReply, String>, what: &str) -> HttpsReply {
    let r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.reply.status, 200, "{what}: {}", r.reply.body);
    assert_eq!(r.reply.header("x-backend"), "app", "{what}");
    r
}

#[tokio::test]
async fn https_picks_the_certificate_by_sni() {
    let t = terminating(|_| String::new()).await;
    let addr = t.proxy.addr("web-tls");
    for (name, leaf) in [
        ("a.example.com", &t.site_a),
        ("x.b.example.com", &t.site_b),
        ("y.b.example.com", &t.site_b),
    ] {
        let client = ClientTls::trusting(&t.ca).alpn(&["http/1.1"]);
        let r = expect_ok(https_get(addr, name, &client, "/where", &[]).await, name);
        assert!(
            r.tls.peer_cert.as_ref() == Some(&leaf.der),
            "{name}: wrong certificate"
        );
        assert!(Leaf::der_names(
            r.tls.peer_cert.as_ref().unwrap(),
            &leaf.names[0]
        ));
        let seen = r.reply.body.to_lowercase();
        assert!(seen.starts_with("get /where http/1.1"), "{seen}");
        assert!(seen.contains(&format!("host: {name}\n")), "{seen}");
        assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
    }
    // Unknown SNI and no SNI: the first certificate is the default.
    for name in ["unknown.example.org", "127.0.0.1"] {
        let client = ClientTls::insecure().alpn(&["http/1.1"]);
        let r = expect_ok(https_get(addr, name, &client, "/", &[]).await, name);
        assert!(
            r.tls.peer_cert.as_ref() == Some(&t.site_a.der),
            "{name}: the default certificate is the first one"
        );
    }
}

#[tokio::test]
async fn https_negotiates_h2_by_alpn() {
    let t = terminating(|_| String::new()).await;
    let client = ClientTls::trusting(&t.ca).alpn(&["h2", "http/1.1"]);
    let r = expect_ok(
        https_get(
            t.proxy.addr("web-tls"),
            "a.example.com",
            &client,
            "/h2",
            &[],
        )
        .await,
        "h2",
    );
    assert_eq!(r.tls.alpn_str(), "h2");
    let seen = r.reply.body.to_lowercase();
    assert!(seen.contains("host: a.example.com\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
}

#[tokio::test]
async fn https_serves_http11_with_or_without_alpn() {
    let t = terminating(|_| String::new()).await;
    for (alpn, expected) in [(&["http/1.1"][..], "http/1.1"), (&[][..], "")] {
        let client = ClientTls::trusting(&t.ca).alpn(alpn);
        let r = expect_ok(
            https_get(t.proxy.addr("web-tls"), "a.example.com", &client, "/", &[]).await,
            &format!("alpn {alpn:?}"),
        );
        assert_eq!(r.tls.alpn_str(), expected);
        assert!(r.reply.body.contains("x-forwarded-proto: https\n"));
    }
    assert_eq!(t.backend.requests(), 2);
}

#[tokio::test]
async fn https_speaks_tls_12_and_13_only() {
    let t = terminating(|_| String::new()).await;
    let addr = t.proxy.addr("web-tls");
    let r = expect_ok(
        https_get(addr, "a.example.com", &ClientTls::trusting(&t.ca), "/", &[]).await,
        "default client",
    );
    assert!(
        matches!(
            r.tls.version,
            Some(rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2)
        ),
        "{:?}",
        r.tls.version
    );
    let r = expect_ok(
        https_get(
            addr,
            "a.example.com",
            &ClientTls::trusting(&t.ca).tls12_only(),
            "/",
            &[],
        )
        .await,
        "TLS 1.2 client",
    );
    assert_eq!(r.tls.version, Some(rustls::ProtocolVersion::TLSv1_2));
    // A TLS 1.0/1.1-only ClientHello (hand-made: rustls cannot send one) gets no handshake.
    let mut s = connect(addr).await;
    s.write_all(&legacy_client_hello(0x0302)).await.unwrap();
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let got = match &ending {
        Ending::Eof(b) | Ending::Error(b, _) | Ending::StillOpen(b) => b.clone(),
    };
    assert!(ending.is_closed(), "{ending:?}");
    // Either nothing or an alert record (content type 21), never a ServerHello (22).
    assert!(got.is_empty() || got[0] == 21, "TLS 1.1 answered: {got:?}");
}

/// A minimal ClientHello offering only `version` (e.g. 0x0302 = TLS 1.1), SNI a.example.com.
fn legacy_client_hello(version: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    let suites: [u16; 4] = [0xc02b, 0xc02f, 0xc013, 0x002f];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let name = b"a.example.com";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    // supported groups + ec point formats, as old clients send
    ext.extend_from_slice(&[0, 10, 0, 4, 0, 2, 0, 23]);
    ext.extend_from_slice(&[0, 11, 0, 2, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![22u8, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// A terminating proxy requiring client certificates from a client CA.
async fn mtls() -> (Terminating, Ca) {
    let clients = Ca::new("clients-ca");
    let pem = clients.pem.clone();
    let t = terminating(move |dir| {
        let path = dir.write("clients-ca.pem", &pem);
        format!("client_ca = {}", toml_path(&path))
    })
    .await;
    (t, clients)
}

#[tokio::test]
async fn https_mtls_accepts_a_client_certificate_from_the_client_ca() {
    let (t, clients) = mtls().await;
    let alice = clients.client_cert("alice");
    for client in [
        ClientTls::trusting(&t.ca).identity(&alice),
        ClientTls::trusting(&t.ca).identity(&alice).tls12_only(),
        ClientTls::trusting(&t.ca)
            .identity(&alice)
            .alpn(&["h2", "http/1.1"]),
    ] {
        expect_ok(
            https_get(t.proxy.addr("web-tls"), "a.example.com", &client, "/", &[]).await,
            "client with a good certificate",
        );
    }
    assert_eq!(t.backend.requests(), 3);
}

#[tokio::test]
async fn https_mtls_rejects_missing_or_foreign_client_certificates() {
    let (t, _clients) = mtls().await;
    let stranger = Ca::new("other-ca").client_cert("mallory");
    for (what, client) in [
        ("no certificate", ClientTls::trusting(&t.ca)),
        (
            "no certificate, TLS 1.2",
            ClientTls::trusting(&t.ca).tls12_only(),
        ),
        (
            "certificate from another CA",
            ClientTls::trusting(&t.ca).identity(&stranger),
        ),
        (
            "certificate from another CA, TLS 1.2",
            ClientTls::trusting(&t.ca).identity(&stranger).tls12_only(),
        ),
    ] {
        // With TLS 1.3 the client finishes its side first; the server's alert then ends the
        // connection before any response.
        let r = https_get(t.proxy.addr("web-tls"), "a.example.com", &client, "/", &[]).await;
        assert!(r.is_err(), "{what}: expected a failed handshake, got {r:?}");
    }
    assert_eq!(t.backend.requests(), 0);
}

/// `maitred check` on a config with an `https` listener whose certificates are `certs`
/// (`(cert, key)` TOML values); returns the error text. The same config must also fail
/// `Config::from_toml` + `Snapshot::build`.
fn https_config_error(dir: &TempDir, certs: &[(String, String)], extra: &str) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|(c, k)| format!("{{ cert = {c}, key = {k} }}"))
        .collect();
    let text = format!(
        "[[listener]]\nname = \"web-tls\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"https\"\ncertificates = [{}]\n{extra}\n\
         [[route]]\nupstream = \"app\"\n[upstream.app]\nendpoints = [\"127.0.0.1:9\"]\n",
        list.join(", ")
    );
    let path = dir.write("maitred.toml", &text);
    let direct = maitred::Config::from_toml(&text, &path)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            maitred::Snapshot::build(&c, None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    assert!(direct.is_err(), "from_toml + Snapshot::build accepted it");
    let e = maitred::check(&path)
        .expect_err("check accepted it")
        .to_string();
    assert!(
        e.starts_with(&path.display().to_string()),
        "error does not name the config file: {e}"
    );
    e
}

#[tokio::test]
async fn https_config_rejects_mismatched_and_missing_files() {
    let dir = TempDir::new("https-errors");
    let ca = Ca::new("ca");
    let (a_pem, a_key) = ca.server_cert(&["a.example.com"]).write(&dir, "site-a");
    let (b_pem, b_key) = ca.server_cert(&["b.example.com"]).write(&dir, "site-b");
    // A good pair first, so the error must point at the second entry.
    let good = (toml_path(&a_pem), toml_path(&a_key));

    let e = https_config_error(
        &dir,
        &[good.clone(), (toml_path(&b_pem), toml_path(&a_key))],
        "",
    );
    assert!(e.contains("listener[0].certificates[1]"), "{e}");
    assert!(
        e.contains("site-a.key") || e.contains("site-b.pem"),
        "mismatch error should name a file: {e}"
    );

    let e = https_config_error(
        &dir,
        &[
            good.clone(),
            (toml_path(&dir.path.join("missing.pem")), toml_path(&b_key)),
        ],
        "",
    );
    assert!(e.contains("listener[0].certificates[1].cert"), "{e}");
    assert!(e.contains("missing.pem"), "{e}");

    let e = https_config_error(
        &dir,
        &[
            good.clone(),
            (toml_path(&b_pem), toml_path(&dir.path.join("missing.key"))),
        ],
        "",
    );
    assert!(e.contains("listener[0].certificates[1].key"), "{e}");
    assert!(e.contains("missing.key"), "{e}");

    let junk = dir.write(
        "junk.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let e = https_config_error(&dir, &[(toml_path(&junk), toml_path(&a_key))], "");
    assert!(e.contains("listener[0].certificates[0].cert"), "{e}");
    assert!(e.contains("junk.pem"), "{e}");

    let e = https_config_error(
        &dir,
        &[good],
        &format!("client_ca = {}", toml_path(&dir.path.join("no-ca.pem"))),
    );
    assert!(e.contains("listener[0].client_ca"), "{e}");
    assert!(e.contains("no-ca.pem"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Bridging (TLS to the upstream)
// ---------------------------------------------------------------------------------------

/// A plain-HTTP listener "web" with one route to upstream "secure" at `backend`, whose
/// `tls` table is `tls`, plus `more` raw TOML.
fn bridging_proxy(backend: SocketAddr, tls: &str, more: &str) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nupstream = \"secure\"\n[upstream.secure]\nendpoints = [\"{backend}\"]\ntls = {tls}\n{more}\n"
    ))
}

fn echo_handler() -> Handler {
    Arc::new(|req| Box::pin(async move { echo(req).await }))
}

/// An HTTPS backend for `backend.internal` signed by a fresh internal CA, and a folder with
/// `internal-ca.pem`.
async fn secure_backend(client_ca: Option<&Ca>) -> (TlsHttpBackend, Ca, TempDir) {
    let dir = TempDir::new("bridging");
    let ca = Ca::new("internal-ca");
    ca.write(&dir, "internal-ca.pem");
    let cert = ca.server_cert(&["backend.internal"]);
    let backend = TlsServer::http(
        "secure",
        server_config(&cert, client_ca, &["h2", "http/1.1"]),
        echo_handler(),
    )
    .await;
    (backend, ca, dir)
}

#[tokio::test]
async fn bridging_with_the_right_ca_is_200() {
    let (backend, _ca, dir) = secure_backend(None).await;
    let proxy = bridging_proxy(
        backend.addr(),
        &format!(
            "{{ server_name = \"backend.internal\", ca = {} }}",
            toml_path(&dir.path.join("internal-ca.pem"))
        ),
        "",
    );
    let reply = get(
        &format!("{}/bridged", proxy.url("web")),
        &[("host", "shop.example.com")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-backend"), "secure");
    assert_eq!(reply.header("x-sni"), "backend.internal");
    let seen = reply.body.to_lowercase();
    assert!(seen.contains("/bridged"), "{seen}");
    assert!(seen.contains("host: shop.example.com\n"), "{seen}");
}

#[tokio::test]
async fn bridging_with_a_wrong_ca_or_name_is_502() {
    let (backend, _ca, dir) = secure_backend(None).await;
    let other = Ca::new("other-ca");
    let other_path = other.write(&dir, "other-ca.pem");
    let good_path = dir.path.join("internal-ca.pem");
    for (what, tls) in [
        (
            "wrong CA",
            format!(
                "{{ server_name = \"backend.internal\", ca = {} }}",
                toml_path(&other_path)
            ),
        ),
        (
            "wrong server name",
            format!(
                "{{ server_name = \"nope.internal\", ca = {} }}",
                toml_path(&good_path)
            ),
        ),
        (
            "system roots only",
            "{ server_name = \"backend.internal\" }".to_string(),
        ),
    ] {
        let proxy = bridging_proxy(backend.addr(), &tls, "");
        let reply = get(&format!("{}/", proxy.url("web")), &[]).await;
        assert_eq!(reply.status, 502, "{what}: {}", reply.body);
    }
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn bridging_with_verify_false_is_200() {
    let (backend, _ca, _dir) = secure_backend(None).await;
    let proxy = bridging_proxy(
        backend.addr(),
        "{ server_name = \"backend.internal\", verify = false }",
        "",
    );
    let reply = get(&format!("{}/", proxy.url("web")), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-backend"), "secure");
}

#[tokio::test]
async fn bridging_presents_a_client_certificate_when_configured() {
    let clients = Ca::new("upstream-clients-ca");
    let (backend, _ca, dir) = secure_backend(Some(&clients)).await;
    let (cert, key) = clients.client_cert("maitred").write(&dir, "client");
    let ca = toml_path(&dir.path.join("internal-ca.pem"));
    let with = bridging_proxy(
        backend.addr(),
        &format!(
            "{{ server_name = \"backend.internal\", ca = {ca}, client_cert = {}, client_key = {} }}",
            toml_path(&cert),
            toml_path(&key)
        ),
        "",
    );
    let reply = get(&format!("{}/", with.url("web")), &[]).await;
    assert_eq!(
        reply.status, 200,
        "with a client certificate: {}",
        reply.body
    );
    assert!(backend.server.accepted().iter().all(|a| a.client_cert));
    let served = backend.requests();
    let without = bridging_proxy(
        backend.addr(),
        &format!("{{ server_name = \"backend.internal\", ca = {ca} }}"),
        "",
    );
    let reply = get(&format!("{}/", without.url("web")), &[]).await;
    assert_eq!(
        reply.status, 502,
        "without a client certificate: {}",
        reply.body
    );
    assert_eq!(backend.requests(), served);
}

#[tokio::test]
async fn bridging_reuses_tls_connections() {
    let (backend, _ca, dir) = secure_backend(None).await;
    let proxy = bridging_proxy(
        backend.addr(),
        &format!(
            "{{ server_name = \"backend.internal\", ca = {} }}",
            toml_path(&dir.path.join("internal-ca.pem"))
        ),
        "",
    );
    let client = http1_client();
    for i in 0..6 {
        let req = http::Request::get(format!("{}/{i}", proxy.url("web")))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let reply = send(&client, req).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
    }
    assert_eq!(backend.requests(), 6);
    assert!(
        backend.connections() < 6,
        "{} TLS connections for 6 sequential requests: no reuse",
        backend.connections()
    );
}

#[tokio::test]
async fn bridging_speaks_h2_by_alpn_when_the_upstream_protocol_is_h2() {
    let (backend, _ca, dir) = secure_backend(None).await;
    let tls = format!(
        "{{ server_name = \"backend.internal\", ca = {} }}",
        toml_path(&dir.path.join("internal-ca.pem"))
    );
    // protocol = "h2": offered in ALPN, and used when the backend agrees.
    let proxy = bridging_proxy(backend.addr(), &tls, "protocol = \"h2\"");
    for i in 0..3 {
        let reply = get(&format!("{}/{i}", proxy.url("web")), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("x-alpn"), "h2", "ALPN with the upstream");
        assert!(reply.body.contains("HTTP/2.0"), "{}", reply.body);
    }
    assert_eq!(backend.connections(), 1, "one multiplexed h2 connection");
    // Default: HTTP/1.1 even though the backend offers h2.
    let proxy = bridging_proxy(backend.addr(), &tls, "");
    let reply = get(&format!("{}/", proxy.url("web")), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_ne!(reply.header("x-alpn"), "h2");
    assert!(reply.body.contains("HTTP/1.1"), "{}", reply.body);
}

#[tokio::test]
async fn bridging_pools_are_keyed_by_server_name() {
    let dir = TempDir::new("bridging-sni");
    let ca = Ca::new("internal-ca");
    let ca_path = ca.write(&dir, "internal-ca.pem");
    let cert = ca.server_cert(&["one.internal", "two.internal"]);
    let backend = TlsServer::http(
        "shared",
        server_config(&cert, None, &["http/1.1"]),
        echo_handler(),
    )
    .await;
    let ca = toml_path(&ca_path);
    let proxy = Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\npath_prefix = \"/one/\"\nupstream = \"one\"\n\
         [[route]]\npath_prefix = \"/two/\"\nupstream = \"two\"\n\
         [upstream.one]\nendpoints = [\"{a}\"]\ntls = {{ server_name = \"one.internal\", ca = {ca} }}\n\
         [upstream.two]\nendpoints = [\"{a}\"]\ntls = {{ server_name = \"two.internal\", ca = {ca} }}\n",
        a = backend.addr()
    ));
    let client = http1_client();
    for i in 0..3 {
        for name in ["one", "two"] {
            let req = http::Request::get(format!("{}/{name}/{i}", proxy.url("web")))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let reply = send(&client, req).await;
            assert_eq!(reply.status, 200, "{name} {i}: {}", reply.body);
            assert_eq!(
                reply.header("x-sni"),
                format!("{name}.internal"),
                "request {i} for upstream {name} went over a connection made for another name"
            );
        }
    }
    let snis: Vec<_> = backend
        .server
        .accepted()
        .into_iter()
        .map(|a| a.sni.unwrap_or_default())
        .collect();
    assert!(snis.contains(&"one.internal".to_string()), "{snis:?}");
    assert!(snis.contains(&"two.internal".to_string()), "{snis:?}");
    assert!(
        snis.len() < 6,
        "no reuse at all within each identity: {snis:?}"
    );
}

// ---------------------------------------------------------------------------------------
// More: limits on passthrough, https keep-alive, h2 multiplexing, PROXY protocol on https,
// stale pooled TLS connections.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn passthrough_closes_clients_that_do_not_speak_tls() {
    let p = passthrough("", "").await;
    let mut s = connect(p.proxy.addr("edge")).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(ending.is_closed_empty(), "{ending:?}");
    assert_eq!((p.a.tcp.connections(), p.b.tcp.connections()), (0, 0));
}

#[tokio::test]
async fn passthrough_enforces_max_connections() {
    let p = passthrough("max_connections = 1", "").await;
    let client = ClientTls::trusting(&p.ca);
    let mut first = client
        .connect(p.proxy.addr("edge"), "a.example.com")
        .await
        .expect("first connection");
    assert_eq!(
        read_line(&mut first).await.unwrap(),
        "backend-a sni=a.example.com"
    );
    let second = client
        .connect(p.proxy.addr("edge"), "x.b.example.com")
        .await;
    assert!(
        second.is_err(),
        "a second connection over max_connections = 1 was served"
    );
    assert_eq!(p.b.tcp.connections(), 0);
    // The first is unaffected.
    first.write_all(b"still here\n").await.unwrap();
    first.flush().await.unwrap();
    assert_eq!(read_line(&mut first).await.unwrap(), "still here");
}

#[tokio::test]
async fn passthrough_idle_timeout_closes() {
    let p = passthrough("idle_timeout = \"500ms\"", "").await;
    let mut tls = ClientTls::trusting(&p.ca)
        .connect(p.proxy.addr("edge"), "a.example.com")
        .await
        .expect("handshake");
    assert_eq!(
        read_line(&mut tls).await.unwrap(),
        "backend-a sni=a.example.com"
    );
    let quiet = Instant::now();
    let ending = read_until_closed(&mut tls, Duration::from_secs(5)).await;
    let took = quiet.elapsed();
    assert!(ending.is_closed(), "{ending:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "closed {took:?} after the last bytes, expected about 500ms"
    );
}

#[tokio::test]
async fn https_closes_a_silent_client_after_handshake_timeout() {
    let t = terminating(|_| "handshake_timeout = \"300ms\"".to_string()).await;
    let started = Instant::now();
    let mut s = connect(t.proxy.addr("web-tls")).await;
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(ending.is_closed_empty(), "{ending:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}, expected about 300ms"
    );
}

#[tokio::test]
async fn https_keeps_http11_connections_alive() {
    let t = terminating(|_| String::new()).await;
    let tls = ClientTls::trusting(&t.ca)
        .alpn(&["http/1.1"])
        .connect(t.proxy.addr("web-tls"), "a.example.com")
        .await
        .expect("handshake");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..5 {
        let req = http::Request::get(format!("/keep/{i}"))
            .header("host", "a.example.com")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .expect("timed out")
            .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection: {e}"));
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(&format!("/keep/{i}")));
    }
    assert_eq!(t.backend.requests(), 5);
}

#[tokio::test]
async fn https_h2_multiplexes_concurrent_requests() {
    let t = terminating(|_| String::new()).await;
    let client = ClientTls::trusting(&t.ca).alpn(&["h2", "http/1.1"]);
    let (sender, _) = h2_connect(t.proxy.addr("web-tls"), "x.b.example.com", &client)
        .await
        .unwrap();
    let requests = (0..20).map(|i| {
        let mut sender = sender.clone();
        async move {
            let req = http::Request::get(format!("https://x.b.example.com/stream/{i}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = sender.send_request(req).await.expect("h2 request");
            assert_eq!(resp.status(), 200, "stream {i}");
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            let body = String::from_utf8_lossy(&body).to_lowercase();
            assert!(body.starts_with(&format!("get /stream/{i} ")), "{body}");
            assert!(body.contains("host: x.b.example.com\n"), "{body}");
        }
    });
    tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all(requests),
    )
    .await
    .expect("h2 requests timed out");
    assert_eq!(t.backend.requests(), 20);
}

#[tokio::test]
async fn https_listener_accepts_proxy_protocol() {
    let t = terminating(|_| "accept_proxy_protocol = true".to_string()).await;
    let mut tcp = connect(t.proxy.addr("web-tls")).await;
    let mut header = Vec::new();
    maitred::listener::proxy_protocol::encode_v2(
        "203.0.113.9:5555".parse().unwrap(),
        "198.51.100.1:443".parse().unwrap(),
        &mut header,
    );
    tcp.write_all(&header).await.unwrap();
    let client = ClientTls::trusting(&t.ca).alpn(&["http/1.1"]);
    let r = expect_ok(
        https_get_on(tcp, "a.example.com", &client, "/", &[]).await,
        "https after a PROXY header",
    );
    let seen = r.reply.body.to_lowercase();
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9\n"),
        "the client address should come from the PROXY header: {seen}"
    );
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
}

#[tokio::test]
async fn bridging_survives_upstream_closing_tls_connections() {
    // A TLS backend that answers as if keeping the connection alive, then closes it at once.
    let dir = TempDir::new("bridging-close");
    let ca = Ca::new("internal-ca");
    let ca_path = ca.write(&dir, "internal-ca.pem");
    let cert = ca.server_cert(&["backend.internal"]);
    let backend = TlsServer::start(
        "closer",
        server_config(&cert, None, &["http/1.1"]),
        false,
        Arc::new(|mut tls: ServerTls| {
            Box::pin(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            })
        }),
    )
    .await;
    let proxy = bridging_proxy(
        backend.addr(),
        &format!(
            "{{ server_name = \"backend.internal\", ca = {} }}",
            toml_path(&ca_path)
        ),
        "",
    );
    let client = http1_client();
    for i in 0..20 {
        let req = http::Request::get(format!("{}/{i}", proxy.url("web")))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let reply = send(&client, req).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "ok"),
            "request {i}"
        );
    }
}
