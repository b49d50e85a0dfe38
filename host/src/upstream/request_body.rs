//! The body of a request on its way to an upstream.
//!
//! The first frame is read *before* the request is forwarded, so a client whose body framing
//! is broken from the start (bad chunk sizes) gets a 400 and the upstream sees nothing; the
//! rest streams. Reading the first frame also triggers `100 Continue` for clients that wait.
//! A body that fit in its first frame (and most request bodies are empty) can be replayed
//! to another endpoint when a retry needs it.

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest body kept for a retry.
const MAX_REPLAY: usize = 64 * 1024;

/// What [`RequestBody::buffer`] read.
pub enum Buffered {
    /// The whole body.
    Whole(Bytes),
    /// More than the limit: what was read, then the rest, as one body.
    TooLarge(RequestBody),
}

/// A client's request body with its first frame already read.
pub struct RequestBody {
    first: Option<Frame<Bytes>>,
    /// The rest of the client's body; `None` for a replayed copy.
    rest: Option<Incoming>,
}

impl RequestBody {
    /// Reads the first frame of `body` (if it has one); fails if the body is malformed.
    pub async fn prefetch(mut body: Incoming) -> Result<RequestBody, hyper::Error> {
        let first = if body.is_end_stream() {
            None
        } else {
            body.frame().await.transpose()?
        };
        Ok(RequestBody {
            first,
            rest: Some(body),
        })
    }

    /// Reads all of `body` if it is at most `max` bytes ([`Buffered::Whole`]); else stops
    /// as soon as it is known to be larger and returns what was read and the rest as one
    /// body to stream on ([`Buffered::TooLarge`]). Trailers are dropped. Fails if the body
    /// is malformed.
    pub async fn buffer(mut body: Incoming, max: u64) -> Result<Buffered, hyper::Error> {
        if body.size_hint().lower() > max {
            return Ok(Buffered::TooLarge(RequestBody {
                first: None,
                rest: Some(body),
            }));
        }
        let mut read = BytesMut::new();
        while let Some(frame) = body.frame().await.transpose()? {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            read.extend_from_slice(&data);
            if read.len() as u64 > max {
                return Ok(Buffered::TooLarge(RequestBody {
                    first: Some(Frame::data(read.freeze())),
                    rest: Some(body),
                }));
            }
        }
        Ok(Buffered::Whole(read.freeze()))
    }

    /// A body of `bytes`, all read already.
    pub fn whole(bytes: Bytes) -> RequestBody {
        RequestBody {
            first: (!bytes.is_empty()).then(|| Frame::data(bytes)),
            rest: None,
        }
    }

    /// No body (for requests the proxy makes itself, like a cache revalidation).
    pub fn empty() -> RequestBody {
        RequestBody {
            first: None,
            rest: None,
        }
    }

    /// A copy of this body for a retry, if all of it has been read and it is small (up to
    /// 64 KiB) and has no trailers.
    pub fn replay_copy(&self) -> Option<RequestBody> {
        if self.rest.as_ref().is_some_and(|rest| !rest.is_end_stream()) {
            return None;
        }
        let first = match &self.first {
            None => None,
            Some(frame) => {
                let data = frame.data_ref()?;
                if data.len() > MAX_REPLAY {
                    return None;
                }
                Some(Frame::data(data.clone()))
            }
        };
        Some(RequestBody { first, rest: None })
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
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.remaining() as u64);
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + buffered);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}
