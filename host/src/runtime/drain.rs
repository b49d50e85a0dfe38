//! Graceful shutdown: counting open client connections and telling them to finish.
//!
//! Every accepted connection holds a [`ConnectionGuard`]. When the server shuts down it
//! first stops accepting, then [`DrainController::drain`] signals every connection (HTTP
//! connections stop reading new requests once the current one is answered; L4 streams run
//! on) and waits until the count reaches zero or the grace period ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

struct Open {
    count: AtomicUsize,
    zero: Notify,
}

/// The connections' side: tracks one connection, and says when to wind down.
#[derive(Clone)]
pub struct Drain {
    draining: watch::Receiver<bool>,
    open: Arc<Open>,
}

/// The server's side: starts the drain and waits for it.
pub struct DrainController {
    draining: watch::Sender<bool>,
    open: Arc<Open>,
}

/// Counts a connection as open until dropped.
pub struct ConnectionGuard(Arc<Open>);

impl DrainController {
    /// A controller and the [`Drain`] handle connections get.
    pub fn new() -> (DrainController, Drain) {
        let (tx, rx) = watch::channel(false);
        let open = Arc::new(Open {
            count: AtomicUsize::new(0),
            zero: Notify::new(),
        });
        (
            DrainController {
                draining: tx,
                open: open.clone(),
            },
            Drain { draining: rx, open },
        )
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.count.load(Ordering::Acquire)
    }

    /// Tells every connection to finish and waits up to `grace` for them to close.
    /// Returns the number still open when it gave up (0: all closed).
    pub async fn drain(&self, grace: Duration) -> usize {
        let _ = self.draining.send(true);
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

    /// Resolves once the server has started draining.
    pub async fn started(&mut self) {
        let _ = self.draining.wait_for(|draining| *draining).await;
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
        let mut watcher = drain.clone();
        let closer = tokio::spawn(async move {
            watcher.started().await;
            drop(guard);
        });
        assert_eq!(controller.drain(Duration::from_secs(5)).await, 0);
        closer.await.unwrap();

        let _stuck = drain.track();
        assert_eq!(controller.drain(Duration::from_millis(50)).await, 1);
    }
}
