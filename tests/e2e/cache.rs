//! The HTTP cache (RFC 9111) through the proxy, black box: a scripted origin that logs every
//! request (see `maitred_tests::cache`), a proxy with a caching route, real clients. Every
//! test says how often the origin must have been reached, so serving from the cache when it
//! must not (or not when it should) fails. One test per rule of the contract (issue 5).
//!
//! Staleness is made without sleeping where possible: a `Date` (or `Age`) in the past, or
//! `max-age=0` with a validator. Metrics are process-wide, so the metrics test compares
//! counts before and after its own traffic.

use maitred_tests::cache::*;
use maitred_tests::ops::Admin;
use maitred_tests::*;
use std::time::{Duration, Instant};

/// The cache table most tests use.
const CACHE: &str = r#"{ max_size = "16MiB" }"#;

/// An origin and a proxy in front of it.
struct Rig {
    origin: Origin,
    proxy: Proxy,
}

impl Rig {
    /// One route `/` with `cache = CACHE`.
    async fn start(cache: &str) -> Rig {
        let origin = Origin::start().await;
        let proxy = Proxy::start(&cache_config(origin.addr, cache));
        Rig { origin, proxy }
    }

    /// `workers` workers and one route per `(path_prefix, cache)`.
    async fn start_with(workers: usize, routes: &[(&str, &str)]) -> Rig {
        let origin = Origin::start().await;
        let proxy = Proxy::start(&cache_config_with(workers, origin.addr, routes));
        Rig { origin, proxy }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.proxy.url("web"))
    }

    /// The cache key of `path` as the default key builder makes it.
    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.proxy.addr("web"))
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        get(&self.url(path), headers).await
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(method, &self.url(path), headers, "").await
    }

    fn admin(&self) -> Admin {
        Admin::of(&self.proxy.server)
    }

    /// The origin's log for `path`, for failure messages.
    fn seen(&self, path: &str) -> String {
        self.origin
            .requests(path)
            .iter()
            .map(|s| {
                format!(
                    "{} {} -> {} (inm {:?}, ims {:?}, cc {:?})",
                    s.method,
                    s.uri,
                    s.status,
                    s.header("if-none-match"),
                    s.header("if-modified-since"),
                    s.header("cache-control")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A reply in one line, for failure messages.
fn show(r: &Reply) -> String {
    let body: String = r.body.chars().take(80).collect();
    format!(
        "status {} cache-status {:?} age {:?} body {:?} ({} bytes)",
        r.status,
        cache_status(r),
        r.header("age"),
        body,
        r.body.len()
    )
}

/// Asserts `origin` got exactly `n` requests for `path`.
macro_rules! assert_hits {
    ($rig:expr, $path:expr, $n:expr) => {
        assert_hits!($rig, $path, $n, "")
    };
    ($rig:expr, $path:expr, $n:expr, $($msg:tt)+) => {{
        let got = $rig.origin.hits($path);
        assert_eq!(
            got,
            $n,
            "origin hits for {}: expected {}, got {} [{}] {}",
            $path,
            $n,
            got,
            $rig.seen($path),
            format!($($msg)+)
        );
    }};
}

fn assert_status_has(r: &Reply, parts: &[&str]) {
    let cs = cache_status(r);
    for p in parts {
        assert!(cs.contains(p), "Cache-Status lacks {p:?}: {}", show(r));
    }
}

fn assert_hit(r: &Reply) {
    assert!(
        cache_status(r).contains("; hit"),
        "expected a cache hit: {}",
        show(r)
    );
}

fn assert_not_stored(r: &Reply) {
    let cs = cache_status(r);
    assert!(
        cs.contains("fwd=") && !cs.contains("stored"),
        "expected a forward that was not stored: {}",
        show(r)
    );
}

// ---------------------------------------------------------------------------------------
// Basics
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn fresh_response_is_served_from_cache_and_origin_hit_once() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/a", Answer::ok("hello").cc("max-age=60").serial());
    let first = rig.get("/a", &[]).await;
    assert_eq!(first.status, 200, "{}", show(&first));
    assert_eq!(first.body, "hello#1");
    assert_status_has(&first, &["fwd=uri-miss", "stored"]);
    for _ in 0..5 {
        let r = rig.get("/a", &[]).await;
        assert_eq!(r.status, 200, "{}", show(&r));
        assert_eq!(r.body, "hello#1", "{}", show(&r));
        assert_hit(&r);
        assert_eq!(r.header("cache-control"), "max-age=60");
    }
    assert_hits!(rig, "/a", 1);
}

#[tokio::test]
async fn empty_cache_table_enables_the_cache_with_defaults() {
    let rig = Rig::start("{}").await;
    rig.origin
        .set("/d", Answer::ok("defaults").cc("max-age=60"));
    rig.get("/d", &[]).await;
    let r = rig.get("/d", &[]).await;
    assert_eq!(r.body, "defaults");
    assert_hit(&r);
    assert_hits!(rig, "/d", 1);
}

#[tokio::test]
async fn cache_status_reports_miss_stored_and_hit_with_ttl() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set("/cs", Answer::ok("x").cc("max-age=60"));
    let miss = rig.get("/cs", &[]).await;
    let cs = cache_status(&miss);
    assert!(cs.starts_with("maitred"), "{}", show(&miss));
    assert_status_has(&miss, &["fwd=uri-miss", "stored"]);
    assert!(!cs.contains("; hit"), "{}", show(&miss));

    let hit = rig.get("/cs", &[]).await;
    let cs = cache_status(&hit);
    assert!(cs.starts_with("maitred; hit"), "{}", show(&hit));
    let ttl = cache_status_ttl(cs).unwrap_or_else(|| panic!("no ttl: {}", show(&hit)));
    assert!((50..=60).contains(&ttl), "ttl {ttl}: {}", show(&hit));
    assert_hits!(rig, "/cs", 1);
}

#[tokio::test]
async fn age_header_is_present_on_hits_and_grows() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set("/age", Answer::ok("a").cc("max-age=60"));
    rig.get("/age", &[]).await;
    let r1 = rig.get("/age", &[]).await;
    assert_hit(&r1);
    let a1 = age(&r1).unwrap_or_else(|| panic!("no Age on a hit: {}", show(&r1)));
    assert!(a1 <= 2, "{}", show(&r1));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r2 = rig.get("/age", &[]).await;
    assert_hit(&r2);
    let a2 = age(&r2).unwrap_or_else(|| panic!("no Age on a hit: {}", show(&r2)));
    assert!(a2 > a1 && a2 >= 2, "Age did not grow: {a1} then {a2}");
    assert_hits!(rig, "/age", 1);
}

#[tokio::test]
async fn age_from_the_origin_counts_toward_the_age() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/aged",
        Answer::ok("a").cc("max-age=60").header("age", "30"),
    );
    rig.get("/aged", &[]).await;
    let r = rig.get("/aged", &[]).await;
    assert_hit(&r);
    let a = age(&r).unwrap_or_else(|| panic!("no Age: {}", show(&r)));
    assert!((30..60).contains(&a), "Age {a}: {}", show(&r));
    if let Some(ttl) = cache_status_ttl(cache_status(&r)) {
        assert!(
            ttl <= 30,
            "ttl {ttl} ignores the origin's Age: {}",
            show(&r)
        );
    }
    assert_hits!(rig, "/aged", 1);
}

