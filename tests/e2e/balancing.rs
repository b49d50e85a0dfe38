//! Load balancing, health and resilience end to end: the distribution of every built-in
//! balancer (with weights), sticky cookies, passive and active health, slow start, draining,
//! retries (a backend killed under load), `max_conns` with its queue, per-request balancing
//! over one HTTP/2 connection, gRPC through the proxy, all endpoints down, and the same
//! balancers per connection on a `tcp` listener.
//!
//! Timing tests use short intervals (50 ms checks, 200-300 ms timeouts) and bound what they
//! measure from both sides, with slack for a loaded machine.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use maitred_tests::l4::{TcpBackend, connect, read_line};
use maitred_tests::lb::grpc::{self, EchoRequest, GrpcBackend};
use maitred_tests::lb::*;
use maitred_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(5);

/// An endpoint as a TOML array item.
fn ep(addr: SocketAddr) -> String {
    format!("\"{addr}\"")
}

/// An endpoint with a weight.
fn weighted(addr: SocketAddr, weight: u32) -> String {
    format!("{{ address = \"{addr}\", weight = {weight} }}")
}

/// A proxy with an HTTP listener "web" whose only route goes to upstream "u" over
/// `endpoints` (TOML array items), with `extra` lines in the upstream's table.
fn lb_proxy(endpoints: &[String], extra: &str) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\nworkers = 2\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nupstream = \"u\"\n\
         [upstream.u]\nendpoints = [{}]\n{extra}\n",
        endpoints.join(", ")
    ))
}

/// A proxy with a `tcp` listener "db" forwarding to upstream "u".
fn tcp_lb_proxy(endpoints: &[String], extra: &str) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\nworkers = 2\n\
         [[listener]]\nname = \"db\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tcp\"\nupstream = \"u\"\n\
         [upstream.u]\nendpoints = [{}]\n{extra}\n",
        endpoints.join(", ")
    ))
}

/// `n` backends started and killed: distinct addresses where nothing listens.
async fn dead_backends(n: usize) -> Vec<LbBackend> {
    let mut dead = Vec::new();
    for i in 0..n {
        let b = LbBackend::start(&format!("dead{i}")).await;
        b.kill().await;
        dead.push(b);
    }
    dead
}

/// `GET url` with `headers` over `client`.
async fn get_with(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    url: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(client, req.body(Full::new(Bytes::new())).unwrap()).await
}

/// `n` GETs of `url` over one keep-alive connection, counted by the backend that answered.
async fn spread(url: &str, n: usize) -> BTreeMap<String, usize> {
    let client = http1_client();
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts
            .entry(backend_of(&get_with(&client, url, &[]).await))
            .or_insert(0) += 1;
    }
    counts
}

fn count(counts: &BTreeMap<String, usize>, name: &str) -> usize {
    counts.get(name).copied().unwrap_or(0)
}

/// Starts `GET url` in a task; returns once the request was either answered (`Ok`) or is
/// being held by one of `held_by` (`Err` with the task, to be awaited after a release).
async fn place(
    url: String,
    held_by: &[&LbBackend],
) -> Result<Reply, tokio::task::JoinHandle<Reply>> {
    let before: Vec<usize> = held_by.iter().map(|b| b.requests()).collect();
    let mut task = tokio::spawn(async move { get(&url, &[]).await });
    let arrived = futures_util::future::select_all(
        held_by
            .iter()
            .zip(&before)
            .map(|(b, &n)| Box::pin(b.wait_requests(WAIT, move |now| now > n))),
    );
    tokio::select! {
        reply = &mut task => Ok(reply.unwrap()),
        (arrived, _, _) = arrived => {
            assert!(arrived, "the request was neither answered nor held within {WAIT:?}");
            Err(task)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Distribution per balancer

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let (a, b, c) = (
        LbBackend::start("a").await,
        LbBackend::start("b").await,
        LbBackend::start("c").await,
    );
    let proxy = lb_proxy(
        &[ep(a.addr), ep(b.addr), ep(c.addr)],
        "balancer = \"round_robin\"",
    );
    let counts = spread(&proxy.url("web"), 300).await;
    for name in ["a", "b", "c"] {
        let n = count(&counts, name);
        assert!((95..=105).contains(&n), "{counts:?}");
    }
    assert_eq!(a.requests() + b.requests() + c.requests(), 300);
}

#[tokio::test]
async fn weighted_follows_weights_smoothly() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    let proxy = lb_proxy(
        &[weighted(a.addr, 3), weighted(b.addr, 1)],
        "balancer = \"weighted\"",
    );
    let client = http1_client();
    let url = proxy.url("web");
    let mut order = String::new();
    for _ in 0..400 {
        order.push_str(&backend_of(&get_with(&client, &url, &[]).await));
    }
    let share = order.matches('a').count() as f64 / 400.0;
    assert!((share - 0.75).abs() <= 0.03, "a's share {share}: {order}");
    // Smooth: b's turns are interleaved, never a long run of a.
    assert!(!order.contains("aaaa"), "not interleaved: {order}");
}

#[tokio::test]
async fn least_conn_prefers_the_endpoint_with_fewer_in_flight() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    a.hold();
    let proxy = lb_proxy(&[ep(a.addr), ep(b.addr)], "balancer = \"least_conn\"");
    let url = proxy.url("web");
    let mut held = Vec::new();
    for i in 0..30 {
        match place(format!("{url}/r{i}"), &[&a]).await {
            Ok(reply) => assert_eq!(backend_of(&reply), "b"),
            Err(task) => held.push(task),
        }
    }
    // a holds every request it gets: once it has one, b (none in flight) wins every pick.
    // Round-robin would have sent a 15.
    assert!(a.requests() <= 2, "a got {} of 30", a.requests());
    a.release();
    for task in held {
        assert_eq!(backend_of(&task.await.unwrap()), "a");
    }
}

