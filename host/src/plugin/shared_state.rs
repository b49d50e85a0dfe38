//! The `state` interface: counters in time windows and values with a lifetime, shared by
//! every instance of one plugin across all workers (and kept across reloads, by plugin name).
//!
//! Each plugin's state is a moka cache bounded by entry count ([`MAX_ENTRIES`]), so a plugin
//! keyed by client address cannot grow memory without bound: the least recently used keys
//! go first. Counter updates are atomic per key (moka's `and_compute_with`).

use super::bindings::maitred::plugin::state::{self, WindowCount};
use super::state::PluginState;
use moka::Expiry;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use rustc_hash::FxHashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

/// Most keys one plugin keeps.
pub const MAX_ENTRIES: u64 = 100_000;

/// Longest key accepted (longer keys are cut to this, on a character boundary).
const MAX_KEY: usize = 256;

/// Largest value accepted by `set` (larger ones are not stored).
const MAX_VALUE: usize = 64 * 1024;

/// One key's content.
#[derive(Clone)]
enum Slot {
    /// A counter in fixed windows of `window`; `window_start` is when the current one began.
    Counter {
        window: Duration,
        window_start: Instant,
        current: u64,
        previous: u64,
    },
    /// A value, expiring `ttl` after it was set (`None`: never).
    Value {
        bytes: Arc<[u8]>,
        ttl: Option<Duration>,
    },
}

/// Expires values after their TTL and counters two windows after their last window began.
struct SlotExpiry;

impl Expiry<String, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &String, slot: &Slot, _: Instant) -> Option<Duration> {
        lifetime(slot)
    }
    fn expire_after_update(
        &self,
        _: &String,
        slot: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        lifetime(slot)
    }
}

fn lifetime(slot: &Slot) -> Option<Duration> {
    match slot {
        Slot::Counter { window, .. } => Some(window.saturating_mul(2)),
        Slot::Value { ttl, .. } => *ttl,
    }
}

/// One plugin's shared state.
pub struct SharedState {
    slots: Cache<String, Slot>,
}

impl SharedState {
    fn new() -> SharedState {
        SharedState {
            slots: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                // Least recently used out: a new client's counter always gets in (TinyLFU
                // could refuse it and let it go uncounted).
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(SlotExpiry)
                .build(),
        }
    }

    /// Adds `delta` to counter `key` in windows of `window`, at `now`.
    pub fn increment(
        &self,
        key: String,
        delta: u64,
        window: Duration,
        now: Instant,
    ) -> WindowCount {
        let window = window.max(Duration::from_millis(1));
        let entry = self.slots.entry(key).and_compute_with(|existing| {
            let slot = match existing.map(|e| e.into_value()) {
                Some(Slot::Counter {
                    window: w,
                    window_start,
                    current,
                    previous,
                }) if w == window => {
                    let passed = now.saturating_duration_since(window_start);
                    if passed < window {
                        Slot::Counter {
                            window,
                            window_start,
                            current: current.saturating_add(delta),
                            previous,
                        }
                    } else {
                        // Move on by whole windows; the previous one saw nothing if more
                        // than one window passed.
                        let windows = (passed.as_nanos() / window.as_nanos()) as u32;
                        Slot::Counter {
                            window,
                            window_start: window_start + window * windows,
                            current: delta,
                            previous: if windows == 1 { current } else { 0 },
                        }
                    }
                }
                _ => Slot::Counter {
                    window,
                    window_start: now,
                    current: delta,
                    previous: 0,
                },
            };
            Op::Put(slot)
        });
        match entry.into_entry().map(|e| e.into_value()) {
            Some(Slot::Counter {
                window,
                window_start,
                current,
                previous,
            }) => WindowCount {
                current,
                previous,
                elapsed_ms: millis(now.saturating_duration_since(window_start)),
                window_ms: millis(window),
            },
            _ => WindowCount {
                current: delta,
                previous: 0,
                elapsed_ms: 0,
                window_ms: millis(window),
            },
        }
    }

