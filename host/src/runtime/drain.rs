//! Graceful shutdown: counting open client connections and telling them to finish.
//!
//! Every accepted connection holds a [`ConnectionGuard`]. When the server shuts down it
//! first closes its listeners (which tells their HTTP connections to stop reading new
//! requests once the current one is answered; L4 streams run on), then
//! [`DrainController::drain`] waits until the count reaches zero or the grace period ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

struct Open {
    count: AtomicUsize,
    zero: Notify,
}

/// The connections' side: counts open connections.
#[derive(Clone)]
pub struct Drain {
    open: Arc<Open>,
}

/// The server's side: waits for the connections to close.
pub struct DrainController {
    open: Arc<Open>,
}

/// Counts a connection as open until dropped.
pub struct ConnectionGuard(Arc<Open>);

impl DrainController {
    /// A controller and the [`Drain`] handle connections get.
    pub fn new() -> (DrainController, Drain) {
        let open = Arc::new(Open {
            count: AtomicUsize::new(0),
            zero: Notify::new(),
        });
        (DrainController { open: open.clone() }, Drain { open })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.count.load(Ordering::Acquire)
    }

    /// Waits up to `grace` for every connection to close (the caller has told them to
    /// finish). Returns the number still open when it gave up (0: all closed).
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let zero = self.open.zero.notified();
            tokio::pin!(zero);
            zero.as_mut().enable();
            let open = self.open.count.load(Ordering::Acquire);
            if open == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, zero).await.is_err() {
                return self.open.count.load(Ordering::Acquire);
            }
        }
    }
}

impl Drain {
    /// Counts a new connection until the guard drops.
    pub fn track(&self) -> ConnectionGuard {
        self.open.count.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.open.clone())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_connections_then_gives_up_after_grace() {
        let (controller, drain) = DrainController::new();
        let guard = drain.track();
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(guard);
        });
        assert_eq!(controller.drain(Duration::from_secs(5)).await, 0);
        closer.await.unwrap();

        let _stuck = drain.track();
        assert_eq!(controller.drain(Duration::from_millis(50)).await, 1);
    }
}