#[tokio::test]
async fn max_age_expiry_refetches_from_origin() {
    let rig = Rig::start(CACHE).await;
    // 3 s, not 1: `Date` has a one-second resolution, so a response can be up to a second
    // old on arrival, and the hit below must still find it fresh on a loaded machine.
    rig.origin
        .set("/exp", Answer::ok("v").cc("max-age=3").serial());
    assert_eq!(rig.get("/exp", &[]).await.body, "v#1");
    let hit = rig.get("/exp", &[]).await;
    assert_eq!(hit.body, "v#1", "{}", show(&hit));
    assert_hits!(rig, "/exp", 1);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let again = rig.get("/exp", &[]).await;
    assert_eq!(again.body, "v#2", "{}", show(&again));
    assert_hits!(rig, "/exp", 2, "after max-age passed");
    let hit = rig.get("/exp", &[]).await;
    assert_eq!(
        hit.body,
        "v#2",
        "the refetched response is stored: {}",
        show(&hit)
    );
    assert_hits!(rig, "/exp", 2);
}

#[tokio::test]
async fn s_maxage_overrides_max_age() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/shared", Answer::ok("s").cc("max-age=0, s-maxage=60"));
    rig.origin
        .set("/unshared", Answer::ok("u").cc("max-age=60, s-maxage=0"));
    for _ in 0..3 {
        rig.get("/shared", &[]).await;
        rig.get("/unshared", &[]).await;
    }
    assert_hits!(rig, "/shared", 1, "s-maxage=60 makes it fresh");
    assert_hits!(rig, "/unshared", 3, "s-maxage=0 makes it stale at once");
}

#[tokio::test]
async fn expires_gives_freshness_when_there_is_no_max_age() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/future",
        Answer::ok("f").header("expires", &http_date_in(3600)),
    );
    rig.origin.set(
        "/past",
        Answer::ok("p").header("expires", &http_date_in(-3600)),
    );
    rig.origin
        .set("/invalid", Answer::ok("i").header("expires", "0"));
    rig.origin.set(
        "/overridden",
        Answer::ok("o")
            .cc("max-age=60")
            .header("expires", &http_date_in(-3600)),
    );
    for _ in 0..2 {
        for p in ["/future", "/past", "/invalid", "/overridden"] {
            rig.get(p, &[]).await;
        }
    }
    assert_hits!(rig, "/future", 1, "Expires in an hour");
    assert_hits!(rig, "/past", 2, "Expires in the past");
    assert_hits!(
        rig,
        "/invalid",
        2,
        "an invalid Expires means already expired"
    );
    assert_hits!(rig, "/overridden", 1, "max-age wins over Expires");
}

#[tokio::test]
async fn query_string_is_part_of_the_key() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/q", Answer::ok("q").cc("max-age=60").serial());
    assert_eq!(rig.get("/q?x=1", &[]).await.body, "q#1");
    assert_eq!(rig.get("/q?x=2", &[]).await.body, "q#2");
    assert_eq!(rig.get("/q", &[]).await.body, "q#3");
    assert_eq!(rig.get("/q?x=1", &[]).await.body, "q#1");
    assert_eq!(rig.get("/q?x=2", &[]).await.body, "q#2");
    assert_eq!(rig.get("/q", &[]).await.body, "q#3");
    assert_hits!(rig, "/q", 3);
}

#[tokio::test]
async fn host_is_case_insensitive_in_the_key_and_the_port_counts() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/h", Answer::ok("h").cc("max-age=60").serial());
    let a = rig.get("/h", &[("host", "Example.COM")]).await;
    let b = rig.get("/h", &[("host", "example.com")]).await;
    assert_eq!(a.body, "h#1");
    assert_eq!(b.body, "h#1", "same host, other case: {}", show(&b));
    let c = rig.get("/h", &[("host", "example.com:8080")]).await;
    assert_eq!(c.body, "h#2", "another port is another key: {}", show(&c));
    let d = rig.get("/h", &[("host", "other.example")]).await;
    assert_eq!(d.body, "h#3", "another host is another key: {}", show(&d));
    assert_hits!(rig, "/h", 3);
}

#[tokio::test]
async fn route_without_cache_never_caches() {
    let rig = Rig::start_with(1, &[("/cached/", CACHE), ("/", "")]).await;
    rig.origin
        .set("/plain", Answer::ok("p").cc("public, max-age=600"));
    rig.origin
        .set("/cached/x", Answer::ok("c").cc("public, max-age=600"));
    for _ in 0..3 {
        let r = rig.get("/plain", &[]).await;
        assert_eq!(r.status, 200);
        assert!(!cache_status(&r).contains("hit"), "{}", show(&r));
        rig.get("/cached/x", &[]).await;
    }
    assert_hits!(rig, "/plain", 3, "a route without `cache` never caches");
    assert_hits!(rig, "/cached/x", 1);
}

#[tokio::test]
async fn cache_is_shared_between_workers() {
    let rig = Rig::start_with(2, &[("/", CACHE)]).await;
    rig.origin.set("/w", Answer::ok("w").cc("max-age=60"));
    for _ in 0..12 {
        // A fresh connection each time: the kernel spreads them over both workers.
        let r = rig.get("/w", &[]).await;
        assert_eq!(r.body, "w");
    }
    assert_hits!(rig, "/w", 1, "one cache per route, not per worker");
}

// ---------------------------------------------------------------------------------------
// Storability
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn response_no_store_is_not_stored() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/ns", Answer::ok("n").cc("no-store, max-age=60"));
    let r = rig.get("/ns", &[]).await;
    assert_not_stored(&r);
    assert_status_has(&r, &["detail=no-store"]);
    rig.get("/ns", &[]).await;
    assert_hits!(rig, "/ns", 2);
}

#[tokio::test]
async fn request_no_store_is_not_stored() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set("/rns", Answer::ok("n").cc("max-age=60"));
    let r = rig.get("/rns", &[("cache-control", "no-store")]).await;
    assert_eq!(r.status, 200);
    assert_not_stored(&r);
    assert_status_has(&r, &["detail=request-no-store"]);
    let r = rig.get("/rns", &[]).await;
    assert_hits!(rig, "/rns", 2, "nothing was stored by the no-store request");
    assert_status_has(&r, &["stored"]);
    assert_hit(&rig.get("/rns", &[]).await);
    assert_hits!(rig, "/rns", 2);
}

#[tokio::test]
async fn private_response_is_not_stored() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/priv", Answer::ok("mine").cc("private, max-age=60"));
    let r = rig.get("/priv", &[]).await;
    assert_not_stored(&r);
    assert_status_has(&r, &["detail=private"]);
    rig.get("/priv", &[]).await;
    assert_hits!(rig, "/priv", 2);
}

#[tokio::test]
async fn authorization_is_not_stored_unless_public_s_maxage_or_must_revalidate() {
    let rig = Rig::start(CACHE).await;
    let auth = [("authorization", "Bearer secret")];
    rig.origin
        .set("/auth/plain", Answer::ok("a").cc("max-age=60"));
    rig.origin
        .set("/auth/public", Answer::ok("a").cc("public, max-age=60"));
    rig.origin
        .set("/auth/smax", Answer::ok("a").cc("s-maxage=60"));
    rig.origin.set(
        "/auth/mr",
        Answer::ok("a").cc("must-revalidate, max-age=60"),
    );
    let r = rig.get("/auth/plain", &auth).await;
    assert_not_stored(&r);
    assert_status_has(&r, &["detail=authorization"]);
    rig.get("/auth/plain", &auth).await;
    for p in ["/auth/public", "/auth/smax", "/auth/mr"] {
        rig.get(p, &auth).await;
        let r = rig.get(p, &auth).await;
        assert_hit(&r);
    }
    assert_hits!(rig, "/auth/plain", 2);
    assert_hits!(rig, "/auth/public", 1);
    assert_hits!(rig, "/auth/smax", 1);
    assert_hits!(rig, "/auth/mr", 1);
}

#[tokio::test]
async fn set_cookie_response_is_not_stored_by_default() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/cookie",
        Answer::ok("c")
            .cc("max-age=60")
            .header("set-cookie", "sid=1"),
    );
    for _ in 0..2 {
        let r = rig.get("/cookie", &[]).await;
        assert_eq!(r.header("set-cookie"), "sid=1", "{}", show(&r));
        assert_not_stored(&r);
        assert_status_has(&r, &["detail=set-cookie"]);
    }
    assert_hits!(rig, "/cookie", 2);
}