#[tokio::test]
async fn least_conn_weighs_in_flight_requests() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    a.hold();
    b.hold();
    let proxy = lb_proxy(
        &[weighted(a.addr, 3), weighted(b.addr, 1)],
        "balancer = \"least_conn\"",
    );
    let url = proxy.url("web");
    let mut held = Vec::new();
    for i in 0..8 {
        match place(format!("{url}/r{i}"), &[&a, &b]).await {
            Ok(reply) => panic!("answered while held: {reply:?}"),
            Err(task) => held.push(task),
        }
    }
    // Each pick takes the fewest in flight per unit of weight: 6 and 2, whatever the ties.
    assert_eq!((a.in_flight(), b.in_flight()), (6, 2));
    a.release();
    b.release();
    for task in held {
        backend_of(&task.await.unwrap());
    }
}

#[tokio::test]
async fn ip_hash_sticks_a_client_address_to_one_backend_and_spreads_addresses() {
    let backends = [
        LbBackend::start("a").await,
        LbBackend::start("b").await,
        LbBackend::start("c").await,
    ];
    let endpoints: Vec<String> = backends.iter().map(|b| ep(b.addr)).collect();
    let proxy = lb_proxy(&endpoints, "balancer = \"ip_hash\"");
    let addr = proxy.addr("web");
    let mut per_backend = BTreeMap::new();
    for k in 0..60u8 {
        let ip = Ipv4Addr::new(127, 0, 0, 10 + k);
        let first = backend_of(&get_from(ip, addr, "/first").await);
        for path in ["/second", "/third"] {
            // A fresh connection each time: it may land on another worker.
            assert_eq!(backend_of(&get_from(ip, addr, path).await), first, "{ip}");
        }
        *per_backend.entry(first).or_insert(0) += 1;
    }
    for b in &backends {
        assert!(
            count(&per_backend, &b.name) >= 5,
            "60 client addresses spread as {per_backend:?}"
        );
    }
}

/// A `hash` balancer on `hash_key`: request `j` of key `i` is `request(i, j)` (path and
/// headers). Every key sticks to one backend (over fresh connections); 90 keys spread over
/// all three.
async fn hash_sticks_and_spreads(
    hash_key: &str,
    request: impl Fn(usize, usize) -> (String, Vec<(String, String)>),
) {
    let backends = [
        LbBackend::start("a").await,
        LbBackend::start("b").await,
        LbBackend::start("c").await,
    ];
    let endpoints: Vec<String> = backends.iter().map(|b| ep(b.addr)).collect();
    let proxy = lb_proxy(
        &endpoints,
        &format!("balancer = \"hash\"\nhash_key = \"{hash_key}\""),
    );
    let url = proxy.url("web");
    let mut per_backend = BTreeMap::new();
    for i in 0..90 {
        let mut first = None;
        for j in 0..3 {
            let (path, headers) = request(i, j);
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let got = backend_of(&get(&format!("{url}{path}"), &headers).await);
            match &first {
                None => first = Some(got),
                Some(f) => assert_eq!(&got, f, "key {i} ({hash_key}) moved"),
            }
        }
        *per_backend.entry(first.unwrap()).or_insert(0) += 1;
    }
    for b in &backends {
        assert!(
            count(&per_backend, &b.name) >= 10,
            "90 keys ({hash_key}) spread as {per_backend:?}"
        );
    }
}

#[tokio::test]
async fn hash_on_a_header() {
    hash_sticks_and_spreads("header:x-user", |i, j| {
        (
            format!("/page/{j}"),
            vec![("x-user".into(), format!("user-{i}"))],
        )
    })
    .await;
}

#[tokio::test]
async fn hash_on_a_cookie() {
    hash_sticks_and_spreads("cookie:session", |i, j| {
        (
            format!("/page/{j}"),
            vec![(
                "cookie".into(),
                format!("theme=t{j}; session=s-{i}; lang=en"),
            )],
        )
    })
    .await;
}

