//! State shared by every instance of your plugin, across all of the proxy's workers and
//! requests (and kept across config reloads): counters in time windows, for rate limits, and
//! values with a lifetime. The host bounds it in memory (least recently used keys go first),
//! so keying by client address is safe.
//!
//! ```ignore
//! use maitred_sdk::state;
//! use std::time::Duration;
//!
//! let count = state::increment(&format!("ip:{ip}"), 1, Duration::from_secs(60));
//! if count.sliding() > 100.0 {
//!     // over the limit
//! }
//! ```

use crate::bindings::maitred::plugin::state as raw;
use std::time::Duration;

/// A counter in fixed time windows, as [`increment`] left it.
///
/// ```ignore
/// let c = state::increment("k", 1, Duration::from_secs(10));
/// println!("{} this window, {} the one before", c.current, c.previous);
/// ```
pub use raw::WindowCount;

impl WindowCount {
    /// The sliding-window estimate of the count over the last window: the previous window's
    /// count weighted by how much of it still overlaps, plus the current count.
    ///
    /// ```ignore
    /// let over = state::increment(&key, 1, window).sliding() > limit as f64;
    /// ```
    pub fn sliding(&self) -> f64 {
        let window = f64::from(self.window_ms.max(1));
        let overlap = (window - f64::from(self.elapsed_ms.min(self.window_ms))) / window;
        self.previous as f64 * overlap + self.current as f64
    }

    /// Time until the current window ends.
    ///
    /// ```ignore
    /// let retry_after = c.until_next_window().as_secs() + 1;
    /// ```
    pub fn until_next_window(&self) -> Duration {
        Duration::from_millis(u64::from(self.window_ms.saturating_sub(self.elapsed_ms)))
    }
}

/// Adds `delta` to the counter `key` in fixed windows of `window` (rounded to milliseconds,
/// at least 1 ms) and returns it. Atomic across all instances and workers.
///
/// ```ignore
/// let c = state::increment("login:alice", 1, Duration::from_secs(300));
/// ```
pub fn increment(key: &str, delta: u64, window: Duration) -> WindowCount {
    let window_ms = u32::try_from(window.as_millis()).unwrap_or(u32::MAX).max(1);
    raw::increment(key, delta, window_ms)
}

/// The value stored under `key`, if any and not expired (counters are not values).
///
/// ```ignore
/// if state::get("banned:10.0.0.7").is_some() { /* ... */ }
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    raw::get(key)
}

/// Stores `value` under `key` for `ttl` (`None`: until evicted). Values over 64 KiB are
/// not stored.
///
/// ```ignore
/// state::set("banned:10.0.0.7", b"1", Some(Duration::from_secs(600)));
/// ```
pub fn set(key: &str, value: impl AsRef<[u8]>, ttl: Option<Duration>) {
    let ttl_ms = ttl.map_or(0, |t| {
        u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
    });
    raw::set(key, value.as_ref(), ttl_ms)
}

/// Removes `key` (a counter or a value).
///
/// ```ignore
/// state::remove("banned:10.0.0.7");
/// ```
pub fn remove(key: &str) {
    raw::remove(key)
}
