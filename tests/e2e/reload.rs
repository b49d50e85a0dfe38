//! Hot reload and graceful shutdown: a config file rewritten and reloaded (by
//! `Server::reload`, `POST /reload` and the file watcher) under sustained keep-alive load,
//! bad configs that must leave the old one serving, listeners added and removed, upstream
//! state and TLS certificates across reloads, reload timings, and shutdown with a grace
//! period.

use maitred_tests::l4::{TcpBackend, connect, read_line, read_until_closed};
use maitred_tests::ops::*;
use maitred_tests::tls::{Ca, ClientTls, https_get};
use maitred_tests::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// `[runtime]` (2 workers), `[admin]` on an ephemeral loopback port and listener `web`.
fn head(watch: bool) -> String {
    format!(
        "[runtime]\nworkers = 2\nwatch = {watch}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n"
    )
}

/// Plugin `name`: the `headers` plugin in file `wasm`, setting request header `x-tag-req`
/// and response header `x-tag` to `tag`.
fn tag_plugin(name: &str, wasm: &Path, tag: &str) -> String {
    format!(
        "[plugin.{name}]\nwasm = {}\nconfig = {{ request = {{ set = {{ \"x-tag-req\" = \"{tag}\" }} }}, \
         response = {{ set = {{ \"x-tag\" = \"{tag}\" }} }} }}\n",
        toml_path(wasm)
    )
}

/// A config with listener `web`, one route to `backend` through plugin `tag` (`wasm`,
/// tagging `tag`), and `extra` TOML appended.
fn tag_config(watch: bool, backend: SocketAddr, wasm: &Path, tag: &str, extra: &str) -> String {
    format!(
        "{}[[route]]\nupstream = \"main\"\nplugins = [\"tag\"]\n[upstream.main]\nendpoints = [\"{backend}\"]\n{}{extra}",
        head(watch),
        tag_plugin("tag", wasm, tag)
    )
}

/// A response from a `tag_config` proxy in front of an echo backend: `Ok(tag)` when the
/// status is 200, there is exactly one `x-tag` header, it is `v1` or `v2`, and the request
/// the backend saw carried exactly one `x-tag-req`, the same tag (request and response
/// went through the same plugin version).
fn classify_tag(reply: &Reply) -> Result<String, String> {
    if reply.status != 200 {
        return Err(format!("status {}: {}", reply.status, reply.body));
    }
    let tags: Vec<&str> = reply
        .headers
        .get_all("x-tag")
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect();
    let [tag] = tags.as_slice() else {
        return Err(format!("x-tag headers: {tags:?}"));
    };
    if *tag != "v1" && *tag != "v2" {
        return Err(format!("x-tag {tag:?}"));
    }
    let seen: Vec<&str> = reply
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("x-tag-req: "))
        .collect();
    if seen != [*tag] {
        return Err(format!(
            "response tagged {tag:?} but the backend saw x-tag-req {seen:?}"
        ));
    }
    Ok(tag.to_string())
}

/// Runs `server.reload()` off the async runtime.
async fn reload(server: &Arc<maitred::Server>) -> Result<u64, String> {
    let server = server.clone();
    tokio::task::spawn_blocking(move || server.reload().map_err(|e| e.to_string()))
        .await
        .unwrap()
}

