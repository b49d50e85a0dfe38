//! maitred filter plugin `waf`: a ModSecurity SecLang rule engine that runs the OWASP Core
//! Rule Set (request phases 1 and 2) in anomaly-scoring mode.
//!
//! ```toml
//! [plugin.waf]
//! wasm = "plugins/waf.wasm"
//! files = ["/etc/modsecurity/crs", "/usr/share/modsecurity-crs"]
//!
//! [plugin.waf.config]
//! include = ["/etc/modsecurity/crs/crs-setup.conf", "/usr/share/modsecurity-crs/rules/*.conf"]
//! paranoia_level = 1
//! inbound_threshold = 5
//! mode = "block"                # or "detect": log what would be blocked, let it through
//! exclusions = [{ path_prefix = "/api/upload", remove_rules = [942100],
//!                 remove_targets = [{ id = 942100, target = "ARGS:json" }] }]
//! rules = "SecRule ARGS \"@rx evil\" \"id:1,phase:2,deny\""   # optional inline rules
//! ```
//!
//! At init the plugin logs how many rules it loaded and lists every rule it skipped (with the
//! reason) and every directive it ignored. Per request it logs one line for a blocked (or, in
//! detect mode, would-be-blocked) request with the score and the matched rule ids.
use maitred_sdk::{Action, Config, DirectResponse, Phases, Plugin, Request, export_plugin, log};

pub mod action;
pub mod config;
pub mod engine;
mod injection;
pub mod macros;
pub mod operator;
pub mod pipeline;
pub mod request;
pub mod ruleset;
pub mod seclang;
pub mod transform;
pub mod variable;

use engine::{Engine, Verdict};
use request::Transaction;

/// The plugin: one compiled engine per instance.
struct Waf {
    engine: Engine,
}

impl Plugin for Waf {
    fn init(config: Config) -> Result<Self, String> {
        let cfg: config::WafConfig = config.get()?;
        let engine = cfg.build()?;
        for line in init_report(&engine) {
            log::warn(line);
        }
        log::info(summary(&engine));
        Ok(Waf { engine })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST | Phases::REQUEST_BODY
    }

    fn on_request(&self, req: &Request) -> Action {
        let tx = transaction(req);
        let line = format!(
            "{} {}{}",
            tx.method,
            tx.path,
            tx.query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default()
        );
        let client = tx.client_addr.clone();
        let verdict = self.engine.evaluate(tx);
        if let Some(text) = verdict_log(&verdict, &line, &client) {
            log::warn(text);
        }
        match verdict.block {
            Some(status) => DirectResponse::new(status)
                .header("content-type", "text/plain")
                .body("Forbidden: request blocked by the web application firewall\n")
                .into(),
            None => Action::Continue,
        }
    }
}

/// The request as the engine's [`Transaction`].
fn transaction(req: &Request) -> Transaction {
    let mut headers = Vec::new();
    for name in req.header_names() {
        for value in req.header_all(&name) {
            headers.push((name.clone(), value));
        }
    }
    if !headers.iter().any(|(n, _)| n == "host")
        && let Some(authority) = req.authority()
    {
        headers.push(("host".to_string(), authority.into_bytes()));
    }
    Transaction {
        method: req.method(),
        path: req.path(),
        query: req.query(),
        protocol: req.protocol(),
        headers,
        body: req.body(),
        client_addr: req.client_addr(),
        unique_id: format!("{:016x}", maitred_sdk::random_u64()),
    }
}

/// Warnings for the init log: every rule left out and every directive ignored.
fn init_report(engine: &Engine) -> Vec<String> {
    let report = &engine.rules().report;
    let skipped = report.skipped.iter().map(|s| format!("waf: skipped {s}"));
    let notes = report.notes.iter().map(|n| format!("waf: {n}"));
    skipped.chain(notes).collect()
}

/// `waf: 312 rules loaded (phases 1-2), 4 skipped (unsupported), 27 response-phase rules not run`.
fn summary(engine: &Engine) -> String {
    let r = &engine.rules().report;
    format!(
        "waf: {} rules loaded (request phases 1-2), {} skipped as unsupported, {} response-phase rules not run",
        r.loaded,
        r.skipped.len(),
        r.response_phase
    )
}

/// The log line for a blocked or would-be-blocked request (`None` for others).
fn verdict_log(v: &Verdict, request: &str, client: &str) -> Option<String> {
    let what = match (v.block, v.would_block) {
        (Some(status), _) => format!("blocked ({status})"),
        (None, true) => "would block (detection only)".to_string(),
        (None, false) => return None,
    };
    let ids: Vec<String> = v.hits.iter().map(|h| h.id.to_string()).collect();
    let msgs: Vec<&str> = v.hits.iter().filter_map(|h| h.msg.as_deref()).collect();
    let deny = v
        .deny_rule
        .map(|id| format!(", denied by rule {id}"))
        .unwrap_or_default();
    Some(format!(
        "waf: {what} {request} from {client}: anomaly score {} (threshold {}){deny}; rules [{}]; {}",
        v.score,
        v.threshold,
        ids.join(", "),
        msgs.join(" | ")
    ))
}

export_plugin!(Waf);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_name_rules_and_score() {
        let mut v = Verdict {
            block: Some(403),
            would_block: false,
            deny_rule: Some(949110),
            score: 10,
            threshold: 5,
            hits: vec![
                engine::Hit {
                    id: 942100,
                    msg: Some("SQL Injection Attack Detected via libinjection".into()),
                },
                engine::Hit {
                    id: 949110,
                    msg: None,
                },
            ],
        };
        let line = verdict_log(&v, "GET /?id=1", "127.0.0.1:1").unwrap();
        assert!(line.starts_with("waf: blocked (403) GET /?id=1 from 127.0.0.1:1: anomaly score 10 (threshold 5), denied by rule 949110; rules [942100, 949110]; SQL Injection"), "{line}");
        v.block = None;
        v.would_block = true;
        assert!(
            verdict_log(&v, "GET /", "c")
                .unwrap()
                .contains("would block (detection only)")
        );
        v.would_block = false;
        assert!(verdict_log(&v, "GET /", "c").is_none());
    }
}
