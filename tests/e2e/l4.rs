//! TCP proxying (`protocol = "tcp"`): byte streams both ways, per-connection round-robin,
//! half-close, connect failures, PROXY protocol out and in, the connection cap and the idle
//! timeout.

use maitred::listener::proxy_protocol::{self, Header};
use maitred_tests::l4::*;
use maitred_tests::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy with one `tcp` listener "db" forwarding to upstream "u" over `endpoints`.
fn tcp_proxy(
    workers: usize,
    listener_extra: &str,
    endpoints: &[SocketAddr],
    upstream_extra: &str,
) -> Proxy {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    Proxy::start(&format!(
        "[runtime]\nworkers = {workers}\n\
         [[listener]]\nname = \"db\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tcp\"\nupstream = \"u\"\n{listener_extra}\n\
         [upstream.u]\nendpoints = [{}]\n{upstream_extra}\n",
        endpoints.join(", ")
    ))
}

/// Writes `msg` and reads exactly as many bytes back, within 5 s.
async fn round_trip(stream: &mut tokio::net::TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
        .await
        .expect("echo timed out")
        .expect("echo failed");
    back
}

/// Sends `len` bytes and reads them back concurrently, within 20 s.
async fn bulk_round_trip(stream: &mut tokio::net::TcpStream, len: usize) {
    let payload = pattern(len, len as u64);
    let (mut r, mut w) = stream.split();
    let write = async { w.write_all(&payload).await.unwrap() };
    let read = async {
        let mut back = vec![0u8; len];
        r.read_exact(&mut back).await.expect("bulk echo");
        back
    };
    let ((), back) =
        tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(write, read) })
            .await
            .expect("bulk echo timed out");
    assert!(back == payload, "bulk echo differs");
}

#[tokio::test]
async fn tcp_echo_carries_mebibytes_both_ways() {
    let backend = TcpBackend::echo("echo").await;
    let proxy = tcp_proxy(1, "", &[backend.addr], "");
    let stream = connect(proxy.addr("db")).await;
    let (mut r, mut w) = stream.into_split();
    const LEN: usize = 8 << 20;
    let payload = pattern(LEN, 42);
    let sent_hash = fnv1a(FNV_START, &payload);
    let writer = tokio::spawn(async move {
        for chunk in payload.chunks(61 * 1024) {
            w.write_all(chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let reader = async {
        let mut hash = FNV_START;
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = r.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            hash = fnv1a(hash, &buf[..n]);
            total += n;
        }
        (total, hash)
    };
    let (total, hash) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("transfer timed out");
    writer.await.unwrap();
    assert_eq!(total, LEN, "bytes echoed");
    assert_eq!(hash, sent_hash, "checksum of the echoed bytes");
    assert_eq!(backend.connections(), 1);
}

#[tokio::test]
async fn tcp_round_robin_per_connection() {
    let a = TcpBackend::greeting_echo("A").await;
    let b = TcpBackend::greeting_echo("B").await;
    let proxy = tcp_proxy(1, "", &[a.addr, b.addr], "");
    let mut seen = Vec::new();
    for i in 0..6 {
        let mut s = connect(proxy.addr("db")).await;
        let greeting = read_line(&mut s).await.expect("greeting");
        // Every byte of one connection goes to the same backend.
        for j in 0..3 {
            let msg = format!("conn {i} msg {j}");
            assert_eq!(round_trip(&mut s, msg.as_bytes()).await, msg.as_bytes());
        }
        seen.push(greeting);
    }
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "connections do not alternate between backends: {seen:?}"
    );
    assert_eq!((a.connections(), b.connections()), (3, 3), "{seen:?}");
}

#[tokio::test]
async fn tcp_half_close_client_to_backend() {
    // The backend reads until the client's FIN, then answers with a summary and more bytes.
    let backend = TcpBackend::start_with(
        "sink",
        false,
        Arc::new(|mut c: Conn| {
            Box::pin(async move {
                let mut total = 0usize;
                let mut hash = FNV_START;
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match c.stream.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            total += n;
                            hash = fnv1a(hash, &buf[..n]);
                        }
                        Err(_) => return,
                    }
                }
                let mut answer = format!("received {total} fnv={hash:016x}\n").into_bytes();
                answer.extend(pattern(256 << 10, 9));
                let _ = c.stream.write_all(&answer).await;
                let _ = c.stream.shutdown().await;
            })
        }),
    )
    .await;
    let proxy = tcp_proxy(1, "", &[backend.addr], "");
    let mut s = connect(proxy.addr("db")).await;
    let payload = pattern(1 << 20, 3);
    s.write_all(&payload).await.unwrap();
    s.shutdown().await.unwrap(); // FIN: the client sends no more but still reads.
    let ending = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let Ending::Eof(got) = ending else {
        panic!("expected the backend's answer then EOF, got {ending:?}");
    };
    let line_end = got.iter().position(|&b| b == b'\n').expect("summary line");
    assert_eq!(
        String::from_utf8_lossy(&got[..line_end]),
        format!(
            "received {} fnv={:016x}",
            payload.len(),
            fnv1a(FNV_START, &payload)
        )
    );
    assert!(
        got[line_end + 1..] == pattern(256 << 10, 9)[..],
        "bytes after the summary differ ({} received)",
        got.len() - line_end - 1
    );
}