/// `GET /` on listener `web` of `server`.
async fn get_web(server: &maitred::Server, path: &str) -> Reply {
    get(
        &format!("http://{}{path}", server.local_addr("web").unwrap()),
        &[],
    )
    .await
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------
// Reload under load
// ---------------------------------------------------------------------------------------

/// The test: 32 keep-alive clients busy while the config and the route's plugin (a
/// different `.wasm` file, so a different content hash) are replaced 20 times, alternately
/// through `Server::reload` and `POST /reload`. 8 of the clients ask for `/slow` (answered
/// after 30 ms), so requests are in flight across every swap. Zero failed requests; every
/// response carries exactly one tag, the one its request went out with (request and
/// response phases ran the same plugin version); requests sent after a reload returned
/// carry the new tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_nothing_and_never_mixes_versions() {
    const CLIENTS: usize = 32;
    const SLOW_CLIENTS: usize = 8;
    const RELOADS: u64 = 20;
    let backend = SlowBackend::start("main", Duration::from_millis(30)).await;
    let backend = &backend.backend;
    let cfg = ConfigFile::new("reload-load", "");
    let salt = unique_salt();
    let wasm_a = salted_plugin(
        "headers.wasm",
        &cfg.file("tag-a.wasm"),
        &format!("a-{salt}"),
    );
    let wasm_b = salted_plugin(
        "headers.wasm",
        &cfg.file("tag-b.wasm"),
        &format!("b-{salt}"),
    );
    cfg.write(&tag_config(false, backend.addr, &wasm_a, "v1", ""));
    let server = Arc::new(cfg.start());
    let admin = Admin::of(&server);
    let web = server.local_addr("web").unwrap();
    assert_eq!(classify_tag(&get_web(&server, "/").await), Ok("v1".into()));

    let load = KeepAliveLoad::start(web, CLIENTS - SLOW_CLIENTS, "/", Arc::new(classify_tag)).await;
    let slow = KeepAliveLoad::start(web, SLOW_CLIENTS, "/slow", Arc::new(classify_tag)).await;
    load.expect("v1");
    slow.expect("v1");
    assert!(
        load.wait_completed(2 * CLIENTS, Duration::from_secs(30))
            .await,
        "the load did not get going"
    );
    let mut durations = Vec::new();
    for i in 1..=RELOADS {
        let (tag, wasm) = if i % 2 == 1 {
            ("v2", &wasm_b)
        } else {
            ("v1", &wasm_a)
        };
        load.unsettled();
        slow.unsettled();
        cfg.write(&tag_config(false, backend.addr, wasm, tag, ""));
        let started = Instant::now();
        let version = if i % 2 == 1 {
            reload(&server)
                .await
                .unwrap_or_else(|e| panic!("reload {i}: {e}"))
        } else {
            let reply = admin.post("/reload").await;
            assert_eq!(reply.status, 200, "POST /reload {i}: {}", reply.body);
            let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            json["version"]
                .as_u64()
                .expect("version in the POST /reload answer")
        };
        durations.push(started.elapsed());
        assert_eq!(version, 1 + i, "config version after reload {i}");
        load.expect(tag);
        slow.expect(tag);
        // Traffic on the new snapshot before the next reload.
        let target = load.completed() + 2 * CLIENTS;
        let slow_target = slow.completed() + SLOW_CLIENTS;
        assert!(
            load.wait_completed(target, Duration::from_secs(30)).await,
            "no traffic completed after reload {i}: {:?}",
            load.report()
        );
        assert!(
            slow.wait_completed(slow_target, Duration::from_secs(30))
                .await,
            "no slow requests completed after reload {i}: {:?}",
            slow.report()
        );
    }
    let fast = load.stop().await;
    let slow = slow.stop().await;
    eprintln!("reload under load: fast clients {fast:?}");
    eprintln!("reload under load: slow clients {slow:?}");
    let mut report = fast;
    report.ok += slow.ok;
    report.failed += slow.failed;
    report.failures.extend(slow.failures);
    report.stale += slow.stale;
    report.stale_examples.extend(slow.stale_examples);
    report.checked += slow.checked;
    report.reconnects += slow.reconnects;
    for (tag, n) in slow.by_tag {
        *report.by_tag.entry(tag).or_default() += n;
    }
    let mut sorted = durations.clone();
    sorted.sort();
    eprintln!(
        "reload under load: {CLIENTS} keep-alive clients, {RELOADS} reloads; {} ok, {} failed, \
         by tag {:?}, {} checked against the expected tag, {} stale, {} reconnects; \
         reload time min {:.1} ms, median {:.1} ms, max {:.1} ms (first, compiling tag-b: {:.1} ms)",
        report.ok,
        report.failed,
        report.by_tag,
        report.checked,
        report.stale,
        report.reconnects,
        millis(sorted[0]),
        millis(sorted[sorted.len() / 2]),
        millis(sorted[sorted.len() - 1]),
        millis(durations[0]),
    );
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert_eq!(
        report.stale, 0,
        "requests sent after a reload returned were served by the old plugin: {:?}",
        report.stale_examples
    );
    assert_eq!(
        report.reconnects, 0,
        "the proxy closed keep-alive client connections during reloads"
    );
    assert!(
        report.by_tag.get("v1").is_some_and(|n| *n > 0),
        "{report:?}"
    );
    assert!(
        report.by_tag.get("v2").is_some_and(|n| *n > 0),
        "{report:?}"
    );
    assert!(report.checked > 0);

    let status = server.status();
    assert_eq!(
        (status.version, status.reloads, status.reload_failures),
        (1 + RELOADS, RELOADS, 0)
    );
    // The serving plugin is tag-a's build again, by content hash.
    let json = admin.status().await;
    assert_eq!(
        json["routes"][0]["plugins"][0]["sha256"],
        sha256_hex(&std::fs::read(&wasm_a).unwrap()),
        "{json:#}"
    );
}