#[tokio::test]
async fn set_cookie_public_response_is_stored_and_hits_carry_no_cookie() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/pcookie",
        Answer::ok("c")
            .cc("public, max-age=60")
            .header("set-cookie", "sid=leader"),
    );
    rig.origin.set(
        "/scookie",
        Answer::ok("c")
            .cc("s-maxage=60")
            .header("set-cookie", "sid=leader"),
    );
    for p in ["/pcookie", "/scookie"] {
        let first = rig.get(p, &[]).await;
        assert_eq!(
            first.header("set-cookie"),
            "sid=leader",
            "the fetching client gets its cookie: {}",
            show(&first)
        );
        for _ in 0..2 {
            let hit = rig.get(p, &[]).await;
            assert_hit(&hit);
            assert!(
                hit.headers.get("set-cookie").is_none(),
                "a hit carries another client's cookie: {:?}",
                hit.headers
            );
        }
        assert_hits!(rig, p, 1);
    }
}

#[tokio::test]
async fn response_without_freshness_or_validator_is_not_stored() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set("/bare", Answer::ok("b"));
    let r = rig.get("/bare", &[]).await;
    assert_not_stored(&r);
    rig.get("/bare", &[]).await;
    assert_hits!(rig, "/bare", 2);
}

#[tokio::test]
async fn heuristic_freshness_from_last_modified() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/old",
        Answer::ok("old").header("last-modified", &http_date_in(-10 * 86_400)),
    );
    let r = rig.get("/old", &[]).await;
    assert_status_has(&r, &["stored"]);
    let hit = rig.get("/old", &[]).await;
    assert_hit(&hit);
    assert_eq!(hit.body, "old");
    assert_hits!(rig, "/old", 1, "10% of ten days is a day of freshness");
}

#[tokio::test]
async fn status_not_cacheable_by_default_needs_explicit_freshness() {
    let rig = Rig::start(CACHE).await;
    // 302 is not cacheable by default: no heuristic from Last-Modified.
    rig.origin.set(
        "/found",
        Answer::status(302, "")
            .header("location", "/elsewhere")
            .header("last-modified", &http_date_in(-10 * 86_400)),
    );
    // ... but explicit freshness makes it storable.
    rig.origin.set(
        "/found-explicit",
        Answer::status(302, "")
            .header("location", "/elsewhere")
            .cc("max-age=60"),
    );
    // 404 with max-age is stored, and so is a 404 with only Last-Modified (heuristic).
    rig.origin
        .set("/missing", Answer::status(404, "nope").cc("max-age=60"));
    rig.origin.set(
        "/missing-heuristic",
        Answer::status(404, "nope").header("last-modified", &http_date_in(-10 * 86_400)),
    );
    let first = rig.get("/found", &[]).await;
    assert_eq!(first.status, 302);
    assert_not_stored(&first);
    let again = rig.get("/found", &[]).await;
    assert_eq!(again.status, 302);
    assert_hits!(rig, "/found", 2);

    for p in ["/found-explicit", "/missing", "/missing-heuristic"] {
        let first = rig.get(p, &[]).await;
        let hit = rig.get(p, &[]).await;
        assert_eq!(first.status, hit.status, "{p}: {}", show(&hit));
        assert_hit(&hit);
        assert_hits!(rig, p, 1);
    }
    assert_eq!(rig.get("/missing", &[]).await.status, 404);
    assert_eq!(
        rig.get("/found-explicit", &[]).await.header("location"),
        "/elsewhere"
    );
}

// ---------------------------------------------------------------------------------------
// Request directives
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn response_no_cache_revalidates_on_every_use() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/nc",
        Answer::ok("no-cache body")
            .cc("no-cache, max-age=60")
            .etag("\"nc1\""),
    );
    for _ in 0..3 {
        let r = rig.get("/nc", &[]).await;
        assert_eq!(r.status, 200, "{}", show(&r));
        assert_eq!(r.body, "no-cache body", "{}", show(&r));
    }
    assert_hits!(rig, "/nc", 3, "no-cache: every use goes to the origin");
    assert_eq!(rig.origin.not_modified("/nc"), 2, "{}", rig.seen("/nc"));
    for s in &rig.origin.requests("/nc")[1..] {
        assert!(
            s.header("if-none-match").contains("\"nc1\""),
            "{}",
            rig.seen("/nc")
        );
    }
}

#[tokio::test]
async fn request_no_cache_revalidates() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/rnc", Answer::ok("body").cc("max-age=60").etag("\"r1\""));
    rig.get("/rnc", &[]).await;
    assert_hit(&rig.get("/rnc", &[]).await);
    let r = rig.get("/rnc", &[("cache-control", "no-cache")]).await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "body");
    assert_status_has(&r, &["fwd=request"]);
    assert_hits!(rig, "/rnc", 2);
    let last = rig.origin.requests("/rnc").pop().unwrap();
    assert!(
        last.header("if-none-match").contains("\"r1\""),
        "{}",
        rig.seen("/rnc")
    );
}

#[tokio::test]
async fn request_pragma_no_cache_revalidates_when_there_is_no_cache_control() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/pragma",
        Answer::ok("body").cc("max-age=60").etag("\"p1\""),
    );
    rig.get("/pragma", &[]).await;
    let r = rig.get("/pragma", &[("pragma", "no-cache")]).await;
    assert_eq!(r.body, "body");
    assert_hits!(rig, "/pragma", 2, "Pragma: no-cache revalidates");
    // With a Cache-Control in the request, Pragma is ignored.
    let r = rig
        .get(
            "/pragma",
            &[("pragma", "no-cache"), ("cache-control", "max-stale=0")],
        )
        .await;
    assert_hit(&r);
    assert_hits!(rig, "/pragma", 2, "Pragma ignored next to Cache-Control");
}

#[tokio::test]
async fn request_max_age_zero_revalidates() {
    let rig = Rig::start(CACHE).await;
    // The origin says it is already 5 s old, so it is older than the request's max-age=0.
    rig.origin.set(
        "/rma",
        Answer::ok("body")
            .cc("max-age=60")
            .etag("\"m1\"")
            .header("age", "5"),
    );
    rig.get("/rma", &[]).await;
    assert_hit(&rig.get("/rma", &[("cache-control", "max-age=3600")]).await);
    assert_hits!(rig, "/rma", 1);
    let r = rig.get("/rma", &[("cache-control", "max-age=0")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "body");
    assert_hits!(rig, "/rma", 2, "max-age=0 revalidates");
    assert!(
        rig.origin.requests("/rma")[1]
            .header("if-none-match")
            .contains("\"m1\""),
        "{}",
        rig.seen("/rma")
    );
}

#[tokio::test]
async fn request_min_fresh_demands_remaining_freshness() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/mf", Answer::ok("body").cc("max-age=60").etag("\"f1\""));
    rig.get("/mf", &[]).await;
    assert_hit(&rig.get("/mf", &[("cache-control", "min-fresh=5")]).await);
    assert_hits!(rig, "/mf", 1, "fresh for 5 more seconds");
    let r = rig.get("/mf", &[("cache-control", "min-fresh=120")]).await;
    assert_eq!(r.body, "body");
    assert_hits!(rig, "/mf", 2, "not fresh for 120 more seconds");
}

