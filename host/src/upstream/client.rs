//! Sending one request to one endpoint: take or open a connection (TCP, or TLS when the
//! upstream has `tls = { ... }`), apply the timeouts, and hand the connection back to the
//! pool when the response body has been read.

use super::pool::{self, Http2Sender, PeerKey, PooledConnection};
use super::{RequestBody, Upstream};
use crate::config::{UpstreamProtocol, UpstreamTls};
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
    if upstream.protocol != UpstreamProtocol::Http1
        && let Some(sender) = pool::shared(peer)
    {
        return Box::pin(send_http2(sender, upstream, endpoint, req)).await;
    }
    let mut req = req;
    loop {
        let mut conn = match pool::take(peer, settings) {
            Some(conn) => conn,
            // Boxed: connecting is the rare path, and inline it would make every request's
            // future (moved several times per request) larger.
            None => match Box::pin(connect(peer, upstream)).await? {
                Connection::Http1(conn) => conn,
                Connection::Http2(sender) => {
                    pool::share(peer, sender.clone());
                    return Box::pin(send_http2(sender, upstream, endpoint, req)).await;
                }
            },
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
        let sent = conn
            .response_deadline
            .within(settings.response_timeout, conn.sender.try_send_request(req))
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

/// Sends `req` over a (shared) HTTP/2 connection. The request carries its scheme and
/// authority in the URI, from which hyper makes the `:scheme` and `:authority`
/// pseudo-headers, and has no `Host` header.
async fn send_http2(
    mut sender: Http2Sender,
    upstream: &Upstream,
    endpoint: SocketAddr,
    req: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, ForwardError> {
    let (mut parts, body) = req.into_parts();
    let authority = parts
        .headers
        .remove(http::header::HOST)
        .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok())
        .unwrap_or_else(|| {
            http::uri::Authority::try_from(endpoint.to_string().as_str())
                .expect("a socket address is an authority")
        });
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(match upstream.tls {
        Some(_) => http::uri::Scheme::HTTPS,
        None => http::uri::Scheme::HTTP,
    });
    uri.authority = Some(authority);
    parts.uri = http::Uri::from_parts(uri)
        .map_err(|_| ForwardError::Connect(endpoint, std::io::ErrorKind::InvalidInput.into()))?;
    parts.version = http::Version::HTTP_2;
    sender
        .ready()
        .await
        .map_err(|e| ForwardError::Http(endpoint, e))?;
    let sent = tokio::time::timeout(
        upstream.settings.response_timeout,
        sender.send_request(Request::from_parts(parts, body)),
    )
    .await;
    match sent {
        Err(_) => Err(ForwardError::ResponseTimeout(endpoint)),
        Ok(Err(e)) => Err(ForwardError::Http(endpoint, e)),
        Ok(Ok(resp)) => {
            let (parts, body) = resp.into_parts();
            Ok(Response::from_parts(parts, UpstreamBody::new(body, None)))
        }
    }
}

/// A new connection to an endpoint, in the HTTP version agreed on.
enum Connection {
    /// HTTP/1.1: one request at a time, pooled between requests.
    Http1(PooledConnection),
    /// HTTP/2: multiplexed, shared by the worker's requests.
    Http2(Http2Sender),
}

/// Opens a new connection to `peer` (over TLS when the upstream has `tls`) and spawns its
/// driver task on this worker. HTTP/2 is used for `h2c`, and for `h2` when the endpoint
/// picks it in ALPN. The connect timeout covers the TCP connect and the TLS handshake.
async fn connect(peer: PeerKey, upstream: &Upstream) -> Result<Connection, ForwardError> {
    let endpoint = peer.endpoint;
    let deadline = tokio::time::Instant::now() + upstream.settings.connect_timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(endpoint)).await {
        Err(_) => return Err(ForwardError::ConnectTimeout(endpoint)),
        Ok(Err(e)) => return Err(ForwardError::Connect(endpoint, e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = &upstream.tls else {
        return handshake(peer, stream, upstream.protocol == UpstreamProtocol::H2c).await;
    };
    let stream = match tokio::time::timeout_at(deadline, tls_connect(tls, endpoint, stream)).await {
        Err(_) => return Err(ForwardError::ConnectTimeout(endpoint)),
        Ok(Err(e)) => return Err(ForwardError::Tls(endpoint, e)),
        Ok(Ok(s)) => s,
    };
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    handshake(peer, stream, http2).await
}

/// The TLS handshake with an upstream endpoint, verifying it as the upstream's `tls` says.
pub(crate) async fn tls_connect(
    tls: &UpstreamTls,
    endpoint: SocketAddr,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let server_name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| endpoint.ip().into());
    tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(server_name, stream)
        .await
}

/// Starts HTTP/1.1 (upgrades allowed) or HTTP/2 on `io` and spawns the task that drives the
/// connection.
async fn handshake<I>(peer: PeerKey, io: I, http2: bool) -> Result<Connection, ForwardError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let endpoint = peer.endpoint;
    if http2 {
        let (sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(std::time::Duration::from_secs(30))
                .handshake(TokioIo::new(io))
                .await
                .map_err(|e| ForwardError::Http(endpoint, e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%endpoint, "upstream HTTP/2 connection ended: {e}");
            }
        });
        return Ok(Connection::Http2(sender));
    }
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ForwardError::Http(endpoint, e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%endpoint, "upstream connection ended: {e}");
        }
    });
    Ok(Connection::Http1(PooledConnection::new(sender, peer)))
}

/// A response body streamed from an upstream; when it has been read to the end, its
/// connection goes back to the worker's pool.
pub struct UpstreamBody {
    inner: Incoming,
    /// The attempt's in-flight count, held until the body ends.
    in_flight: Option<super::endpoint::InFlight>,
    /// The connection, until the body is finished (then pooled) or dropped early (then closed).
    conn: Option<(PooledConnection, usize)>,
}

impl UpstreamBody {
    /// `conn` (with its pool's `max_idle`) is pooled again at the end of the body; `None`
    /// after an upgrade, when the connection is no longer HTTP.
    fn new(inner: Incoming, conn: Option<(PooledConnection, usize)>) -> Self {
        let mut body = UpstreamBody {
            inner,
            conn,
            in_flight: None,
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    /// Keeps `in_flight` counted until the body has been read (or dropped).
    pub fn hold(&mut self, in_flight: super::endpoint::InFlight) {
        if !self.inner.is_end_stream() {
            self.in_flight = Some(in_flight);
        }
    }

    fn finish(&mut self) {
        self.in_flight = None;
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
