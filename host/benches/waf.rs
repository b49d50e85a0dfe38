//! Cost of the `waf` plugin per request, with Debian's OWASP Core Rule Set 3.3 at paranoia
//! level 1 (`/etc/modsecurity/crs/crs-setup.conf` and the request rules
//! `/usr/share/modsecurity-crs/rules/REQUEST-*.conf`, anomaly threshold 5, blocking mode):
//!
//! - `waf/benign_get`: a GET with the headers a browser sends (passes);
//! - `waf/benign_post_form`: a POST with an `application/x-www-form-urlencoded` body (passes);
//! - `waf/attack_sqli_get`: `GET /?id=1' OR '1'='1` (blocked, 403);
//! - `waf/attack_xss_get`: `GET /?q=<script>alert(1)</script>` (blocked, 403);
//!
//! each one acquire from the pool + `on-request` + release, as the proxy does per request
//! (`plugin_call.rs` measures the same round on the trivial `headers` plugin). Before the
//! measurements it prints how long loading took (compile + `init`, i.e. parsing and compiling
//! the rule set) and how long `init` alone takes on a fresh instance.
//!
//! Without the CRS installed (`apt-get install modsecurity-crs`) it says so and benches the
//! plugin with a small inline rule set instead.
//!
//! Needs the plugin built: `cargo build -p waf --target wasm32-wasip2 --release`, then
//! `cargo bench -p maitred --bench waf`.

use criterion::{BatchSize, Criterion};
use maitred::config::{Isolation, OnError, PluginConfig};
use maitred::plugin::{LoadedPlugin, RequestAction, RequestView};
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";
/// The directories the plugin may read (read-only preopens): the setup file's and the rules'
/// (the `.data` files next to the rules included).
const CRS_DIRS: [&str; 2] = ["/etc/modsecurity/crs", "/usr/share/modsecurity-crs"];

/// Stand-in when the CRS is not installed: CRS-style anomaly scoring with libinjection's SQLi
/// and XSS detectors on the arguments, and a blocking rule at the threshold.
const INLINE_RULES: &str = r#"
SecAction "id:900000,phase:1,pass,nolog,setvar:tx.anomaly_score=0"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES "@detectSQLi" "id:942100,phase:2,pass,t:none,t:urlDecodeUni,msg:'SQL Injection Attack Detected via libinjection',setvar:tx.anomaly_score=+5"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES "@detectXSS" "id:941100,phase:2,pass,t:none,t:utf8toUnicode,t:urlDecodeUni,t:htmlEntityDecode,t:jsDecode,t:cssDecode,t:removeNulls,msg:'XSS Attack Detected via libinjection',setvar:tx.anomaly_score=+5"
SecRule REQUEST_FILENAME|ARGS "@rx (?:\.\./|\.\.\\)" "id:930100,phase:2,pass,t:none,t:urlDecodeUni,msg:'Path Traversal Attack',setvar:tx.anomaly_score=+5"
SecRule TX:ANOMALY_SCORE "@ge 5" "id:949110,phase:2,deny,status:403,msg:'Inbound Anomaly Score Exceeded'"
"#;

/// `<workspace>/target/wasm32-wasip2/release/waf.wasm` (or under `$CARGO_TARGET_DIR`).
fn waf_wasm() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("wasm32-wasip2/release/waf.wasm")
}

/// The rule set being measured: its description, the plugin's config and the readable dirs.
struct RuleSet {
    what: &'static str,
    config_json: String,
    files: Vec<PathBuf>,
}

fn rule_set() -> RuleSet {
    let installed = Path::new(CRS_SETUP).is_file() && Path::new(CRS_RULES).is_dir();
    if installed {
        let config = serde_json::json!({
            "include": [CRS_SETUP, format!("{CRS_RULES}/REQUEST-*.conf")],
            "paranoia_level": 1,
            "inbound_threshold": 5,
            "mode": "block",
        });
        RuleSet {
            what: "OWASP CRS (Debian's modsecurity-crs), request rules, paranoia level 1",
            config_json: config.to_string(),
            files: CRS_DIRS.iter().map(PathBuf::from).collect(),
        }
    } else {
        eprintln!(
            "note: Debian's modsecurity-crs is not installed ({CRS_SETUP}, {CRS_RULES}): \
             benching the plugin with a small inline rule set instead \
             (`apt-get install modsecurity-crs` for the real numbers)"
        );
        let config = serde_json::json!({
            "rules": INLINE_RULES,
            "paranoia_level": 1,
            "inbound_threshold": 5,
            "mode": "block",
        });
        RuleSet {
            what: "small inline rule set (libinjection SQLi/XSS, path traversal, scoring)",
            config_json: config.to_string(),
            files: Vec::new(),
        }
    }
}

fn load(wasm: &Path, rules: &RuleSet, isolation: Isolation) -> LoadedPlugin {
    let config = PluginConfig {
        name: "waf".into(),
        wasm: wasm.to_path_buf(),
        config_json: rules.config_json.clone(),
        on_error: OnError::FailClosed,
        isolation,
        // Generous: the bench measures the time, it should not cut the call short.
        timeout: Duration::from_millis(100),
        memory_limit: 256 << 20,
        pool_size: 64,
        files: rules.files.clone(),
    };
    LoadedPlugin::load(&config, 1).unwrap_or_else(|e| panic!("loading {}: {e}", wasm.display()))
}

