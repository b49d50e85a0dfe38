//! Plugins on the request path: the three first-party plugins, a chain, and containment of
//! plugins that trap, loop forever or allocate without end.

use maitred_tests::*;
use std::time::{Duration, Instant};

/// A proxy with one route per entry of `routes` (`(path_prefix, plugins, upstream)`), plugin
/// definitions `plugins` (raw TOML), and upstreams `main` and `alt`.
fn proxy(main: &Backend, alt: &Backend, routes: &[(&str, &str, &str)], plugins: &str) -> Proxy {
    let mut toml = String::from(
        "[runtime]\nworkers = 2\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n",
    );
    for (prefix, chain, upstream) in routes {
        toml.push_str(&format!("[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\nplugins = [{chain}]\n"));
    }
    toml.push_str(&format!(
        "[upstream.main]\nendpoints = [\"{}\"]\n[upstream.alt]\nendpoints = [\"{}\"]\n",
        main.addr, alt.addr
    ));
    toml.push_str(plugins);
    Proxy::start(&toml)
}

const HEADERS: &str = r#"
[plugin.tag]
wasm = "headers.wasm"
config = { request = { set = { "x-env" = "demo" }, remove = ["x-remove-me"] }, response = { remove = ["server"], set = { "x-tagged" = "yes" } } }
"#;

#[tokio::test]
async fn headers_plugin_rewrites_both_directions() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    let proxy = proxy(&main, &alt, &[("/", "\"tag\"", "main")], HEADERS);
    let reply = get(&format!("{}/", proxy.url("web")), &[("x-remove-me", "1")]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("x-env: demo\n"), "{}", reply.body);
    assert!(!reply.body.contains("x-remove-me"), "{}", reply.body);
    assert_eq!(reply.header("server"), "");
    assert_eq!(reply.header("x-tagged"), "yes");
}

#[tokio::test]
async fn canary_plugin_moves_matching_and_a_share_of_requests() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    let plugins = r#"
[plugin.canary-header]
wasm = "canary.wasm"
config = { upstream = "alt", percent = 0, header = { name = "x-canary", value = "1" }, cookie = { name = "beta", value = "yes" } }
[plugin.canary-half]
wasm = "canary.wasm"
config = { upstream = "alt", percent = 50 }
"#;
    let proxy = proxy(
        &main,
        &alt,
        &[
            ("/match/", "\"canary-header\"", "main"),
            ("/share/", "\"canary-half\"", "main"),
        ],
        plugins,
    );
    let url = proxy.url("web");
    assert_eq!(
        get(&format!("{url}/match/"), &[]).await.header("x-backend"),
        "main"
    );
    assert_eq!(
        get(&format!("{url}/match/"), &[("x-canary", "1")])
            .await
            .header("x-backend"),
        "alt"
    );
    assert_eq!(
        get(&format!("{url}/match/"), &[("x-canary", "2")])
            .await
            .header("x-backend"),
        "main"
    );
    assert_eq!(
        get(&format!("{url}/match/"), &[("cookie", "a=b; beta=yes")])
            .await
            .header("x-backend"),
        "alt"
    );
    let mut to_alt = 0;
    for _ in 0..200 {
        if get(&format!("{url}/share/"), &[]).await.header("x-backend") == "alt" {
            to_alt += 1;
        }
    }
    assert!(
        (50..150).contains(&to_alt),
        "50% canary sent {to_alt} of 200 requests"
    );
}

#[tokio::test]
async fn respond_plugin_answers_directly() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    let plugins = r#"
[plugin.guard]
wasm = "respond.wasm"
config = { rules = [ { path_prefix = "/admin/", status = 403, body = "forbidden" },
                     { path_prefix = "/old/", status = 301, headers = { location = "/new/" } } ] }
"#;
    let proxy = proxy(&main, &alt, &[("/", "\"guard\"", "main")], plugins);
    let url = proxy.url("web");
    let blocked = get(&format!("{url}/admin/users"), &[]).await;
    assert_eq!(
        (blocked.status.as_u16(), blocked.body.as_str()),
        (403, "forbidden")
    );
    let moved = get(&format!("{url}/old/page"), &[]).await;
    assert_eq!(
        (moved.status.as_u16(), moved.header("location")),
        (301, "/new/")
    );
    assert_eq!(main.requests(), 0);
    assert_eq!(get(&format!("{url}/public"), &[]).await.status, 200);
    assert_eq!(main.requests(), 1);
}

