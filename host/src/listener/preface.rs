//! What a client sends before its protocol starts: a PROXY protocol header, when the
//! listener sits behind another balancer (`accept_proxy_protocol = true`), and on cleartext
//! listeners the HTTP/2 connection preface that tells h2c from HTTP/1.1.
//!
//! [`read_proxy_header`] reads until the header is complete (bounded by
//! [`proxy_protocol::MAX_HEADER_LEN`] and a deadline); bytes read past it are not lost but
//! handed back, and [`Prefixed`] replays them ahead of the rest of the stream.
//! [`peek_h2_preface`] looks for the preface without reading (so the connection is served
//! on the bare socket); [`read_h2_preface`] does the same behind a PROXY header.

use super::proxy_protocol::{self, Header};
use bytes::{Buf, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The first bytes of every HTTP/2 connection (RFC 9113 section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `bytes` (what the client sent so far) decide the protocol: `Some(true)` for the
/// HTTP/2 preface, `Some(false)` for anything else, `None` while they are a part of it.
fn h2_preface_in(bytes: &[u8]) -> Option<bool> {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] != H2_PREFACE[..n] {
        Some(false)
    } else if n == H2_PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// Whether the client on `stream` starts with the HTTP/2 preface (h2c by prior knowledge),
/// looked at without reading it, within `timeout`. A client that closes first is not
/// HTTP/2 (the HTTP/1 server then sees the end of the stream).
pub async fn peek_h2_preface(stream: &TcpStream, timeout: Duration) -> io::Result<bool> {
    let peek = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            if let Some(http2) = h2_preface_in(&buf[..n]) {
                return Ok(http2);
            }
            // A part of the preface: peeking leaves the socket readable, so waiting for
            // readiness would return at once; look again shortly.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(timeout, peek)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))?
}

/// Like [`peek_h2_preface`], for a stream that cannot be peeked: reads into `buf` (after
/// what it holds already) until the protocol is known; `buf` is then to be replayed.
pub async fn read_h2_preface<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    timeout: Duration,
) -> io::Result<bool> {
    let read = async {
        loop {
            if let Some(http2) = h2_preface_in(buf) {
                return Ok(http2);
            }
            if stream.read_buf(buf).await? == 0 {
                return Ok(false);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))?
}

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

    #[test]
    fn the_h2_preface_is_told_from_http1() {
        assert_eq!(h2_preface_in(b""), None);
        assert_eq!(h2_preface_in(b"PRI * HTTP/2"), None);
        assert_eq!(h2_preface_in(H2_PREFACE), Some(true));
        assert_eq!(
            h2_preface_in(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Some(true)
        );
        assert_eq!(h2_preface_in(b"GET / HTTP/1.1\r\n"), Some(false));
        assert_eq!(h2_preface_in(b"PRIX"), Some(false));
    }

    #[tokio::test]
    async fn the_h2_preface_is_read_in_pieces_and_kept() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let http2 = read_h2_preface(&mut server, &mut buf, Duration::from_secs(5)).await;
            (http2.unwrap(), buf)
        });
        client.write_all(&H2_PREFACE[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        client.write_all(&H2_PREFACE[5..]).await.unwrap();
        let (http2, buf) = reader.await.unwrap();
        assert!(http2);
        assert_eq!(&buf[..], H2_PREFACE);
    }

    #[tokio::test]
    async fn peeking_leaves_the_bytes_and_waits_for_a_split_preface() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.set_nodelay(true).unwrap();
        client.write_all(&H2_PREFACE[..9]).await.unwrap();
        let peeking = tokio::spawn(async move {
            let http2 = peek_h2_preface(&server, Duration::from_secs(5))
                .await
                .unwrap();
            (http2, server)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(&H2_PREFACE[9..]).await.unwrap();
        let (http2, mut server) = peeking.await.unwrap();
        assert!(http2);
        let mut read = [0u8; 24];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, H2_PREFACE);

        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(
            !peek_h2_preface(&server, Duration::from_secs(5))
                .await
                .unwrap()
        );
        drop(client);
        let (_client, server) = (
            TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap(),
            listener.accept().await.unwrap().0,
        );
        let silent = peek_h2_preface(&server, Duration::from_millis(50)).await;
        assert_eq!(silent.unwrap_err().kind(), io::ErrorKind::TimedOut);
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
