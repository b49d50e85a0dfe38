//! Sending one request to one endpoint: take or open a connection (TCP, or TLS when the
//! upstream has `tls = { ... }`), apply the timeouts, and hand the connection back to the
//! pool when the response body has been read.

use super::pool::{self, PeerKey, PooledConnection};
use super::{RequestBody, Upstream, UpstreamSettings};
use crate::config::UpstreamTls;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The TCP connection could not be made (answer 502).
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The TLS handshake failed, e.g. the certificate did not verify (answer 502).
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(SocketAddr, std::io::Error),
    /// Connecting took longer than `connect_timeout` (answer 502).
    #[error("connect to {0} timed out")]
    ConnectTimeout(SocketAddr),
    /// No response head within `response_timeout` (answer 504).
    #[error("{0} sent no response in time")]
    ResponseTimeout(SocketAddr),
    /// The connection failed while sending or receiving (answer 502).
    #[error("request to {0} failed: {1}")]
    Http(SocketAddr, hyper::Error),
}

/// Sends `req` to `endpoint` of `upstream`, reusing a pooled connection when one is idle.
///
/// A reused connection that turns out to be closed before the request was written is
/// replaced by a fresh one once; nothing that reached the upstream is sent twice.
pub async fn send(
    upstream: &Upstream,
    endpoint: SocketAddr,
    req: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, ForwardError> {
    let settings = &upstream.settings;
    let peer = upstream.peer(endpoint);
    let mut req = req;
    loop {
        let mut conn = match pool::take(peer, settings) {
            Some(conn) => conn,
            // Boxed: connecting is the rare path, and inline it would make every request's
            // future (moved several times per request) larger.
            None => Box::pin(connect(peer, settings, upstream.tls.as_ref())).await?,
        };
        if conn.sender.ready().await.is_err() {
            if conn.reused {
                continue;
            }
            return Err(ForwardError::Connect(
                endpoint,
                std::io::ErrorKind::ConnectionReset.into(),
            ));
        }
        let sent =
            tokio::time::timeout(settings.response_timeout, conn.sender.try_send_request(req))
                .await;
        match sent {
            Err(_) => return Err(ForwardError::ResponseTimeout(endpoint)),
            Ok(Ok(resp)) => {
                // After `101 Switching Protocols` the connection belongs to the upgrade.
                let reusable = resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
                let (parts, body) = resp.into_parts();
                let conn = reusable.then_some((conn, settings.max_idle));
                return Ok(Response::from_parts(parts, UpstreamBody::new(body, conn)));
            }
            Ok(Err(mut e)) => match e.take_message() {
                Some(unsent) if conn.reused => req = unsent,
                _ => return Err(ForwardError::Http(endpoint, e.into_error())),
            },
        }
    }
}

/// Opens a new HTTP/1.1 connection (over TLS when `tls` is set) and spawns its driver task on
/// this worker. The connect timeout covers the TCP connect and the TLS handshake.
async fn connect(
    peer: PeerKey,
    settings: &UpstreamSettings,
    tls: Option<&UpstreamTls>,
) -> Result<PooledConnection, ForwardError> {
    let endpoint = peer.endpoint;
    let deadline = tokio::time::Instant::now() + settings.connect_timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(endpoint)).await {
        Err(_) => return Err(ForwardError::ConnectTimeout(endpoint)),
        Ok(Err(e)) => return Err(ForwardError::Connect(endpoint, e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let sender = match tls {
        None => handshake(endpoint, stream).await?,
        Some(tls) => {
            let server_name = tls
                .server_name
                .clone()
                .unwrap_or_else(|| endpoint.ip().into());
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let stream =
                match tokio::time::timeout_at(deadline, connector.connect(server_name, stream))
                    .await
                {
                    Err(_) => return Err(ForwardError::ConnectTimeout(endpoint)),
                    Ok(Err(e)) => return Err(ForwardError::Tls(endpoint, e)),
                    Ok(Ok(s)) => s,
                };
            handshake(endpoint, stream).await?
        }
    };
    Ok(PooledConnection::new(sender, peer))
}

/// Starts HTTP/1.1 on `io` and spawns the task that drives the connection (upgrades allowed).
async fn handshake<I>(
    endpoint: SocketAddr,
    io: I,
) -> Result<hyper::client::conn::http1::SendRequest<RequestBody>, ForwardError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ForwardError::Http(endpoint, e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%endpoint, "upstream connection ended: {e}");
        }
    });
    Ok(sender)
}

/// A response body streamed from an upstream; when it has been read to the end, its
/// connection goes back to the worker's pool.
pub struct UpstreamBody {
    inner: Incoming,
    /// The connection, until the body is finished (then pooled) or dropped early (then closed).
    conn: Option<(PooledConnection, usize)>,
}

impl UpstreamBody {
    /// `conn` (with its pool's `max_idle`) is pooled again at the end of the body; `None`
    /// after an upgrade, when the connection is no longer HTTP.
    fn new(inner: Incoming, conn: Option<(PooledConnection, usize)>) -> Self {
        let mut body = UpstreamBody { inner, conn };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some((conn, max_idle)) = self.conn.take() {
            pool::give_back(conn, max_idle);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finish(),
            Poll::Ready(Some(Err(_))) => self.conn = None,
            _ => {}
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