#[tokio::test]
async fn request_max_stale_accepts_stale_responses() {
    let rig = Rig::start(CACHE).await;
    // Stale by about 29 s on arrival.
    rig.origin.set(
        "/ms",
        Answer::ok("aged")
            .cc("max-age=1")
            .etag("\"s1\"")
            .header("date", &http_date_in(-30)),
    );
    rig.get("/ms", &[]).await;
    let r = rig.get("/ms", &[("cache-control", "max-stale=3600")]).await;
    assert_eq!(r.body, "aged");
    assert_eq!(r.status, 200);
    let r = rig.get("/ms", &[("cache-control", "max-stale")]).await;
    assert_eq!(r.body, "aged");
    assert_hits!(rig, "/ms", 1, "max-stale accepts the stale copy");
    rig.get("/ms", &[("cache-control", "max-stale=5")]).await;
    assert_hits!(rig, "/ms", 2, "29 s stale is more than max-stale=5");
}

#[tokio::test]
async fn only_if_cached_miss_is_504_without_contacting_origin() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set("/oic", Answer::ok("c").cc("max-age=60"));
    let r = rig
        .get("/oic", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(r.status, 504, "{}", show(&r));
    assert_hits!(rig, "/oic", 0);
    rig.get("/oic", &[]).await;
    let r = rig
        .get("/oic", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "c");
    assert_hits!(rig, "/oic", 1);
}

// ---------------------------------------------------------------------------------------
// Unsafe methods
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unsafe_methods_are_forwarded_not_cached_and_invalidate_the_entry() {
    let rig = Rig::start(CACHE).await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let path = format!("/doc-{}", method.to_lowercase());
        rig.origin
            .set(&path, Answer::ok("doc").cc("max-age=60").serial());
        rig.get(&path, &[]).await;
        assert_hit(&rig.get(&path, &[]).await);
        for _ in 0..2 {
            let r = rig.send(method, &path, &[]).await;
            assert_eq!(r.status, 200, "{method}: {}", show(&r));
            assert_status_has(&r, &["fwd=method"]);
        }
        assert_eq!(
            rig.origin.hits_by(method, &path),
            2,
            "{method} responses are never cached: {}",
            rig.seen(&path)
        );
        let r = rig.get(&path, &[]).await;
        assert_eq!(
            rig.origin.hits_by("GET", &path),
            2,
            "{method} invalidated the GET entry: {} [{}]",
            show(&r),
            rig.seen(&path)
        );
        assert_hit(&rig.get(&path, &[]).await);
        assert_eq!(rig.origin.hits_by("GET", &path), 2);
    }
}

#[tokio::test]
async fn unsafe_method_error_response_does_not_invalidate() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set("/keep", Answer::ok("doc").cc("max-age=60"));
    rig.origin
        .set_for("POST", "/keep", Answer::status(500, "failed"));
    rig.origin
        .set_for("DELETE", "/keep", Answer::status(404, "no such"));
    rig.get("/keep", &[]).await;
    assert_eq!(rig.send("POST", "/keep", &[]).await.status, 500);
    assert_eq!(rig.send("DELETE", "/keep", &[]).await.status, 404);
    let r = rig.get("/keep", &[]).await;
    assert_hit(&r);
    assert_eq!(
        rig.origin.hits_by("GET", "/keep"),
        1,
        "{}",
        rig.seen("/keep")
    );
}

#[tokio::test]
async fn unsafe_method_invalidates_location_and_content_location() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/items/1", Answer::ok("one").cc("max-age=60"));
    rig.origin
        .set("/items/2", Answer::ok("two").cc("max-age=60"));
    rig.origin
        .set("/items/3", Answer::ok("three").cc("max-age=60"));
    rig.origin.set_for(
        "POST",
        "/items",
        Answer::status(201, "created").header("location", "/items/1"),
    );
    let absolute = format!("http://{}/items/2", rig.proxy.addr("web"));
    rig.origin.set_for(
        "PUT",
        "/items",
        Answer::ok("updated").header("content-location", &absolute),
    );
    for p in ["/items/1", "/items/2", "/items/3"] {
        rig.get(p, &[]).await;
        assert_hit(&rig.get(p, &[]).await);
    }
    assert_eq!(rig.send("POST", "/items", &[]).await.status, 201);
    rig.get("/items/1", &[]).await;
    assert_hits!(
        rig,
        "/items/1",
        2,
        "Location of a 201 to POST is invalidated"
    );
    assert_eq!(rig.send("PUT", "/items", &[]).await.status, 200);
    rig.get("/items/2", &[]).await;
    assert_hits!(
        rig,
        "/items/2",
        2,
        "same-host Content-Location is invalidated"
    );
    assert_hit(&rig.get("/items/3", &[]).await);
    assert_hits!(rig, "/items/3", 1);
}

// ---------------------------------------------------------------------------------------
// Vary
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn vary_keeps_one_variant_per_request_header_value() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/v",
        Answer::ok("enc")
            .cc("max-age=60")
            .header("vary", "Accept-Encoding")
            .echo("accept-encoding"),
    );
    let gzip = [("accept-encoding", "gzip")];
    let br = [("accept-encoding", "br")];
    let r = rig.get("/v", &gzip).await;
    assert_eq!(r.body, "enc\naccept-encoding=gzip");
    assert_status_has(&r, &["fwd=", "stored"]);
    let r = rig.get("/v", &br).await;
    assert_eq!(r.body, "enc\naccept-encoding=br", "{}", show(&r));
    assert_status_has(&r, &["fwd=vary-miss", "stored"]);
    assert_hits!(rig, "/v", 2, "another Accept-Encoding is another variant");
    for _ in 0..2 {
        let r = rig.get("/v", &gzip).await;
        assert_hit(&r);
        assert_eq!(r.body, "enc\naccept-encoding=gzip", "{}", show(&r));
        let r = rig.get("/v", &br).await;
        assert_hit(&r);
        assert_eq!(r.body, "enc\naccept-encoding=br", "{}", show(&r));
    }
    assert_hits!(rig, "/v", 2);
    let r = rig.get("/v", &[]).await;
    assert_eq!(r.body, "enc\naccept-encoding=", "{}", show(&r));
    assert_hits!(rig, "/v", 3, "no Accept-Encoding is a third variant");
}

#[tokio::test]
async fn unsafe_method_invalidates_every_variant() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/vi",
        Answer::ok("enc")
            .cc("max-age=60")
            .header("vary", "Accept-Encoding")
            .echo("accept-encoding"),
    );
    let gzip = [("accept-encoding", "gzip")];
    let br = [("accept-encoding", "br")];
    for _ in 0..2 {
        rig.get("/vi", &gzip).await;
        rig.get("/vi", &br).await;
    }
    assert_eq!(rig.origin.hits_by("GET", "/vi"), 2, "{}", rig.seen("/vi"));
    assert_eq!(rig.send("POST", "/vi", &[]).await.status, 200);
    let r = rig.get("/vi", &gzip).await;
    assert_eq!(r.body, "enc\naccept-encoding=gzip");
    let r = rig.get("/vi", &br).await;
    assert_eq!(r.body, "enc\naccept-encoding=br");
    assert_eq!(
        rig.origin.hits_by("GET", "/vi"),
        4,
        "both variants were dropped: {}",
        rig.seen("/vi")
    );
}

#[tokio::test]
async fn vary_star_is_never_reused() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/star",
        Answer::ok("s").cc("max-age=60").header("vary", "*"),
    );
    let r = rig.get("/star", &[]).await;
    assert_not_stored(&r);
    assert_status_has(&r, &["detail=vary-star"]);
    rig.get("/star", &[]).await;
    assert_hits!(rig, "/star", 2);
}

// ---------------------------------------------------------------------------------------
// Revalidation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stale_entry_revalidates_with_if_none_match_and_304_serves_stored_body() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/etag",
        Answer::ok("payload-v1").cc("max-age=0").etag("\"v1\""),
    );
    let first = rig.get("/etag", &[]).await;
    assert_eq!(first.body, "payload-v1");
    let r = rig.get("/etag", &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "payload-v1", "{}", show(&r));
    assert_eq!(r.header("etag"), "\"v1\"");
    assert_status_has(&r, &["fwd=stale", "fwd-status=304"]);
    assert_hits!(rig, "/etag", 2);
    let seen = rig.origin.requests("/etag");
    assert_eq!(seen[0].header("if-none-match"), "", "{}", rig.seen("/etag"));
    assert!(
        seen[1].header("if-none-match").contains("\"v1\""),
        "{}",
        rig.seen("/etag")
    );
    assert_eq!(seen[1].status, 304, "the body was not sent again");
}