    /// The value under `key`, if it is a value.
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        match self.slots.get(key)? {
            Slot::Value { bytes, .. } => Some(bytes),
            Slot::Counter { .. } => None,
        }
    }

    /// Stores `bytes` under `key` for `ttl` (`None`: until evicted).
    pub fn set(&self, key: String, bytes: &[u8], ttl: Option<Duration>) {
        if bytes.len() <= MAX_VALUE {
            let bytes = Arc::from(bytes);
            self.slots.insert(key, Slot::Value { bytes, ttl });
        }
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        self.slots.invalidate(key);
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Every plugin's state, by plugin name.
static REGISTRY: LazyLock<RwLock<FxHashMap<Arc<str>, Arc<SharedState>>>> =
    LazyLock::new(Default::default);

/// The shared state of the plugin named `plugin`, made on first use.
pub fn for_plugin(plugin: &Arc<str>) -> Arc<SharedState> {
    if let Some(found) = REGISTRY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(plugin)
    {
        return found.clone();
    }
    REGISTRY
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(plugin.clone())
        .or_insert_with(|| Arc::new(SharedState::new()))
        .clone()
}

/// `key` cut to [`MAX_KEY`] bytes.
fn bounded(mut key: String) -> String {
    if key.len() > MAX_KEY {
        let mut end = MAX_KEY;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key.truncate(end);
    }
    key
}

impl state::Host for PluginState {
    fn increment(
        &mut self,
        key: String,
        delta: u64,
        window_ms: u32,
    ) -> wasmtime::Result<WindowCount> {
        let window = Duration::from_millis(u64::from(window_ms));
        Ok(self
            .shared_state()
            .increment(bounded(key), delta, window, Instant::now()))
    }
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.shared_state().get(&bounded(key)).map(|v| v.to_vec()))
    }
    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u32) -> wasmtime::Result<()> {
        let ttl = (ttl_ms > 0).then(|| Duration::from_millis(u64::from(ttl_ms)));
        self.shared_state().set(bounded(key), &value, ttl);
        Ok(())
    }
    fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        self.shared_state().remove(&bounded(key));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_roll_over_windows() {
        let state = SharedState::new();
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let c = state.increment("k".into(), 1, w, t0);
        assert_eq!((c.current, c.previous, c.window_ms), (1, 0, 10_000));
        let c = state.increment("k".into(), 2, w, t0 + Duration::from_secs(3));
        assert_eq!((c.current, c.previous, c.elapsed_ms), (3, 0, 3_000));
        // Next window: the previous count moves over.
        let c = state.increment("k".into(), 1, w, t0 + Duration::from_secs(12));
        assert_eq!((c.current, c.previous, c.elapsed_ms), (1, 3, 2_000));
        // Two windows later: nothing in the previous one.
        let c = state.increment("k".into(), 1, w, t0 + Duration::from_secs(35));
        assert_eq!((c.current, c.previous, c.elapsed_ms), (1, 0, 5_000));
        // Another window length restarts the counter.
        let c = state.increment("k".into(), 1, Duration::from_secs(1), t0);
        assert_eq!((c.current, c.previous), (1, 0));
    }

    #[test]
    fn values_and_counters_are_separate_kinds() {
        let state = SharedState::new();
        state.set("v".into(), b"hello", None);
        assert_eq!(state.get("v").as_deref(), Some(&b"hello"[..]));
        state.increment("c".into(), 1, Duration::from_secs(1), Instant::now());
        assert_eq!(state.get("c"), None);
        state.remove("v");
        assert_eq!(state.get("v"), None);
        state.set("big".into(), &vec![0; MAX_VALUE + 1], None);
        assert_eq!(state.get("big"), None);
    }

    #[test]
    fn concurrent_increments_are_not_lost() {
        let state = Arc::new(SharedState::new());
        let now = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let state = state.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        state.increment("k".into(), 1, Duration::from_secs(60), now);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let c = state.increment("k".into(), 0, Duration::from_secs(60), now);
        assert_eq!(c.current, 4000);
    }

    #[test]
    fn plugins_have_their_own_state() {
        let a = for_plugin(&Arc::from("test-a"));
        let b = for_plugin(&Arc::from("test-b"));
        a.set("k".into(), b"1", None);
        assert!(b.get("k").is_none());
        assert!(Arc::ptr_eq(&a, &for_plugin(&Arc::from("test-a"))));
    }
}