#[tokio::test]
async fn hash_on_the_path() {
    hash_sticks_and_spreads("path", |i, j| {
        (
            format!("/item/{i}?view={j}"),
            vec![("x-noise".into(), format!("{j}"))],
        )
    })
    .await;
}

#[tokio::test]
async fn p2c_avoids_a_slow_backend() {
    let (a, b, c) = (
        LbBackend::start("a").await,
        LbBackend::start("b").await,
        LbBackend::start("slow").await,
    );
    c.set_delay(Duration::from_millis(100));
    let proxy = lb_proxy(&[ep(a.addr), ep(b.addr), ep(c.addr)], "balancer = \"p2c\"");
    let counts = spread(&proxy.url("web"), 120).await;
    // Any pair of the three holds a fast backend, and once measured the slow one loses.
    // (How a and b share the rest is theirs: p2c prefers the one measured faster.)
    assert!(count(&counts, "slow") <= 6, "{counts:?}");
}

#[tokio::test]
async fn p2c_avoids_a_loaded_backend() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    // Both measured first, at a latency their own (5 ms) rather than the noise of a
    // loopback connect, so their latency estimates are alike.
    a.set_delay(Duration::from_millis(5));
    b.set_delay(Duration::from_millis(5));
    let proxy = lb_proxy(&[ep(a.addr), ep(b.addr)], "balancer = \"p2c\"");
    let url = proxy.url("web");
    let warm = spread(&url, 20).await;
    assert!(count(&warm, "a") >= 1 && count(&warm, "b") >= 1, "{warm:?}");
    // a now holds what it gets: requests piling up there make it score worse than b.
    a.hold();
    let before = a.requests();
    let mut held = Vec::new();
    for i in 0..30 {
        match place(format!("{url}/r{i}"), &[&a]).await {
            Ok(reply) => assert_eq!(backend_of(&reply), "b"),
            Err(task) => held.push(task),
        }
    }
    let on_a = a.requests() - before;
    assert!(on_a <= 3, "a got {on_a} of 30 (warm-up: {warm:?})");
    a.release();
    for task in held {
        assert_eq!(backend_of(&task.await.unwrap()), "a");
    }
}

#[tokio::test]
async fn p2c_avoids_a_backend_that_hangs_from_the_start() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    // a never answers until the end: it has requests in flight and no latency sample.
    a.hold();
    let proxy = lb_proxy(&[ep(a.addr), ep(b.addr)], "balancer = \"p2c\"");
    let url = proxy.url("web");
    let mut held = Vec::new();
    for i in 0..30 {
        match place(format!("{url}/r{i}"), &[&a]).await {
            Ok(reply) => assert_eq!(backend_of(&reply), "b"),
            Err(task) => held.push(task),
        }
    }
    // Round-robin would send a 15; a balancer weighing in-flight requests one or two.
    assert!(a.requests() <= 3, "a got {} of 30", a.requests());
    a.release();
    for task in held {
        assert_eq!(backend_of(&task.await.unwrap()), "a");
    }
}

// ---------------------------------------------------------------------------------------
// Sticky sessions

#[tokio::test]
async fn sticky_cookie_pins_a_client_and_falls_back_when_its_backend_is_down() {
    let backends = [
        LbBackend::start("a").await,
        LbBackend::start("b").await,
        LbBackend::start("c").await,
    ];
    let endpoints: Vec<String> = backends.iter().map(|b| ep(b.addr)).collect();
    let proxy = lb_proxy(
        &endpoints,
        "sticky = { cookie = \"maitred_sticky\", ttl = \"1h\" }",
    );
    let url = proxy.url("web");
    let client = http1_client();

    // The first response pins the client.
    let first = get_with(&client, &url, &[]).await;
    let pinned = backend_of(&first);
    let set_cookie = first.header("set-cookie").to_string();
    assert!(set_cookie.starts_with("maitred_sticky="), "{set_cookie:?}");
    assert!(set_cookie.contains("Max-Age=3600"), "{set_cookie:?}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // Requests carrying it stay there (round-robin would move them), with no new cookie.
    let with_cookie = format!("theme=dark; {cookie}");
    for _ in 0..20 {
        let reply = get_with(&client, &url, &[("cookie", &with_cookie)]).await;
        assert_eq!(backend_of(&reply), pinned);
        assert_eq!(reply.header("set-cookie"), "", "{reply:?}");
    }
    // Requests without it are balanced, and each is offered a cookie.
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let reply = get_with(&client, &url, &[]).await;
        assert!(reply.header("set-cookie").starts_with("maitred_sticky="));
        seen.insert(backend_of(&reply));
    }
    assert!(seen.len() >= 2, "cookie-less requests all went to {seen:?}");

    // The pinned backend goes down: the client lands elsewhere and is pinned there.
    let down = backends.iter().find(|b| b.name == pinned).unwrap();
    down.kill().await;
    let reply = get_with(&client, &url, &[("cookie", &with_cookie)]).await;
    let fallback = backend_of(&reply);
    assert_ne!(fallback, pinned);
    let new_cookie = reply
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        new_cookie.starts_with("maitred_sticky=") && new_cookie != cookie,
        "{reply:?}"
    );
    for _ in 0..10 {
        let reply = get_with(&client, &url, &[("cookie", &new_cookie)]).await;
        assert_eq!(backend_of(&reply), fallback);
    }
}