#[tokio::test]
async fn stale_entry_revalidates_with_if_modified_since() {
    let rig = Rig::start(CACHE).await;
    let lm = http_date_in(-2 * 86_400);
    rig.origin.set(
        "/lm",
        Answer::ok("payload-lm")
            .cc("max-age=0")
            .header("last-modified", &lm),
    );
    rig.get("/lm", &[]).await;
    let r = rig.get("/lm", &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "payload-lm");
    assert_status_has(&r, &["fwd=stale", "fwd-status=304"]);
    assert_hits!(rig, "/lm", 2);
    let seen = &rig.origin.requests("/lm")[1];
    assert_eq!(
        parse_http_date(seen.header("if-modified-since")),
        parse_http_date(&lm),
        "{}",
        rig.seen("/lm")
    );
    assert_eq!(seen.header("if-none-match"), "");
    assert_eq!(seen.status, 304);
}

#[tokio::test]
async fn not_modified_refreshes_stored_headers() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/refresh",
        Answer::ok("kept body").cc("max-age=0").etag("\"r1\""),
    );
    rig.get("/refresh", &[]).await;
    // The origin now says max-age=60: its 304 carries that.
    rig.origin.set(
        "/refresh",
        Answer::ok("never sent").cc("max-age=60").etag("\"r1\""),
    );
    let r = rig.get("/refresh", &[]).await;
    assert_eq!(r.body, "kept body", "{}", show(&r));
    assert_eq!(
        rig.origin.not_modified("/refresh"),
        1,
        "{}",
        rig.seen("/refresh")
    );
    let hit = rig.get("/refresh", &[]).await;
    assert_hit(&hit);
    assert_eq!(hit.body, "kept body");
    assert_eq!(hit.header("cache-control"), "max-age=60", "{}", show(&hit));
    assert_hits!(rig, "/refresh", 2, "the refreshed entry is fresh for 60 s");
}

#[tokio::test]
async fn revalidation_answered_200_replaces_the_entry() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/rep", Answer::ok("one").cc("max-age=0").etag("\"1\""));
    rig.get("/rep", &[]).await;
    rig.origin
        .set("/rep", Answer::ok("two").cc("max-age=60").etag("\"2\""));
    let r = rig.get("/rep", &[]).await;
    assert_eq!(r.body, "two");
    assert_status_has(&r, &["fwd=stale", "fwd-status=200", "stored"]);
    let hit = rig.get("/rep", &[]).await;
    assert_hit(&hit);
    assert_eq!(hit.body, "two");
    assert_eq!(hit.header("etag"), "\"2\"");
    assert_hits!(rig, "/rep", 2);
}

#[tokio::test]
async fn client_conditional_on_fresh_hit_gets_304_from_cache() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/cond",
        Answer::ok("body")
            .cc("max-age=60")
            .etag("\"x1\"")
            .header("last-modified", &http_date_in(-86_400)),
    );
    rig.get("/cond", &[]).await;
    for inm in ["\"x1\"", "W/\"x1\"", "\"zz\", \"x1\"", "*"] {
        let r = rig.get("/cond", &[("if-none-match", inm)]).await;
        assert_eq!(r.status, 304, "If-None-Match {inm}: {}", show(&r));
        assert_eq!(r.body, "");
        assert_eq!(r.header("etag"), "\"x1\"");
    }
    let r = rig.get("/cond", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "body");
    let now = http_date_in(0);
    let r = rig.get("/cond", &[("if-modified-since", &now)]).await;
    assert_eq!(r.status, 304, "If-Modified-Since now: {}", show(&r));
    let r = rig
        .get(
            "/cond",
            &[("if-modified-since", &http_date_in(-2 * 86_400))],
        )
        .await;
    assert_eq!(r.status, 200, "modified since two days ago: {}", show(&r));
    assert_eq!(r.body, "body");
    // If-None-Match wins over If-Modified-Since.
    let r = rig
        .get(
            "/cond",
            &[("if-none-match", "\"other\""), ("if-modified-since", &now)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_hits!(
        rig,
        "/cond",
        1,
        "conditionals on a fresh entry never reach the origin"
    );
}

#[tokio::test]
async fn client_conditional_on_miss_is_forwarded_and_its_304_not_stored() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/cmiss", Answer::ok("body").cc("max-age=60").etag("\"c1\""));
    let r = rig.get("/cmiss", &[("if-none-match", "\"c1\"")]).await;
    assert_eq!(r.status, 304, "{}", show(&r));
    let seen = &rig.origin.requests("/cmiss")[0];
    assert_eq!(seen.header("if-none-match"), "\"c1\"");
    let r = rig.get("/cmiss", &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "body");
    assert_hits!(rig, "/cmiss", 2, "the 304 was not stored");
    assert_hit(&rig.get("/cmiss", &[]).await);
    assert_hits!(rig, "/cmiss", 2);
}

// ---------------------------------------------------------------------------------------
// Serving stale
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_in_background() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/swr",
        Answer::ok("old")
            .cc("max-age=1, stale-while-revalidate=3600")
            .etag("\"o\"")
            .header("date", &http_date_in(-30)),
    );
    assert_eq!(rig.get("/swr", &[]).await.body, "old");
    rig.origin.set(
        "/swr",
        Answer::ok("new")
            .cc("max-age=60")
            .etag("\"n\"")
            .delay(Duration::from_millis(300)),
    );
    let stale = rig.get("/swr", &[]).await;
    assert_eq!(stale.status, 200, "{}", show(&stale));
    assert_eq!(stale.body, "old", "served stale at once: {}", show(&stale));
    assert_status_has(&stale, &["hit", "detail=stale-while-revalidate"]);
    let ttl = cache_status_ttl(cache_status(&stale));
    assert!(
        ttl.is_some_and(|t| t < 0),
        "a stale hit has a negative ttl: {}",
        show(&stale)
    );
    // More requests while the refresh is under way: no second refresh.
    for _ in 0..3 {
        let r = rig.get("/swr", &[]).await;
        assert_eq!(r.status, 200);
    }
    let started = Instant::now();
    loop {
        let r = rig.get("/swr", &[]).await;
        if r.body == "new" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the background refresh never landed: {} [{}]",
            show(&r),
            rig.seen("/swr")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = rig.get("/swr", &[]).await;
    assert_eq!(r.body, "new");
    assert_hit(&r);
    assert_hits!(rig, "/swr", 2, "exactly one background revalidation");
    assert!(
        rig.origin.requests("/swr")[1]
            .header("if-none-match")
            .contains("\"o\""),
        "the refresh is conditional: {}",
        rig.seen("/swr")
    );
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_origin_answers_an_error() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/sie",
        Answer::ok("kept")
            .cc("max-age=1, stale-if-error=3600")
            .etag("\"k\"")
            .header("date", &http_date_in(-30)),
    );
    rig.get("/sie", &[]).await;
    rig.origin.set("/sie", Answer::status(503, "down"));
    let r = rig.get("/sie", &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "kept");
    assert_status_has(
        &r,
        &["fwd=stale", "fwd-status=503", "detail=stale-if-error"],
    );
    assert_hits!(rig, "/sie", 2, "the origin was asked");
}

