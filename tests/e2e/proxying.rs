//! The HTTP path: forwarding headers, hop-by-hop stripping, h2c, timeouts, streaming.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use maitred_tests::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn one_route(upstream: &str, extra: &str) -> String {
    format!(
        "[runtime]\nworkers = 1\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\n[[route]]\nupstream = \"u\"\n[upstream.u]\nendpoints = [\"{upstream}\"]\n{extra}\n"
    )
}

#[tokio::test]
async fn forwards_host_and_forwarding_headers_and_strips_hop_by_hop() {
    let backend = Backend::start_with(
        "b",
        Arc::new(|req| {
            Box::pin(async move {
                let mut resp = echo(req).await;
                let h = resp.headers_mut();
                h.insert("connection", "x-internal".parse().unwrap());
                h.insert("x-internal", "secret".parse().unwrap());
                h.insert("keep-alive", "timeout=5".parse().unwrap());
                resp
            })
        }),
    )
    .await;
    let proxy = Proxy::start(&one_route(&backend.addr.to_string(), ""));
    let reply = get(
        &format!("{}/path?q=1", proxy.url("web")),
        &[
            ("host", "shop.example.com"),
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "x-drop-me"),
            ("x-drop-me", "1"),
            ("x-keep", "yes"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = reply.body.to_lowercase();
    assert!(seen.starts_with("get /path?q=1 http/1.1"), "{seen}");
    assert!(seen.contains("host: shop.example.com\n"), "{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(
        seen.contains("x-forwarded-host: shop.example.com\n"),
        "{seen}"
    );
    assert!(seen.contains("x-keep: yes\n"), "{seen}");
    assert!(!seen.contains("x-drop-me"), "{seen}");
    // And on the way back.
    assert_eq!(reply.header("x-internal"), "");
    assert_eq!(reply.header("keep-alive"), "");
}

#[tokio::test]
async fn h2c_through_the_proxy() {
    let backend = Backend::start("b").await;
    let proxy = Proxy::start(&one_route(&backend.addr.to_string(), ""));
    let client = h2c_client();
    for _ in 0..3 {
        let req = http::Request::get(format!("{}/h2", proxy.url("web")))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = send(&client, req).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-backend"), "b");
        // The backend speaks HTTP/1.1 and sees a Host header made from :authority.
        assert!(reply.body.contains("HTTP/1.1"), "{}", reply.body);
        assert!(
            reply.body.contains(&format!("host: {}", proxy.addr("web"))),
            "{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn connection_refused_is_502() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::start(&one_route(&port.to_string(), ""));
    let reply = get(&format!("{}/", proxy.url("web")), &[]).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.body, "502 Bad Gateway\n");
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let backend = Backend::start_with(
        "slow",
        Arc::new(|req| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                echo(req).await
            })
        }),
    )
    .await;
    let proxy = Proxy::start(&one_route(
        &backend.addr.to_string(),
        "response_timeout = \"300ms\"",
    ));
    let started = Instant::now();
    let reply = get(&format!("{}/", proxy.url("web")), &[]).await;
    assert_eq!(reply.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn streams_large_bodies_both_ways() {
    // The backend counts the request body's bytes and answers with a 32 MiB body of its own.
    let backend = Backend::start_with(
        "big",
        Arc::new(|req: http::Request<hyper::body::Incoming>| {
            Box::pin(async move {
                let mut body = req.into_body();
                let mut received = 0usize;
                while let Some(frame) = body.frame().await {
                    received += frame.unwrap().data_ref().map_or(0, |d| d.len());
                }
                let payload = vec![b'x'; 32 << 20];
                http::Response::builder()
                    .header("x-received", received.to_string())
                    .body(Full::new(Bytes::from(payload)))
                    .unwrap()
            })
        }),
    )
    .await;
    let proxy = Proxy::start(&one_route(&backend.addr.to_string(), ""));
    let stream = futures_stream(16 << 20);
    let req = http::Request::post(format!("{}/upload", proxy.url("web")))
        .body(StreamBody::new(stream))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.headers()["x-received"], (16 << 20).to_string());
    let mut body = resp.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(total, 32 << 20);
}

/// A chunked request body of `len` bytes in 64 KiB frames.
fn futures_stream(
    len: usize,
) -> impl futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>
+ Send
+ 'static {
    let chunk = Bytes::from(vec![b'y'; 64 << 10]);
    futures_util::stream::iter(
        (0..len / chunk.len()).map(move |_| Ok(hyper::body::Frame::data(chunk.clone()))),
    )
}

