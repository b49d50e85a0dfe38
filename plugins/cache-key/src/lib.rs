//! maitred filter plugin `cache-key`: decides how a cached route keys, skips and keeps
//! responses — marketing query parameters dropped from the key, variants by header, cookie
//! or device class, cache bypass for logged-in users, and lifetime overrides by path.
//!
//! ```toml
//! [[route]]
//! path_prefix = "/"
//! upstream = "shop"
//! cache = { max_size = "256MiB" }
//! plugins = ["shop-cache"]
//!
//! [plugin.shop-cache]
//! wasm = "target/wasm32-wasip2/release/cache_key.wasm"
//!
//! [plugin.shop-cache.config]
//! ignore_query = ["utm_*", "fbclid", "gclid"]   # left out of the key
//! sort_query = true                             # ?b=2&a=1 and ?a=1&b=2 share an entry
//! headers = ["accept-language"]                 # one entry per value
//! cookies = ["currency"]                        # one entry per value
//! device_class = true                           # x-device-class: mobile | tablet | desktop
//! bypass = { cookies = ["session", "wordpress_logged_in_*"], headers = ["authorization"],
//!            path_prefixes = ["/account/", "/cart"] }
//! ttl = [ { path_prefix = "/static/", ttl = "1d" },
//!         { path_suffix = ".html", ttl = "5m" } ]
//! ```
//!
//! Every key is optional; with none the plugin changes nothing.
//!
//! # The key
//!
//! - `ignore_query` (name patterns): query parameters left out of the key.
//! - `keep_query` (name patterns): when given, only these parameters stay in the key
//!   (allow-list mode; `keep_query = []` keys by path alone). A parameter stays when it
//!   matches `keep_query` (if given) and no `ignore_query` pattern.
//! - `sort_query` (default `false`): parameters are sorted by name (stable: repeated names
//!   keep their order, as `a=2&a=1` may mean something else than `a=1&a=2`).
//! - `rewrite_query` (default `false`): the request sent upstream gets the filtered (and
//!   sorted) query too, not only the key.
//! - `headers` (header names): each header's value is added to the key (several values
//!   joined with `,`, compared exactly: normalise upstream of the cache if needed).
//! - `cookies` (cookie names): each cookie's value is added to the key.
//! - `device_class` (default `false`): classifies the `User-Agent` as `mobile`, `tablet` or
//!   `desktop` (substring rules, see [`device::Device::classify`]), sets the request header
//!   `x-device-class` to it (replacing any the client sent, so the origin can rely on it)
//!   and adds it to the key. The origin does not need to `Vary` on it (it is in the key);
//!   a `Vary: User-Agent` from the origin would still split entries per exact agent string.
//! - `key_header` (a header name): sends the final key upstream in this request header, to
//!   see it in the origin's logs.
//!
//! Name patterns are case-sensitive names with `*` wildcards: `utm_*`, `*_ref`, `*`.
//! Query parameter names are matched percent-decoded.
//!
//! The key is the host's default key (`<authority><path>?<query>`, or the key an earlier
//! plugin in the chain set) with the query filtered — the `?` goes when no parameter is left —
//! followed by one `#<name>=<value>` component per header and cookie that the request has,
//! in this order:
//!
//! ```text
//! <authority><path>[?<query>][#<header>=<value>]...[#x-device-class=<class>][#cookie:<name>=<value>]...
//! ```
//!
//! e.g. `shop.example/p?id=7#accept-language=de#x-device-class=mobile#cookie:currency=EUR`.
//! Headers come in the order of `headers`, then `x-device-class` (unless listed in `headers`,
//! which sets its place), then cookies in the order of `cookies`. A missing header or cookie
//! adds nothing (so it differs from an empty one). In values, bytes outside visible ASCII and
//! `%` and `#` are percent-encoded, so a value cannot forge a component. Keys are the same
//! for the same inputs, and purging by prefix (`POST /cache/purge?prefix=shop.example/p`)
//! reaches every variant of a URL. Unsafe requests (`POST`...) get their key the same way, so
//! they invalidate what the matching `GET` stored.
//!
//! # Bypass
//!
//! `bypass` skips the cache (the request is neither answered from it nor stored in it) when
//! any rule matches, checked in this order; the first match is the reason shown in
//! `Cache-Status: maitred; fwd=bypass; detail=<reason>`:
//!
//! | rule | matches | reason |
//! |---|---|---|
//! | `methods = ["PURGE"]` | the method | `method-PURGE` |
//! | `path_prefixes = ["/account/"]` | the path starts with it | `path-/account/` |
//! | `headers = ["authorization"]` | the header is present | `header-authorization` |
//! | `cookies = ["session", "wp_*"]` | a cookie with a matching name is present | `cookie-session`, `cookie-wp_*` |
//! | `query = ["preview"]` | a query parameter with a matching name is present | `query-preview` |
//!
//! Presence is enough: an empty value matches too.
//!
//! # Lifetimes
//!
//! `ttl` is a list of rules `{ path_prefix?, path_suffix?, ttl }`; the first rule whose
//! conditions all hold (a rule without conditions matches every path) sets how long a
//! response stored for this request stays fresh, in place of its `Cache-Control` /
//! `Expires` lifetime. `ttl` is a string of `<number><unit>` parts (units `s`, `m`, `h`,
//! `d`, `w`: `"90s"`, `"10m"`, `"1h 30m"`, `"1d"`) or an integer number of seconds. It
//! only changes the lifetime of responses the cache stores anyway: `no-store`, `private`,
//! `Set-Cookie` without `public`... are still not stored. It applies to every storable
//! status, so a `/static/` rule also keeps a cacheable 404 that long. Bypassed requests
//! get no override.
//!
//! # Order in a chain
//!
//! The plugin reads the path and query as earlier plugins in the route's chain left them,
//! and the key it sets is final: put it after plugins that rewrite the path. Request phase
//! only.
//!
//! # Errors
//!
//! Unknown keys, invalid patterns, header names, cookie names and methods, paths without a
//! leading `/`, repeated names and unreadable TTLs fail `init` with a message naming the key
//! (e.g. `bypass.path_prefixes: "account/" must start with '/'`), so `maitred check` and
//! reloads refuse the config.
#![warn(missing_docs)]