#[tokio::test]
async fn stale_if_error_in_the_request_serves_stale_when_origin_answers_an_error() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/rsie",
        Answer::ok("kept")
            .cc("max-age=1")
            .etag("\"k\"")
            .header("date", &http_date_in(-30)),
    );
    rig.get("/rsie", &[]).await;
    rig.origin.set("/rsie", Answer::status(500, "broken"));
    let r = rig
        .get("/rsie", &[("cache-control", "stale-if-error=3600")])
        .await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "kept");
    assert_status_has(&r, &["detail=stale-if-error"]);
    assert_hits!(rig, "/rsie", 2);
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_origin_is_down() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/down",
        Answer::ok("kept")
            .cc("max-age=1, stale-if-error=3600")
            .etag("\"k\"")
            .header("date", &http_date_in(-30)),
    );
    rig.get("/down", &[]).await;
    rig.origin.stop().await;
    let r = rig.get("/down", &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "kept");
    assert_status_has(&r, &["fwd=stale", "detail=stale-if-error"]);
    assert!(
        !cache_status(&r).contains("fwd-status"),
        "no origin status when it was unreachable: {}",
        show(&r)
    );
    assert_hits!(rig, "/down", 1);
}

#[tokio::test]
async fn origin_error_without_stale_if_error_is_passed_through() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/fail",
        Answer::ok("kept")
            .cc("max-age=1")
            .etag("\"k\"")
            .header("date", &http_date_in(-30)),
    );
    rig.get("/fail", &[]).await;
    rig.origin.set("/fail", Answer::status(503, "down"));
    let r = rig.get("/fail", &[]).await;
    assert_eq!(
        r.status,
        503,
        "stale served without permission: {}",
        show(&r)
    );
    assert_eq!(r.body, "down");
    assert_hits!(rig, "/fail", 2);
}

#[tokio::test]
async fn must_revalidate_stale_is_never_served_unvalidated() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/mr",
        Answer::ok("kept")
            .cc("max-age=1, must-revalidate, stale-if-error=3600")
            .etag("\"k\"")
            .header("date", &http_date_in(-30)),
    );
    rig.get("/mr", &[]).await;
    rig.origin.set("/mr", Answer::status(503, "down"));
    let r = rig.get("/mr", &[("cache-control", "max-stale=3600")]).await;
    assert_ne!(
        r.status,
        200,
        "must-revalidate beats max-stale: {}",
        show(&r)
    );
    assert_hits!(rig, "/mr", 2, "max-stale does not skip must-revalidate");
    let r = rig.get("/mr", &[]).await;
    assert_ne!(
        r.status,
        200,
        "must-revalidate beats stale-if-error: {}",
        show(&r)
    );
    assert_ne!(r.body, "kept");
    assert_hits!(rig, "/mr", 3);
}

#[tokio::test]
async fn only_if_cached_with_a_stale_entry_is_504_without_contacting_origin() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/oics",
        Answer::ok("aged")
            .cc("max-age=1")
            .etag("\"a\"")
            .header("date", &http_date_in(-30)),
    );
    rig.get("/oics", &[]).await;
    let r = rig
        .get("/oics", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(r.status, 504, "{}", show(&r));
    let r = rig
        .get("/oics", &[("cache-control", "only-if-cached, max-stale")])
        .await;
    assert_eq!(r.status, 200, "max-stale accepts it: {}", show(&r));
    assert_eq!(r.body, "aged");
    assert_hits!(rig, "/oics", 1);
}

#[tokio::test]
async fn hits_are_served_over_h2c() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/h2", Answer::ok("over h2").cc("max-age=60"));
    let client = h2c_client();
    for _ in 0..3 {
        let req = http::Request::get(rig.url("/h2"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let r = send(&client, req).await;
        assert_eq!(r.status, 200, "{}", show(&r));
        assert_eq!(r.body, "over h2");
    }
    // And HTTP/1.1 shares the entries.
    assert_hit(&rig.get("/h2", &[]).await);
    assert_hits!(rig, "/h2", 1);
}

// ---------------------------------------------------------------------------------------
// Coalescing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_misses_are_coalesced_into_one_origin_request() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/co",
        Answer::ok("coalesced")
            .cc("max-age=60")
            .serial()
            .delay(Duration::from_millis(400)),
    );
    let url = rig.url("/co");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    for r in &replies {
        assert_eq!(r.status, 200, "{}", show(r));
        assert_eq!(r.body, "coalesced#1", "{}", show(r));
    }
    assert_hits!(rig, "/co", 1, "20 concurrent misses, one origin request");
    let statuses: Vec<&str> = replies.iter().map(cache_status).collect();
    let misses = statuses.iter().filter(|s| s.contains("fwd=")).count();
    let collapsed = statuses.iter().filter(|s| s.contains("collapsed")).count();
    assert_eq!(misses, 1, "{statuses:#?}");
    assert!(collapsed >= 1, "no waiter says collapsed: {statuses:#?}");
    for s in statuses.iter().filter(|s| !s.contains("fwd=")) {
        assert!(s.contains("; hit"), "{statuses:#?}");
    }
}

#[tokio::test]
async fn coalesced_waiters_go_to_origin_when_the_leader_response_is_unstorable() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/mine",
        Answer::ok("for")
            .cc("private, max-age=60")
            .echo("x-user")
            .delay(Duration::from_millis(300)),
    );
    let url = rig.url("/mine");
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let user = format!("user{i}");
                (i, get(&url, &[("x-user", &user)]).await)
            })
        })
        .collect();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", show(&r));
        assert_eq!(
            r.body,
            format!("for\nx-user=user{i}"),
            "user{i} got another client's private response: {}",
            show(&r)
        );
    }
    assert_hits!(rig, "/mine", 10, "every waiter asked the origin itself");
}

#[tokio::test]
async fn coalesced_waiters_stop_waiting_after_lock_timeout() {
    let rig = Rig::start(r#"{ max_size = "16MiB", lock_timeout = "100ms" }"#).await;
    rig.origin.set(
        "/lock",
        Answer::ok("slow")
            .cc("max-age=60")
            .delay(Duration::from_millis(2000)),
    );
    let url = rig.url("/lock");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    // The leader's answer takes 2 s; the waiters give up after 100 ms and go to the origin
    // themselves, long before that.
    let started = Instant::now();
    while rig.origin.hits("/lock") < 4 && started.elapsed() < Duration::from_millis(1800) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_hits!(
        rig,
        "/lock",
        4,
        "waiters went to the origin after lock_timeout"
    );
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", show(&r));
        assert_eq!(r.body, "slow");
    }
}

#[tokio::test]
async fn coalesced_waiters_get_their_own_vary_variant() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/cv",
        Answer::ok("enc")
            .cc("max-age=60")
            .header("vary", "Accept-Encoding")
            .echo("accept-encoding")
            .delay(Duration::from_millis(300)),
    );
    let url = rig.url("/cv");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let url = url.clone();
            let enc = if i % 2 == 0 { "gzip" } else { "br" };
            tokio::spawn(async move { (enc, get(&url, &[("accept-encoding", enc)]).await) })
        })
        .collect();
    for t in tasks {
        let (enc, r) = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", show(&r));
        assert_eq!(
            r.body,
            format!("enc\naccept-encoding={enc}"),
            "a {enc} client got another variant: {}",
            show(&r)
        );
    }
    let hits = rig.origin.hits("/cv");
    assert!((2..=12).contains(&hits), "{}", rig.seen("/cv"));
}

#[tokio::test]
async fn partial_content_is_not_stored() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/range",
        Answer::status(206, "part")
            .header("content-range", "bytes 0-3/100")
            .cc("max-age=60"),
    );
    for _ in 0..2 {
        let r = rig.get("/range", &[("range", "bytes=0-3")]).await;
        assert_eq!(r.status, 206, "{}", show(&r));
        assert_eq!(r.body, "part");
    }
    assert_hits!(rig, "/range", 2, "a 206 is never stored");
}