/// The backend writes `early`, sends its FIN, and keeps reading what the client sends
/// afterwards.
async fn half_close_backend_to_client(early: Vec<u8>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sent = early.clone();
    let backend = TcpBackend::start_with(
        "early-fin",
        false,
        Arc::new(move |mut c: Conn| {
            let (tx, early) = (tx.clone(), sent.clone());
            Box::pin(async move {
                let _ = c.stream.write_all(&early).await;
                let _ = c.stream.shutdown().await;
                let mut got = Vec::new();
                let r = c.stream.read_to_end(&mut got).await;
                let _ = tx.send(r.map(|_| got).map_err(|e| e.to_string()));
            })
        }),
    )
    .await;
    let proxy = tcp_proxy(1, "", &[backend.addr], "");
    let mut s = connect(proxy.addr("db")).await;
    // The backend's bytes and FIN reach the client...
    let ending = read_until_closed(&mut s, Duration::from_secs(10)).await;
    match &ending {
        Ending::Eof(got) => assert!(
            *got == early,
            "{} of {} bytes before the FIN",
            got.len(),
            early.len()
        ),
        other => panic!("expected the backend's bytes then EOF: {other:?}"),
    }
    // ...and the client's direction stays open.
    let payload = pattern(256 << 10, 11);
    s.write_all(&payload)
        .await
        .expect("client direction closed");
    s.shutdown().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("backend never saw the client's EOF")
        .unwrap()
        .expect("backend read failed");
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "bytes after the backend's FIN differ");
}

#[tokio::test]
async fn tcp_half_close_backend_to_client() {
    half_close_backend_to_client(b"early bytes\n".to_vec()).await;
}

#[tokio::test]
async fn tcp_half_close_backend_to_client_after_bulk() {
    // Past the first 64 KiB of a direction the proxy may switch copy strategy (splice).
    half_close_backend_to_client(pattern(512 << 10, 5)).await;
}

#[tokio::test]
async fn tcp_connect_failure_closes_the_client() {
    let proxy = tcp_proxy(1, "", &[dead_port()], "");
    let mut s = connect(proxy.addr("db")).await;
    let _ = s.write_all(b"hello?").await;
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(ending.is_closed_empty(), "{ending:?}");
}

#[tokio::test]
async fn tcp_connect_timeout_closes_the_client() {
    // A listener that never accepts, with its accept queue filled: connecting times out.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let proxy = tcp_proxy(1, "", &[addr], "connect_timeout = \"300ms\"");
    let started = Instant::now();
    let mut s = connect(proxy.addr("db")).await;
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(ending.is_closed_empty(), "{ending:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}, expected about the 300ms connect timeout"
    );
    drop(socket);
}

