//! Storing a response while it streams to the client.
//!
//! [`CaptureBody`] passes the upstream's body through unchanged and keeps a copy of each
//! chunk (a reference count, not a byte copy) until the body ends; then the response goes into
//! the store and the followers of a coalesced fetch are told. A body that grows past
//! `max_object_size`, carries trailers, fails, or is dropped early (the client went away) is
//! not stored; what was kept is released at once, so the cache never holds more than
//! `max_object_size` per response in flight.

use super::flight::{Leader, Outcome};
use super::store::{Store, Stored};
use crate::upstream::UpstreamBody;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Where and how a response being captured will be stored.
pub struct Destination {
    /// The route's store.
    pub store: Arc<Store>,
    /// The key to store it under.
    pub key: String,
    /// Everything but the body.
    pub head: Stored,
    /// Largest body stored.
    pub max_object_size: u64,
    /// The coalesced fetch this is, if any.
    pub leader: Option<Leader>,
}

/// An upstream body that is stored when it ends (see the module docs).
pub struct CaptureBody {
    inner: UpstreamBody,
    /// `None` once stored or given up.
    capture: Option<(Destination, Vec<Bytes>, u64)>,
}

impl CaptureBody {
    /// Streams `inner`, storing it at `destination` when it is complete.
    pub fn new(inner: UpstreamBody, destination: Destination) -> CaptureBody {
        let mut body = CaptureBody {
            inner,
            capture: Some((destination, Vec::new(), 0)),
        };
        if body.inner.is_end_stream() {
            body.complete();
        }
        body
    }

    /// Stores what was captured (the body is complete).
    fn complete(&mut self) {
        let Some((destination, chunks, _)) = self.capture.take() else {
            return;
        };
        let Destination {
            store,
            key,
            mut head,
            leader,
            ..
        } = destination;
        head.body = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut whole = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
                for chunk in chunks {
                    whole.extend_from_slice(&chunk);
                }
                whole.freeze()
            }
        };
        store.insert(&key, Arc::new(head));
        if let Some(leader) = leader {
            leader.finish(Outcome::Stored);
        }
    }

    /// Gives up storing (dropping the leader tells the followers).
    fn abandon(&mut self) {
        self.capture = None;
    }

    fn keep(&mut self, frame: &Frame<Bytes>) {
        let Some((destination, chunks, size)) = &mut self.capture else {
            return;
        };
        match frame.data_ref() {
            Some(data) => {
                *size += data.len() as u64;
                if *size > destination.max_object_size {
                    self.abandon();
                } else if !data.is_empty() {
                    chunks.push(data.clone());
                }
            }
            None => self.abandon(),
        }
    }
}

impl Body for CaptureBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.keep(frame);
                if this.inner.is_end_stream() {
                    this.complete();
                }
            }
            Poll::Ready(None) => this.complete(),
            Poll::Ready(Some(Err(_))) => this.abandon(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
