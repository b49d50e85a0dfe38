//! The rule engine through its public API with inline rules: each variable and collection
//! feature, each action, scoring and thresholds, detection mode, exclusions, and the
//! reporting of unsupported constructs.
use waf::config::WafConfig;
use waf::engine::{Engine, Verdict};
use waf::request::Transaction;

mod common;
use common::req;

fn build(config: serde_json::Value) -> Engine {
    serde_json::from_value::<WafConfig>(config)
        .unwrap()
        .build()
        .unwrap()
}

fn engine(rules: &str) -> Engine {
    build(serde_json::json!({ "rules": rules }))
}

fn get(target: &str) -> Transaction {
    req("GET", target, &[("host", "example.com")], None)
}

/// The ids of the rules that matched (and log), in order.
fn hits(v: &Verdict) -> Vec<u32> {
    v.hits.iter().map(|h| h.id).collect()
}

fn run(rules: &str, tx: Transaction) -> Vec<u32> {
    hits(&engine(rules).evaluate(tx))
}

#[test]
fn request_line_variables() {
    let rules = r#"
SecRule REQUEST_URI "@streq /a/b.php?x=1&y=%27" "id:1,phase:1,pass"
SecRule REQUEST_URI_RAW "@beginsWith /a/b.php?" "id:2,phase:1,pass"
SecRule REQUEST_FILENAME "@streq /a/b.php" "id:3,phase:1,pass"
SecRule REQUEST_BASENAME "@streq b.php" "id:4,phase:1,pass"
SecRule REQUEST_LINE "@streq POST /a/b.php?x=1&y=%27 HTTP/1.1" "id:5,phase:1,pass"
SecRule REQUEST_METHOD "@streq POST" "id:6,phase:1,pass"
SecRule REQUEST_PROTOCOL "@streq HTTP/1.1" "id:7,phase:1,pass"
SecRule QUERY_STRING "@streq x=1&y=%27" "id:8,phase:1,pass"
SecRule REMOTE_ADDR "@ipMatch 192.0.2.0/24" "id:9,phase:1,pass"
SecRule REQUEST_METHOD "@streq GET" "id:10,phase:1,pass"
"#;
    let tx = req("POST", "/a/b.php?x=1&y=%27", &[], None);
    assert_eq!(run(rules, tx), vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn arguments_from_query_and_body() {
    let rules = r#"
SecRule ARGS "@streq '" "id:1,phase:2,pass"
SecRule ARGS_GET "@streq q" "id:2,phase:2,pass"
SecRule ARGS_POST "@streq q" "id:3,phase:2,pass"
SecRule ARGS_POST "@streq body value" "id:4,phase:2,pass"
SecRule ARGS_NAMES "@streq b" "id:5,phase:2,pass"
SecRule ARGS:a "@streq q" "id:6,phase:2,pass"
SecRule ARGS:A "@streq q" "id:7,phase:2,pass"
SecRule ARGS:/^(?:c|d)$/ "@streq body value" "id:8,phase:2,pass"
SecRule REQUEST_BODY "@contains body+value" "id:9,phase:2,pass"
SecRule ARGS_GET_NAMES|ARGS_POST_NAMES "@streq c" "id:10,phase:2,pass"
"#;
    let tx = req(
        "POST",
        "/?a=q&y=%27",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"b=1&c=body+value"),
    );
    assert_eq!(run(rules, tx), vec![1, 2, 4, 5, 6, 7, 8, 9, 10]);
}

#[test]
fn headers_and_cookies() {
    let rules = r#"
SecRule REQUEST_HEADERS:User-Agent "@contains curl" "id:1,phase:1,pass"
SecRule REQUEST_HEADERS_NAMES "@streq x-custom" "id:2,phase:1,pass"
SecRule REQUEST_COOKIES:session "@streq abc" "id:3,phase:1,pass"
SecRule REQUEST_COOKIES_NAMES "@streq theme" "id:4,phase:1,pass"
SecRule REQUEST_HEADERS:/^x-/ "@streq 1" "id:5,phase:1,pass"
SecRule REQUEST_HEADERS:Referer "@rx ." "id:6,phase:1,pass"
"#;
    let tx = req(
        "GET",
        "/",
        &[
            ("user-agent", "curl/8.0"),
            ("x-custom", "1"),
            ("cookie", "session=abc; theme=dark"),
        ],
        None,
    );
    assert_eq!(run(rules, tx), vec![1, 2, 3, 4, 5]);
}

#[test]
fn json_multipart_and_missing_bodies() {
    let rules = r#"
SecRule ARGS:json.user.name "@streq bob" "id:1,phase:2,pass"
SecRule FILES "@endsWith .php" "id:2,phase:2,pass"
SecRule FILES_NAMES "@streq upload" "id:3,phase:2,pass"
SecRule ARGS_POST:title "@streq hi" "id:4,phase:2,pass"
SecRule REQBODY_ERROR "@eq 1" "id:5,phase:2,pass"
SecRule REQBODY_PROCESSOR "@streq JSON" "id:6,phase:2,pass"
"#;
    let json = req(
        "POST",
        "/",
        &[("content-type", "application/json")],
        Some(br#"{"user":{"name":"bob"}}"#),
    );
    assert_eq!(run(rules, json), vec![1, 6]);
    let multipart = req(
        "POST",
        "/",
        &[("content-type", "multipart/form-data; boundary=b")],
        Some(
            b"--b\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n\
             --b\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"shell.php\"\r\n\r\n<?php ?>\r\n--b--\r\n",
        ),
    );
    assert_eq!(run(rules, multipart), vec![2, 3, 4]);
    let broken = req(
        "POST",
        "/",
        &[("content-type", "application/json")],
        Some(b"{"),
    );
    assert_eq!(run(rules, broken), vec![5, 6]);
    // The host did not buffer the body: phase 2 still runs, without body variables.
    let unbuffered = req("POST", "/", &[("content-type", "application/json")], None);
    assert_eq!(run(rules, unbuffered), vec![6]);
}

#[test]
fn request_body_processor_can_be_forced() {
    let rules = r#"
SecRule REQUEST_HEADERS:Content-Type "@beginsWith text/plain" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule ARGS:json.a "@streq x" "id:2,phase:2,pass"
"#;
    let tx = req(
        "POST",
        "/",
        &[("content-type", "text/plain")],
        Some(br#"{"a":"x"}"#),
    );
    assert_eq!(run(rules, tx), vec![2]);
}

#[test]
fn exclusions_and_counts() {
    let rules = r#"
SecRule ARGS|!ARGS:safe "@contains bad" "id:1,phase:2,pass"
SecRule ARGS|!ARGS:/^s/ "@contains bad" "id:2,phase:2,pass"
SecRule &ARGS "@eq 2" "id:3,phase:2,pass"
SecRule &ARGS:missing "@eq 0" "id:4,phase:2,pass"
SecRule &REQUEST_HEADERS:Host "@eq 1" "id:5,phase:1,pass"
SecRule &ARGS|!ARGS:safe "@eq 1" "id:6,phase:2,pass"
"#;
    // Rule 5 is phase 1: it runs first.
    assert_eq!(run(rules, get("/?safe=bad&other=ok")), vec![5, 3, 4, 6]);
    assert_eq!(
        run(rules, get("/?safe=ok&other=bad")),
        vec![5, 1, 2, 3, 4, 6]
    );
    assert_eq!(run(rules, get("/?sa=bad")), vec![5, 1, 4, 6]);
}

#[test]
fn transformations_and_t_none() {
    let rules = r#"
SecDefaultAction "phase:2,log,pass,t:lowercase"
SecRule ARGS:a "@streq <script>" "id:1,phase:2,t:urlDecodeUni,t:htmlEntityDecode"
SecRule ARGS:a "@streq <SCRIPT>" "id:2,phase:2,t:none,t:urlDecodeUni,t:htmlEntityDecode"
SecRule ARGS:a "@streq &lt;script&gt;" "id:3,phase:2"
SecRule ARGS:a "@streq 8" "id:4,phase:2,t:none,t:length"
SecRule ARGS:a "@streq <script>" "id:5,phase:2,t:none"
"#;
    // ARGS are url-decoded once by the parser: the value is "&lt;SCRIPT&gt;".
    assert_eq!(run(rules, get("/?a=%26lt%3BSCRIPT%26gt%3B")), vec![1, 2, 3]);
}

#[test]
fn multi_match_checks_every_stage() {
    let rules = r#"
SecRule ARGS "@rx ^AB$" "id:1,phase:2,pass,t:none,t:lowercase"
SecRule ARGS "@rx ^AB$" "id:2,phase:2,pass,multiMatch,t:none,t:lowercase"
"#;
    assert_eq!(run(rules, get("/?x=AB")), vec![2]);
}

#[test]
fn setvar_forms_and_macros() {
    let rules = r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=5,setvar:'tx.a=+3',setvar:tx.b=10,setvar:tx.b=-4,setvar:tx.c=gone,setvar:!tx.c,setvar:tx.flag"
SecRule TX:a "@eq 8" "id:2,phase:1,pass"
SecRule TX:b "@eq 6" "id:3,phase:1,pass"
SecRule &TX:c "@eq 0" "id:4,phase:1,pass"
SecRule TX:flag "@eq 1" "id:5,phase:1,pass"
SecAction "id:6,phase:1,pass,nolog,setvar:'tx.%{rule.id}-copy=%{tx.a}-%{REQUEST_HEADERS.host}'"
SecRule TX:6-copy "@streq 8-example.com" "id:7,phase:1,pass"
SecRule TX:a "@lt %{tx.b}" "id:8,phase:1,pass"
SecRule TX:b "@lt %{tx.a}" "id:9,phase:1,pass,msg:'b=%{tx.b} in %{MATCHED_VAR_NAME}'"
SecRule TX:/^[ab]$/ "@eq 6" "id:10,phase:1,pass"
"#;
    let v = engine(rules).evaluate(get("/"));
    assert_eq!(hits(&v), vec![2, 3, 4, 5, 7, 9, 10]);
    assert_eq!(v.hits[5].msg.as_deref(), Some("b=6 in TX:b"));
}

#[test]
fn matched_vars() {
    let rules = r#"
SecRule ARGS "@rx evil" "id:1,phase:2,pass,nolog,setvar:'tx.where=%{MATCHED_VAR_NAME}',setvar:'tx.what=%{MATCHED_VAR}'"
SecRule TX:where "@streq ARGS:q" "id:2,phase:2,pass"
SecRule TX:what "@streq very evil" "id:3,phase:2,pass"
SecRule ARGS "@rx evil" "id:4,phase:2,pass,chain"
    SecRule MATCHED_VARS_NAMES "@streq ARGS:q" "chain"
        SecRule MATCHED_VAR "@streq ARGS:q"
"#;
    assert_eq!(run(rules, get("/?q=very+evil")), vec![2, 3, 4]);
}

#[test]
fn chains_need_every_link_and_capture_feeds_the_next() {
    let rules = r#"
SecRule REQUEST_METHOD "@streq POST" "id:1,phase:2,pass,chain,setvar:tx.starter=1"
    SecRule ARGS:a "@streq x" "setvar:tx.link=1"
SecRule &TX:starter "@eq 0" "id:2,phase:2,pass"
SecRule ARGS:id "@rx ^(\d+)-(\w+)$" "id:3,phase:2,pass,capture,chain"
    SecRule TX:2 "@streq admin" "chain"
        SecRule TX:1 "@eq 42"
"#;
    assert_eq!(run(rules, get("/?a=x")), vec![2]);
    assert_eq!(run(rules, req("POST", "/?a=x", &[], None)), vec![1]);
    // The chain fails on its second link, but its matched starter's setvar has run.
    assert_eq!(
        run(rules, req("POST", "/?a=y", &[], None)),
        Vec::<u32>::new()
    );
    assert_eq!(run(rules, get("/?id=42-admin")), vec![2, 3]);
    assert_eq!(run(rules, get("/?id=41-admin")), vec![2]);
}

#[test]
fn a_links_setvar_is_seen_by_the_next_link() {
    // A starter stores what it captured; the chained link inspects that variable (the way
    // CRS checks file extensions, header names and content types against its policy lists).
    let rules = r#"
SecAction "id:1,phase:1,pass,nolog,setvar:'tx.bad=.bak/ .old/'"
SecRule REQUEST_BASENAME "@rx \.([^.]+)$" "id:2,phase:1,deny,capture,setvar:'tx.ext=.%{tx.1}/',chain"
    SecRule TX:EXT "@within %{tx.bad}" "t:lowercase"
SecRule REQUEST_HEADERS_NAMES "@rx ^.*$" "id:3,phase:1,pass,capture,t:lowercase,setvar:'tx.hdr_%{tx.0}=/%{tx.0}/',chain"
    SecRule TX:/^hdr_/ "@within /x-evil/"
"#;
    assert_eq!(run(rules, get("/files/x.BAK")), vec![2]);
    assert_eq!(run(rules, get("/files/x.txt")), Vec::<u32>::new());
    assert_eq!(
        run(rules, req("GET", "/", &[("x-evil", "1")], None)),
        vec![3]
    );
    assert_eq!(run(rules, get("/")), Vec::<u32>::new());
    // Several header names match: each gets its own variable, not just the first or last.
    let many = [("host", "a"), ("x-evil", "1"), ("accept", "*/*")];
    assert_eq!(run(rules, req("GET", "/", &many, None)), vec![3]);
}

#[test]
fn a_setvar_runs_once_per_distinct_expansion() {
    let rules = r#"
SecRule ARGS "@rx ^(\w)" "id:1,phase:1,pass,capture,setvar:tx.n=+1,setvar:'tx.seen_%{tx.1}=%{matched_var}'"
SecRule TX:n "@eq 1" "id:2,phase:1,pass"
SecRule TX:seen_a "@streq apple" "id:3,phase:1,pass"
SecRule TX:seen_b "@streq banana" "id:4,phase:1,pass"
"#;
    // Three values match: the score-like increment runs once, the per-value names each once.
    assert_eq!(
        run(rules, get("/?x=apple&y=banana&z=apple")),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn skip_after_markers_and_skip() {
    let rules = r#"
SecRule ARGS:pl "@lt 2" "id:1,phase:1,pass,nolog,skipAfter:END-PL2"
SecRule ARGS "@rx ." "id:2,phase:1,pass"
SecMarker END-PL2
SecRule ARGS "@rx ." "id:3,phase:1,pass"
SecRule ARGS:skip "@eq 1" "id:4,phase:2,pass,nolog,skip:1"
SecRule ARGS "@rx ." "id:5,phase:2,pass"
SecRule ARGS "@rx ." "id:6,phase:2,pass"
"#;
    assert_eq!(run(rules, get("/?pl=1")), vec![3, 5, 6]);
    assert_eq!(run(rules, get("/?pl=2&skip=1")), vec![2, 3, 6]);
}

#[test]
fn phase_one_runs_before_phase_two() {
    let rules = r#"
SecRule TX:x "@eq 1" "id:1,phase:2,pass"
SecAction "id:2,phase:1,pass,setvar:tx.x=1"
"#;
    assert_eq!(run(rules, get("/")), vec![2, 1]);
}

#[test]
fn runtime_controls() {
    let rules = r#"
SecRule ARGS:off "@eq 1" "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=10-11"
SecRule ARGS:tag "@eq 1" "id:2,phase:1,pass,nolog,ctl:ruleRemoveByTag=attack-sqli"
SecRule ARGS:target "@eq 1" "id:3,phase:1,pass,nolog,ctl:ruleRemoveTargetById=12;ARGS:q"
SecRule ARGS:engine "@eq 1" "id:4,phase:1,pass,nolog,ctl:ruleEngine=Off"
SecRule ARGS "@contains evil" "id:10,phase:2,pass"
SecRule ARGS "@contains evil" "id:11,phase:2,pass,tag:attack-sqli"
SecRule ARGS "@contains evil" "id:12,phase:2,pass"
SecRule ARGS "@contains evil" "id:13,phase:2,pass,tag:attack-sqli"
"#;
    assert_eq!(run(rules, get("/?q=evil")), vec![10, 11, 12, 13]);
    assert_eq!(run(rules, get("/?q=evil&off=1")), vec![12, 13]);
    assert_eq!(run(rules, get("/?q=evil&tag=1")), vec![10, 12]);
    assert_eq!(run(rules, get("/?q=evil&target=1")), vec![10, 11, 13]);
    assert_eq!(run(rules, get("/?q=evil&engine=1")), Vec::<u32>::new());
}

#[test]
fn deny_blocks_at_once_with_its_status() {
    let rules = r#"
SecRule ARGS "@contains evil" "id:1,phase:1,deny,status:406,msg:'no'"
SecRule ARGS "@contains evil" "id:2,phase:2,pass"
"#;
    let v = engine(rules).evaluate(get("/?q=evil"));
    assert_eq!(v.block, Some(406));
    assert_eq!(v.deny_rule, Some(1));
    assert_eq!(hits(&v), vec![1]);
    let v = engine(rules).evaluate(get("/?q=fine"));
    assert_eq!(v.block, None);
}

#[test]
fn block_follows_the_default_action() {
    let rules = r#"
SecDefaultAction "phase:2,log,deny,status:403"
SecRule ARGS "@contains evil" "id:1,phase:2,block"
"#;
    assert_eq!(engine(rules).evaluate(get("/?q=evil")).block, Some(403));
    let pass = "SecRule ARGS \"@contains evil\" \"id:1,phase:2,block\"";
    assert_eq!(engine(pass).evaluate(get("/?q=evil")).block, None);
}

const SCORING: &str = r#"
SecAction "id:900110,phase:1,pass,nolog,setvar:tx.inbound_anomaly_score_threshold=10,setvar:tx.paranoia_level=2"
SecRule &TX:critical_anomaly_score "@eq 0" "id:901140,phase:1,pass,nolog,setvar:tx.critical_anomaly_score=5"
SecRule ARGS "@contains evil" "id:100,phase:2,block,msg:'evil in %{MATCHED_VAR_NAME}',setvar:'tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}'"
SecRule ARGS "@contains worse" "id:101,phase:2,block,setvar:'tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}'"
SecRule TX:PARANOIA_LEVEL "@lt 2" "id:102,phase:2,pass,nolog,skipAfter:END-PL2"
SecRule ARGS "@contains meh" "id:103,phase:2,block,setvar:'tx.anomaly_score_pl2=+3'"
SecMarker END-PL2
"#;

const BLOCKING: &str = r#"
SecRule TX:PARANOIA_LEVEL "@ge 1" "id:949060,phase:2,pass,nolog,setvar:'tx.anomaly_score=+%{tx.anomaly_score_pl1}'"
SecRule TX:PARANOIA_LEVEL "@ge 2" "id:949061,phase:2,pass,nolog,setvar:'tx.anomaly_score=+%{tx.anomaly_score_pl2}'"
SecRule TX:ANOMALY_SCORE "@ge %{tx.inbound_anomaly_score_threshold}" "id:949110,phase:2,deny,msg:'Inbound Anomaly Score Exceeded (Total Score: %{TX.ANOMALY_SCORE})',setvar:'tx.inbound_anomaly_score=%{tx.anomaly_score}'"
"#;

#[test]
fn anomaly_scoring_through_the_blocking_rule() {
    let e = engine(&format!("{SCORING}{BLOCKING}"));
    // The rules' own threshold (10) and paranoia level (2) apply.
    let v = e.evaluate(get("/?a=evil"));
    assert_eq!((v.block, v.score, v.threshold), (None, 5, 10));
    let v = e.evaluate(get("/?a=evil&b=meh&c=worse"));
    assert_eq!(
        (v.block, v.score, v.deny_rule),
        (Some(403), 13, Some(949110))
    );
    assert_eq!(hits(&v), vec![100, 101, 103, 949110]);
    assert_eq!(v.hits[0].msg.as_deref(), Some("evil in ARGS:a"));
    assert_eq!(
        v.hits[3].msg.as_deref(),
        Some("Inbound Anomaly Score Exceeded (Total Score: 13)")
    );
}

#[test]
fn plugin_settings_fix_threshold_and_paranoia_level() {
    let e = build(serde_json::json!({
        "rules": format!("{SCORING}{BLOCKING}"),
        "inbound_threshold": 5,
        "paranoia_level": 1,
    }));
    let v = e.evaluate(get("/?a=evil"));
    assert_eq!((v.block, v.score, v.threshold), (Some(403), 5, 5));
    // PL1: the PL2 rule 103 does not run.
    let v = e.evaluate(get("/?b=meh"));
    assert_eq!((v.block, v.score), (None, 0));
}

#[test]
fn the_plugin_checks_the_score_without_a_blocking_rule() {
    let e = build(serde_json::json!({ "rules": SCORING, "inbound_threshold": 5 }));
    let v = e.evaluate(get("/?a=evil"));
    assert_eq!((v.block, v.score, v.deny_rule), (Some(403), 5, None));
    assert_eq!(e.evaluate(get("/?a=fine")).block, None);
}

#[test]
fn detection_mode_logs_and_passes() {
    for rules in [format!("{SCORING}{BLOCKING}"), SCORING.to_string()] {
        let e = build(serde_json::json!({
            "rules": rules, "inbound_threshold": 5, "mode": "detect",
        }));
        let v = e.evaluate(get("/?a=evil"));
        assert_eq!(v.block, None);
        assert!(v.would_block);
        assert_eq!(v.score, 5);
        assert!(!e.evaluate(get("/?a=fine")).would_block);
    }
    // A deny rule does not block either, and rules cannot switch blocking on.
    let e = build(serde_json::json!({
        "rules": "SecAction \"id:1,phase:1,pass,nolog,ctl:ruleEngine=On\"\nSecRule ARGS \"@contains evil\" \"id:2,phase:1,deny\"",
        "mode": "detect",
    }));
    let v = e.evaluate(get("/?a=evil"));
    assert_eq!((v.block, v.would_block, v.deny_rule), (None, true, Some(2)));
}

#[test]
fn per_path_exclusions() {
    let e = build(serde_json::json!({
        "rules": format!("{SCORING}{BLOCKING}"),
        "inbound_threshold": 5,
        "exclusions": [
            { "path_prefix": "/api/upload", "remove_rules": [100] },
            { "path_prefix": "/api/json", "remove_targets": [{ "id": "100-101", "target": "ARGS:json" }] },
        ],
    }));
    assert_eq!(e.evaluate(get("/api/upload?a=evil")).block, None);
    assert_eq!(e.evaluate(get("/api/upload?a=worse")).block, Some(403));
    assert_eq!(e.evaluate(get("/api/json?json=evil")).block, None);
    assert_eq!(e.evaluate(get("/api/json?other=evil")).block, Some(403));
    assert_eq!(e.evaluate(get("/elsewhere?json=evil")).block, Some(403));
}

#[test]
fn config_time_removals_and_target_updates() {
    let rules = r#"
SecRule ARGS "@contains evil" "id:1,phase:2,pass"
SecRule ARGS "@contains evil" "id:2,phase:2,pass,tag:noisy"
SecRule ARGS "@contains evil" "id:3,phase:2,pass"
SecRule ARGS "@contains evil" "id:4,phase:2,pass"
SecRuleRemoveById 1
SecRuleRemoveByTag noisy
SecRuleRemoveTargetById 3 ARGS:q
SecRuleUpdateTargetById 4 "!ARGS:q"
"#;
    assert_eq!(run(rules, get("/?q=evil")), Vec::<u32>::new());
    assert_eq!(run(rules, get("/?r=evil")), vec![3, 4]);
}

#[test]
fn unsupported_constructs_are_reported_and_the_rest_loads() {
    let rules = r#"
SecComponentSignature "OWASP_CRS/3.3.4"
SecRuleEngine On
SecRequestBodyAccess On
SecCollectionTimeout 600
SecFrobnicate On
SecRule ARGS "@inspectFile /x.pl" "id:1,phase:2,deny"
SecRule GEO:COUNTRY_CODE "@streq XX" "id:2,phase:2,deny"
SecRule ARGS "@rx x" "id:3,phase:2,deny,exec:/tmp/x.lua"
SecRule ARGS "@rx x" "id:4,phase:2,deny,t:bogus"
SecRule ARGS "@rx x" "id:5,phase:2,deny,chain"
    SecRule RESPONSE_STATUS "@streq 200" "t:none"
SecRule RESPONSE_BODY "@rx secret" "id:6,phase:4,deny"
SecRule ARGS "@rx (?<=a)b" "id:7,phase:2,deny"
SecRule ARGS "@contains evil" "id:8,phase:2,deny"
SecRule ARGS "@contains x" "id:9,phase:2,pass,skipAfter:NOWHERE"
"#;
    let e = engine(rules);
    let r = &e.rules().report;
    let skipped: Vec<&str> = r.skipped.iter().map(String::as_str).collect();
    assert_eq!(skipped.len(), 6, "{skipped:#?}");
    for (id, why) in [
        (1, "@inspectFile"),
        (2, "GEO"),
        (3, "exec"),
        (4, "t:bogus"),
        (5, "RESPONSE_STATUS"),
        (7, "regex"),
    ] {
        assert!(
            skipped
                .iter()
                .any(|s| s.starts_with(&format!("rule {id} (<inline rules>:")) && s.contains(why)),
            "rule {id}: {skipped:#?}"
        );
    }
    assert_eq!(r.loaded, 2);
    assert_eq!(r.response_phase, 1);
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("<inline rules>:6:") && n.contains("SecFrobnicate")),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes.iter().any(|n| n.contains("NOWHERE")),
        "{:?}",
        r.notes
    );
    assert!(r.notes.iter().any(|n| n.contains("SecRuleEngine")));
    // The loaded rules work.
    assert_eq!(e.evaluate(get("/?a=evil")).block, Some(403));
}

#[test]
fn the_plugin_check_counts_levels_up_to_the_blocking_paranoia_level() {
    // CRS 4 style: per-level scores, detection above the blocking level.
    let rules = r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=1,setvar:tx.detection_paranoia_level=2"
SecRule ARGS "@contains evil" "id:2,phase:2,pass,setvar:'tx.inbound_anomaly_score_pl1=+5'"
SecRule ARGS "@contains meh" "id:3,phase:2,pass,setvar:'tx.inbound_anomaly_score_pl2=+5'"
"#;
    let e = engine(rules);
    assert_eq!(e.evaluate(get("/?a=meh")).block, None);
    let v = e.evaluate(get("/?a=evil+meh"));
    assert_eq!((v.block, v.score), (Some(403), 5));
}