/// Reload times for a config with 10 routes and 5 plugins: the first load (every plugin
/// compiled), a reload that changes every plugin's settings (compiled code from the cache,
/// every plugin initialised again), a reload of an unchanged file (everything reused), and
/// a reload to 5 new `.wasm` builds (compiled again).
#[tokio::test]
async fn reload_time_with_10_routes_and_5_plugins() {
    const ROUTES: usize = 10;
    const PLUGINS: usize = 5;
    let backend = Backend::start("main").await;
    let cfg = ConfigFile::new("reload-timing", "");
    let build = |generation: &str| -> Vec<std::path::PathBuf> {
        let salt = unique_salt();
        (0..PLUGINS)
            .map(|p| {
                salted_plugin(
                    "headers.wasm",
                    &cfg.file(&format!("p{p}-{generation}.wasm")),
                    &format!("{p}-{generation}-{salt}"),
                )
            })
            .collect()
    };
    let config = |wasm: &[std::path::PathBuf], generation: usize| -> String {
        let mut toml = head(false);
        for r in 0..ROUTES {
            toml.push_str(&format!(
                "[[route]]\npath_prefix = \"/r{r}/\"\nupstream = \"main\"\nplugins = [\"p{}\", \"p{}\"]\n",
                r % PLUGINS,
                (r + 1) % PLUGINS
            ));
        }
        toml.push_str(&format!(
            "[upstream.main]\nendpoints = [\"{}\"]\n",
            backend.addr
        ));
        for (p, path) in wasm.iter().enumerate() {
            toml.push_str(&format!(
                "[plugin.p{p}]\nwasm = {}\nconfig = {{ response = {{ set = {{ \"x-p{p}\" = \"gen{generation}\" }} }} }}\n",
                toml_path(path)
            ));
        }
        toml
    };
    // Every response carries the generation of both plugins of its route.
    let check = |server: &maitred::Server, generation: usize| {
        let web = server.local_addr("web").unwrap();
        async move {
            for r in 0..ROUTES {
                let reply = get(&format!("http://{web}/r{r}/"), &[]).await;
                assert_eq!(reply.status, 200, "/r{r}/");
                for p in [r % PLUGINS, (r + 1) % PLUGINS] {
                    assert_eq!(
                        reply.header(&format!("x-p{p}")),
                        format!("gen{generation}"),
                        "/r{r}/ plugin p{p}"
                    );
                }
            }
        }
    };

    let first = build("a");
    cfg.write(&config(&first, 1));
    let started = Instant::now();
    let server = Arc::new(cfg.start());
    let cold_start = started.elapsed();
    let cold_build = server.status().load_duration;
    check(&server, 1).await;

    // Settings changed, same bytes: compile cache hits, plugins initialised again.
    let mut warm = Vec::new();
    for generation in 2..=4 {
        cfg.write(&config(&first, generation));
        let started = Instant::now();
        reload(&server).await.unwrap();
        warm.push(started.elapsed());
        check(&server, generation).await;
    }
    warm.sort();
    let warm_median = warm[warm.len() / 2];

    // Nothing changed: every plugin and upstream reused.
    let started = Instant::now();
    reload(&server).await.unwrap();
    let unchanged = started.elapsed();
    check(&server, 4).await;

    // New builds of every plugin: compiled on reload.
    let second = build("b");
    cfg.write(&config(&second, 5));
    let started = Instant::now();
    reload(&server).await.unwrap();
    let cold_reload = started.elapsed();
    check(&server, 5).await;

    eprintln!(
        "reload timing ({ROUTES} routes, {PLUGINS} plugins, 2 workers): cold start {:.1} ms \
         (snapshot build {:.1} ms); reload with compiled-code cache (settings changed) median \
         {:.1} ms of {:?}; reload unchanged {:.1} ms; cold reload (5 new builds) {:.1} ms",
        millis(cold_start),
        millis(cold_build),
        millis(warm_median),
        warm.iter()
            .map(|d| (millis(*d) * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        millis(unchanged),
        millis(cold_reload),
    );
    assert_eq!(server.status().version, 6);
    assert!(
        warm_median < cold_reload,
        "a reload with the compile cache ({warm_median:?}) should beat one compiling 5 plugins ({cold_reload:?})"
    );
    assert!(
        unchanged < cold_reload,
        "a reload that changes nothing ({unchanged:?}) should beat one compiling 5 plugins ({cold_reload:?})"
    );
}

// ---------------------------------------------------------------------------------------
// Bad configs
// ---------------------------------------------------------------------------------------

/// Bad configs on reload (syntax error, unknown upstream, a plugin whose `init` fails, a
/// plugin that does not compile, a listener that cannot bind after another one could):
/// reload fails, the old config keeps serving unchanged, nothing is half-applied, and the
/// failure shows in `GET /status` and `GET /metrics`.
#[tokio::test]
async fn failed_reload_keeps_the_old_config_serving() {
    let backend = Backend::start("main").await;
    let cfg = ConfigFile::new("reload-bad", "");
    let salt = unique_salt();
    let wasm = salted_plugin("headers.wasm", &cfg.file("tag.wasm"), &salt);
    let garbage = cfg
        .dir
        .write("garbage.wasm", b"\0asm this is not a component");
    let good_v2 = tag_config(false, backend.addr, &wasm, "v2", "");
    cfg.write(&tag_config(false, backend.addr, &wasm, "v1", ""));
    let server = Arc::new(cfg.start());
    let admin = Admin::of(&server);

    // Held without SO_REUSEPORT: the proxy cannot bind it.
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let occupied_addr = occupied.local_addr().unwrap();
    let free = maitred_tests::l4::dead_port();

    let init_fails = tag_config(false, backend.addr, &wasm, "v2", "")
        .replace("config = { request", "config = { bogus = 1, request");
    assert_ne!(init_fails, good_v2);
    let bad: Vec<(&str, String, String)> = vec![
        (
            "syntax error",
            good_v2.replace("[[route]]", "[[route]"),
            "maitred.toml:".into(),
        ),
        (
            "unknown upstream",
            good_v2.replace("upstream = \"main\"", "upstream = \"nope\""),
            "unknown upstream \"nope\"".into(),
        ),
        ("plugin init fails", init_fails, "plugin.tag".into()),
        (
            "plugin does not compile",
            format!(
                "{good_v2}[plugin.broken]\nwasm = {}\n[[route]]\npath_prefix = \"/broken/\"\nupstream = \"main\"\nplugins = [\"broken\"]\n",
                toml_path(&garbage)
            ),
            "plugin.broken".into(),
        ),
        (
            "second new listener cannot bind",
            format!(
                "{good_v2}[[listener]]\nname = \"extra1\"\nlisten = \"{free}\"\n\
                 [[listener]]\nname = \"extra2\"\nlisten = \"{occupied_addr}\"\n"
            ),
            "listener \"extra2\"".into(),
        ),
    ];
    let mut failures = 0u64;
    for (what, toml, expected) in &bad {
        cfg.write(toml);
        // Half of them through the admin API.
        let error = if failures.is_multiple_of(2) {
            reload(&server).await.expect_err(what)
        } else {
            let reply = admin.post("/reload").await;
            assert_eq!(reply.status, 500, "{what}: POST /reload: {}", reply.body);
            let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            json["error"].as_str().expect("error message").to_owned()
        };
        failures += 1;
        eprintln!("{what}: {error}");
        assert!(
            error.contains(expected.as_str()),
            "{what}: error {error:?} should mention {expected:?}"
        );
        // The old config serves, unchanged.
        for _ in 0..3 {
            let reply = get_web(&server, "/").await;
            assert_eq!(classify_tag(&reply), Ok("v1".into()), "{what}");
        }
        let status = server.status();
        assert_eq!(
            (status.version, status.reload_failures),
            (1, failures),
            "{what}"
        );
        let json = admin.status().await;
        assert_eq!(json["version"], 1, "{what}");
        assert_eq!(json["reload_failures"], failures, "{what}");
        let message = json["last_error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected.as_str()),
            "{what}: last_error {json:#}"
        );
        assert!(
            json["last_error"]["at"].as_f64().is_some_and(|t| t > 0.0),
            "{what}: {json:#}"
        );
        assert!(
            server.local_addr("extra1").is_none(),
            "{what}: extra1 got registered"
        );
    }
    // Nothing was half-applied: extra1 bound before extra2 failed, and was let go.
    assert_eq!(
        try_connect(free).await,
        Err(std::io::ErrorKind::ConnectionRefused),
        "listener extra1 of the failed reload still accepts on {free}"
    );
    let metrics = admin.metrics().await;
    let errors = metrics.sum("maitred_reloads_total", &[("result", "error")]);
    assert!(
        errors >= failures as f64,
        "maitred_reloads_total{{result=\"error\"}} = {errors}, expected >= {failures}"
    );

    // A good config afterwards applies.
    cfg.write(&good_v2);
    assert_eq!(reload(&server).await, Ok(2));
    assert_eq!(classify_tag(&get_web(&server, "/").await), Ok("v2".into()));
    drop(occupied);
}

// ---------------------------------------------------------------------------------------
// Listeners, upstream state, certificates
// ---------------------------------------------------------------------------------------

const EXTRA: &str = "[[listener]]\nname = \"extra\"\nlisten = \"127.0.0.1:0\"\n";

/// A listener added on reload is bound and serves; removed on the next reload, it stops
/// accepting at once while a request in flight on one of its keep-alive connections
/// completes.
#[tokio::test]
async fn reload_binds_added_listeners_and_stops_removed_ones() {
    let backend = SlowBackend::start("main", Duration::from_millis(300)).await;
    let cfg = ConfigFile::new("reload-listeners", "");
    let wasm = salted_plugin("headers.wasm", &cfg.file("tag.wasm"), &unique_salt());
    cfg.write(&tag_config(false, backend.addr(), &wasm, "v1", ""));
    let server = Arc::new(cfg.start());
    let admin = Admin::of(&server);
    assert!(server.local_addr("extra").is_none());

    cfg.write(&tag_config(false, backend.addr(), &wasm, "v1", EXTRA));
    assert_eq!(reload(&server).await, Ok(2));
    let extra = server
        .local_addr("extra")
        .expect("listener extra bound on reload");
    let reply = get(&format!("http://{extra}/"), &[]).await;
    assert_eq!(classify_tag(&reply), Ok("v1".into()));
    let json = admin.status().await;
    let listed: Vec<(&str, &str)> = json["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["address"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        listed.contains(&("extra", extra.to_string().as_str())),
        "{json:#}"
    );

    // A keep-alive connection to extra with a slow request in flight.
    let mut conn = KeepAlive::connect(extra).await.unwrap();
    assert_eq!(conn.get("/", &[]).await.map(|r| r.status.as_u16()), Ok(200));
    let in_flight = tokio::spawn(async move {
        let result = conn.get("/slow", &[]).await;
        (conn, result)
    });
    assert!(backend.wait_arrived(1, Duration::from_secs(5)).await);

    cfg.write(&tag_config(false, backend.addr(), &wasm, "v1", ""));
    assert_eq!(reload(&server).await, Ok(3));
    assert!(server.local_addr("extra").is_none());
    let refused_after = wait_refused(extra, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("removed listener: {e}"));
    eprintln!(
        "removed listener refused connections {:.1} ms after reload returned",
        millis(refused_after)
    );
    let (_conn, result) = in_flight.await.unwrap();
    let reply = result.expect("the request in flight on the removed listener completes");
    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with("GET /slow "), "{}", reply.body);
    // The remaining listener is unaffected.
    assert_eq!(classify_tag(&get_web(&server, "/").await), Ok("v1".into()));
}

/// A removed listener *drains*: once the request in flight is answered, its keep-alive
/// connections are closed (as on shutdown) rather than kept open serving a listener that
/// no longer exists.
#[tokio::test]
async fn removed_listener_closes_its_keep_alive_connections() {
    let backend = Backend::start("main").await;
    let cfg = ConfigFile::new("reload-listener-drain", "");
    let wasm = salted_plugin("headers.wasm", &cfg.file("tag.wasm"), &unique_salt());
    cfg.write(&tag_config(false, backend.addr, &wasm, "v1", EXTRA));
    let server = Arc::new(cfg.start());
    let extra = server.local_addr("extra").unwrap();
    let mut conn = KeepAlive::connect(extra).await.unwrap();
    assert_eq!(conn.get("/", &[]).await.map(|r| r.status.as_u16()), Ok(200));

    cfg.write(&tag_config(false, backend.addr, &wasm, "v1", ""));
    assert_eq!(reload(&server).await, Ok(2));
    wait_refused(extra, Duration::from_secs(2)).await.unwrap();
    if !conn.wait_closed(Duration::from_secs(3)).await {
        let next = conn.get("/", &[]).await;
        panic!(
            "the idle keep-alive connection to removed listener extra is still open 3 s after the \
             reload; a request on it now gets {:?}",
            next.map(|r| (r.status, r.body))
        );
    }
}

/// An upstream the reload does not change keeps its state: an endpoint drained through the
/// admin API stays drained (while other parts of the config did change).
#[tokio::test]
async fn unchanged_upstream_keeps_its_drained_endpoint_across_reload() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let cfg = ConfigFile::new("reload-upstream-state", "");
    let wasm = salted_plugin("headers.wasm", &cfg.file("tag.wasm"), &unique_salt());
    let config = |tag: &str, other_extra: &str| {
        format!(
            "{}[[route]]\nupstream = \"main\"\nplugins = [\"tag\"]\n\
             [[route]]\npath_prefix = \"/other/\"\nupstream = \"other\"\n\
             [upstream.main]\nendpoints = [\"{}\", \"{}\"]\n\
             [upstream.other]\nendpoints = [\"{}\"]\n{other_extra}\n{}",
            head(false).replace("workers = 2", "workers = 1"),
            a.addr,
            b.addr,
            c.addr,
            tag_plugin("tag", &wasm, tag)
        )
    };
    cfg.write(&config("v1", ""));
    let server = Arc::new(cfg.start());
    let admin = Admin::of(&server);
    let drain = admin
        .post(&format!("/upstreams/main/endpoints/{}/drain", b.addr))
        .await;
    assert_eq!(drain.status, 200, "{}", drain.body);

    let send_ten = || async {
        let before = (a.requests(), b.requests());
        let mut tags = Vec::new();
        for _ in 0..10 {
            tags.push(classify_tag(&get_web(&server, "/").await));
        }
        ((a.requests() - before.0, b.requests() - before.1), tags)
    };
    let (counts, tags) = send_ten().await;
    assert_eq!(counts, (10, 0), "drained endpoint b still got requests");
    assert!(tags.iter().all(|t| t == &Ok("v1".to_string())));

    // The plugin and the other upstream change; upstream main does not.
    cfg.write(&config("v2", "retries = 2"));
    assert_eq!(reload(&server).await, Ok(2));
    let (counts, tags) = send_ten().await;
    assert!(tags.iter().all(|t| t == &Ok("v2".to_string())), "{tags:?}");
    assert_eq!(
        counts,
        (10, 0),
        "endpoint b got requests after a reload that did not touch upstream main: its drain was lost"
    );
    let upstreams = admin.json("/upstreams").await;
    let b_state = upstreams["main"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == b.addr.to_string())
        .cloned()
        .unwrap();
    assert_eq!(b_state["draining"], true, "{upstreams:#}");
    assert_eq!(get_web(&server, "/other/").await.header("x-backend"), "c");
}