/// The backend's greeting after a PROXY header: `NAME source=.. destination=..`.
async fn sends_proxy_protocol(version: &str) {
    let backend = TcpBackend::proxy_header_echo("pp").await;
    let proxy = tcp_proxy(
        1,
        "",
        &[backend.addr],
        &format!("proxy_protocol = \"{version}\""),
    );
    for i in 0..2 {
        let mut s = connect(proxy.addr("db")).await;
        let greeting = read_line(&mut s).await.unwrap_or_else(|e| {
            panic!(
                "no greeting ({e}); headers seen: {:?}",
                backend.proxy_headers()
            )
        });
        assert_eq!(
            greeting,
            format!(
                "pp source={} destination={}",
                s.local_addr().unwrap(),
                proxy.addr("db")
            ),
            "the backend should see the real client address"
        );
        // The stream after the header is the client's, unchanged.
        assert_eq!(
            round_trip(&mut s, b"after the header").await,
            b"after the header"
        );
        let seen = &backend.proxy_headers()[i];
        assert!(seen.header.is_ok(), "{seen:?}");
        match version {
            "v1" => assert!(seen.is_v1(), "expected a v1 header: {seen:?}"),
            _ => assert!(seen.is_v2(), "expected a v2 header: {seen:?}"),
        }
    }
}

#[tokio::test]
async fn tcp_sends_proxy_protocol_v1() {
    sends_proxy_protocol("v1").await;
}

#[tokio::test]
async fn tcp_sends_proxy_protocol_v2() {
    sends_proxy_protocol("v2").await;
}

/// A listener with `accept_proxy_protocol`: the client address comes from the PROXY header
/// the client sends and is re-sent to a `proxy_protocol` upstream.
async fn accepts_proxy_protocol(client_header_v2: bool) {
    let backend = TcpBackend::proxy_header_echo("pp").await;
    let proxy = tcp_proxy(
        1,
        "accept_proxy_protocol = true",
        &[backend.addr],
        "proxy_protocol = \"v2\"",
    );
    let real_client: SocketAddr = "203.0.113.7:4242".parse().unwrap();
    let front: SocketAddr = "198.51.100.1:5432".parse().unwrap();
    let mut header = Vec::new();
    if client_header_v2 {
        proxy_protocol::encode_v2(real_client, front, &mut header);
    } else {
        proxy_protocol::encode_v1(real_client, front, &mut header);
    }
    let mut s = connect(proxy.addr("db")).await;
    // The header and the first payload bytes in one write: the proxy must consume only the
    // header.
    header.extend_from_slice(b"first bytes");
    s.write_all(&header).await.unwrap();
    let greeting = read_line(&mut s).await.unwrap_or_else(|e| {
        panic!(
            "no greeting ({e}); headers seen: {:?}",
            backend.proxy_headers()
        )
    });
    assert!(
        greeting.starts_with(&format!("pp source={real_client} ")),
        "the upstream should see the address from the client's PROXY header: {greeting}"
    );
    let mut first = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut first))
        .await
        .expect("echo timed out")
        .unwrap();
    assert_eq!(&first, b"first bytes");
    assert_eq!(round_trip(&mut s, b"more").await, b"more");
}

#[tokio::test]
async fn tcp_listener_accepts_proxy_protocol_v1_from_client() {
    accepts_proxy_protocol(false).await;
}

#[tokio::test]
async fn tcp_listener_accepts_proxy_protocol_v2_from_client() {
    accepts_proxy_protocol(true).await;
}

#[tokio::test]
async fn tcp_listener_expecting_proxy_protocol_closes_connections_without_it() {
    let backend = TcpBackend::echo("echo").await;
    let proxy = tcp_proxy(1, "accept_proxy_protocol = true", &[backend.addr], "");
    let mut s = connect(proxy.addr("db")).await;
    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(ending.is_closed_empty(), "{ending:?}");
    assert_eq!(
        backend.connections(),
        0,
        "nothing should reach the upstream"
    );
}

#[tokio::test]
async fn http_listener_accepts_proxy_protocol() {
    let backend = Backend::start("b").await;
    let proxy = Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\naccept_proxy_protocol = true\n\
         [[route]]\nupstream = \"u\"\n[upstream.u]\nendpoints = [\"{}\"]\n",
        backend.addr
    ));
    let mut req = Vec::new();
    proxy_protocol::encode_v1(
        "203.0.113.7:4242".parse().unwrap(),
        "198.51.100.1:80".parse().unwrap(),
        &mut req,
    );
    req.extend_from_slice(
        b"GET /pp HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n",
    );
    let resp = raw(proxy.addr("web"), &req).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(
        resp.to_lowercase()
            .contains("x-forwarded-for: 203.0.113.7\n"),
        "the client address should come from the PROXY header: {resp}"
    );
}