// ---------------------------------------------------------------------------------------
// Passive and active health, slow start, draining

#[tokio::test]
async fn passive_health_takes_a_dead_endpoint_out_for_fail_timeout_then_tries_it_again() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    b.kill().await;
    let proxy = lb_proxy(
        &[ep(a.addr), ep(b.addr)],
        "passive = { max_fails = 2, fail_timeout = \"300ms\" }",
    );
    let url = proxy.url("web");
    let client = http1_client();
    let marked_from = Instant::now();
    // Round-robin sends b every other pick: two failures (each retried on a) mark it down.
    for _ in 0..4 {
        assert_eq!(backend_of(&get_with(&client, &url, &[]).await), "a");
    }
    let marked_by = Instant::now();
    b.revive().await;
    // b is up again, but out until fail_timeout has passed since its second failure.
    let back = loop {
        let reply = get_with(&client, &url, &[]).await;
        if backend_of(&reply) == "b" {
            break Instant::now();
        }
        assert!(
            marked_by.elapsed() < Duration::from_secs(3),
            "b never tried again"
        );
    };
    let out_for = back - marked_from;
    assert!(
        out_for >= Duration::from_millis(280),
        "b got a request {out_for:?} after its failures (fail_timeout 300ms)"
    );
    assert!(
        back - marked_by <= Duration::from_millis(300 + 700),
        "b came back only {:?} after being marked",
        back - marked_by
    );
    // Back in the rotation.
    let counts = spread(&url, 20).await;
    assert!(count(&counts, "b") >= 5, "{counts:?}");
}

#[tokio::test]
async fn passive_health_is_ignored_with_a_single_endpoint() {
    let b = LbBackend::start("b").await;
    b.kill().await;
    let proxy = lb_proxy(
        &[ep(b.addr)],
        "passive = { max_fails = 1, fail_timeout = \"10s\" }",
    );
    let url = proxy.url("web");
    assert_eq!(get(&url, &[]).await.status, 502);
    assert_eq!(get(&url, &[]).await.status, 502);
    b.revive().await;
    // Not marked down: there is nowhere else to go (nginx does the same).
    assert_eq!(backend_of(&get(&url, &[]).await), "b");
}

#[tokio::test]
async fn active_http_check_removes_a_failing_backend_and_restores_it() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    let proxy = lb_proxy(
        &[ep(a.addr), ep(b.addr)],
        "health = { type = \"http\", path = \"/health\", expect = \"200-399\", interval = \"50ms\", timeout = \"200ms\", rise = 2, fall = 2 }",
    );
    let url = proxy.url("web");
    let client = http1_client();
    assert!(
        b.wait_health_checks(WAIT, |n| n >= 2).await,
        "no health checks"
    );
    let counts = spread(&url, 20).await;
    assert!(count(&counts, "b") >= 5, "{counts:?}");

    // /health turns 500: after `fall` failing checks b gets nothing.
    let checks = b.health_checks();
    let failing_since = Instant::now();
    b.set_health(500);
    let mut last_b = None;
    while b.health_checks() < checks + 3 {
        if backend_of(&get_with(&client, &url, &[]).await) == "b" {
            last_b = Some(failing_since.elapsed());
        }
        assert!(failing_since.elapsed() < WAIT, "checks stopped");
    }
    // interval x fall = 100ms, plus one interval of phase and slack for a loaded machine.
    if let Some(last) = last_b {
        assert!(
            last <= Duration::from_millis(100 + 50 + 600),
            "b still got requests {last:?} after its checks started failing"
        );
    }
    let counts = spread(&url, 40).await;
    assert_eq!(count(&counts, "b"), 0, "{counts:?}");

    // /health passes again: b is back after `rise` passing checks.
    let checks = b.health_checks();
    let passing_since = Instant::now();
    b.set_health(200);
    loop {
        if backend_of(&get_with(&client, &url, &[]).await) == "b" {
            break;
        }
        assert!(
            passing_since.elapsed() < WAIT,
            "b not back after its checks passed again"
        );
    }
    let back_after = passing_since.elapsed();
    assert!(
        b.health_checks() >= checks + 2,
        "b back after {} passing check(s), rise = 2",
        b.health_checks() - checks
    );
    assert!(
        back_after <= Duration::from_millis(100 + 50 + 600),
        "b back only after {back_after:?}"
    );
}