/// Replacing an https listener's certificate files and reloading: new connections get the
/// new certificate; a connection opened before keeps working; a reload with a key that does
/// not match its certificate fails and the current certificate stays.
#[tokio::test]
async fn reload_picks_up_replaced_certificates() {
    let backend = Backend::start("main").await;
    let cfg = ConfigFile::new("reload-tls", "");
    let ca = Ca::new("reload-ca");
    let first = ca.server_cert(&["site.test"]);
    first.write(&cfg.dir, "site");
    let config = format!(
        "[runtime]\nworkers = 2\n[[listener]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"https\"\n\
         certificates = [ {{ cert = \"site.pem\", key = \"site.key\" }} ]\n\
         [[route]]\nupstream = \"main\"\n[upstream.main]\nendpoints = [\"{}\"]\n",
        backend.addr
    );
    cfg.write(&config);
    let server = Arc::new(cfg.start());
    let addr = server.local_addr("secure").unwrap();
    let client = ClientTls::trusting(&ca).alpn(&["http/1.1"]);
    let seen = https_get(addr, "site.test", &client, "/", &[])
        .await
        .unwrap();
    assert_eq!(seen.reply.status, 200);
    assert!(
        seen.tls.peer_cert.as_ref() == Some(&first.der),
        "first certificate expected"
    );

    // A keep-alive TLS connection opened before the reload.
    let tls = client.connect(addr, "site.test").await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    let second = ca.server_cert(&["site.test"]);
    second.write(&cfg.dir, "site");
    assert_eq!(reload(&server).await, Ok(2));
    let seen = https_get(addr, "site.test", &client, "/", &[])
        .await
        .unwrap();
    assert_eq!(seen.reply.status, 200);
    assert!(
        seen.tls.peer_cert.as_ref() == Some(&second.der),
        "a new connection after the reload should see the new certificate"
    );
    let req = http::Request::get("/")
        .header("host", "site.test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("timed out")
        .expect("the TLS connection opened before the reload still works");
    assert_eq!(resp.status(), 200);

    // A key that does not match the certificate: the reload fails, the second stays.
    let third = ca.server_cert(&["site.test"]);
    cfg.dir.write("site.pem", &third.cert_pem);
    cfg.dir.write("site.key", &first.key_pem);
    assert!(
        reload(&server).await.is_err(),
        "a mismatched key must fail the reload"
    );
    let seen = https_get(addr, "site.test", &client, "/", &[])
        .await
        .unwrap();
    assert!(seen.tls.peer_cert.as_ref() == Some(&second.der));
}

// ---------------------------------------------------------------------------------------
// The file watcher
// ---------------------------------------------------------------------------------------

/// Waits (bounded, polling `GET /status`) until `field` of the status reaches `value`;
/// the time it took.
async fn wait_status(admin: &Admin, field: &str, value: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = admin.status().await;
        if status[field].as_u64() == Some(value) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "status {field} did not reach {value} within {within:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `watch = true`: rewriting the config file, then replacing the plugin's `.wasm` file,
/// each trigger a reload within a couple of seconds; a bad rewrite is a failed reload that
/// leaves the config serving.
#[tokio::test]
async fn watched_files_trigger_reloads() {
    let backend = Backend::start("main").await;
    let cfg = ConfigFile::new("reload-watch", "");
    let wasm = cfg.file("tag.wasm");
    salted_plugin("headers.wasm", &wasm, &unique_salt());
    cfg.write(&tag_config(true, backend.addr, &wasm, "v1", ""));
    let server = cfg.start();
    let admin = Admin::of(&server);
    assert_eq!(classify_tag(&get_web(&server, "/").await), Ok("v1".into()));

    cfg.write(&tag_config(true, backend.addr, &wasm, "v2", ""));
    let took = wait_status(&admin, "version", 2, Duration::from_secs(5)).await;
    assert_eq!(classify_tag(&get_web(&server, "/").await), Ok("v2".into()));

    // A new build of the plugin, written next to it and renamed over it.
    let hash_before = admin.status().await["routes"][0]["plugins"][0]["sha256"].clone();
    let staged = salted_plugin("headers.wasm", &cfg.file("tag.wasm.new"), &unique_salt());
    std::fs::rename(&staged, &wasm).unwrap();
    let took_wasm = wait_status(&admin, "version", 3, Duration::from_secs(5)).await;
    let status = admin.status().await;
    assert_ne!(status["routes"][0]["plugins"][0]["sha256"], hash_before);
    assert_eq!(
        status["routes"][0]["plugins"][0]["sha256"],
        sha256_hex(&std::fs::read(&wasm).unwrap())
    );

    cfg.write("this is [not toml");
    let took_bad = wait_status(&admin, "reload_failures", 1, Duration::from_secs(5)).await;
    assert_eq!(admin.status().await["version"], 3);
    assert_eq!(classify_tag(&get_web(&server, "/").await), Ok("v2".into()));
    eprintln!(
        "watch: config rewrite reloaded after {:.0} ms, wasm replacement after {:.0} ms, bad rewrite reported after {:.0} ms",
        millis(took),
        millis(took_wasm),
        millis(took_bad)
    );
}

// ---------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------

/// An http listener in front of `slow` and a tcp listener in front of `echo`.
fn shutdown_proxy(slow: SocketAddr, echo: SocketAddr) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\nworkers = 2\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"db\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"tcp\"\nupstream = \"echo\"\n\
         [[route]]\nupstream = \"slow\"\n\
         [upstream.slow]\nendpoints = [\"{slow}\"]\n[upstream.echo]\nendpoints = [\"{echo}\"]\n"
    ))
}

