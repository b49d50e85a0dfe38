//! The test rule set in `tests/data` (a crs-setup-style file and CRS-like rules using @rx,
//! @pm, @pmFromFile, @within, @detectSQLi and @detectXSS, with a 949110-like blocking rule),
//! loaded from disk through `include` globs.
use waf::config::WafConfig;
use waf::engine::{Engine, Verdict};

mod common;
use common::req;

fn engine(extra: serde_json::Value) -> Engine {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut config = serde_json::json!({
        "include": [format!("{data}/setup.conf"), format!("{data}/rules/*.conf")],
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let engine = serde_json::from_value::<WafConfig>(config)
        .unwrap()
        .build()
        .unwrap();
    let report = &engine.rules().report;
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    engine
}

const BROWSER: &[(&str, &str)] = &[
    ("host", "shop.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    ),
    ("accept", "text/html,*/*;q=0.8"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut h: Vec<_> = BROWSER
        .iter()
        .filter(|(n, _)| !extra.iter().any(|(e, _)| e == n))
        .copied()
        .collect();
    h.extend_from_slice(extra);
    h
}

fn get(e: &Engine, target: &str) -> Verdict {
    e.evaluate(req("GET", target, BROWSER, None))
}

fn ids(v: &Verdict) -> Vec<u32> {
    v.hits.iter().map(|h| h.id).collect()
}

#[test]
fn loads_every_rule() {
    let e = engine(serde_json::json!({}));
    let r = &e.rules().report;
    assert_eq!(r.loaded, 20);
    assert_eq!(r.response_phase, 0);
}

#[test]
fn blocks_classic_attacks() {
    let e = engine(serde_json::json!({}));
    let cases: &[(&str, u32)] = &[
        ("/item?id=1%27%20OR%20%271%27%3D%271", 942100),
        ("/item?id=1;DROP%20TABLE%20users--", 942100),
        (
            "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
            941110,
        ),
        ("/search?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", 941100),
        ("/download?file=..%2F..%2F..%2Fetc%2Fpasswd", 930110),
        ("/static/%2e%2e/%2e%2e/etc/shadow", 930120),
        ("/ping?host=127.0.0.1%3Bcat%20/etc/hosts", 932100),
        ("/ping?host=%60id%60", 932100),
    ];
    for (target, rule) in cases {
        let v = get(&e, target);
        assert_eq!(v.block, Some(403), "{target}: {v:?}");
        assert_eq!(v.deny_rule, Some(949110), "{target}");
        assert!(ids(&v).contains(rule), "{target}: {:?}", ids(&v));
    }
    let shellshock = e.evaluate(req(
        "GET",
        "/cgi-bin/x",
        &with(&[("user-agent", "() { :; }; /bin/cat /etc/passwd")]),
        None,
    ));
    assert!(ids(&shellshock).contains(&932170), "{shellshock:?}");
    assert_eq!(shellshock.block, Some(403));
    let scanner = e.evaluate(req(
        "GET",
        "/",
        &with(&[("user-agent", "Mozilla/5.00 (Nikto/2.1.6)")]),
        None,
    ));
    assert_eq!(ids(&scanner), vec![913100, 949110]);
    let form = e.evaluate(req(
        "POST",
        "/login",
        &with(&[("content-type", "application/x-www-form-urlencoded")]),
        Some(b"user=admin%27--&password=x"),
    ));
    assert_eq!(form.block, Some(403), "{form:?}");
    let json = e.evaluate(req(
        "POST",
        "/api/comments",
        &with(&[("content-type", "application/json")]),
        Some(br#"{"post":7,"body":"<script>alert(1)</script>"}"#),
    ));
    assert_eq!(json.block, Some(403), "{json:?}");
    let cookie = e.evaluate(req(
        "GET",
        "/",
        &with(&[("cookie", "id=1' UNION SELECT password FROM users--")]),
        None,
    ));
    assert_eq!(cookie.block, Some(403), "{cookie:?}");
    let method = e.evaluate(req("TRACE", "/", BROWSER, None));
    assert_eq!(ids(&method), vec![911100, 949110]);
}

#[test]
fn passes_ordinary_requests() {
    let e = engine(serde_json::json!({}));
    let ok = |v: Verdict| assert_eq!((v.block, v.score), (None, 0), "{v:?}");
    ok(get(&e, "/"));
    ok(get(
        &e,
        "/products?category=shoes&size=42&sort=price&order=asc",
    ));
    ok(get(&e, "/blog/2024/select-the-right-union-membership"));
    ok(e.evaluate(req(
        "GET",
        "/account",
        &with(&[("cookie", "session=9f8e7d6c; theme=dark; __utmz=1.2.3")]),
        None,
    )));
    ok(e.evaluate(req(
        "POST",
        "/contact",
        &with(&[("content-type", "application/x-www-form-urlencoded")]),
        Some(b"name=O%27Brien&email=pat%40example.com&message=Hi%21+Can+you+ship+to+Ireland%3F"),
    )));
    ok(e.evaluate(req(
        "PUT",
        "/api/users/7",
        &with(&[("content-type", "application/json")]),
        Some(br#"{"name":"Pat","tags":["a","b"],"address":{"city":"Dublin"}}"#),
    )));
    ok(e.evaluate(req(
        "POST",
        "/upload",
        &with(&[("content-type", "multipart/form-data; boundary=X")]),
        Some(b"--X\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\nMy cat\r\n--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--X--\r\n"),
    )));
}

#[test]
fn paranoia_level_two_adds_rules_and_settings_override_the_files() {
    let pl1 = engine(serde_json::json!({}));
    assert_eq!(get(&pl1, "/?q=select+a+car").score, 0);
    let pl2 = engine(serde_json::json!({ "paranoia_level": 2, "inbound_threshold": 3 }));
    let v = get(&pl2, "/?q=select+a+car");
    assert_eq!((v.block, v.score, v.threshold), (Some(403), 3, 3));
}

#[test]
fn detection_mode_passes_attacks_and_reports_them() {
    let e = engine(serde_json::json!({ "mode": "detect" }));
    let v = get(&e, "/item?id=1%27%20OR%20%271%27%3D%271");
    assert_eq!(v.block, None);
    assert!(v.would_block);
    assert_eq!(v.deny_rule, Some(949110));
}

#[test]
fn exclusions_from_the_config() {
    let e = engine(serde_json::json!({
        "exclusions": [{ "path_prefix": "/cms/", "remove_targets": [{ "id": "941000-941999", "target": "ARGS:content" }] }],
    }));
    assert_eq!(
        get(&e, "/cms/save?content=%3Cscript%3Ex()%3C/script%3E").block,
        None
    );
    assert_eq!(
        get(&e, "/cms/save?title=%3Cscript%3Ex()%3C/script%3E").block,
        Some(403)
    );
    assert_eq!(
        get(&e, "/blog/save?content=%3Cscript%3Ex()%3C/script%3E").block,
        Some(403)
    );
}
