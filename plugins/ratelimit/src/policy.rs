//! A checked config applied to one request: build the key, count, refuse or let through.

use crate::key::{KeySpec, RequestView};
use crate::limit::{Limit, Refusal};
use maitred_sdk::DirectResponse;
use maitred_sdk::state::WindowCount;
use std::time::Duration;

/// The shared counters; `maitred_sdk::state` in the plugin, a fake clock in tests.
pub trait Counter {
    /// Adds `delta` to `key`'s counter in windows of `window` and returns it.
    fn increment(&self, key: &str, delta: u64, window: Duration) -> WindowCount;
}

/// How a refusal looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    /// The status.
    pub status: u16,
    /// The body.
    pub body: String,
    /// The body's `Content-Type`.
    pub content_type: String,
    /// Whether to add the `RateLimit-*` headers.
    pub headers: bool,
}

/// The plugin's checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What requests are counted by.
    pub key: KeySpec,
    /// How many per window.
    pub limit: Limit,
    /// What a refused request gets.
    pub refuse: Refuse,
}

impl Policy {
    /// Counts `req` and returns the response refusing it, or `None` to let it through.
    ///
    /// The counter is read first (an increment by 0) and a request that would go over is
    /// refused without being counted, so a client that keeps retrying gets through again as
    /// soon as its earlier requests age out. A request that fits is then counted, and checked
    /// again against the count the host returns, which is atomic: of concurrent requests, no
    /// more than the limit get through.
    ///
    /// ```ignore
    /// if let Some(refusal) = policy.decide(req, &HostState) {
    ///     return refusal.into();
    /// }
    /// ```
    pub fn decide(&self, req: &dyn RequestView, counter: &dyn Counter) -> Option<DirectResponse> {
        let key = self.key.build(req)?;
        let window = self.limit.window;
        let verdict = self
            .limit
            .precheck(&counter.increment(&key, 0, window))
            .and_then(|()| self.limit.check(&counter.increment(&key, 1, window)));
        verdict.err().map(|refusal| self.response(refusal))
    }

    /// The refusal: `Retry-After`, and (unless turned off) `RateLimit-Limit`,
    /// `RateLimit-Remaining: 0`, `RateLimit-Reset` (the same seconds as `Retry-After`) and
    /// `RateLimit-Policy: <limit>;w=<window seconds>`
    /// (draft-ietf-httpapi-ratelimit-headers-06).
    fn response(&self, refusal: Refusal) -> DirectResponse {
        let retry_after = refusal.retry_after.to_string();
        let mut resp = DirectResponse::new(self.refuse.status)
            .header("content-type", &self.refuse.content_type)
            .header("retry-after", &retry_after);
        if self.refuse.headers {
            let window_secs = (self.limit.window.as_millis() as u64).div_ceil(1000);
            resp = resp
                .header("ratelimit-limit", self.limit.limit.to_string())
                .header("ratelimit-remaining", "0")
                .header("ratelimit-reset", &retry_after)
                .header(
                    "ratelimit-policy",
                    format!("{};w={window_secs}", self.limit.limit),
                );
        }
        resp.body(self.refuse.body.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use maitred_sdk::Config;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// Fixed-window counters on a clock the test moves, as the host keeps them.
    #[derive(Default)]
    struct FakeState {
        now_ms: Cell<u64>,
        /// key -> (window start, current, previous)
        counters: RefCell<HashMap<String, (u64, u64, u64)>>,
    }

    impl Counter for FakeState {
        fn increment(&self, key: &str, delta: u64, window: Duration) -> WindowCount {
            let (now, w) = (self.now_ms.get(), window.as_millis() as u64);
            let mut counters = self.counters.borrow_mut();
            let (start, current, previous) = counters.entry(key.to_string()).or_insert((now, 0, 0));
            let passed = (now - *start) / w;
            if passed >= 1 {
                *previous = if passed == 1 { *current } else { 0 };
                *current = 0;
                *start += passed * w;
            }
            *current += delta;
            WindowCount {
                current: *current,
                previous: *previous,
                elapsed_ms: (now - *start) as u32,
                window_ms: w as u32,
            }
        }
    }

    struct Client(&'static str, Vec<(String, Vec<u8>)>);

    impl RequestView for Client {
        fn client_addr(&self) -> String {
            format!("{}:1234", self.0)
        }
        fn method(&self) -> String {
            "GET".into()
        }
        fn path(&self) -> String {
            "/".into()
        }
        fn authority(&self) -> Option<String> {
            None
        }
        fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
            self.1
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect()
        }
    }

    fn policy(json: &str) -> Policy {
        Config::new(json)
            .get::<Settings>()
            .unwrap()
            .into_policy()
            .unwrap()
    }

    fn header<'a>(r: &'a DirectResponse, name: &str) -> &'a str {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
            .unwrap_or("")
    }

