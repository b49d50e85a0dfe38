//! Request coalescing: while one request fetches a key from the origin, other requests for
//! that key wait for it instead of fetching it again (nginx's `proxy_cache_lock`).
//!
//! The first request to [`Flights::join`] a key becomes its [`Leader`]; later ones get a
//! [`Follower`] to wait on. The leader reports whether the response was stored
//! ([`Leader::finish`]); dropping the leader without that (an error, an abandoned body)
//! counts as not stored. Followers then look the key up again, or go to the origin
//! themselves.

use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How a fetch a follower waited for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still fetching.
    Pending,
    /// The response was stored: look it up.
    Stored,
    /// It was not stored: fetch from the origin without waiting again.
    NotStored,
}

/// The keys being fetched right now.
#[derive(Default)]
pub struct Flights {
    fetching: Mutex<FxHashMap<String, Arc<watch::Sender<Outcome>>>>,
}

/// The role of a request in a key's fetch.
pub enum Role {
    /// Fetch it, and tell the followers how it went.
    Leader(Leader),
    /// Wait for the leader.
    Follower(Follower),
}

/// The request that fetches a key for everyone.
pub struct Leader {
    flights: Arc<Flights>,
    key: String,
    sender: Arc<watch::Sender<Outcome>>,
}

/// A request waiting for another's fetch.
pub struct Follower(watch::Receiver<Outcome>);

impl Flights {
    /// Joins the fetch of `key`, starting it if none is under way.
    pub fn join(self: &Arc<Self>, key: &str) -> Role {
        let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = fetching.get(key) {
            return Role::Follower(Follower(sender.subscribe()));
        }
        let sender = Arc::new(watch::channel(Outcome::Pending).0);
        fetching.insert(key.to_owned(), sender.clone());
        Role::Leader(Leader {
            flights: self.clone(),
            key: key.to_owned(),
            sender,
        })
    }
}

impl Leader {
    /// Tells the followers how the fetch ended.
    pub fn finish(self, outcome: Outcome) {
        self.sender.send_replace(outcome);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut fetching = self
            .flights
            .fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if fetching
            .get(&self.key)
            .is_some_and(|s| Arc::ptr_eq(s, &self.sender))
        {
            fetching.remove(&self.key);
        }
        drop(fetching);
        self.sender.send_if_modified(|outcome| {
            let pending = *outcome == Outcome::Pending;
            if pending {
                *outcome = Outcome::NotStored;
            }
            pending
        });
    }
}

impl Follower {
    /// Waits for the leader, at most `timeout`; a timeout counts as [`Outcome::NotStored`].
    pub async fn wait(mut self, timeout: std::time::Duration) -> Outcome {
        let done = self.0.wait_for(|outcome| *outcome != Outcome::Pending);
        match tokio::time::timeout(timeout, done).await {
            Ok(Ok(outcome)) => *outcome,
            _ => Outcome::NotStored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn followers_learn_the_leaders_outcome() {
        let flights = Arc::new(Flights::default());
        let Role::Leader(leader) = flights.join("k") else {
            panic!("first is not the leader")
        };
        let Role::Follower(follower) = flights.join("k") else {
            panic!("second is not a follower")
        };
        assert!(matches!(flights.join("other"), Role::Leader(_)));
        let waiting = tokio::spawn(follower.wait(Duration::from_secs(5)));
        leader.finish(Outcome::Stored);
        assert_eq!(waiting.await.unwrap(), Outcome::Stored);
        assert!(
            matches!(flights.join("k"), Role::Leader(_)),
            "flight not cleared"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_means_not_stored_and_a_slow_one_times_out() {
        let flights = Arc::new(Flights::default());
        let leader = flights.join("k");
        let Role::Follower(follower) = flights.join("k") else {
            panic!()
        };
        drop(leader);
        assert_eq!(
            follower.wait(Duration::from_secs(5)).await,
            Outcome::NotStored
        );
        let _leader = flights.join("slow");
        let Role::Follower(follower) = flights.join("slow") else {
            panic!()
        };
        assert_eq!(
            follower.wait(Duration::from_millis(10)).await,
            Outcome::NotStored
        );
    }
}