// ---------------------------------------------------------------------------------------
// Size limits
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn body_above_max_object_size_streams_through_uncached() {
    let rig = Rig::start(r#"{ max_size = "16MiB", max_object_size = "64KiB" }"#).await;
    let big = pattern(300_000);
    let small = pattern(20_000);
    rig.origin
        .set("/big", Answer::ok("").bytes(big.clone()).cc("max-age=60"));
    rig.origin.set(
        "/small",
        Answer::ok("").bytes(small.clone()).cc("max-age=60"),
    );
    for _ in 0..2 {
        let r = rig.get("/big", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len(), "{}", show(&r));
        assert!(r.body.as_bytes() == big.as_slice(), "body corrupted");
        assert_not_stored(&r);
        assert_status_has(&r, &["detail=too-large"]);
    }
    assert_hits!(rig, "/big", 2, "a body above max_object_size is not stored");
    for _ in 0..2 {
        let r = rig.get("/small", &[]).await;
        assert!(r.body.as_bytes() == small.as_slice(), "{}", show(&r));
    }
    assert_hits!(rig, "/small", 1);
}

#[tokio::test]
async fn chunked_body_above_max_object_size_streams_through_uncached() {
    let rig = Rig::start(r#"{ max_size = "16MiB", max_object_size = "64KiB" }"#).await;
    let big = pattern(300_000);
    let small = pattern(20_000);
    rig.origin.set(
        "/bigc",
        Answer::ok("")
            .bytes(big.clone())
            .cc("max-age=60")
            .chunked(7000),
    );
    rig.origin.set(
        "/smallc",
        Answer::ok("")
            .bytes(small.clone())
            .cc("max-age=60")
            .chunked(1000),
    );
    for _ in 0..2 {
        let r = rig.get("/bigc", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len(), "{}", show(&r));
        assert!(r.body.as_bytes() == big.as_slice(), "body corrupted");
        // No Content-Length: the head (and its Cache-Status) leaves before the size is
        // known, so only the next request can tell whether it was stored.
        assert!(!cache_status(&r).contains("; hit"), "{}", show(&r));
    }
    assert_hits!(
        rig,
        "/bigc",
        2,
        "a chunked body above max_object_size is not stored"
    );
    let first = rig.get("/smallc", &[]).await;
    assert!(
        first.body.as_bytes() == small.as_slice(),
        "{}",
        show(&first)
    );
    let hit = rig.get("/smallc", &[]).await;
    assert_hit(&hit);
    assert!(hit.body.as_bytes() == small.as_slice(), "{}", show(&hit));
    assert_hits!(rig, "/smallc", 1, "a small chunked body is stored");
}

#[tokio::test]
async fn incomplete_body_is_not_stored() {
    let rig = Rig::start(CACHE).await;
    let full = pattern(100_000);
    rig.origin.set(
        "/cut",
        Answer::ok("")
            .bytes(full.clone())
            .cc("max-age=60")
            .truncate(30_000),
    );
    rig.origin.set(
        "/cutc",
        Answer::ok("")
            .bytes(full.clone())
            .cc("max-age=60")
            .chunked(10_000)
            .truncate(30_000),
    );
    for p in ["/cut", "/cutc"] {
        let first = try_get(&rig.url(p)).await;
        assert!(
            first.as_ref().is_ok_and(|r| r.status != 200) || first.is_err(),
            "{p}: a body cut short upstream looked complete to the client: {:?}",
            first.map(|r| show(&r))
        );
        rig.origin
            .set(p, Answer::ok("").bytes(full.clone()).cc("max-age=60"));
        let r = rig.get(p, &[]).await;
        assert!(r.body.as_bytes() == full.as_slice(), "{p}: {}", show(&r));
        assert_hits!(rig, p, 2, "the cut-short body was not stored");
        assert_hit(&rig.get(p, &[]).await);
    }
}

#[tokio::test]
async fn on_response_plugins_run_on_hits_and_the_stored_copy_is_the_origins() {
    let origin = Origin::start().await;
    origin.set("/plug", Answer::ok("p").cc("max-age=60"));
    let toml = cache_config(origin.addr, CACHE).replace(
        "upstream = \"origin\"\ncache =",
        "upstream = \"origin\"\nplugins = [\"tag\"]\ncache =",
    ) + "[plugin.tag]\nwasm = \"headers.wasm\"\n\
         config = { response = { append = { \"x-tag\" = \"t\" } } }\n";
    assert!(toml.contains("plugins = [\"tag\"]"), "{toml}");
    let proxy = Proxy::start(&toml);
    let url = format!("{}/plug", proxy.url("web"));
    for i in 0..3 {
        let r = get(&url, &[]).await;
        let tags: Vec<_> = r.headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["t"], "reply {i}: {}", show(&r));
        if i > 0 {
            assert_hit(&r);
        }
    }
    assert_eq!(origin.hits("/plug"), 1);
}

/// Every object in the JSON of `GET /cache` that has a `bytes` field.
fn cache_route_stats(v: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key("bytes") {
                out.push(v.clone());
            }
            for child in map.values() {
                out.extend(cache_route_stats(child));
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                out.extend(cache_route_stats(child));
            }
        }
        _ => {}
    }
    out
}

#[tokio::test]
async fn admin_cache_reports_entries_and_bytes() {
    let rig = Rig::start(r#"{ max_size = "1MiB" }"#).await;
    for p in ["/s/1", "/s/2", "/s/3"] {
        rig.origin
            .set(p, Answer::ok("").bytes(pattern(1000)).cc("max-age=60"));
        rig.get(p, &[]).await;
    }
    let json = rig.admin().json("/cache").await;
    let stats = cache_route_stats(&json);
    assert_eq!(stats.len(), 1, "one cached route: {json:#}");
    assert_eq!(stats[0]["entries"], 3, "{json:#}");
    let bytes = stats[0]["bytes"].as_u64().expect("bytes");
    assert!((3000..1 << 20).contains(&bytes), "{json:#}");
    assert_eq!(stats[0]["max_size"], 1 << 20, "{json:#}");
}

#[tokio::test]
async fn eviction_keeps_the_cache_within_max_size() {
    let rig = Rig::start(r#"{ max_size = "64KiB" }"#).await;
    let admin = rig.admin();
    for i in 0..20 {
        let p = format!("/obj/{i}");
        rig.origin.set(
            &p,
            Answer::ok("").bytes(pattern(16 * 1024)).cc("max-age=600"),
        );
        let r = rig.get(&p, &[]).await;
        assert_eq!(r.body.len(), 16 * 1024);
        let json = admin.json("/cache").await;
        let stats = cache_route_stats(&json);
        assert_eq!(stats.len(), 1, "{json:#}");
        let bytes = stats[0]["bytes"].as_u64().expect("bytes");
        assert!(
            bytes <= 64 * 1024,
            "after {i}: {bytes} > max_size: {json:#}"
        );
        let entries = stats[0]["entries"].as_u64().expect("entries");
        assert!((1..=4).contains(&entries), "after {i}: {json:#}");
    }
    // What `GET /cache` counts is what is served: ask for every object with
    // only-if-cached (a miss is a 504 and stores nothing).
    let json = admin.json("/cache").await;
    let entries = cache_route_stats(&json)[0]["entries"].as_u64().unwrap();
    let mut held = 0;
    for i in 0..20 {
        let r = rig
            .get(&format!("/obj/{i}"), &[("cache-control", "only-if-cached")])
            .await;
        match r.status.as_u16() {
            200 => {
                assert_eq!(r.body.len(), 16 * 1024);
                held += 1;
            }
            504 => {}
            _ => panic!("/obj/{i}: {}", show(&r)),
        }
    }
    assert_eq!(held, entries, "entries held vs served: {json:#}");
    assert_eq!(
        rig.origin.total(),
        20,
        "only-if-cached never reaches the origin"
    );
}

// ---------------------------------------------------------------------------------------
// HEAD
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/head",
        Answer::ok("head body").cc("max-age=60").etag("\"h1\""),
    );
    rig.get("/head", &[]).await;
    let r = rig.send("HEAD", "/head", &[]).await;
    assert_eq!(r.status, 200, "{}", show(&r));
    assert_eq!(r.body, "");
    assert_eq!(r.header("etag"), "\"h1\"");
    assert_hit(&r);
    assert_eq!(
        rig.origin.hits_by("HEAD", "/head"),
        0,
        "{}",
        rig.seen("/head")
    );
    assert_hits!(rig, "/head", 1);
}