#[tokio::test]
async fn chain_runs_in_order_and_stops_at_a_direct_answer() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    let plugins = format!(
        "{HEADERS}{}",
        r#"
[plugin.guard]
wasm = "respond.wasm"
config = { rules = [ { path_prefix = "/blocked", status = 403, body = "no" } ] }
[plugin.canary]
wasm = "canary.wasm"
config = { upstream = "alt", header = { name = "x-env", value = "demo" } }
"#
    );
    // tag sets x-env: demo, so the canary (later in the chain) sees it and moves the request.
    let proxy = proxy(
        &main,
        &alt,
        &[("/", "\"tag\", \"guard\", \"canary\"", "main")],
        &plugins,
    );
    let url = proxy.url("web");
    let reply = get(&format!("{url}/ok"), &[]).await;
    assert_eq!(reply.header("x-backend"), "alt");
    assert_eq!(reply.header("x-tagged"), "yes");
    assert_eq!(get(&format!("{url}/blocked"), &[]).await.status, 403);
    assert_eq!(main.requests() + alt.requests(), 1);
}

const MISBEHAVING: &str = r#"
[plugin.trap-closed]
wasm = "trap.wasm"
[plugin.trap-open]
wasm = "trap.wasm"
on_error = "fail-open"
[plugin.spin-closed]
wasm = "spin.wasm"
timeout = "50ms"
[plugin.spin-open]
wasm = "spin.wasm"
timeout = "50ms"
on_error = "fail-open"
isolation = "per-request"
[plugin.hog]
wasm = "hog.wasm"
memory_limit = "16MiB"
"#;

#[tokio::test]
async fn trapping_plugin_fails_only_its_request() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    let proxy = proxy(
        &main,
        &alt,
        &[
            ("/closed/", "\"trap-closed\"", "main"),
            ("/open/", "\"trap-open\"", "main"),
        ],
        MISBEHAVING,
    );
    let url = proxy.url("web");
    for _ in 0..3 {
        let failed = get(&format!("{url}/closed/"), &[("x-trap", "1")]).await;
        assert_eq!(
            (failed.status.as_u16(), failed.body.as_str()),
            (500, "500 Internal Server Error\n")
        );
        let next = get(&format!("{url}/closed/"), &[]).await;
        assert_eq!(next.status, 200);
        assert!(next.body.contains("x-trap-plugin: passed"), "{}", next.body);
        // Writing to stdout (WASI streams are not for plugins) fails the request, not the host.
        let printed = get(&format!("{url}/closed/"), &[("x-print", "1")]).await;
        assert_eq!(printed.status, 500);
        // Fail-open: the plugin is skipped, the request goes through untouched.
        let skipped = get(&format!("{url}/open/"), &[("x-trap", "1")]).await;
        assert_eq!(skipped.status, 200);
        assert!(!skipped.body.contains("x-trap-plugin"), "{}", skipped.body);
    }
}

#[tokio::test]
async fn looping_plugin_is_stopped_at_its_deadline() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    let proxy = proxy(
        &main,
        &alt,
        &[
            ("/closed/", "\"spin-closed\"", "main"),
            ("/open/", "\"spin-open\"", "main"),
        ],
        MISBEHAVING,
    );
    let url = proxy.url("web");
    for _ in 0..2 {
        let started = Instant::now();
        let failed = get(&format!("{url}/closed/"), &[("x-spin", "1")]).await;
        assert_eq!(failed.status, 500);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "deadline not enforced: {:?}",
            started.elapsed()
        );
        let skipped = get(&format!("{url}/open/"), &[("x-spin", "1")]).await;
        assert_eq!(skipped.status, 200);
        let next = get(&format!("{url}/closed/"), &[]).await;
        assert_eq!(next.status, 200);
        assert!(next.body.contains("x-spin-plugin: passed"), "{}", next.body);
    }
}

#[tokio::test]
async fn allocating_plugin_hits_its_memory_cap() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    let proxy = proxy(&main, &alt, &[("/", "\"hog\"", "main")], MISBEHAVING);
    let url = proxy.url("web");
    let failed = get(&format!("{url}/"), &[("x-hog", "1")]).await;
    assert_eq!(failed.status, 500);
    let next = get(&format!("{url}/"), &[]).await;
    assert_eq!(next.status, 200);
    assert!(next.body.contains("x-hog-plugin: passed"), "{}", next.body);
}