/// Starts `proxy.server.shutdown_gracefully(grace)` on a blocking thread; the handle gives
/// back the proxy, the number of connections cut, and how long the call took.
fn start_shutdown(
    proxy: Proxy,
    grace: Duration,
) -> tokio::task::JoinHandle<(Proxy, usize, Duration)> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let cut = proxy.server.shutdown_gracefully(grace);
        (proxy, cut, started.elapsed())
    })
}

/// Shutdown with a long grace period: it stops accepting at once, the slow request in
/// flight completes with 200, the open L4 connection keeps working, and the call returns
/// once that connection closes (well before the grace period), with nothing cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_in_flight_work_finish() {
    let slow = SlowBackend::start("slow", Duration::from_millis(300)).await;
    let echo = TcpBackend::echo("echo").await;
    let proxy = shutdown_proxy(slow.addr(), echo.addr);
    let (web, db) = (proxy.addr("web"), proxy.addr("db"));
    let mut l4 = connect(db).await;
    l4.write_all(b"before\n").await.unwrap();
    assert_eq!(read_line(&mut l4).await.unwrap(), "before");
    let in_flight = tokio::spawn(async move { get(&format!("http://{web}/slow"), &[]).await });
    assert!(slow.wait_arrived(1, Duration::from_secs(5)).await);

    let grace = Duration::from_secs(10);
    let shutdown = start_shutdown(proxy, grace);
    let web_refused = wait_refused(web, Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("http listener after shutdown started: {e}"));
    let db_refused = wait_refused(db, Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("tcp listener after shutdown started: {e}"));
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the request in flight at shutdown");
    assert!(reply.body.starts_with("GET /slow "), "{}", reply.body);
    // The L4 connection still works while the server drains, and holds the shutdown.
    l4.write_all(b"during\n").await.unwrap();
    assert_eq!(read_line(&mut l4).await.unwrap(), "during");
    assert!(
        !shutdown.is_finished(),
        "shutdown returned with an L4 connection open"
    );

    let closed_at = Instant::now();
    drop(l4);
    let (_proxy, cut, took) = tokio::time::timeout(Duration::from_secs(8), shutdown)
        .await
        .expect("shutdown did not return after the last connection closed")
        .unwrap();
    let after_close = closed_at.elapsed();
    eprintln!(
        "graceful shutdown: listeners refused after {:.1} ms (http) / {:.1} ms (tcp); returned {:.1} ms \
         after the L4 connection closed ({:.1} ms in all), {cut} cut",
        millis(web_refused),
        millis(db_refused),
        millis(after_close),
        millis(took)
    );
    assert_eq!(
        cut, 0,
        "connections cut although all finished within the grace period"
    );
    assert!(took < grace);
    assert!(
        after_close < Duration::from_secs(2),
        "shutdown took {after_close:?} to notice the last connection closed"
    );
}

