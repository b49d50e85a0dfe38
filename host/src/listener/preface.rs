//! What a client may send before its protocol starts: a PROXY protocol header, when the
//! listener sits behind another balancer (`accept_proxy_protocol = true`).
//!
//! [`read_proxy_header`] reads until the header is complete (bounded by
//! [`proxy_protocol::MAX_HEADER_LEN`] and a deadline); bytes read past it are not lost but
//! handed back, and [`Prefixed`] replays them ahead of the rest of the stream.

use super::proxy_protocol::{self, Header};
use bytes::{Buf, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Reads a PROXY v1/v2 header from `stream` within `timeout`.
///
/// Returns the client address it announces (`None` for `LOCAL`/`UNKNOWN`: the connection's
/// own peer counts) and whatever the client sent after the header.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> io::Result<(Option<SocketAddr>, BytesMut)> {
    let read = async {
        let mut buf = BytesMut::with_capacity(256);
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(Some((header, used))) => {
                    buf.advance(used);
                    let source = match header {
                        Header::Proxied { source, .. } => Some(source),
                        Header::Local | Header::Unknown => None,
                    };
                    return Ok((source, buf));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no PROXY header in time"))?
}

/// A stream that first yields bytes already read from it, then reads it directly.
pub struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` replayed before its next bytes.
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn header_then_replayed_payload() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let source: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let mut wire = Vec::new();
        proxy_protocol::encode_v2(source, "127.0.0.1:80".parse().unwrap(), &mut wire);
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        // In two pieces, splitting the header.
        client.write_all(&wire[..10]).await.unwrap();
        let reader = tokio::spawn(async move {
            let (addr, rest) = read_proxy_header(&mut server, Duration::from_secs(5))
                .await
                .unwrap();
            let mut stream = Prefixed::new(rest, server);
            let mut line = [0u8; 16];
            stream.read_exact(&mut line).await.unwrap();
            (addr, line)
        });
        client.write_all(&wire[10..]).await.unwrap();
        let (addr, line) = reader.await.unwrap();
        assert_eq!(addr, Some(source));
        assert_eq!(&line, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn garbage_is_an_error_and_silence_times_out() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(
            read_proxy_header(&mut server, Duration::from_secs(5))
                .await
                .is_err()
        );
        let (_client, mut server) = tokio::io::duplex(1024);
        let e = read_proxy_header(&mut server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
