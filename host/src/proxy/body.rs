//! The body of a response the proxy sends: streamed from an upstream, or generated here.
//! With the access log on, it also counts the bytes sent and writes the request's log
//! record when it ends (or is dropped because the client went away).

use crate::access_log::{self, AccessRecord};
use crate::upstream::UpstreamBody;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// A response body: an upstream's stream, or a small body made by the proxy or a plugin.
pub struct ProxyBody {
    kind: Kind,
    /// The access log record to complete and send when the body ends.
    log: Option<Box<(AccessRecord, Instant)>>,
}

enum Kind {
    /// Streamed from the upstream as it arrives.
    Upstream(UpstreamBody),
    /// Streamed from the upstream and stored in the route's cache at the end.
    Caching(Box<crate::cache::CaptureBody>),
    /// A complete body (error pages, plugin responses, cache hits); `None` once sent.
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            log: None,
        }
    }

    /// An upstream's body, streamed.
    pub fn upstream(body: UpstreamBody) -> Self {
        ProxyBody {
            kind: Kind::Upstream(body),
            log: None,
        }
    }

    /// An upstream's body, streamed and stored in a cache as it goes.
    pub fn caching(body: crate::cache::CaptureBody) -> Self {
        ProxyBody {
            kind: Kind::Caching(Box::new(body)),
            log: None,
        }
    }

    /// Sends `record` to the access log when the body ends; its `bytes` count what is
    /// sent and its `duration` runs from `started` to the end.
    pub fn log_when_done(&mut self, record: AccessRecord, started: Instant) {
        self.log = Some(Box::new((record, started)));
        if self.is_end_stream() {
            self.finish_log();
        }
    }

    fn kind_is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Caching(body) => body.is_end_stream(),
            Kind::Full(bytes) => bytes.is_none(),
        }
    }

    fn finish_log(&mut self) {
        if let Some(entry) = self.log.take() {
            let (mut record, started) = *entry;
            record.duration = started.elapsed();
            access_log::log(record);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.finish_log();
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx),
            Kind::Caching(body) => Pin::new(&mut **body).poll_frame(cx),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        };
        if let Some(entry) = &mut this.log {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    entry.0.bytes += frame.data_ref().map_or(0, |d| d.remaining() as u64);
                    if this.kind_is_end_stream() {
                        this.finish_log();
                    }
                }
                Poll::Ready(_) => this.finish_log(),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.kind_is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body) => body.size_hint(),
            Kind::Caching(body) => body.size_hint(),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