#[tokio::test]
async fn head_miss_is_forwarded_as_head_and_not_stored() {
    let rig = Rig::start(CACHE).await;
    rig.origin
        .set("/hm", Answer::ok("head miss").cc("max-age=60"));
    let r = rig.send("HEAD", "/hm", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
    assert_eq!(rig.origin.hits_by("HEAD", "/hm"), 1, "{}", rig.seen("/hm"));
    let r = rig.get("/hm", &[]).await;
    assert_eq!(
        r.body,
        "head miss",
        "a HEAD's empty body was stored: {}",
        show(&r)
    );
    assert_eq!(rig.origin.hits_by("GET", "/hm"), 1, "{}", rig.seen("/hm"));
    assert_hit(&rig.get("/hm", &[]).await);
    assert_hits!(rig, "/hm", 2);
}

// ---------------------------------------------------------------------------------------
// Purge and metrics (admin API)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_purge_by_key_drops_that_key_only() {
    let rig = Rig::start(CACHE).await;
    for p in ["/p/a", "/p/b"] {
        rig.origin.set(p, Answer::ok(p).cc("max-age=600"));
        rig.get(p, &[]).await;
        assert_hit(&rig.get(p, &[]).await);
    }
    let key = rig.key("/p/a");
    let r = rig
        .admin()
        .post(&format!("/cache/purge?key={}", percent_encode(&key)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let json: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(json["purged"], 1, "{json}");
    rig.get("/p/a", &[]).await;
    assert_hits!(rig, "/p/a", 2, "purged key goes to the origin again");
    assert_hit(&rig.get("/p/b", &[]).await);
    assert_hits!(rig, "/p/b", 1, "other keys stay cached");
}

#[tokio::test]
async fn admin_purge_by_prefix_drops_matching_keys() {
    let rig = Rig::start(CACHE).await;
    for p in ["/p/a", "/p/b?x=1", "/q/c"] {
        rig.origin.set(p, Answer::ok(p).cc("max-age=600"));
        rig.get(p, &[]).await;
    }
    let prefix = rig.key("/p/");
    let r = rig
        .admin()
        .post(&format!("/cache/purge?prefix={}", percent_encode(&prefix)))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let json: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(json["purged"], 2, "{json}");
    rig.get("/p/a", &[]).await;
    rig.get("/p/b?x=1", &[]).await;
    assert_hit(&rig.get("/q/c", &[]).await);
    assert_hits!(rig, "/p/a", 2);
    assert_hits!(rig, "/p/b?x=1", 2);
    assert_hits!(rig, "/q/c", 1);
}

#[tokio::test]
async fn admin_purge_drops_every_variant_of_a_key() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set(
        "/pv",
        Answer::ok("enc")
            .cc("max-age=600")
            .header("vary", "Accept-Encoding")
            .echo("accept-encoding"),
    );
    let gzip = [("accept-encoding", "gzip")];
    let br = [("accept-encoding", "br")];
    rig.get("/pv", &gzip).await;
    rig.get("/pv", &br).await;
    assert_hit(&rig.get("/pv", &gzip).await);
    assert_hit(&rig.get("/pv", &br).await);
    let r = rig
        .admin()
        .post(&format!(
            "/cache/purge?key={}",
            percent_encode(&rig.key("/pv"))
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let json: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(json["purged"], 1, "one key, whatever its variants: {json}");
    let stats = cache_route_stats(&rig.admin().json("/cache").await);
    assert_eq!(stats[0]["entries"], 0, "{stats:?}");
    rig.get("/pv", &gzip).await;
    rig.get("/pv", &br).await;
    assert_hits!(rig, "/pv", 4, "both variants were purged");
}

#[tokio::test]
async fn admin_purge_without_key_or_prefix_is_400() {
    let rig = Rig::start(CACHE).await;
    let r = rig.admin().post("/cache/purge").await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn metrics_count_cache_results() {
    let rig = Rig::start(CACHE).await;
    rig.origin.set("/m", Answer::ok("m").cc("max-age=60"));
    let admin = rig.admin();
    let name = "maitred_cache_requests_total";
    let before = admin.metrics().await;
    rig.get("/m", &[]).await;
    rig.get("/m", &[]).await;
    rig.get("/m", &[]).await;
    let after = admin.metrics().await;
    let delta = |result: &str| {
        after.sum(name, &[("result", result)]) - before.sum(name, &[("result", result)])
    };
    assert!(delta("miss") >= 1.0, "{}", after.text);
    assert!(delta("hit") >= 2.0, "{}", after.text);
    assert!(after.has("maitred_cache_entries", &[]), "{}", after.text);
    assert!(after.has("maitred_cache_bytes", &[]), "{}", after.text);
    assert_hits!(rig, "/m", 1);
}

#[tokio::test]
async fn cache_survives_a_reload_that_keeps_the_route() {
    let origin = Origin::start().await;
    origin.set("/r", Answer::ok("kept").cc("max-age=600").serial());
    let toml = cache_config(origin.addr, CACHE);
    let cfg = maitred_tests::ops::ConfigFile::new("cache-reload", &toml);
    let server = cfg.start();
    let url = format!("http://{}/r", server.local_addr("web").unwrap());
    assert_eq!(get(&url, &[]).await.body, "kept#1");
    // The same config again, plus an unrelated route.
    cfg.write(&format!(
        "{toml}[[route]]\nlistener = \"web\"\npath_prefix = \"/other/\"\nupstream = \"origin\"\n"
    ));
    server.reload().expect("reload");
    let r = get(&url, &[]).await;
    assert_eq!(
        r.body,
        "kept#1",
        "the entry survived the reload: {}",
        show(&r)
    );
    assert_hit(&r);
    assert_eq!(origin.hits("/r"), 1);
}

// ---------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------

fn check_file(tag: &str, toml: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new(tag);
    let path = dir.write("maitred.toml", toml);
    (dir, path)
}

#[test]
fn check_accepts_size_strings() {
    let origin: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    for cache in [
        r#"{ max_size = "1MiB", max_object_size = "64KiB" }"#,
        r#"{ max_size = "512", max_object_size = "512" }"#,
        r#"{ max_size = "1GiB", lock_timeout = "5s" }"#,
        "{}",
    ] {
        let (_dir, path) = check_file("cache-ok", &cache_config(origin, cache));
        if let Err(e) = maitred::check(&path) {
            panic!("cache = {cache} rejected: {e}");
        }
    }
}

#[test]
fn check_rejects_bad_size_strings_naming_file_line_and_key() {
    let origin: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (cache, key) in [
        (r#"{ max_size = "lots" }"#, "max_size"),
        (r#"{ max_object_size = "12 parsecs" }"#, "max_object_size"),
        (r#"{ lock_timeout = "soon" }"#, "lock_timeout"),
    ] {
        let toml = cache_config(origin, cache);
        let line = toml.lines().position(|l| l.starts_with("cache =")).unwrap() + 1;
        let (_dir, path) = check_file("cache-bad", &toml);
        let e = maitred::check(&path)
            .map(|s| panic!("cache = {cache} accepted: {s}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&path.display().to_string()),
            "error does not name the file: {e}"
        );
        assert!(
            e.contains(&format!(":{line}:")),
            "error does not name line {line}: {e}"
        );
        assert!(
            e.contains(&format!("route[0].cache.{key}")),
            "error does not name the key: {e}"
        );
    }
}
