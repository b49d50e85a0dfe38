//! The body of a request on its way to an upstream.
//!
//! The first frame is read *before* the request is forwarded, so a client whose body framing
//! is broken from the start (bad chunk sizes) gets a 400 and the upstream sees nothing; the
//! rest streams. Reading the first frame also triggers `100 Continue` for clients that wait.

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A client's request body with its first frame already read.
pub struct RequestBody {
    first: Option<Frame<Bytes>>,
    rest: Incoming,
}

impl RequestBody {
    /// Reads the first frame of `body` (if it has one); fails if the body is malformed.
    pub async fn prefetch(mut body: Incoming) -> Result<RequestBody, hyper::Error> {
        let first = if body.is_end_stream() {
            None
        } else {
            body.frame().await.transpose()?
        };
        Ok(RequestBody { first, rest: body })
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.remaining() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + buffered);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}
