//! The `waf` plugin through the proxy: the test rule set (inline, and from read-only files),
//! detection mode, per-path exclusions, config errors, and — where Debian's `modsecurity-crs`
//! is installed — the real OWASP CRS 3.3 at paranoia level 1.

use maitred_tests::*;

/// The rule files of `plugins/waf/tests/data`, as text.
const SETUP: &str = include_str!("../../plugins/waf/tests/data/setup.conf");
const INIT: &str = include_str!("../../plugins/waf/tests/data/rules/10-initialization.conf");
const ATTACKS: &str = include_str!("../../plugins/waf/tests/data/rules/20-attacks.conf");
const BLOCKING: &str =
    include_str!("../../plugins/waf/tests/data/rules/90-blocking-evaluation.conf");

/// The test rule set as one inline text; the scanner list (a data file next to the rules)
/// is inlined as `@pm`, since inline rules have no directory to read it from.
fn inline_rules() -> String {
    format!("{SETUP}\n{INIT}\n{ATTACKS}\n{BLOCKING}").replace(
        "@pmFromFile scanners.data",
        "@pm nikto sqlmap masscan dirbuster",
    )
}

/// A proxy whose routes (`(path_prefix, plugin)`) go to `backend` through the waf plugin
/// `plugin` with config table `config` (TOML lines) and plugin settings `extra`.
fn proxy(backend: &Backend, routes: &[(&str, &str)], plugins: &str) -> Proxy {
    let mut toml = String::from(
        "[runtime]\nworkers = 2\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n",
    );
    for (prefix, plugin) in routes {
        toml.push_str(&format!(
            "[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"main\"\nplugins = [\"{plugin}\"]\n"
        ));
    }
    toml.push_str(&format!(
        "[upstream.main]\nendpoints = [\"{}\"]\n",
        backend.addr
    ));
    toml.push_str(plugins);
    Proxy::start(&toml)
}

/// A waf plugin definition: a generous deadline and memory (the machine running the tests
/// may be busy; the CRS compiles hundreds of regexes at init), settings `extra`, and the
/// `[plugin.NAME.config]` lines `config`.
fn waf(name: &str, extra: &str, config: &str) -> String {
    format!(
        "[plugin.{name}]\nwasm = \"waf.wasm\"\ntimeout = \"5s\"\nmemory_limit = \"256MiB\"\n{extra}\n[plugin.{name}.config]\n{config}\n"
    )
}

/// `rules = '''...'''` (a TOML literal string: the rules' quotes and backslashes stay).
fn rules_entry(rules: &str) -> String {
    assert!(!rules.contains("'''"));
    format!("rules = '''\n{rules}'''\n")
}

async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .unwrap();
    send(&http1_client(), req).await
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// A request to send: method, path and query, extra headers, body.
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static [u8],
);

/// Classic attacks.
fn attacks() -> Vec<Case> {
    let form = ("content-type", "application/x-www-form-urlencoded");
    let json = ("content-type", "application/json");
    vec![
        ("GET", "/item?id=1%27%20OR%20%271%27%3D%271", vec![], b""),
        (
            "GET",
            "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
            vec![],
            b"",
        ),
        (
            "GET",
            "/download?file=..%2F..%2F..%2Fetc%2Fpasswd",
            vec![],
            b"",
        ),
        (
            "GET",
            "/ping?host=127.0.0.1%3Bcat%20/etc/passwd",
            vec![],
            b"",
        ),
        (
            "GET",
            "/",
            vec![("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")],
            b"",
        ),
        (
            "POST",
            "/login",
            vec![form],
            b"user=admin%27%20OR%201%3D1--&password=x",
        ),
        (
            "POST",
            "/api/comments",
            vec![json],
            br#"{"body":"<script>alert(1)</script>"}"#,
        ),
    ]
}

/// Ordinary requests that must pass: pages, searches, cookies, forms, JSON, an upload.
fn ordinary() -> Vec<Case> {
    vec![
        ("GET", "/", vec![], b""),
        ("GET", "/products?category=shoes&size=42&sort=price_asc", vec![], b""),
        ("GET", "/account", vec![("cookie", "session=9f8e7d6c5b4a; theme=dark; lang=en-US")], b""),
        (
            "POST",
            "/contact",
            vec![("content-type", "application/x-www-form-urlencoded")],
            b"name=Jane+Doe&email=jane%40example.com&message=Hello%2C+please+call+me+back.",
        ),
        (
            "POST",
            "/api/orders",
            vec![("content-type", "application/json")],
            br#"{"customer":{"id":42,"name":"Jane Doe"},"items":[{"sku":"A-100","qty":2}],"note":"Leave at the door"}"#,
        ),
        (
            "POST",
            "/upload",
            vec![("content-type", "multipart/form-data; boundary=XyZ")],
            b"--XyZ\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\nMy cat\r\n--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"cat.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0JFIF\r\n--XyZ--\r\n",
        ),
    ]
}

/// Sends every case to `base` and checks its status.
async fn expect(base: &str, cases: &[Case], status: u16) {
    for (method, target, headers, body) in cases {
        let mut all = vec![("user-agent", BROWSER), ("accept", "text/html,*/*;q=0.8")];
        all.retain(|(n, _)| !headers.iter().any(|(h, _)| h == n));
        all.extend(headers.iter().copied());
        let reply = request(method, &format!("{base}{target}"), &all, body).await;
        assert_eq!(reply.status, status, "{method} {target}: {}", reply.body);
    }
}

