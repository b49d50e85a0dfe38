//! Test plugin for connection-level containment and plumbing. What `on_connect` does is
//! chosen by the server name (SNI) when it is one of the modes below, else by
//! `config = { mode = "..." }` (default `allow`):
//!
//! - `allow`, `deny`, `route-NAME`: that answer (route to upstream `NAME`);
//! - `echo`: routes to `ip|port|listener|sni|alpn,alpn` (what the host sent, for the test);
//! - `count`: routes to the number of calls this instance has served (`1` on a fresh one);
//! - `trap`: panics; `spin`: loops forever; `hog`: allocates until the memory cap stops it.
//!
//! `config = { init_error = "..." }` makes `init` fail with that message.
use maitred_sdk::connection::{ConnectionAction, ConnectionInfo, ConnectionPolicy};
use maitred_sdk::{Config, export_connection_policy};
use std::cell::{Cell, RefCell};
use std::hint::black_box;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Probe {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    init_error: Option<String>,
    #[serde(skip)]
    calls: Cell<u32>,
}

thread_local! {
    /// Everything `hog` allocated; never freed.
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

impl ConnectionPolicy for Probe {
    fn init(config: Config) -> Result<Self, String> {
        let probe: Probe = config.get()?;
        match &probe.init_error {
            Some(message) => Err(message.clone()),
            None => Ok(probe),
        }
    }

    fn on_connect(&self, info: &ConnectionInfo) -> ConnectionAction {
        self.calls.set(self.calls.get() + 1);
        let mode = match &info.server_name {
            Some(sni) if is_mode(sni) => sni.clone(),
            _ => self.mode.clone().unwrap_or_else(|| "allow".into()),
        };
        match mode.as_str() {
            "allow" => ConnectionAction::Allow,
            "deny" => ConnectionAction::Deny,
            "echo" => ConnectionAction::route(format!(
                "{}|{}|{}|{}|{}",
                info.client_ip,
                info.client_port,
                info.listener,
                info.server_name.as_deref().unwrap_or("-"),
                info.alpn.join(",")
            )),
            "count" => ConnectionAction::route(self.calls.get().to_string()),
            "trap" => panic!("connect-probe: asked to trap"),
            "spin" => loop {
                black_box(&self.calls).set(self.calls.get().wrapping_add(1));
            },
            "hog" => HOARD.with(|hoard| {
                loop {
                    hoard.borrow_mut().push(black_box(vec![0xa5u8; 1 << 20]));
                }
            }),
            other => match other.strip_prefix("route-") {
                Some(upstream) => ConnectionAction::route(upstream),
                None => panic!("connect-probe: unknown mode {other:?}"),
            },
        }
    }
}

fn is_mode(name: &str) -> bool {
    const MODES: [&str; 7] = ["allow", "deny", "echo", "count", "trap", "spin", "hog"];
    MODES.contains(&name) || name.starts_with("route-")
}

export_connection_policy!(Probe);
