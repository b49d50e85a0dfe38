//! HTTP caching (RFC 9111), per route: `cache = { max_size, max_object_size }`.
//!
//! - [`policy`]: the RFC's rules as pure functions (storable? fresh? how old?);
//! - [`store`]: the bytes-bounded moka store of responses and their `Vary` variants;
//! - [`route_cache`]: the two phases the proxy calls around forwarding (lookup, then
//!   store/refresh/invalidate), with [`flight`] (request coalescing), [`capture`] (storing a
//!   body as it streams), [`conditional`] (304s both ways) and [`status`] (`Cache-Status`).
//!
//! Plugins shape it per request through [`PluginCacheControl`] (key, bypass, TTL).

pub mod capture;
pub mod conditional;
pub mod flight;
pub mod policy;
pub mod route_cache;
pub mod status;
pub mod store;

pub use capture::CaptureBody;
pub use route_cache::{Lookup, Pending, Refresh, RouteCache};

use std::time::Duration;

/// What a route's plugins asked of its cache for one request (through the `request`
/// resource's `set-cache-key`, `bypass-cache` and `set-cache-ttl`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginCacheControl {
    /// The key to use instead of [`default_key`].
    pub key: Option<String>,
    /// Skip the cache for this request, for this reason.
    pub bypass: Option<String>,
    /// The freshness lifetime to give the response when it is stored.
    pub ttl: Option<Duration>,
}

/// The cache key of a request when no plugin sets one: the authority (lowercase, port kept
/// when given), the path and `?query`, e.g. `example.com/a/b?x=1`.
pub fn default_key(parts: &http::request::Parts) -> String {
    let authority = crate::proxy::request_authority(parts).unwrap_or_default();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    key(authority, path_and_query)
}

/// The default key of `path_and_query` on `authority` (lowercased here).
fn key(authority: &str, path_and_query: &str) -> String {
    let mut key = String::with_capacity(authority.len() + path_and_query.len());
    key.extend(authority.chars().map(|c| c.to_ascii_lowercase()));
    key.push_str(path_and_query);
    key
}
