//! Test plugin that exercises every host function of the `request` and `response` resources,
//! so the host's side of the interface is tested end to end. No config.
//!
//! - Request: reports what it reads in `x-probe-*` request headers; `/rewrite/...` is
//!   rewritten to `/rewritten` with query `a=1`; `/unknown-upstream` asks for an upstream
//!   that does not exist (the host must fail the call).
//! - Response: reports the status and header names, turns 200 into 299, adds two values of
//!   `x-multi`, and removes `server`.
use maitred_sdk::{Action, Config, Plugin, Request, Response, export_plugin};

struct Probe;

impl Plugin for Probe {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Probe)
    }

    fn on_request(&self, req: &Request) -> Action {
        let report = format!(
            "method={} protocol={} path={} query={} authority={} upstream={} names={}",
            req.method(),
            req.protocol(),
            req.path(),
            req.query().unwrap_or_default(),
            req.authority().unwrap_or_default(),
            req.upstream(),
            req.header_names().len(),
        );
        let _ = req.set_header("x-probe-request", report);
        let _ = req.set_header("x-probe-client", req.client_addr());
        let all: Vec<String> = req
            .header_all("x-twice")
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect();
        let _ = req.set_header("x-probe-twice", all.join("|"));
        if req.set_header("bad header", "x").is_ok() || req.set_header("x-ok", "bad\nvalue").is_ok()
        {
            let _ = req.set_header("x-probe-validation", "missing");
        }
        if req.path().starts_with("/rewrite/") {
            let _ = req.set_path("/rewritten");
            let _ = req.set_query(Some("a=1"));
        }
        if req.path() == "/unknown-upstream" {
            let _ = req.set_upstream("no-such-upstream");
        }
        Action::Continue
    }

    fn on_response(&self, resp: &Response) {
        let _ = resp.set_header("x-probe-status", resp.status().to_string());
        let mut names = resp.header_names();
        names.sort();
        let _ = resp.set_header("x-probe-names", names.join(","));
        if resp.status() == 200 {
            let _ = resp.set_status(299);
        }
        let _ = resp.append_header("x-multi", "1");
        let _ = resp.append_header("x-multi", "2");
        resp.remove_header("server");
    }
}

export_plugin!(Probe);