/// One request to bench: its name, how it is built, and the status the WAF should answer
/// (`None`: it passes).
struct Case {
    name: &'static str,
    build: fn() -> RequestView,
    blocked: Option<u16>,
}

const CASES: [Case; 4] = [
    Case {
        name: "benign_get",
        build: benign_get,
        blocked: None,
    },
    Case {
        name: "benign_post_form",
        build: benign_post_form,
        blocked: None,
    },
    Case {
        name: "attack_sqli_get",
        build: attack_sqli_get,
        blocked: Some(403),
    },
    Case {
        name: "attack_xss_get",
        build: attack_xss_get,
        blocked: Some(403),
    },
];

fn view(request: http::Request<()>, body: Option<&'static [u8]>) -> RequestView {
    let (parts, ()) = request.into_parts();
    RequestView {
        parts,
        client: SocketAddr::from(([127, 0, 0, 1], 40000)),
        upstream: Arc::from("backend"),
        upstream_override: None,
        cache: Default::default(),
        body: body.map(bytes::Bytes::from_static),
    }
}

/// The headers Firefox sends for a page load (with a session cookie).
fn browser(method: &str, uri: &str) -> http::request::Builder {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "shop.example.test")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("accept-language", "en-US,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br")
        .header("referer", "https://shop.example.test/")
        .header("connection", "keep-alive")
        .header(
            "cookie",
            "session=6f1c2a9e8b7d4c3f; theme=dark; consent=analytics%3Dno",
        )
        .header("upgrade-insecure-requests", "1")
        .header("sec-fetch-dest", "document")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-user", "?1")
}

fn benign_get() -> RequestView {
    let request = browser("GET", "/products/shoes?color=blue&size=42&page=2")
        .body(())
        .expect("valid request");
    view(request, None)
}

const FORM: &[u8] =
    b"name=Jane+Doe&email=jane.doe%40example.test&subject=Order+1234&message=Hello%2C+my+order+has+not+arrived+yet.+Could+you+check%3F+Thanks%21";

fn benign_post_form() -> RequestView {
    let request = browser("POST", "/contact")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", FORM.len())
        .header("origin", "https://shop.example.test")
        .body(())
        .expect("valid request");
    view(request, Some(FORM))
}

fn attack_sqli_get() -> RequestView {
    let request = browser("GET", "/?id=1%27%20OR%20%271%27%3D%271")
        .body(())
        .expect("valid request");
    view(request, None)
}

fn attack_xss_get() -> RequestView {
    let request = browser("GET", "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .body(())
        .expect("valid request");
    view(request, None)
}

/// acquire + on-request + release: what the proxy does per request for one plugin.
/// Returns the status of the WAF's direct answer (`None`: the request passes).
fn request_round(plugin: &LoadedPlugin, view: RequestView) -> (RequestView, Option<u16>) {
    let mut instance = plugin.acquire().expect("acquire");
    let (view, result) = plugin.on_request(&mut instance, view);
    let status = match result {
        Ok(RequestAction::Continue) => None,
        Ok(RequestAction::Respond(direct)) => Some(direct.status),
        Err(e) => panic!("on-request failed: {e}"),
    };
    plugin.release(instance);
    (view, status)
}

fn benches(c: &mut Criterion, wasm: &Path) {
    let rules = rule_set();
    eprintln!("waf bench: {}", rules.what);

    let start = Instant::now();
    let pooled = load(wasm, &rules, Isolation::Pooled);
    eprintln!(
        "waf bench: load (compile the component + instantiate + init) took {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        pooled.wants_request() && pooled.wants_request_body(),
        "the waf plugin should ask for requests and their bodies"
    );
    // `init` alone (instantiate + parse and compile the rules), on fresh instances: with
    // per-request isolation every acquire makes one.
    let per_request = load(wasm, &rules, Isolation::PerRequest);
    let mut inits = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let instance = per_request.acquire().expect("acquire");
        inits.push(start.elapsed().as_secs_f64() * 1e3);
        per_request.release(instance);
    }
    inits.sort_by(f64::total_cmp);
    eprintln!(
        "waf bench: instantiate + init on a fresh instance: median {:.1} ms (min {:.1}, max {:.1}, 5 runs)",
        inits[2], inits[0], inits[4]
    );

    // The plugin really does its job (so the benchmark measures real work).
    for case in &CASES {
        let (_, status) = request_round(&pooled, (case.build)());
        assert_eq!(
            status, case.blocked,
            "{}: expected {:?} from the WAF",
            case.name, case.blocked
        );
    }

    let mut group = c.benchmark_group("waf");
    for case in &CASES {
        group.bench_function(case.name, |b| {
            b.iter_batched(
                case.build,
                |view| request_round(&pooled, black_box(view)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn main() {
    let wasm = waf_wasm();
    if !wasm.is_file() {
        eprintln!(
            "error: {} not found.\nBuild the plugin first: `cargo build -p waf --target wasm32-wasip2 --release` (then rerun `cargo bench -p maitred --bench waf`).",
            wasm.display()
        );
        std::process::exit(1);
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &wasm);
    c.final_summary();
}
