//! The signal that tells a listener's open connections to finish: raised once, when the
//! listener's accept loop ends (the listener was removed by a reload, or the server shuts
//! down).
//!
//! A connection waits for it alongside serving requests, so its task polls the wait after
//! every socket event. [`Closed`] is built for that: a repeated poll is one atomic load and a
//! waker comparison, with no lock (tokio's `watch` and `Notify` take a mutex on every poll).

use rustc_hash::FxHashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Raises the signal when [`Closing::close`] is called or when dropped.
pub struct Closing {
    shared: Arc<Shared>,
}

/// Waits for the signal; cheap to clone and to poll.
#[derive(Clone)]
pub struct ClosingWatch {
    shared: Arc<Shared>,
}

struct Shared {
    closed: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    wakers: FxHashMap<u64, Waker>,
}

impl Closing {
    /// A new, unraised signal and a handle to wait for it.
    pub fn new() -> (Closing, ClosingWatch) {
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            waiters: Mutex::new(Waiters::default()),
        });
        (
            Closing {
                shared: shared.clone(),
            },
            ClosingWatch { shared },
        )
    }

    /// Raises the signal: every waiting [`Closed`] future completes.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut self.shared.lock().wakers);
        wakers.into_values().for_each(Waker::wake);
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.close();
    }
}

impl ClosingWatch {
    /// Completes once the signal is raised.
    pub fn closed(&self) -> Closed {
        Closed {
            shared: self.shared.clone(),
            registered: None,
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The future of [`ClosingWatch::closed`].
pub struct Closed {
    shared: Arc<Shared>,
    /// The waker registered with the signal, and its key there.
    registered: Option<(u64, Waker)>,
}

impl Future for Closed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &self.registered
            && waker.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        let mut waiters = self.shared.lock();
        // Checked again under the lock: `close` sets the flag before taking the wakers.
        if self.shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let id = match &self.registered {
            Some((id, _)) => *id,
            None => {
                waiters.next_id += 1;
                waiters.next_id
            }
        };
        waiters.wakers.insert(id, cx.waker().clone());
        drop(waiters);
        self.registered = Some((id, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Closed {
    fn drop(&mut self) {
        if let Some((id, _)) = self.registered.take() {
            self.shared.lock().wakers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_complete_when_the_signal_is_raised_or_dropped() {
        let (closing, watch) = Closing::new();
        let waiting = tokio::spawn({
            let watch = watch.clone();
            async move { watch.closed().await }
        });
        let pending = tokio::time::timeout(Duration::from_millis(20), watch.closed()).await;
        assert!(pending.is_err(), "completed before the signal");
        drop(closing);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiter was not woken")
            .unwrap();
        // Raised already: completes at once.
        watch.closed().await;
    }

    #[tokio::test]
    async fn a_dropped_waiter_unregisters() {
        let (closing, watch) = Closing::new();
        let waiting = tokio::time::timeout(Duration::from_millis(5), watch.closed()).await;
        assert!(waiting.is_err());
        assert!(closing.shared.lock().wakers.is_empty());
    }
}
