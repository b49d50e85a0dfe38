//! Keep-alive connections to endpoints, one pool per worker thread.
//!
//! Invariants: a pool lives in a thread-local, so taking and returning a connection needs no
//! lock and no shared counter; connections are keyed by the whole peer identity ([`PeerKey`]:
//! address plus a digest of the TLS settings), so a TLS connection is never reused for a
//! different server name, CA or client certificate; a connection returns to the pool only
//! after its response body was read to the end (it is then clean for the next request), and
//! never after a protocol upgrade; idle connections older than the upstream's
//! `idle_timeout` or beyond `max_idle` are closed.

use super::RequestBody;
use super::UpstreamSettings;
use super::deadline::ReusedDeadline;
use hyper::client::conn::http1::SendRequest;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Instant;

/// Who a pooled connection talks to: the endpoint, and how (TLS settings digest; 0 for
/// plain TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// The endpoint's address.
    pub endpoint: SocketAddr,
    /// [`crate::config::UpstreamTls::identity`], or 0 without TLS.
    pub identity: u64,
}

/// A connection to an endpoint that can carry a request.
pub struct PooledConnection {
    /// hyper's handle to the HTTP/1.1 connection.
    pub sender: SendRequest<RequestBody>,
    /// The peer it is connected to.
    pub peer: PeerKey,
    /// Whether it served a request before (a failure on a reused connection may be a race
    /// with the server closing it, and is worth one retry).
    pub reused: bool,
    /// The response timeout's timer, reused by every request on the connection.
    pub response_deadline: ReusedDeadline,
    idle_since: Instant,
}

impl PooledConnection {
    /// Wraps a freshly made connection.
    pub fn new(sender: SendRequest<RequestBody>, peer: PeerKey) -> Self {
        PooledConnection {
            sender,
            peer,
            reused: false,
            response_deadline: ReusedDeadline::default(),
            idle_since: Instant::now(),
        }
    }
}

/// hyper's handle to a multiplexed HTTP/2 connection; clones share the connection.
pub type Http2Sender = hyper::client::conn::http2::SendRequest<RequestBody>;

thread_local! {
    static IDLE: RefCell<FxHashMap<PeerKey, Vec<PooledConnection>>> = RefCell::new(FxHashMap::default());
    /// One HTTP/2 connection per peer and worker, shared by every request.
    static SHARED: RefCell<FxHashMap<PeerKey, Http2Sender>> = RefCell::new(FxHashMap::default());
}

/// This worker's HTTP/2 connection to `peer`, if it has a live one.
pub fn shared(peer: PeerKey) -> Option<Http2Sender> {
    SHARED.with_borrow_mut(|shared| {
        let sender = shared.get(&peer)?;
        if sender.is_closed() {
            shared.remove(&peer);
            return None;
        }
        Some(sender.clone())
    })
}

/// Makes `sender` this worker's HTTP/2 connection to `peer`.
pub fn share(peer: PeerKey, sender: Http2Sender) {
    SHARED.with_borrow_mut(|shared| shared.insert(peer, sender));
}

/// An idle connection to `peer` from this worker's pool, if a live one is there.
pub fn take(peer: PeerKey, settings: &UpstreamSettings) -> Option<PooledConnection> {
    IDLE.with_borrow_mut(|idle| {
        let list = idle.get_mut(&peer)?;
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
        let list = idle.entry(conn.peer).or_default();
        if list.len() < max_idle {
            list.push(PooledConnection {
                idle_since: Instant::now(),
                ..conn
            });
        }
    });
}