#[tokio::test]
async fn active_tcp_check_removes_a_closed_port_and_restores_it() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    b.kill().await;
    // No retries and no passive health: only the active check keeps requests off b.
    let proxy = lb_proxy(
        &[ep(a.addr), ep(b.addr)],
        "retries = 0\npassive = { max_fails = 0 }\n\
         health = { type = \"tcp\", interval = \"50ms\", timeout = \"200ms\", rise = 1, fall = 1 }",
    );
    let url = proxy.url("web");
    let client = http1_client();
    let started = Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 20 {
        let reply = get_with(&client, &url, &[]).await;
        in_a_row = if reply.status == 200 { in_a_row + 1 } else { 0 };
        assert!(
            started.elapsed() < WAIT,
            "requests still reach the closed port"
        );
    }
    let counts = spread(&url, 60).await;
    assert_eq!(count(&counts, "a"), 60, "{counts:?}");

    b.revive().await;
    let revived = Instant::now();
    loop {
        if backend_of(&get_with(&client, &url, &[]).await) == "b" {
            break;
        }
        assert!(revived.elapsed() < WAIT, "b not back after its port opened");
    }
}

#[tokio::test]
async fn slow_start_ramps_a_recovered_endpoint_up() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    // Every endpoint ramps up after the proxy starts too: b stays out for fail_timeout =
    // slow_start, so a is at full weight by the time b is back.
    let proxy = lb_proxy(
        &[weighted(a.addr, 10), weighted(b.addr, 10)],
        "balancer = \"weighted\"\nslow_start = \"1s\"\n\
         passive = { max_fails = 1, fail_timeout = \"1s\" }",
    );
    let url = proxy.url("web");
    let client = http1_client();
    b.kill().await;
    for _ in 0..4 {
        assert_eq!(backend_of(&get_with(&client, &url, &[]).await), "a");
    }
    b.revive().await;
    let revived = Instant::now();
    let back = loop {
        if backend_of(&get_with(&client, &url, &[]).await) == "b" {
            break Instant::now();
        }
        assert!(revived.elapsed() < WAIT, "b never came back");
    };
    // b's share in the first 300 ms back and in 600-950 ms.
    let (mut early, mut late) = ((0usize, 0usize), (0usize, 0usize));
    loop {
        let t = back.elapsed();
        if t >= Duration::from_millis(950) {
            break;
        }
        let on_b = backend_of(&get_with(&client, &url, &[]).await) == "b";
        let window = if t < Duration::from_millis(300) {
            &mut early
        } else if t >= Duration::from_millis(600) {
            &mut late
        } else {
            continue;
        };
        window.0 += usize::from(on_b);
        window.1 += 1;
    }
    assert!(
        early.1 >= 10 && late.1 >= 10,
        "too few samples: {early:?} {late:?}"
    );
    let (early_share, late_share) = (
        early.0 as f64 / early.1 as f64,
        late.0 as f64 / late.1 as f64,
    );
    // Full weight would be 50%; at 10-30% of its weight b gets ~9-23%, at 60-95% ~37-49%.
    assert!(
        early_share < 0.30 && late_share > 0.30 && late_share > early_share + 0.12,
        "b's share: {early_share:.2} early, {late_share:.2} later ({early:?}, {late:?})"
    );
}

#[tokio::test]
async fn draining_endpoint_gets_no_requests() {
    let (a, b, c) = (
        LbBackend::start("a").await,
        LbBackend::start("b").await,
        LbBackend::start("c").await,
    );
    let proxy = lb_proxy(
        &[
            ep(a.addr),
            format!("{{ address = \"{}\", drain = true }}", b.addr),
            ep(c.addr),
        ],
        "",
    );
    let counts = spread(&proxy.url("web"), 60).await;
    assert_eq!(b.requests(), 0, "{counts:?}");
    assert_eq!((count(&counts, "a"), count(&counts, "c")), (30, 30));
}

// ---------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn idempotent_requests_are_retried_on_a_live_endpoint() {
    let live = LbBackend::start("live").await;
    let dead = dead_backends(1).await;
    // Passive health off: every other pick is the dead endpoint, and must be retried.
    let proxy = lb_proxy(
        &[ep(dead[0].addr), ep(live.addr)],
        "passive = { max_fails = 0 }",
    );
    let url = proxy.url("web");
    let client = http1_client();
    for i in 0..20 {
        let reply = get_with(&client, &format!("{url}/get/{i}"), &[]).await;
        assert_eq!(backend_of(&reply), "live");
    }
    assert_eq!(live.requests(), 20);
    // A PUT with a small body is idempotent too: replayed intact.
    for i in 0..4 {
        let body = format!("payload {i}");
        let req = Request::put(format!("{url}/put/{i}"))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let reply = send(&client, req).await;
        assert_eq!(backend_of(&reply), "live");
        assert_eq!(reply.body, format!("live PUT /put/{i}\n{body}"));
    }
}

