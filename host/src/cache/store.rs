//! Where a route's cached responses live: an in-memory moka cache bounded by bytes.
//!
//! A key (see [`super::default_key`]) maps to an [`Entry`]: the stored responses for that
//! key, one per variant when the origin answers with `Vary` (RFC 9111 §4.1). Entries are
//! immutable and shared (`Arc`); storing a variant replaces the key's entry with a new one.

use super::policy::CacheControl;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Most variants kept per key; storing one more drops the oldest.
const MAX_VARIANTS: usize = 16;

/// One stored response.
#[derive(Debug)]
pub struct Stored {
    /// The status code.
    pub status: StatusCode,
    /// The response headers, without hop-by-hop headers and `Set-Cookie`.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When the request that fetched (or last validated) it was sent.
    pub request_time: SystemTime,
    /// When that response arrived.
    pub response_time: SystemTime,
    /// How long it stays fresh (RFC 9111 §4.2.1, or a plugin's TTL).
    pub lifetime: Duration,
    /// Its `Cache-Control` directives.
    pub cc: CacheControl,
    /// The request headers its `Vary` names, with the values the request that fetched it had.
    pub vary: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl Stored {
    /// How old it is at `now` (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        super::policy::current_age(&self.headers, self.request_time, self.response_time, now)
    }

    /// Whether a request with `headers` selects this variant: every header named by `Vary`
    /// has the same value (all lines joined) as in the request that fetched it.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| joined(headers, name).as_ref() == value.as_ref())
    }

    /// The header bytes and body bytes this response takes up, roughly.
    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        (self.body.len() + headers + 256) as u64
    }
}

/// The request header values a response's `Vary` names (RFC 9111 §4.1), to store with it.
pub fn vary_values(
    response_headers: &HeaderMap,
    request_headers: &HeaderMap,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in response_headers.get_all(header::VARY) {
        for name in line.as_bytes().split(|&b| b == b',') {
            if let Ok(name) = HeaderName::from_bytes(name.trim_ascii())
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let value = joined(request_headers, &name);
            (name, value)
        })
        .collect()
}

/// All lines of header `name` joined with `, `, or `None` when absent.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return Some(first.clone());
    };
    let mut value = first.as_bytes().to_vec();
    for line in std::iter::once(second).chain(lines) {
        value.extend_from_slice(b", ");
        value.extend_from_slice(line.as_bytes());
    }
    HeaderValue::from_bytes(&value).ok()
}

/// The stored responses for one key, newest first.
#[derive(Debug, Default)]
pub struct Entry {
    /// One per variant.
    pub variants: Vec<Arc<Stored>>,
}

impl Entry {
    /// The variant a request with `headers` selects.
    pub fn select(&self, headers: &HeaderMap) -> Option<&Arc<Stored>> {
        self.variants.iter().find(|v| v.matches(headers))
    }