/// Shutdown with a short grace period and an L4 connection that stays open: the call
/// returns when the grace period ends, reports one connection cut, and the connection is
/// closed; an idle HTTP keep-alive connection is closed by the drain, not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_cuts_what_is_still_open_after_the_grace_period() {
    let slow = SlowBackend::start("slow", Duration::from_millis(300)).await;
    let echo = TcpBackend::echo("echo").await;
    let proxy = shutdown_proxy(slow.addr(), echo.addr);
    let mut l4 = connect(proxy.addr("db")).await;
    l4.write_all(b"hello\n").await.unwrap();
    assert_eq!(read_line(&mut l4).await.unwrap(), "hello");
    let mut idle = KeepAlive::connect(proxy.addr("web")).await.unwrap();
    assert_eq!(idle.get("/", &[]).await.map(|r| r.status.as_u16()), Ok(200));

    let grace = Duration::from_millis(300);
    let (_proxy, cut, took) =
        tokio::time::timeout(Duration::from_secs(10), start_shutdown(proxy, grace))
            .await
            .expect("shutdown did not return")
            .unwrap();
    eprintln!(
        "graceful shutdown with a {grace:?} grace: returned after {:.1} ms, {cut} cut",
        millis(took)
    );
    assert!(
        took >= grace,
        "returned after {took:?}, before the grace period ended"
    );
    assert!(took < Duration::from_secs(3), "returned after {took:?}");
    assert_eq!(
        cut, 1,
        "the L4 connection still open at the end of the grace period"
    );
    assert!(
        read_until_closed(&mut l4, Duration::from_secs(2))
            .await
            .is_closed(),
        "the cut L4 connection is still open"
    );
    assert!(
        idle.wait_closed(Duration::from_secs(1)).await,
        "idle HTTP connection left open"
    );
}
