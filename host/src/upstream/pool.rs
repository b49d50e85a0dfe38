//! Keep-alive connections to endpoints, one pool per worker thread.
//!
//! Invariants: a pool lives in a thread-local, so taking and returning a connection needs no
//! lock and no shared counter; a connection returns to the pool only after its response
//! body was read to the end (it is then clean for the next request); idle connections older
//! than the upstream's `idle_timeout` or beyond `max_idle` are closed.

use super::RequestBody;
use super::UpstreamSettings;
use hyper::client::conn::http1::SendRequest;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Instant;

/// A connection to an endpoint that can carry a request.
pub struct PooledConnection {
    /// hyper's handle to the HTTP/1.1 connection.
    pub sender: SendRequest<RequestBody>,
    /// The endpoint it is connected to.
    pub endpoint: SocketAddr,
    /// Whether it served a request before (a failure on a reused connection may be a race
    /// with the server closing it, and is worth one retry).
    pub reused: bool,
    idle_since: Instant,
}

impl PooledConnection {
    /// Wraps a freshly made connection.
    pub fn new(sender: SendRequest<RequestBody>, endpoint: SocketAddr) -> Self {
        PooledConnection {
            sender,
            endpoint,
            reused: false,
            idle_since: Instant::now(),
        }
    }
}

thread_local! {
    static IDLE: RefCell<FxHashMap<SocketAddr, Vec<PooledConnection>>> = RefCell::new(FxHashMap::default());
}

/// An idle connection to `endpoint` from this worker's pool, if a live one is there.
pub fn take(endpoint: SocketAddr, settings: &UpstreamSettings) -> Option<PooledConnection> {
    IDLE.with_borrow_mut(|idle| {
        let list = idle.get_mut(&endpoint)?;
        while let Some(mut conn) = list.pop() {
            if conn.sender.is_closed() || conn.idle_since.elapsed() > settings.idle_timeout {
                continue;
            }
            conn.reused = true;
            return Some(conn);
        }
        None
    })
}

/// Returns a connection whose response was read to the end.
pub fn give_back(conn: PooledConnection, max_idle: usize) {
    if conn.sender.is_closed() {
        return;
    }
    IDLE.with_borrow_mut(|idle| {
        let list = idle.entry(conn.endpoint).or_default();
        if list.len() < max_idle {
            list.push(PooledConnection {
                idle_since: Instant::now(),
                ..conn
            });
        }
    });
}
