//! A timeout timer that one connection reuses for all its requests, re-armed lazily.
//!
//! `tokio::time::timeout` registers a timer in the runtime's wheel on its first poll and
//! removes it when dropped: two wheel operations and a clock read on every request. A
//! [`ReusedDeadline`] keeps one registered timer per connection instead. A request only
//! records its own deadline; the timer is moved only when it fires before that deadline
//! (then it is reset to it) or is set later than it (a reload shortened the timeout). On a
//! busy keep-alive connection that is one reset per timeout period, not two operations per
//! request: nginx's "lazy timer" idea.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The operation did not finish within its time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// One connection's timeout timer (see the module docs).
#[derive(Default)]
pub struct ReusedDeadline {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ReusedDeadline {
    /// Runs `operation` for at most `limit`.
    pub async fn within<F: Future>(
        &mut self,
        limit: Duration,
        operation: F,
    ) -> Result<F::Output, Elapsed> {
        let deadline = Instant::now() + limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        let mut operation = pin!(operation);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = operation.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            loop {
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    // Set for an earlier request: move it to this one's deadline.
                    Poll::Ready(()) if sleep.deadline() < deadline => {
                        sleep.as_mut().reset(deadline);
                    }
                    Poll::Ready(()) => return Poll::Ready(Err(Elapsed)),
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn times_out_at_each_requests_own_deadline() {
        let mut deadline = ReusedDeadline::default();
        let quick = deadline.within(Duration::from_secs(10), async { 1 }).await;
        assert_eq!(quick, Ok(1));

        // The timer still holds the first request's deadline (t = 10 s); this request's is
        // t = 25 s, so it must not time out at 10 s.
        tokio::time::advance(Duration::from_secs(5)).await;
        let started = Instant::now();
        let slow = deadline
            .within(
                Duration::from_secs(20),
                tokio::time::sleep(Duration::from_secs(15)),
            )
            .await;
        assert_eq!(slow, Ok(()));
        assert_eq!(started.elapsed(), Duration::from_secs(15));

        // And it does time out at its own deadline.
        let started = Instant::now();
        let stuck = deadline
            .within(Duration::from_secs(3), std::future::pending::<()>())
            .await;
        assert_eq!(stuck, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_limit_moves_the_timer_earlier() {
        let mut deadline = ReusedDeadline::default();
        let _ = deadline.within(Duration::from_secs(60), async {}).await;
        let started = Instant::now();
        let stuck = deadline
            .within(Duration::from_secs(1), std::future::pending::<()>())
            .await;
        assert_eq!(stuck, Err(Elapsed));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