#[tokio::test]
async fn a_post_to_a_dead_endpoint_is_not_retried() {
    let live = LbBackend::start("live").await;
    let dead = dead_backends(1).await;
    let proxy = lb_proxy(
        &[ep(dead[0].addr), ep(live.addr)],
        "retries = 2\npassive = { max_fails = 0 }",
    );
    let url = proxy.url("web");
    let client = http1_client();
    let mut statuses = BTreeMap::new();
    for i in 0..10 {
        let req = Request::post(format!("{url}/post/{i}"))
            .body(Full::new(Bytes::from(format!("order {i}"))))
            .unwrap();
        *statuses
            .entry(send(&client, req).await.status.as_u16())
            .or_insert(0) += 1;
    }
    // Round-robin alternates: the five POSTs that met the dead endpoint fail.
    assert_eq!(statuses.get(&502), Some(&5), "{statuses:?}");
    assert_eq!(statuses.get(&200), Some(&5), "{statuses:?}");
    assert_eq!(live.requests(), 5);
}

#[tokio::test]
async fn a_backend_killed_under_load_fails_no_idempotent_request_beyond_those_in_flight() {
    const LOOPS: usize = 4;
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    a.set_delay(Duration::from_millis(2));
    b.set_delay(Duration::from_millis(2));
    let proxy = lb_proxy(
        &[ep(a.addr), ep(b.addr)],
        "retries = 1\npassive = { max_fails = 3, fail_timeout = \"10s\" }",
    );
    let url = proxy.url("web");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(tokio::sync::watch::Sender::new(0usize));
    let mut loops = Vec::new();
    for l in 0..LOOPS {
        let (url, stop, done) = (url.clone(), stop.clone(), done.clone());
        loops.push(tokio::spawn(async move {
            let client = http1_client();
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let req = Request::get(format!("{url}/load/{l}/{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match try_send(&client, req).await {
                    Ok(reply) if reply.status == 200 => {}
                    Ok(reply) => failures.push(format!("{} {}", reply.status, reply.body)),
                    Err(e) => failures.push(e),
                }
                i += 1;
                done.send_modify(|n| *n += 1);
            }
            failures
        }));
    }
    assert!(b.wait_requests(WAIT, |n| n >= 50).await, "no load on b");
    let in_flight_at_kill = b.in_flight();
    b.kill().await;
    let b_requests = b.requests();
    let at_kill = *done.borrow();
    let mut rx = done.subscribe();
    // (Not holding the watch's read guard: the loops write to it.)
    let more = tokio::time::timeout(WAIT, rx.wait_for(|n| *n >= at_kill + 200))
        .await
        .is_ok_and(|r| r.is_ok());
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for l in loops {
        failures.extend(l.await.unwrap());
    }
    assert!(more, "the load stalled after the kill");
    assert!(
        failures.len() <= in_flight_at_kill,
        "{} failed requests, {in_flight_at_kill} were in flight at b when it died: {failures:?}",
        failures.len()
    );
    assert_eq!(b.requests(), b_requests);
}

// ---------------------------------------------------------------------------------------
// max_conns

#[tokio::test]
async fn max_conns_without_a_queue_answers_503_at_once() {
    let (a, b) = (LbBackend::start("a").await, LbBackend::start("b").await);
    a.hold();
    b.hold();
    let proxy = lb_proxy(
        &[ep(a.addr), ep(b.addr)],
        "max_conns = 1\nqueue_timeout = \"0s\"",
    );
    let url = proxy.url("web");
    // One request in flight on each endpoint fills both.
    let first = place(format!("{url}/1"), &[&a, &b])
        .await
        .expect_err("held");
    let second = place(format!("{url}/2"), &[&a, &b])
        .await
        .expect_err("held");
    assert_eq!((a.in_flight(), b.in_flight()), (1, 1));
    let started = Instant::now();
    let reply = get(&format!("{url}/3"), &[]).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "503 took {:?}",
        started.elapsed()
    );
    assert_eq!(a.requests() + b.requests(), 2);
    a.release();
    b.release();
    backend_of(&first.await.unwrap());
    backend_of(&second.await.unwrap());
    // Freed: accepted again.
    backend_of(&get(&url, &[]).await);
}