    fn weight(&self) -> u32 {
        let bytes: u64 = self.variants.iter().map(|v| v.weight()).sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// What a lookup found for a key.
pub enum Found {
    /// A variant for this request.
    Variant(Arc<Stored>),
    /// Responses for the key, but none for this request's `Vary` values.
    OtherVariants,
    /// Nothing for the key.
    Nothing,
}

/// A route's stored responses, bounded by bytes (least recently used go first).
pub struct Store {
    entries: Cache<String, Arc<Entry>>,
    max_size: u64,
}

impl Store {
    /// An empty store holding at most `max_size` bytes.
    pub fn new(max_size: u64) -> Store {
        Store {
            entries: Cache::builder()
                .max_capacity(max_size)
                // Least recently used out, like nginx's and Varnish's caches: a new response
                // always gets in (TinyLFU would keep old entries and turn new ones away).
                .eviction_policy(EvictionPolicy::lru())
                .weigher(|key: &String, entry: &Arc<Entry>| {
                    entry.weight().saturating_add(key.len() as u32)
                })
                .build(),
            max_size,
        }
    }

    /// The stored response for `key` that a request with `headers` selects.
    pub fn find(&self, key: &str, headers: &HeaderMap) -> Found {
        match self.entries.get(key) {
            None => Found::Nothing,
            Some(entry) => match entry.select(headers) {
                Some(stored) => Found::Variant(stored.clone()),
                None => Found::OtherVariants,
            },
        }
    }

    /// Stores `stored` under `key`, replacing the variant with the same `Vary` values.
    pub fn insert(&self, key: &str, stored: Arc<Stored>) {
        let mut variants = vec![stored.clone()];
        if let Some(old) = self.entries.get(key) {
            variants.extend(
                old.variants
                    .iter()
                    .filter(|v| v.vary != stored.vary)
                    .take(MAX_VARIANTS - 1)
                    .cloned(),
            );
        }
        self.entries
            .insert(key.to_owned(), Arc::new(Entry { variants }));
    }

    /// Drops every variant stored under `key`; says whether there were any.
    pub fn remove(&self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    /// Drops every key starting with `prefix`; returns how many.
    pub fn remove_prefix(&self, prefix: &str) -> usize {
        let keys: Vec<Arc<String>> = self
            .entries
            .iter()
            .map(|(key, _)| key)
            .filter(|key| key.starts_with(prefix))
            .collect();
        keys.iter().filter(|key| self.remove(key)).count()
    }

    /// Keys held, bytes held and the byte bound, after pending evictions are done.
    pub fn usage(&self) -> (u64, u64, u64) {
        self.entries.run_pending_tasks();
        (
            self.entries.entry_count(),
            self.entries.weighted_size(),
            self.max_size,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(body: &str, vary: Vec<(HeaderName, Option<HeaderValue>)>) -> Arc<Stored> {
        Arc::new(Stored {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
            request_time: SystemTime::UNIX_EPOCH,
            response_time: SystemTime::UNIX_EPOCH,
            lifetime: Duration::from_secs(60),
            cc: CacheControl::default(),
            vary,
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn variants_are_selected_by_the_vary_headers() {
        let store = Store::new(1 << 20);
        let mut response = HeaderMap::new();
        response.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        let gzip = headers(&[("accept-encoding", "gzip")]);
        let plain = HeaderMap::new();
        store.insert("k", stored("gz", vary_values(&response, &gzip)));
        store.insert("k", stored("plain", vary_values(&response, &plain)));
        let body = |h: &HeaderMap| match store.find("k", h) {
            Found::Variant(s) => String::from_utf8(s.body.to_vec()).unwrap(),
            _ => "none".into(),
        };
        assert_eq!(body(&gzip), "gz");
        assert_eq!(body(&plain), "plain");
        assert!(matches!(
            store.find("k", &headers(&[("accept-encoding", "br")])),
            Found::OtherVariants
        ));
        assert!(matches!(store.find("other", &plain), Found::Nothing));
    }

    #[test]
    fn a_new_response_for_the_same_variant_replaces_the_old_one() {
        let store = Store::new(1 << 20);
        store.insert("k", stored("old", Vec::new()));
        store.insert("k", stored("new", Vec::new()));
        let Found::Variant(s) = store.find("k", &HeaderMap::new()) else {
            panic!("not found")
        };
        assert_eq!(&s.body[..], b"new");
        assert_eq!(store.entries.get("k").unwrap().variants.len(), 1);
    }

    #[test]
    fn repeated_header_lines_are_joined_for_vary() {
        let mut response = HeaderMap::new();
        response.insert(header::VARY, HeaderValue::from_static("accept, x-a"));
        let request = headers(&[("accept", "a"), ("accept", "b")]);
        let vary = vary_values(&response, &request);
        assert_eq!(vary[0].1.as_ref().unwrap(), "a, b");
        assert_eq!(vary[1], (HeaderName::from_static("x-a"), None));
    }

    #[test]
    fn bytes_are_bounded_and_prefix_removal_counts_keys() {
        let store = Store::new(64 * 1024);
        for i in 0..32 {
            store.insert(&format!("h/{i}"), stored(&"x".repeat(8 * 1024), Vec::new()));
        }
        let (_, bytes, max) = store.usage();
        assert!(bytes <= max, "{bytes} > {max}");
        let mut kept = store.usage().0 as usize;
        store.insert("other/1", stored("x", Vec::new()));
        kept += 1;
        assert_eq!(store.remove_prefix("h/"), kept - 1);
        assert!(store.remove("other/1"));
    }
}
