//! The `cache-key` plugin through the proxy: a cached route (`cache = { max_size = "16MiB" }`)
//! with the plugin attached, in front of an origin that counts the requests it gets. Each test
//! checks what reaches the origin (hits never do) and the `Cache-Status` the client sees.

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use maitred_tests::*;
use std::sync::Arc;
use std::time::Duration;

/// The origin: echoes the request line and headers (so tests see what the plugin sent
/// upstream) with `Cache-Control` by path: `/short/...` `max-age=1`, `/private/...`
/// `private, max-age=60`, anything else `max-age=60`.
async fn origin() -> Backend {
    let handler: Handler = Arc::new(|req| {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let mut resp = echo(req).await;
            let cache_control = if path.starts_with("/short/") {
                "max-age=1"
            } else if path.starts_with("/private/") {
                "private, max-age=60"
            } else {
                "max-age=60"
            };
            resp.headers_mut()
                .insert("cache-control", HeaderValue::from_static(cache_control));
            resp
        })
    });
    Backend::start_with("origin", handler).await
}

/// A proxy with one cached route to `origin` through plugin `ck`, whose config table is
/// `config` (TOML lines).
fn proxy(origin: &Backend, config: &str) -> Proxy {
    Proxy::start(&format!(
        r#"
[runtime]
workers = 2

[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
path_prefix = "/"
upstream = "origin"
cache = {{ max_size = "16MiB" }}
plugins = ["ck"]

[upstream.origin]
endpoints = ["{}"]

[plugin.ck]
wasm = "cache_key.wasm"
timeout = "1s"

[plugin.ck.config]
{config}
"#,
        origin.addr
    ))
}

/// `GET path` through the proxy with `headers`.
async fn fetch(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> Reply {
    let reply = get(&format!("{}{path}", proxy.url("web")), headers).await;
    assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
    reply
}

/// The `Cache-Status` of a reply.
fn status(reply: &Reply) -> &str {
    reply.header("cache-status")
}

/// Whether a reply was served from the cache.
fn is_hit(reply: &Reply) -> bool {
    let s = status(reply);
    s.contains("hit") && !s.contains("fwd=")
}

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36";
const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

#[tokio::test]
async fn marketing_parameters_share_one_entry() {
    let origin = origin().await;
    let proxy = proxy(
        &origin,
        r#"ignore_query = ["utm_*", "fbclid", "gclid"]
sort_query = true"#,
    );
    let first = fetch(&proxy, "/p?utm_source=a", &[]).await;
    assert!(status(&first).contains("fwd=uri-miss"), "{first:?}");
    assert!(status(&first).contains("stored"), "{first:?}");
    // The origin still sees the query as sent (rewrite_query is off).
    assert!(
        first.body.starts_with("GET /p?utm_source=a "),
        "{}",
        first.body
    );
    for path in ["/p?utm_source=b", "/p", "/p?fbclid=x&utm_medium=y&gclid=z"] {
        let reply = fetch(&proxy, path, &[]).await;
        assert!(is_hit(&reply), "{path}: {reply:?}");
        assert_eq!(reply.body, first.body, "{path}");
    }
    assert_eq!(origin.requests(), 1);

    // Parameter order does not matter either.
    fetch(&proxy, "/q?b=2&a=1&utm_source=x", &[]).await;
    let reply = fetch(&proxy, "/q?a=1&b=2", &[]).await;
    assert!(is_hit(&reply), "{reply:?}");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn different_real_parameters_are_not_merged() {
    let origin = origin().await;
    let proxy = proxy(&origin, r#"ignore_query = ["utm_*"]"#);
    let one = fetch(&proxy, "/p?id=1", &[]).await;
    let two = fetch(&proxy, "/p?id=2", &[]).await;
    assert!(!is_hit(&two), "{two:?}");
    assert!(one.body.starts_with("GET /p?id=1 "), "{}", one.body);
    assert!(two.body.starts_with("GET /p?id=2 "), "{}", two.body);
    let again = fetch(&proxy, "/p?id=1&utm_campaign=z", &[]).await;
    assert!(is_hit(&again), "{again:?}");
    assert_eq!(again.body, one.body);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn rewrite_query_sends_the_filtered_query_upstream() {
    let origin = origin().await;
    let proxy = proxy(
        &origin,
        r#"ignore_query = ["utm_*"]
sort_query = true
rewrite_query = true"#,
    );
    let reply = fetch(&proxy, "/p?utm_source=a&b=2&a=1", &[]).await;
    assert!(reply.body.starts_with("GET /p?a=1&b=2 "), "{}", reply.body);
    let reply = fetch(&proxy, "/only?utm_source=a", &[]).await;
    assert!(reply.body.starts_with("GET /only "), "{}", reply.body);
    assert!(is_hit(&fetch(&proxy, "/p?a=1&b=2&utm_term=t", &[]).await));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn header_in_key_separates_variants() {
    let origin = origin().await;
    let proxy = proxy(&origin, r#"headers = ["accept-language"]"#);
    let de = fetch(&proxy, "/p", &[("accept-language", "de")]).await;
    let en = fetch(&proxy, "/p", &[("accept-language", "en")]).await;
    let none = fetch(&proxy, "/p", &[]).await;
    assert!(!is_hit(&en) && !is_hit(&none), "{en:?} {none:?}");
    assert_eq!(origin.requests(), 3);
    for (lang, want) in [(Some("de"), &de), (Some("en"), &en), (None, &none)] {
        let headers: Vec<(&str, &str)> = lang.map(|l| ("accept-language", l)).into_iter().collect();
        let reply = fetch(&proxy, "/p", &headers).await;
        assert!(is_hit(&reply), "{lang:?}: {reply:?}");
        assert_eq!(reply.body, want.body, "{lang:?}: the wrong variant");
    }
    assert!(de.body.contains("accept-language: de\n"), "{}", de.body);
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn cookie_in_key_separates_variants() {
    let origin = origin().await;
    let proxy = proxy(&origin, r#"cookies = ["currency"]"#);
    let eur = fetch(&proxy, "/p", &[("cookie", "currency=EUR")]).await;
    let usd = fetch(&proxy, "/p", &[("cookie", "currency=USD")]).await;
    assert!(!is_hit(&usd), "{usd:?}");
    // Other cookies do not matter.
    let again = fetch(&proxy, "/p", &[("cookie", "theme=dark; currency=EUR")]).await;
    assert!(is_hit(&again), "{again:?}");
    assert_eq!(again.body, eur.body);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn device_class_separates_mobile_and_desktop() {
    let origin = origin().await;
    let proxy = proxy(&origin, "device_class = true");
    let mobile = fetch(&proxy, "/p", &[("user-agent", IPHONE)]).await;
    assert!(
        mobile.body.contains("x-device-class: mobile\n"),
        "{}",
        mobile.body
    );
    // Another phone shares the mobile entry.
    let phone = fetch(&proxy, "/p", &[("user-agent", ANDROID_PHONE)]).await;
    assert!(is_hit(&phone), "{phone:?}");
    assert_eq!(phone.body, mobile.body);
    // A desktop gets its own; a header sent by the client does not choose the variant.
    let desktop = fetch(
        &proxy,
        "/p",
        &[("user-agent", DESKTOP), ("x-device-class", "mobile")],
    )
    .await;
    assert!(!is_hit(&desktop), "{desktop:?}");
    assert!(
        desktop.body.contains("x-device-class: desktop\n"),
        "{}",
        desktop.body
    );
    assert!(!desktop.body.contains("x-device-class: mobile"));
    let desktop_again = fetch(&proxy, "/p", &[("user-agent", DESKTOP)]).await;
    assert!(is_hit(&desktop_again), "{desktop_again:?}");
    assert_eq!(desktop_again.body, desktop.body);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn origin_sees_the_documented_key() {
    let origin = origin().await;
    let proxy = proxy(
        &origin,
        r#"ignore_query = ["utm_*"]
headers = ["accept-language"]
cookies = ["currency"]
device_class = true
key_header = "x-cache-key""#,
    );
    let reply = fetch(
        &proxy,
        "/P/a?utm_source=x&id=7",
        &[
            ("accept-language", "de"),
            ("user-agent", IPHONE),
            ("cookie", "currency=\"E#UR\""),
        ],
    )
    .await;
    let want = format!(
        "x-cache-key: {}/P/a?id=7#accept-language=de#x-device-class=mobile#cookie:currency=E%23UR\n",
        proxy.addr("web")
    );
    assert!(reply.body.contains(&want), "want {want}in\n{}", reply.body);
}

#[tokio::test]
async fn bypass_rules_send_every_request_to_the_origin() {
    let origin = origin().await;
    let proxy = proxy(
        &origin,
        r#"bypass = { cookies = ["session", "wordpress_logged_in_*"], headers = ["authorization"], path_prefixes = ["/account/"] }"#,
    );
    for _ in 0..3 {
        let reply = fetch(&proxy, "/p", &[("cookie", "theme=dark; session=abc")]).await;
        assert!(status(&reply).contains("fwd=bypass"), "{reply:?}");
        assert!(status(&reply).contains("cookie-session"), "{reply:?}");
    }
    assert_eq!(origin.requests(), 3);
    // Nothing was stored for the bypassed requests: the first anonymous one misses.
    let anonymous = fetch(&proxy, "/p", &[]).await;
    assert!(status(&anonymous).contains("fwd=uri-miss"), "{anonymous:?}");
    assert!(is_hit(&fetch(&proxy, "/p", &[]).await));
    assert_eq!(origin.requests(), 4);
    // A stored entry is not served to a bypassed request either.
    let wp = fetch(&proxy, "/p", &[("cookie", "wordpress_logged_in_12ab=x")]).await;
    assert!(status(&wp).contains("fwd=bypass"), "{wp:?}");
    assert!(
        status(&wp).contains("cookie-wordpress_logged_in_*"),
        "{wp:?}"
    );
    let auth = fetch(&proxy, "/p", &[("authorization", "Bearer t")]).await;
    assert!(status(&auth).contains("header-authorization"), "{auth:?}");
    assert_eq!(origin.requests(), 6);
    for _ in 0..2 {
        let reply = fetch(&proxy, "/account/orders", &[]).await;
        assert!(status(&reply).contains("fwd=bypass"), "{reply:?}");
        assert!(status(&reply).contains("path-/account/"), "{reply:?}");
    }
    assert_eq!(origin.requests(), 8);
}

#[tokio::test]
async fn ttl_override_keeps_storable_responses_fresh_longer() {
    let origin = origin().await;
    let proxy = proxy(
        &origin,
        r#"ttl = [ { path_prefix = "/short/kept/", ttl = "1m" }, { path_prefix = "/private/", ttl = 60 } ]"#,
    );
    // All three origin responses say max-age=1 or private.
    fetch(&proxy, "/short/kept/a", &[]).await;
    fetch(&proxy, "/short/plain/a", &[]).await;
    let private = fetch(&proxy, "/private/a", &[]).await;
    assert!(!status(&private).contains("stored"), "{private:?}");
    assert_eq!(origin.requests(), 3);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // The override outlives max-age=1...
    let kept = fetch(&proxy, "/short/kept/a", &[]).await;
    assert!(is_hit(&kept), "{kept:?}");
    assert_eq!(origin.requests(), 3);
    // ...while without one the entry is stale and the origin is asked again...
    let plain = fetch(&proxy, "/short/plain/a", &[]).await;
    assert!(!is_hit(&plain), "{plain:?}");
    assert_eq!(origin.requests(), 4);
    // ...and an override does not make a private response storable.
    let private = fetch(&proxy, "/private/a", &[]).await;
    assert!(!is_hit(&private), "{private:?}");
    assert_eq!(origin.requests(), 5);
}

#[tokio::test]
async fn unsafe_requests_invalidate_under_the_plugins_key() {
    let origin = origin().await;
    let proxy = proxy(&origin, r#"ignore_query = ["utm_*"]"#);
    fetch(&proxy, "/p", &[]).await;
    assert!(is_hit(&fetch(&proxy, "/p?utm_source=a", &[]).await));
    assert_eq!(origin.requests(), 1);
    let post = http::Request::post(format!("{}/p?utm_source=b", proxy.url("web")))
        .body(Full::new(Bytes::from_static(b"x=1")))
        .unwrap();
    let reply = send(&http1_client(), post).await;
    assert_eq!(reply.status, 200);
    assert_eq!(origin.requests(), 2);
    let after = fetch(&proxy, "/p", &[]).await;
    assert!(!is_hit(&after), "the POST did not invalidate: {after:?}");
    assert_eq!(origin.requests(), 3);
}

#[test]
fn bad_config_fails_check_naming_the_plugin() {
    let dir = TempDir::new("cache-key-check");
    let config = |plugin_config: &str| {
        format!(
            r#"
[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
path_prefix = "/"
upstream = "origin"
plugins = ["ck"]

[upstream.origin]
endpoints = ["127.0.0.1:9001"]

[plugin.ck]
wasm = {}
config = {plugin_config}
"#,
            toml_path(&plugin_dir().join("cache_key.wasm"))
        )
    };
    let good = dir.write(
        "good.toml",
        config(
            r#"{ ignore_query = ["utm_*"], ttl = [ { path_prefix = "/static/", ttl = "1d" } ] }"#,
        ),
    );
    maitred::check(&good).unwrap_or_else(|e| panic!("{e}"));
    for (name, plugin_config, want) in [
        (
            "path",
            r#"{ bypass = { path_prefixes = ["account/"] } }"#,
            "bypass.path_prefixes: \"account/\" must start with '/'",
        ),
        (
            "unknown-key",
            r#"{ ignore_qeury = ["utm_*"] }"#,
            "unknown field `ignore_qeury`",
        ),
        (
            "ttl",
            r#"{ ttl = [ { path_prefix = "/", ttl = "1 fortnight" } ] }"#,
            "invalid TTL \"1 fortnight\"",
        ),
        (
            "pattern",
            r#"{ ignore_query = ["utm source"] }"#,
            "ignore_query: \"utm source\"",
        ),
    ] {
        let path = dir.write(&format!("{name}.toml"), config(plugin_config));
        let e = maitred::check(&path)
            .expect_err(&format!("{name}: accepted"))
            .to_string();
        assert!(e.contains("plugin.ck: init failed"), "{name}: {e}");
        assert!(e.contains(want), "{name}: {e}");
    }
}