#[tokio::test]
async fn max_conns_queues_a_request_until_a_slot_frees() {
    let b = LbBackend::start("b").await;
    b.hold();
    let proxy = lb_proxy(&[ep(b.addr)], "max_conns = 1\nqueue_timeout = \"3s\"");
    let url = proxy.url("web");
    let first = place(format!("{url}/1"), &[&b]).await.expect_err("held");
    let second = tokio::spawn({
        let url = format!("{url}/2");
        async move { get(&url, &[]).await }
    });
    // The second waits in the proxy: it does not reach the backend.
    assert!(
        !b.wait_requests(Duration::from_millis(200), |n| n >= 2)
            .await,
        "a second request reached the backend past max_conns = 1"
    );
    b.release();
    backend_of(&first.await.unwrap());
    backend_of(&second.await.unwrap());
    assert_eq!(b.requests(), 2);
    assert_eq!(b.max_in_flight(), 1);
}

#[tokio::test]
async fn max_conns_queue_times_out_with_503() {
    let b = LbBackend::start("b").await;
    b.hold();
    let proxy = lb_proxy(&[ep(b.addr)], "max_conns = 1\nqueue_timeout = \"200ms\"");
    let url = proxy.url("web");
    let first = place(format!("{url}/1"), &[&b]).await.expect_err("held");
    let started = Instant::now();
    let reply = get(&format!("{url}/2"), &[]).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "503 after {waited:?} (queue_timeout 200ms)"
    );
    b.release();
    backend_of(&first.await.unwrap());
    assert_eq!(b.requests(), 1);
}

// ---------------------------------------------------------------------------------------
// HTTP/2 and gRPC

#[tokio::test]
async fn one_http2_client_connection_is_balanced_per_request() {
    let (a, b) = (
        LbBackend::start_h2c("a").await,
        LbBackend::start_h2c("b").await,
    );
    let proxy = lb_proxy(&[ep(a.addr), ep(b.addr)], "protocol = \"h2c\"");
    let conn = H2Connection::connect(proxy.addr("web")).await;
    let mut counts = BTreeMap::new();
    // Two alone first, so each upstream connection exists before the concurrent ones.
    for i in 0..2 {
        let reply = conn.get(&format!("/r{i}")).await;
        *counts.entry(backend_of(&reply)).or_insert(0) += 1;
    }
    for batch in 0..9 {
        let replies = futures_util::future::join_all((0..22).map(|i| {
            let conn = conn.clone();
            async move { conn.get(&format!("/r{}", 2 + batch * 22 + i)).await }
        }))
        .await;
        for reply in replies {
            let backend = backend_of(&reply);
            assert!(
                reply.body.starts_with(&format!("{backend} GET /r")),
                "{reply:?}"
            );
            *counts.entry(backend).or_insert(0) += 1;
        }
    }
    assert!(!conn.is_closed());
    assert_eq!(counts.values().sum::<usize>(), 200);
    for name in ["a", "b"] {
        assert!(count(&counts, name) >= 80, "{counts:?}");
    }
    // Each backend was reached over one multiplexed connection.
    assert_eq!((a.connections(), b.connections()), (1, 1));
}