#[tokio::test]
async fn test_rules_block_attacks_and_pass_ordinary_requests() {
    let backend = Backend::start("main").await;
    let plugins = waf(
        "waf",
        "",
        &format!("inbound_threshold = 5\n{}", rules_entry(&inline_rules())),
    );
    let proxy = proxy(&backend, &[("/", "waf")], &plugins);
    let base = proxy.url("web");
    expect(&base, &attacks(), 403).await;
    assert_eq!(
        backend.requests(),
        0,
        "blocked requests must not reach the backend"
    );
    expect(&base, &ordinary(), 200).await;
    assert_eq!(backend.requests(), ordinary().len());
    let reply = get(&format!("{base}/item?id=1%27%20OR%20%271%27%3D%271"), &[]).await;
    assert!(
        reply
            .body
            .contains("blocked by the web application firewall"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn detect_mode_lets_attacks_through() {
    let backend = Backend::start("main").await;
    let plugins = waf(
        "waf",
        "",
        &format!("mode = \"detect\"\n{}", rules_entry(&inline_rules())),
    );
    let proxy = proxy(&backend, &[("/", "waf")], &plugins);
    let base = proxy.url("web");
    expect(&base, &attacks(), 200).await;
    assert_eq!(backend.requests(), attacks().len());
}

#[tokio::test]
async fn exclusions_apply_per_path_prefix() {
    let backend = Backend::start("main").await;
    let config = format!(
        "exclusions = [{{ path_prefix = \"/cms/\", remove_targets = [{{ id = \"941000-941999\", target = \"ARGS:content\" }}] }},\n  {{ path_prefix = \"/legacy/\", remove_rules = [942100] }}]\n{}",
        rules_entry(&inline_rules())
    );
    let proxy = proxy(&backend, &[("/", "waf")], &waf("waf", "", &config));
    let base = proxy.url("web");
    let xss = "content=%3Cscript%3Ealert(1)%3C/script%3E";
    assert_eq!(
        get(&format!("{base}/cms/save?{xss}"), &[]).await.status,
        200
    );
    assert_eq!(
        get(&format!("{base}/blog/save?{xss}"), &[]).await.status,
        403
    );
    assert_eq!(
        get(
            &format!("{base}/cms/save?title=%3Cscript%3Ealert(1)%3C/script%3E"),
            &[]
        )
        .await
        .status,
        403
    );
    let sqli = "id=1%27%20OR%20%271%27%3D%271";
    assert_eq!(
        get(&format!("{base}/legacy/item?{sqli}"), &[]).await.status,
        200
    );
    assert_eq!(get(&format!("{base}/item?{sqli}"), &[]).await.status, 403);
}

#[tokio::test]
async fn rule_files_load_from_read_only_files() {
    let backend = Backend::start("main").await;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/waf/tests/data")
        .canonicalize()
        .unwrap();
    let config = format!(
        "include = [{}, {}]\n",
        toml_path(&data.join("setup.conf")),
        toml_path(&data.join("rules/*.conf"))
    );
    let extra = format!("files = [{}]", toml_path(&data));
    let proxy = proxy(&backend, &[("/", "waf")], &waf("waf", &extra, &config));
    let base = proxy.url("web");
    // The scanner rule reads scanners.data next to the rule file.
    let reply = get(&format!("{base}/"), &[("user-agent", "Nikto/2.1.6")]).await;
    assert_eq!(reply.status, 403);
    expect(&base, &attacks(), 403).await;
    expect(&base, &ordinary(), 200).await;
}

#[test]
fn bad_configs_fail_to_load() {
    let dir = TempDir::new("waf-check");
    for (config, expected) in [
        (
            "mode = \"warn\"\nrules = \"SecAction \\\"id:1\\\"\"",
            "unknown variant `warn`",
        ),
        (
            "paranoia_level = 7\nrules = \"SecAction \\\"id:1\\\"\"",
            "paranoia_level",
        ),
        (
            "include = [\"/nonexistent/rules/*.conf\"]",
            "/nonexistent/rules",
        ),
        ("rules = \"SecRule ARGS \\\"@rx x\"", "<inline rules>:1"),
    ] {
        let plugin = waf("waf", "", config).replace(
            "wasm = \"waf.wasm\"",
            &format!("wasm = {}", toml_path(&plugin_dir().join("waf.wasm"))),
        );
        let toml = format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[[route]]\nupstream = \"main\"\nplugins = [\"waf\"]\n[upstream.main]\nendpoints = [\"127.0.0.1:9\"]\n{plugin}"
        );
        let path = dir.write("maitred.toml", &toml);
        let err = maitred::check(&path).unwrap_err().to_string();
        assert!(err.contains(expected), "{config}: {err}");
    }
}

const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";

#[tokio::test]
async fn debian_crs_blocks_attacks_at_paranoia_level_1() {
    if !std::path::Path::new(CRS_SETUP).exists() || !std::path::Path::new(CRS_RULES).exists() {
        eprintln!("note: Debian's modsecurity-crs is not installed; skipping");
        return;
    }
    let backend = Backend::start("main").await;
    let config = format!(
        "include = [{}, {}]\nparanoia_level = 1\ninbound_threshold = 5\n",
        toml_str(CRS_SETUP),
        toml_str(&format!("{CRS_RULES}/*.conf"))
    );
    let extra = "files = [\"/etc/modsecurity/crs\", \"/usr/share/modsecurity-crs\"]";
    let proxy = proxy(&backend, &[("/", "crs")], &waf("crs", extra, &config));
    let base = proxy.url("web");
    expect(&base, &attacks(), 403).await;
    let nikto = get(&format!("{base}/"), &[("user-agent", "Nikto/2.1.6")]).await;
    assert_eq!(nikto.status, 403);
    assert_eq!(backend.requests(), 0);
    expect(&base, &ordinary(), 200).await;
}