pub mod config;
mod cookie;
pub mod device;
pub mod glob;
pub mod key;
pub mod policy;
pub mod query;
pub mod ttl;

use maitred_sdk::{Action, Config, Phases, Plugin, Request, export_plugin};
use policy::{Policy, RequestView};

/// The plugin: a checked [`Policy`] applied to each request.
pub struct CacheKey(Policy);

impl Plugin for CacheKey {
    fn init(config: Config) -> Result<Self, String> {
        config
            .get::<config::Settings>()?
            .into_policy()
            .map(CacheKey)
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&self, req: &Request) -> Action {
        let plan = self.0.plan(req);
        if let Some(device) = plan.device {
            let _ = req.set_header(device::HEADER, device.as_str());
        }
        if let Some(query) = &plan.query {
            let _ = req.set_query(query.as_deref());
        }
        if let Some(reason) = &plan.bypass {
            req.bypass_cache(reason);
        }
        if let Some(key) = &plan.key {
            req.set_cache_key(key);
        }
        if let Some((name, key)) = &plan.key_header {
            let _ = req.set_header(name, key);
        }
        if let Some(seconds) = plan.ttl {
            req.set_cache_ttl(seconds);
        }
        Action::Continue
    }
}

impl RequestView for Request {
    fn method(&self) -> String {
        Request::method(self)
    }
    fn path(&self) -> String {
        Request::path(self)
    }
    fn query(&self) -> Option<String> {
        Request::query(self)
    }
    fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
        Request::header_all(self, name)
    }
    fn cache_key(&self) -> String {
        Request::cache_key(self)
    }
}

export_plugin!(CacheKey);