    #[test]
    fn the_limit_plus_one_is_refused_until_the_window_passes() {
        let p = policy(r#"{"limit": 3, "window": "1m", "algorithm": "fixed_window"}"#);
        let state = FakeState::default();
        let ann = Client("10.0.0.1", vec![]);
        for _ in 0..3 {
            assert_eq!(p.decide(&ann, &state), None);
        }
        state.now_ms.set(20_000);
        let refused = p.decide(&ann, &state).expect("4th refused");
        assert_eq!(refused.status, 429);
        assert_eq!(refused.body, b"Too Many Requests\n");
        assert_eq!(header(&refused, "retry-after"), "40");
        assert_eq!(header(&refused, "ratelimit-limit"), "3");
        assert_eq!(header(&refused, "ratelimit-remaining"), "0");
        assert_eq!(header(&refused, "ratelimit-reset"), "40");
        assert_eq!(header(&refused, "ratelimit-policy"), "3;w=60");
        assert_eq!(
            header(&refused, "content-type"),
            "text/plain; charset=utf-8"
        );
        // Another client has its own limit.
        assert_eq!(p.decide(&Client("10.0.0.2", vec![]), &state), None);
        // Refused requests are not counted: after the window, the full limit again.
        state.now_ms.set(60_000);
        for _ in 0..3 {
            assert_eq!(p.decide(&ann, &state), None);
        }
        assert!(p.decide(&ann, &state).is_some());
    }

    #[test]
    fn sliding_window_refuses_until_earlier_requests_age_out() {
        let p = policy(r#"{"limit": 2, "window": "10s"}"#);
        let state = FakeState::default();
        let ann = Client("10.0.0.1", vec![]);
        assert_eq!(p.decide(&ann, &state), None);
        assert_eq!(p.decide(&ann, &state), None);
        let refused = p.decide(&ann, &state).unwrap();
        // Both counted at 0 s: the next window starts at 10 s, and then one of the two
        // must have slid out: 2 * (10 - t) / 10 <= 1 at t = 5 s.
        assert_eq!(header(&refused, "retry-after"), "15");
        state.now_ms.set(14_000);
        assert!(p.decide(&ann, &state).is_some());
        state.now_ms.set(15_000);
        assert_eq!(p.decide(&ann, &state), None);
        assert!(p.decide(&ann, &state).is_some());
    }

    #[test]
    fn missing_parts_pass_or_share_a_bucket() {
        let pass = policy(r#"{"key": "header:x-api-key", "limit": 1, "window": "1m"}"#);
        let shared = policy(
            r#"{"key": "header:x-api-key", "limit": 1, "window": "1m", "missing": "shared"}"#,
        );
        let state = FakeState::default();
        let anon = Client("10.0.0.1", vec![]);
        for _ in 0..5 {
            assert_eq!(pass.decide(&anon, &state), None);
        }
        assert_eq!(shared.decide(&anon, &state), None);
        assert!(shared.decide(&Client("10.0.0.2", vec![]), &state).is_some());
        let keyed = |k: &str| {
            Client(
                "10.0.0.1",
                vec![("x-api-key".into(), k.as_bytes().to_vec())],
            )
        };
        assert_eq!(pass.decide(&keyed("a"), &state), None);
        assert!(pass.decide(&keyed("a"), &state).is_some());
        assert_eq!(pass.decide(&keyed("b"), &state), None);
    }

    #[test]
    fn custom_refusal() {
        let p = policy(
            r#"{"limit": 1, "window": "1s", "status": 503, "body": "{}",
                "content_type": "application/json", "headers": false}"#,
        );
        let state = FakeState::default();
        let ann = Client("10.0.0.1", vec![]);
        assert_eq!(p.decide(&ann, &state), None);
        let refused = p.decide(&ann, &state).unwrap();
        assert_eq!(refused.status, 503);
        assert_eq!(refused.body, b"{}");
        assert_eq!(header(&refused, "content-type"), "application/json");
        assert_eq!(header(&refused, "retry-after"), "2");
        assert!(!refused.has_header("ratelimit-limit"));
    }
}