#[tokio::test]
async fn slow_header_sender_is_cut_off() {
    let backend = Backend::start("b").await;
    let proxy = Proxy::start(&one_route(&backend.addr.to_string(), ""));
    let started = Instant::now();
    // Never finishes the header section; the listener's 1 s header_read_timeout ends it.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr("web"))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "connection not closed in time"
    );
    assert_eq!(backend.requests(), 0);
}

/// Reads one `Content-Length` response from `stream` (up to the end of its body).
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-response: {text}");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn header_read_timeout_restarts_with_each_kept_alive_request() {
    // The header-read timer is kept across a connection's requests and moved lazily: a
    // timer set for an earlier request must neither cut off a later one early nor be lost.
    let backend = Backend::start("b").await;
    let proxy = Proxy::start(&one_route(&backend.addr.to_string(), ""));
    let mut stream = tokio::net::TcpStream::connect(proxy.addr("web"))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Requests at t = 0, 0.6 s and 1.2 s: each comes within 1 s of the previous one, but the
    // last is more than 1 s after the first read began.
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let response = read_response(&mut stream).await;
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "request {i}: {response}"
        );
    }
    // Then a request that never finishes its header section: cut off 1 s after the last
    // response, not earlier, not never.
    let answered = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    let waited = answered.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "cut off after {waited:?}"
    );
    assert_eq!(backend.requests(), 3);
}

#[tokio::test]
async fn upstream_closing_kept_alive_connections_costs_no_request() {
    // A backend that answers as if keeping the connection alive, then closes it at once:
    // the proxy must notice (or retry the unsent request on a new connection), never fail.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let proxy = Proxy::start(&one_route(&addr.to_string(), ""));
    let client = http1_client();
    for i in 0..30 {
        let req = http::Request::get(format!("{}/{i}", proxy.url("web")))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let reply = send(&client, req).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "ok"),
            "request {i}"
        );
    }
    backend.abort();
}

#[tokio::test]
async fn upstream_connect_timeout_is_502() {
    // A listener that never accepts, with its accept queue filled: further connection
    // attempts get no answer, so connecting times out.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
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
    let proxy = Proxy::start(&one_route(&addr.to_string(), "connect_timeout = \"300ms\""));
    let started = Instant::now();
    let reply = get(&format!("{}/", proxy.url("web")), &[]).await;
    assert_eq!(reply.status, 502);
    // It waited for the connect timeout (a refused connection would answer at once).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    drop(socket);
}

/// An HTTP/2-only (prior knowledge) backend answering with [`echo`]; counts connections.
async fn h2c_backend() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req| async move {
                    Ok::<_, std::convert::Infallible>(echo(req).await)
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn h2c_upstream_multiplexes_one_connection() {
    let (addr, connections) = h2c_backend().await;
    let proxy = Proxy::start(&one_route(&addr.to_string(), "protocol = \"h2c\""));
    let url = format!("{}/x?y=1", proxy.url("web"));
    // One request first opens the connection; the concurrent ones then share it.
    let first = get(&url, &[("host", "shop.example.com")]).await;
    let mut replies =
        futures_util::future::join_all((0..20).map(|_| get(&url, &[("host", "shop.example.com")])))
            .await;
    replies.push(first);
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            reply
                .body
                .starts_with("GET http://shop.example.com/x?y=1 HTTP/2.0\n"),
            "{}",
            reply.body
        );
        assert!(
            !reply.body.contains("\nhost:"),
            "HTTP/2 carries no Host header: {}",
            reply.body
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one shared HTTP/2 connection"
    );
}
