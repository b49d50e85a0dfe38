//! maitred filter plugin `ratelimit`: at most `limit` requests per `window` for each client
//! (or API key, cookie, path, or a combination), counted in the proxy's shared state so the
//! limit holds across all workers and plugin instances; requests over it get
//! `429 Too Many Requests` with `Retry-After`.
//!
//! ```toml
//! [[route]]
//! path_prefix = "/api/"
//! upstream = "api"
//! plugins = ["api-limit"]
//!
//! [plugin.api-limit]
//! wasm = "target/wasm32-wasip2/release/ratelimit.wasm"
//! config = { key = "client_ip", limit = 100, window = "1m" }
//!
//! # Every setting:
//! [plugin.login-limit]
//! wasm = "target/wasm32-wasip2/release/ratelimit.wasm"
//! [plugin.login-limit.config]
//! key = ["client_ip", "path"]          # one counter per client and path
//! limit = 5                            # requests per window (required)
//! window = "1m"                        # "500ms", "10s", "1m", "1h 30m", "1d", or seconds (required)
//! algorithm = "sliding_window"         # or "fixed_window"
//! missing = "pass"                     # or "shared" (requests lacking a key part)
//! ipv6_prefix = 64                     # IPv6 clients counted per /64
//! status = 429                         # 400-599
//! body = "Too Many Requests\n"
//! content_type = "text/plain; charset=utf-8"
//! headers = true                       # RateLimit-* headers on refusals
//! ```
//!
//! # Keys
//!
//! `key` is one part or a list of parts (default `"client_ip"`); requests with the same
//! values for all parts share a counter:
//!
//! | part | value |
//! |---|---|
//! | `client_ip` | the client's address (the proxy's peer); IPv6 addresses grouped by `ipv6_prefix` bits (default 64, 128 for one address each); IPv4-mapped IPv6 as IPv4 |
//! | `header:NAME` | the request header's values joined with `, ` (e.g. `header:x-api-key`) |
//! | `cookie:NAME` | the cookie's first value, as sent |
//! | `path` | the path without the query |
//! | `method` | the method |
//! | `host` | the authority (`Host`), lowercase |
//!
//! Behind another proxy or load balancer every request comes from its address: key by the
//! header it sets instead (`header:x-real-ip`), but only if it overwrites any value the
//! client sent, or clients pick their own key.
//!
//! A request without a header, cookie or host that the key uses is not limited at all with
//! `missing = "pass"` (the default, as nginx does not count requests with an empty key),
//! or counted with every other request lacking it (one shared counter per combination of
//! the other parts) with `missing = "shared"`. A header sent empty is a value, not missing.
//!
//! Counters belong to the plugin definition (`[plugin.NAME]`): routes that list the same
//! plugin share its counters, and two definitions (even of the same `.wasm`) count
//! separately. Counters survive config reloads unless the `window` changes. The host keeps at
//! most 100 000 keys per plugin, dropping the least recently used first, so keying by client
//! address cannot exhaust memory (an evicted client starts afresh).
//!
//! # Counting
//!
//! - `sliding_window` (default): the count is the previous window's, weighted by the part of
//!   it still within the last `window`, plus the current window's (Cloudflare's and nginx
//!   Plus's approximation). No burst of twice the limit at a window boundary.
//! - `fixed_window`: the count since the current window began. Windows start at a key's
//!   first request.
//!
//! A request is allowed when the count with it is at most `limit`. Refused requests are not
//! counted, so a client that keeps retrying gets through as its earlier requests age out.
//! The check is atomic in the host: of many concurrent requests, exactly `limit` pass.
//!
//! # Refusals
//!
//! A refused request gets `status` (429) with `body`, `Content-Type: content_type`, and
//! `Retry-After: <seconds>`: when one more request would be allowed if the client sent
//! nothing meanwhile (at least 1). With `headers = true` it also gets
//! `RateLimit-Limit: <limit>`, `RateLimit-Remaining: 0`, `RateLimit-Reset: <seconds>` (as
//! `Retry-After`) and `RateLimit-Policy: <limit>;w=<window seconds>`
//! (draft-ietf-httpapi-ratelimit-headers). Allowed requests pass untouched: the response
//! phase cannot see the request's count, so they carry no `RateLimit-*` headers.
//!
//! # Order in a chain
//!
//! The plugin reads the path and headers as earlier plugins left them. Request phase only.
//!
//! # Errors
//!
//! A missing `limit` or `window`, `limit = 0`, an unreadable `window` (or one over 49 days),
//! unknown or repeated key parts, invalid header or cookie names, a `status` outside
//! 400-599, an `ipv6_prefix` over 128, an invalid `content_type` and unknown settings fail
//! `init` with a message naming the setting (e.g. `key: unknown key part "ip"; use ...`), so
//! `maitred check` and reloads refuse the config.
#![warn(missing_docs)]

pub mod config;
pub mod key;
pub mod limit;
pub mod policy;
pub mod window;

use key::RequestView;
use maitred_sdk::state::{self, WindowCount};
use maitred_sdk::{Action, Config, Phases, Plugin, Request, export_plugin};
use policy::{Counter, Policy};
use std::time::Duration;

/// The plugin: a checked [`Policy`] applied to each request.
pub struct RateLimit(Policy);

impl Plugin for RateLimit {
    fn init(config: Config) -> Result<Self, String> {
        config
            .get::<config::Settings>()?
            .into_policy()
            .map(RateLimit)
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&self, req: &Request) -> Action {
        match self.0.decide(req, &HostState) {
            Some(refusal) => refusal.into(),
            None => Action::Continue,
        }
    }
}

/// The host's shared state (`maitred_sdk::state`).
struct HostState;

impl Counter for HostState {
    fn increment(&self, key: &str, delta: u64, window: Duration) -> WindowCount {
        state::increment(key, delta, window)
    }
}

impl RequestView for Request {
    fn client_addr(&self) -> String {
        Request::client_addr(self)
    }
    fn method(&self) -> String {
        Request::method(self)
    }
    fn path(&self) -> String {
        Request::path(self)
    }
    fn authority(&self) -> Option<String> {
        Request::authority(self)
    }
    fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
        Request::header_all(self, name)
    }
}

export_plugin!(RateLimit);
