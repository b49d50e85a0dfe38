//! Test plugin for balancer plumbing and containment. What `pick` does is chosen by the
//! request's `x-mode` header or the connection's server name (SNI) when it is one of the
//! modes below, else by `config = { mode = "..." }` (default `first`):
//!
//! - `first`: the first available endpoint; `none`: no preference;
//! - `index`: `config.index`, whatever the list (to test indices out of range);
//! - `count`: the number of calls this instance has served, minus one (`0` on a fresh one);
//! - `expect`: endpoint 0 when what the host sent, described as in [`describe`], equals
//!   `config.expect`; otherwise panics with the description (in the host's log);
//! - `trap`: panics; `spin`: loops forever; `hog`: allocates until the memory cap stops it.
//!
//! `config = { init_error = "..." }` makes `init` fail with that message.
use maitred_sdk::balancer::{BalancerPolicy, Endpoint, Target};
use maitred_sdk::{Config, export_balancer};
use std::cell::{Cell, RefCell};
use std::hint::black_box;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Probe {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    index: usize,
    #[serde(default)]
    expect: String,
    #[serde(default)]
    init_error: Option<String>,
    #[serde(skip)]
    calls: Cell<usize>,
}

thread_local! {
    /// Everything `hog` allocated; never freed.
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

const MODES: [&str; 8] = [
    "first", "none", "index", "count", "expect", "trap", "spin", "hog",
];

impl BalancerPolicy for Probe {
    fn init(config: Config) -> Result<Self, String> {
        let probe: Probe = config.get()?;
        match &probe.init_error {
            Some(message) => Err(message.clone()),
            None => Ok(probe),
        }
    }

    fn pick(&self, target: &Target, endpoints: &[Endpoint]) -> Option<usize> {
        self.calls.set(self.calls.get() + 1);
        let asked = match target {
            Target::Request(req) => req.header_str("x-mode"),
            Target::Connection(info) => info.server_name.clone(),
        };
        let mode = match asked {
            Some(mode) if MODES.contains(&mode.as_str()) => mode,
            _ => self.mode.clone().unwrap_or_else(|| "first".into()),
        };
        match mode.as_str() {
            "first" => endpoints.iter().position(Endpoint::is_available),
            "none" => None,
            "index" => Some(self.index),
            "count" => Some(self.calls.get() - 1),
            "expect" => {
                let seen = describe(target, endpoints);
                assert_eq!(seen, self.expect, "balance-probe: unexpected view");
                Some(0)
            }
            "trap" => panic!("balance-probe: asked to trap"),
            "spin" => loop {
                black_box(&self.calls).set(self.calls.get().wrapping_add(1));
            },
            "hog" => HOARD.with(|hoard| {
                loop {
                    hoard.borrow_mut().push(black_box(vec![0xa5u8; 1 << 20]));
                }
            }),
            other => panic!("balance-probe: unknown mode {other:?}"),
        }
    }
}

/// `request|METHOD|PATH|QUERY|AUTHORITY|CLIENT|X-USER|COOKIES` or
/// `connection|IP|PORT|LISTENER|SNI|ALPN,...`, then ` => ` and each endpoint as
/// `ADDRESS/WEIGHT/HEALTHY/DRAINING/IN-FLIGHT/EWMA`, space-separated; `-` for none.
fn describe(target: &Target, endpoints: &[Endpoint]) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let head = match target {
        Target::Request(req) => format!(
            "request|{}|{}|{}|{}|{}|{}|{}",
            req.method(),
            req.path(),
            or_dash(req.query()),
            or_dash(req.authority()),
            req.client(),
            or_dash(req.header_str("X-User")),
            req.header_all("cookie")
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join(";"),
        ),
        Target::Connection(info) => format!(
            "connection|{}|{}|{}|{}|{}",
            info.client_ip,
            info.client_port,
            info.listener,
            or_dash(info.server_name.clone()),
            info.alpn.join(","),
        ),
    };
    let list: Vec<String> = endpoints
        .iter()
        .map(|e| {
            format!(
                "{}/{}/{}/{}/{}/{}",
                e.address, e.weight, e.healthy, e.draining, e.in_flight, e.ewma_latency_micros
            )
        })
        .collect();
    format!("{head} => {}", list.join(" "))
}

export_balancer!(Probe);
