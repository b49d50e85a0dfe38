//! The decision: whether a request fits the limit, from the counter the shared state returns,
//! and when a refused client may try again.

use maitred_sdk::state::WindowCount;
use serde::Deserialize;
use std::time::Duration;

/// How requests are counted over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// The previous window's count, weighted by how much of it still overlaps the last
    /// `window`, plus the current window's: a smooth limit without bursts at window edges.
    #[default]
    #[serde(alias = "sliding")]
    SlidingWindow,
    /// The count since the current window began: cheap to reason about, but allows up to
    /// twice the limit across a window boundary.
    #[serde(alias = "fixed")]
    FixedWindow,
}

/// A limit: at most `limit` requests per `window`, counted by `algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed per window, at least 1.
    pub limit: u64,
    /// The window.
    pub window: Duration,
    /// How requests are counted.
    pub algorithm: Algorithm,
}

/// A refused request: the values for its response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Whole seconds until a request would be allowed (at least 1), if no more came.
    pub retry_after: u64,
}

impl Limit {
    /// The requests counted so far, by the algorithm.
    fn used(&self, c: &WindowCount) -> f64 {
        match self.algorithm {
            Algorithm::SlidingWindow => c.sliding(),
            Algorithm::FixedWindow => c.current as f64,
        }
    }

    /// Checks a counter read without counting this request (an increment by 0): refuses it
    /// when counting it would go over, so refused requests are not counted.
    ///
    /// ```ignore
    /// if let Err(refusal) = limit.precheck(&state::increment(&key, 0, limit.window)) { ... }
    /// ```
    pub fn precheck(&self, before: &WindowCount) -> Result<(), Refusal> {
        if self.used(before) + 1.0 > self.limit as f64 {
            Err(self.refusal(before))
        } else {
            Ok(())
        }
    }

    /// Checks the counter after this request was counted (atomically, so concurrent requests
    /// cannot all slip under the limit).
    ///
    /// ```ignore
    /// limit.check(&state::increment(&key, 1, limit.window))?;
    /// ```
    pub fn check(&self, after: &WindowCount) -> Result<(), Refusal> {
        if self.used(after) > self.limit as f64 {
            Err(self.refusal(after))
        } else {
            Ok(())
        }
    }

    /// How many more requests fit now, after one counted as `after`.
    ///
    /// ```ignore
    /// let left = limit.remaining(&count);
    /// ```
    pub fn remaining(&self, after: &WindowCount) -> u64 {
        let left = self.limit as f64 - self.used(after);
        if left <= 0.0 { 0 } else { left.floor() as u64 }
    }

    fn refusal(&self, c: &WindowCount) -> Refusal {
        let ms = self.wait(c).as_millis() as u64;
        Refusal {
            retry_after: ms.div_ceil(1000).max(1),
        }
    }