#[tokio::test]
async fn example_plugin_works() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    let plugins = "[plugin.hello]\nwasm = \"hello.wasm\"\nconfig = { greeting = \"bonjour\" }\n";
    let proxy = proxy(&main, &alt, &[("/", "\"hello\"", "main")], plugins);
    let reply = get(&format!("{}/", proxy.url("web")), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-hello"), "bonjour");
}

#[tokio::test]
async fn every_host_function_works_end_to_end() {
    let (main, alt) = (Backend::start("main").await, Backend::start("alt").await);
    // A generous deadline: this test checks what the host functions do, not how fast a
    // debug build runs them on a loaded machine (the deadline has its own tests).
    let plugins = "[plugin.probe]\nwasm = \"probe.wasm\"\ntimeout = \"1s\"\n";
    let proxy = proxy(&main, &alt, &[("/", "\"probe\"", "main")], plugins);
    let url = proxy.url("web");
    let client = http1_client();
    let req = http::Request::get(format!("{url}/rewrite/me?x=y"))
        .header("host", "probe.example.com")
        .header("x-twice", "a")
        .header("x-twice", "b")
        .body(Default::default())
        .unwrap();
    let reply = send(&client, req).await;
    // Response phase: status rewritten, headers read, added and removed.
    assert_eq!(reply.status.as_u16(), 299);
    assert_eq!(reply.header("x-probe-status"), "200");
    assert!(
        reply.header("x-probe-names").contains("server"),
        "{:?}",
        reply.headers
    );
    assert_eq!(
        reply.headers.get_all("x-multi").iter().collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert_eq!(reply.header("server"), "");
    // Request phase, as the backend saw it.
    let seen = &reply.body;
    assert!(seen.starts_with("GET /rewritten?a=1 "), "{seen}");
    assert!(seen.contains("x-probe-request: method=GET protocol=HTTP/1.1 path=/rewrite/me query=x=y authority=probe.example.com upstream=main names="), "{seen}");
    assert!(seen.contains("x-probe-client: 127.0.0.1:"), "{seen}");
    assert!(seen.contains("x-probe-twice: a|b\n"), "{seen}");
    assert!(
        !seen.contains("x-probe-validation"),
        "invalid names/values were accepted: {seen}"
    );
    // Asking for an upstream that does not exist fails the call (fail-closed: 500).
    assert_eq!(
        get(&format!("{url}/unknown-upstream"), &[]).await.status,
        500
    );
}

/// A backend that answers with the request's `x-body-len` header and the body it received.
async fn body_echo() -> Backend {
    Backend::start_with(
        "body",
        std::sync::Arc::new(|req: http::Request<hyper::body::Incoming>| {
            Box::pin(async move {
                let seen = req
                    .headers()
                    .get("x-body-len")
                    .map_or("absent".to_string(), |v| {
                        String::from_utf8_lossy(v.as_bytes()).into_owned()
                    });
                let body = http_body_util::BodyExt::collect(req.into_body())
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let text = format!("x-body-len={seen} received={}\n", body.len());
                http::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)))
            })
        }),
    )
    .await
}

/// A proxy whose routes `/strict/` (max_body 1KiB, oversize rejected), `/lenient/` (1KiB,
/// oversize passed) and `/plain/` (no body plugin) go to `backend`.
fn body_proxy(backend: &Backend) -> Proxy {
    Proxy::start(&format!(
        r#"
[[listener]]
name = "web"
listen = "127.0.0.1:0"
[[route]]
path_prefix = "/strict/"
upstream = "b"
plugins = ["reader"]
max_body = "1KiB"
[[route]]
path_prefix = "/lenient/"
upstream = "b"
plugins = ["reader"]
max_body = "1KiB"
oversize = "pass"
[[route]]
path_prefix = "/plain/"
upstream = "b"
[upstream.b]
endpoints = ["{}"]
[plugin.reader]
wasm = "body_probe.wasm"
"#,
        backend.addr
    ))
}

async fn post(url: &str, body: Vec<u8>, chunked: bool) -> Reply {
    let mut builder = http::Request::post(url);
    if chunked {
        // A body of unknown length: the client sends it chunked.
        builder = builder.header("transfer-encoding", "chunked");
    }
    let req = builder
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    send(&http1_client(), req).await
}