#[tokio::test]
async fn tcp_max_connections_is_enforced_per_listener() {
    let backend = TcpBackend::echo("echo").await;
    // Two workers: the cap is per listener, not per worker.
    let proxy = tcp_proxy(2, "max_connections = 2", &[backend.addr], "");
    let mut c1 = connect(proxy.addr("db")).await;
    let mut c2 = connect(proxy.addr("db")).await;
    assert_eq!(round_trip(&mut c1, b"one").await, b"one");
    assert_eq!(round_trip(&mut c2, b"two").await, b"two");
    // Over the limit: accepted, then closed at once, whichever worker accepts.
    for i in 0..4 {
        let mut extra = connect(proxy.addr("db")).await;
        let _ = extra.write_all(b"three").await;
        let ending = read_until_closed(&mut extra, Duration::from_secs(3)).await;
        assert!(
            ending.is_closed_empty(),
            "connection {} over the limit of 2: {ending:?}",
            i + 3
        );
    }
    assert_eq!(
        backend.connections(),
        2,
        "no upstream connection over the cap"
    );
    // The ones within the limit still work.
    assert_eq!(round_trip(&mut c1, b"still").await, b"still");
    assert_eq!(round_trip(&mut c2, b"here").await, b"here");
    // Closing one frees a slot (the proxy notices asynchronously: retry for a bounded time).
    drop(c1);
    assert!(
        backend
            .wait_active(Duration::from_secs(5), |n| n <= 1)
            .await,
        "the backend never saw the closed connection end"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = connect(proxy.addr("db")).await;
        c.write_all(b"again").await.unwrap();
        let mut back = [0u8; 5];
        match tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut back)).await {
            Ok(Ok(_)) => {
                assert_eq!(&back, b"again");
                break;
            }
            _ if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("no slot freed after closing a connection: {other:?}"),
        }
    }
}

#[tokio::test]
async fn tcp_idle_timeout_closes_both_sides() {
    let backend = TcpBackend::echo("echo").await;
    let proxy = tcp_proxy(1, "idle_timeout = \"600ms\"", &[backend.addr], "");
    let mut s = connect(proxy.addr("db")).await;
    // A bulk transfer first (past 64 KiB each way the copy may change strategy).
    bulk_round_trip(&mut s, 1 << 20).await;
    // Traffic every 150ms for 1.5 s keeps the connection open past the timeout.
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let msg = format!("tick {i}");
        assert_eq!(
            round_trip(&mut s, msg.as_bytes()).await,
            msg.as_bytes(),
            "closed while active"
        );
    }
    // Then silence: closed about 600ms after the last bytes.
    let quiet = Instant::now();
    let ending = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let took = quiet.elapsed();
    assert!(ending.is_closed_empty(), "{ending:?}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(4),
        "closed {took:?} after the last bytes, expected about 600ms"
    );
    assert!(
        backend
            .wait_active(Duration::from_secs(3), |n| n == 0)
            .await,
        "the upstream side was not closed"
    );
}

#[tokio::test]
async fn proxy_header_parser_round_trips_what_the_tests_send() {
    // Guards the harness: what the tests encode parses back to the same addresses.
    let (src, dst): (SocketAddr, SocketAddr) = (
        "203.0.113.7:4242".parse().unwrap(),
        "198.51.100.1:5432".parse().unwrap(),
    );
    for v2 in [false, true] {
        let mut buf = Vec::new();
        if v2 {
            proxy_protocol::encode_v2(src, dst, &mut buf);
        } else {
            proxy_protocol::encode_v1(src, dst, &mut buf);
        }
        let (h, n) = proxy_protocol::parse(&buf).unwrap().unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(
            h,
            Header::Proxied {
                source: src,
                destination: dst
            }
        );
    }
}

#[tokio::test]
async fn tcp_many_concurrent_connections_do_not_mix() {
    let backend = TcpBackend::echo("echo").await;
    let proxy = tcp_proxy(2, "", &[backend.addr], "");
    let addr = proxy.addr("db");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32u64 {
        tasks.spawn(async move {
            let stream = connect(addr).await;
            let (mut r, mut w) = stream.into_split();
            let payload = pattern(256 << 10, 1000 + i);
            let expected = payload.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&payload).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            assert!(back == expected, "connection {i}: echoed bytes differ");
        });
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await
    .expect("concurrent transfers timed out");
    assert_eq!(backend.connections(), 32);
}