    /// The time until one more request would fit, if no other came.
    fn wait(&self, c: &WindowCount) -> Duration {
        let window = f64::from(c.window_ms.max(1));
        let elapsed = f64::from(c.elapsed_ms.min(c.window_ms));
        let to_next = window - elapsed;
        let room = self.limit as f64 - 1.0;
        let (current, previous) = (c.current as f64, c.previous as f64);
        let ms = match self.algorithm {
            Algorithm::FixedWindow => to_next,
            // The estimate `previous * (window - elapsed - t) / window + current` falls as
            // the previous window slides out; once in the next window it is
            // `current * (window - t') / window`.
            Algorithm::SlidingWindow if current <= room => {
                if previous <= 0.0 {
                    0.0
                } else {
                    (to_next - (room - current) * window / previous).max(0.0)
                }
            }
            Algorithm::SlidingWindow => to_next + window * (current - room) / current,
        };
        Duration::from_micros((ms * 1000.0).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(current: u64, previous: u64, elapsed_ms: u32, window_ms: u32) -> WindowCount {
        WindowCount {
            current,
            previous,
            elapsed_ms,
            window_ms,
        }
    }

    fn limit(limit: u64, algorithm: Algorithm) -> Limit {
        Limit {
            limit,
            window: Duration::from_secs(60),
            algorithm,
        }
    }

    #[test]
    fn fixed_window_allows_exactly_the_limit() {
        let l = limit(3, Algorithm::FixedWindow);
        for n in 1..=3 {
            assert_eq!(l.check(&count(n, 100, 1000, 60_000)), Ok(()));
        }
        assert_eq!(
            l.check(&count(4, 0, 1000, 60_000)),
            Err(Refusal { retry_after: 59 })
        );
        assert_eq!(l.precheck(&count(2, 0, 0, 60_000)), Ok(()));
        assert!(l.precheck(&count(3, 0, 0, 60_000)).is_err());
        assert_eq!(l.remaining(&count(1, 0, 0, 60_000)), 2);
        assert_eq!(l.remaining(&count(3, 0, 0, 60_000)), 0);
        assert_eq!(l.remaining(&count(9, 0, 0, 60_000)), 0);
        // Retry-After rounds up and is at least 1.
        assert_eq!(
            l.check(&count(4, 0, 59_999, 60_000))
                .unwrap_err()
                .retry_after,
            1
        );
        assert_eq!(
            l.check(&count(4, 0, 58_999, 60_000))
                .unwrap_err()
                .retry_after,
            2
        );
        assert_eq!(
            l.check(&count(4, 0, 60_000, 60_000))
                .unwrap_err()
                .retry_after,
            1
        );
    }

    #[test]
    fn sliding_window_weighs_the_previous_window() {
        let l = limit(10, Algorithm::SlidingWindow);
        // A quarter into the window: 3/4 of the previous 8 still counts.
        assert_eq!(l.check(&count(4, 8, 15_000, 60_000)), Ok(()));
        assert!(l.check(&count(5, 8, 15_000, 60_000)).is_err());
        assert_eq!(l.remaining(&count(4, 8, 15_000, 60_000)), 0);
        assert_eq!(l.remaining(&count(1, 8, 30_000, 60_000)), 5);
        // Nothing before: the current count alone.
        assert_eq!(l.check(&count(10, 0, 0, 60_000)), Ok(()));
        assert!(l.check(&count(11, 0, 0, 60_000)).is_err());
        assert!(l.precheck(&count(10, 0, 0, 60_000)).is_err());
        assert_eq!(l.precheck(&count(9, 0, 0, 60_000)), Ok(()));
    }

    #[test]
    fn sliding_retry_after_is_when_one_more_fits() {
        let l = limit(10, Algorithm::SlidingWindow);
        // previous 10, current 5, at 0 s: 15 counted; one more fits once the previous
        // weighs 4, i.e. 36 s from now.
        let c = count(5, 10, 0, 60_000);
        assert_eq!(l.precheck(&c).unwrap_err().retry_after, 36);
        // Check: 36 s later the estimate is 10 * 24/60 + 5 = 9, so one more fits.
        assert_eq!(l.precheck(&count(5, 10, 36_000, 60_000)), Ok(()));
        assert!(l.precheck(&count(5, 10, 35_000, 60_000)).is_err());
        // The whole limit used this window: wait for the next window and part of it.
        let c = count(10, 0, 30_000, 60_000);
        // 30 s to the next window, then 10 * (60 - t') / 60 <= 9: t' = 6 s.
        assert_eq!(l.precheck(&c).unwrap_err().retry_after, 36);
        // A limit of 1: the previous request must slide out completely.
        let one = limit(1, Algorithm::SlidingWindow);
        assert_eq!(
            one.precheck(&count(1, 0, 0, 60_000))
                .unwrap_err()
                .retry_after,
            120
        );
        assert_eq!(
            one.precheck(&count(0, 1, 20_000, 60_000))
                .unwrap_err()
                .retry_after,
            40
        );
        // Sub-second windows still say 1.
        let short = Limit {
            window: Duration::from_millis(100),
            ..one
        };
        assert_eq!(
            short
                .precheck(&count(1, 0, 0, 100))
                .unwrap_err()
                .retry_after,
            1
        );
    }

    #[test]
    fn precheck_then_check_never_lets_more_than_the_limit_through() {
        // Simulates concurrent requests: all prechecked against the same count, then
        // counted one by one.
        for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
            let l = limit(5, algorithm);
            let before = count(3, 0, 0, 60_000);
            let allowed = (1..=10)
                .filter(|i| {
                    l.precheck(&before).is_ok() && l.check(&count(3 + i, 0, 0, 60_000)).is_ok()
                })
                .count();
            assert_eq!(allowed, 2);
        }
    }
}