#[tokio::test]
async fn grpc_unary_and_server_streaming_pass_through_intact() {
    let (g1, g2) = (
        GrpcBackend::start("g1").await,
        GrpcBackend::start("g2").await,
    );
    let proxy = lb_proxy(&[ep(g1.addr), ep(g2.addr)], "protocol = \"h2c\"");
    let mut client = grpc::client(&proxy.url("web"));

    // Unary, with request and response metadata; calls are balanced one by one.
    let mut seen = BTreeSet::new();
    for i in 0..4 {
        let mut req = tonic::Request::new(EchoRequest {
            text: format!("hello {i}"),
            count: 0,
        });
        req.metadata_mut()
            .insert("x-request-id", format!("req-{i}").parse().unwrap());
        let resp = grpc::unary(&mut client, req).await.expect("unary call");
        let meta = |k: &str| {
            resp.metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(meta("x-request-id"), format!("req-{i}"));
        let backend = meta("x-backend");
        let msg = resp.into_inner();
        assert_eq!(msg.text, format!("HELLO {i}"));
        assert_eq!(msg.backend, backend);
        seen.insert(backend);
    }
    assert_eq!(seen.len(), 2, "calls not balanced: {seen:?}");

    // An error status with metadata (a trailers-only response).
    let err = grpc::unary(
        &mut client,
        tonic::Request::new(EchoRequest {
            text: "missing".into(),
            count: 0,
        }),
    )
    .await
    .expect_err("NOT_FOUND");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "no such item");
    assert_eq!(
        err.metadata().get("x-reason").and_then(|v| v.to_str().ok()),
        Some("no-such-item")
    );

    // Server streaming: every message in order, then the trailers.
    let resp = grpc::stream(
        &mut client,
        tonic::Request::new(EchoRequest {
            text: "item".into(),
            count: 50,
        }),
    )
    .await
    .expect("streaming call");
    let mut stream = resp.into_inner();
    let mut texts = Vec::new();
    let mut backend = None;
    while let Some(m) = stream.message().await.expect("stream message") {
        assert_eq!(m.seq as usize, texts.len());
        assert_eq!(m.text, format!("item-{}", m.seq));
        assert_eq!(m.payload, vec![m.seq as u8; m.seq as usize]);
        backend.get_or_insert(m.backend.clone());
        texts.push(m.text);
    }
    assert_eq!(texts.len(), 50);
    let trailers = stream
        .trailers()
        .await
        .expect("trailers")
        .expect("trailers were sent");
    let trailer = |k: &str| {
        trailers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(trailer("grpc-status").as_deref(), Some("0"));
    assert_eq!(trailer("x-count").as_deref(), Some("50"));
    assert_eq!(trailer("x-checksum"), Some(grpc::checksum(texts)));
    assert_eq!(trailer("x-backend"), backend);
    assert_eq!(g1.calls() + g2.calls(), 6);
}

// ---------------------------------------------------------------------------------------
// All down

#[tokio::test]
async fn all_endpoints_down_is_503_quickly() {
    let dead = dead_backends(2).await;
    let proxy = lb_proxy(&[ep(dead[0].addr), ep(dead[1].addr)], "");
    let url = proxy.url("web");
    let client = http1_client();
    // The first request finds out (both connects fail: 502); then both are marked down.
    let first = get_with(&client, &url, &[]).await;
    assert!(first.status == 502 || first.status == 503, "{first:?}");
    let started = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        let reply = get_with(&client, &url, &[]).await;
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "took {:?}",
            t.elapsed()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn all_endpoints_draining_is_503() {
    let a = LbBackend::start("a").await;
    let proxy = lb_proxy(
        &[format!("{{ address = \"{}\", drain = true }}", a.addr)],
        "",
    );
    let reply = get(&proxy.url("web"), &[]).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(a.requests(), 0);
}

// ---------------------------------------------------------------------------------------
// L4: the same balancers per connection

#[tokio::test]
async fn tcp_least_conn_weighs_open_connections() {
    let (a, b) = (
        TcpBackend::greeting_echo("A").await,
        TcpBackend::greeting_echo("B").await,
    );
    let proxy = tcp_lb_proxy(
        &[weighted(a.addr, 3), weighted(b.addr, 1)],
        "balancer = \"least_conn\"",
    );
    let mut open = Vec::new();
    let mut counts = BTreeMap::new();
    for _ in 0..8 {
        let mut s = connect(proxy.addr("db")).await;
        let greeting = read_line(&mut s).await.expect("greeting");
        *counts.entry(greeting).or_insert(0) += 1;
        open.push(s);
    }
    // Connections stay open, so each pick sees them all: 6 and 2 whatever the ties.
    assert_eq!(
        (count(&counts, "A"), count(&counts, "B")),
        (6, 2),
        "{counts:?}"
    );
}

#[tokio::test]
async fn tcp_round_robin_skips_a_dead_endpoint() {
    let (a, b) = (
        TcpBackend::greeting_echo("A").await,
        TcpBackend::greeting_echo("B").await,
    );
    let dead = dead_backends(1).await;
    // Passive health off: the dead endpoint stays in the rotation and every connection
    // that meets it is retried on another.
    let proxy = tcp_lb_proxy(
        &[ep(a.addr), ep(dead[0].addr), ep(b.addr)],
        "balancer = \"round_robin\"\npassive = { max_fails = 0 }",
    );
    let mut counts = BTreeMap::new();
    for _ in 0..12 {
        let mut s = connect(proxy.addr("db")).await;
        let greeting = read_line(&mut s)
            .await
            .expect("every connection reaches a backend");
        *counts.entry(greeting).or_insert(0) += 1;
    }
    assert_eq!(count(&counts, "A") + count(&counts, "B"), 12);
    assert!(
        count(&counts, "A") >= 2 && count(&counts, "B") >= 2,
        "{counts:?}"
    );
}

#[tokio::test]
async fn tcp_round_robin_spreads_evenly_over_the_live_endpoints_around_a_dead_one() {
    let (a, b) = (
        TcpBackend::greeting_echo("A").await,
        TcpBackend::greeting_echo("B").await,
    );
    let dead = dead_backends(1).await;
    let proxy = tcp_lb_proxy(
        &[ep(a.addr), ep(dead[0].addr), ep(b.addr)],
        "balancer = \"round_robin\"\npassive = { max_fails = 0 }",
    );
    let mut counts = BTreeMap::new();
    for _ in 0..24 {
        let mut s = connect(proxy.addr("db")).await;
        let greeting = read_line(&mut s)
            .await
            .expect("every connection reaches a backend");
        *counts.entry(greeting).or_insert(0) += 1;
    }
    // The dead endpoint's turns are retried elsewhere; the live ones still take turns
    // (12 each when even; at least 8 each asked).
    assert!(
        count(&counts, "A") >= 8 && count(&counts, "B") >= 8,
        "{counts:?}"
    );
}