#[tokio::test]
async fn body_reading_plugins_get_the_whole_body_and_it_is_still_forwarded() {
    let backend = body_echo().await;
    let proxy = body_proxy(&backend);
    let base = proxy.url("web");
    for chunked in [false, true] {
        let reply = post(&format!("{base}/strict/form"), vec![b'a'; 700], chunked).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.body, "x-body-len=700 received=700\n",
            "chunked={chunked}"
        );
        let reply = post(
            &format!("{base}/strict/form"),
            b"an evil payload".to_vec(),
            chunked,
        )
        .await;
        assert_eq!(reply.status, 403, "chunked={chunked}");
        assert_eq!(reply.body, "blocked\n");
    }
    // A body-less GET: the plugin sees an empty body.
    let reply = get(&format!("{base}/strict/x"), &[]).await;
    assert_eq!(reply.body, "x-body-len=0 received=0\n");
    assert_eq!(
        backend.requests(),
        3,
        "the blocked requests must not reach the backend"
    );
}

#[tokio::test]
async fn bodies_over_max_body_are_413_or_pass_uninspected() {
    let backend = body_echo().await;
    let proxy = body_proxy(&backend);
    let base = proxy.url("web");
    let mut big = vec![b'a'; 5000];
    big.extend_from_slice(b"evil");
    for chunked in [false, true] {
        let reply = post(&format!("{base}/strict/upload"), big.clone(), chunked).await;
        assert_eq!(reply.status, 413, "chunked={chunked}: {}", reply.body);
        let reply = post(&format!("{base}/lenient/upload"), big.clone(), chunked).await;
        assert_eq!(reply.status, 200, "chunked={chunked}");
        assert_eq!(
            reply.body, "x-body-len=none received=5004\n",
            "chunked={chunked}"
        );
    }
    // Routes without a body-reading plugin stream any size.
    let reply = post(&format!("{base}/plain/upload"), vec![b'z'; 3 << 20], false).await;
    assert_eq!(
        reply.body,
        format!("x-body-len=absent received={}\n", 3 << 20)
    );
    assert_eq!(backend.requests(), 3);
}

#[tokio::test]
async fn files_are_readable_by_their_plugin_only_and_only_inside_its_directories() {
    let backend = Backend::start("main").await;
    let dir = TempDir::new("plugin-files");
    std::fs::create_dir_all(dir.path.join("rules")).unwrap();
    let rules = dir.write("rules/list.txt", "from disk\n");
    let secret = dir.write("secret.txt", "do not read\n");
    let rules_dir = rules.parent().unwrap();
    let config = |path: &std::path::Path, files: &str| {
        format!(
            r#"
[runtime]
workers = 2
[[listener]]
name = "web"
listen = "127.0.0.1:0"
[[route]]
upstream = "b"
plugins = ["reader"]
[upstream.b]
endpoints = ["{}"]
[plugin.reader]
wasm = "file_probe.wasm"
files = [{files}]
config = {{ path = {} }}
"#,
            backend.addr,
            toml_path(path)
        )
    };
    // Pooled instances are made at load; per-request ones on the workers, for each request.
    for isolation in ["pooled", "per-request"] {
        let toml =
            config(&rules, &toml_path(rules_dir)) + &format!("isolation = \"{isolation}\"\n");
        let proxy = Proxy::start(&toml);
        for _ in 0..4 {
            let reply = get(&format!("{}/", proxy.url("web")), &[]).await;
            assert_eq!(reply.status, 200, "{isolation}");
            assert!(reply.body.contains("x-file: from disk\n"), "{}", reply.body);
        }
    }
    // Outside the mounted directory, and without `files`, the plugin cannot read.
    for (path, files) in [(&secret, toml_path(rules_dir)), (&rules, String::new())] {
        let file = dir.write("bad.toml", config(path, &files));
        let error = maitred::config::Config::load(&file)
            .map_err(anyhow::Error::from)
            .and_then(|c| maitred::runtime::Snapshot::build(&c, None).map_err(Into::into))
            .err()
            .expect("the plugin must fail to load");
        assert!(error.to_string().contains("cannot read"), "{error}");
    }
    // A missing directory is a config error naming the key.
    let file = dir.write("missing.toml", config(&rules, "\"/no/such/dir\""));
    let error = maitred::config::Config::load(&file)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("plugin.reader.files[0]"), "{error}");
}
