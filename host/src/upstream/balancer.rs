//! Endpoint selection. Round-robin: every endpoint in turn, shared by all workers so the
//! spread is even across the whole process, not per thread.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Each endpoint in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// The index of the next endpoint out of `len` (`len` > 0).
    pub fn next(&self, len: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_through_every_endpoint() {
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..6).map(|_| rr.next(3)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }
}
