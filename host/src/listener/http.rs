//! HTTP listeners: accept TCP connections and serve HTTP/1.1 and HTTP/2 on each, handing
//! every request to [`crate::proxy::handle`].
//!
//! - `http`: cleartext; HTTP/2 by prior knowledge (h2c) on the same port, told apart by
//!   peeking at the connection's first bytes.
//! - `https`: TLS terminated here (rustls; certificate by SNI; ALPN picks `h2` or
//!   `http/1.1`), with an optional client-certificate check.
//!
//! Once the protocol is known the connection goes to hyper's HTTP/1 or HTTP/2 server
//! directly, on the bare socket where possible: no per-read wrapper on the hot path.
//!
//! Either may expect a PROXY protocol header first (`accept_proxy_protocol`), which then
//! supplies the client address. Connections are served with upgrades enabled, so WebSocket
//! handshakes can be proxied.

use super::closing::{Closing, ClosingWatch};
use super::preface::{self, Prefixed, read_proxy_header};
use crate::config::ListenerConfig;
use crate::proxy::{self, ConnectionContext};
use crate::runtime::drain::Drain;
use crate::runtime::server::Shared;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The settings of an HTTP or HTTPS listener, built with each snapshot (so a reload changes
/// timeouts and certificates for new connections).
pub struct HttpSettings {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// `https`: the TLS acceptor; `None` for cleartext.
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    /// Also bounds the wait for a new connection's first bytes.
    header_read_timeout: Duration,
    accept_proxy_protocol: bool,
}

impl HttpSettings {
    /// The connection settings of listener `config`.
    pub fn new(config: &ListenerConfig) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_size.max(8192))
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(config.max_header_size as u32)
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        HttpSettings {
            http1,
            http2,
            tls: config.tls.clone().map(TlsAcceptor::from),
            handshake_timeout: config.handshake_timeout,
            header_read_timeout: config.header_read_timeout,
            accept_proxy_protocol: config.accept_proxy_protocol,
        }
    }
}

/// Accepts connections on listener `name` until the task is aborted (or the listener is
/// gone from the snapshot). Each connection uses the settings of the snapshot current when
/// it was accepted.
pub async fn serve_http(name: Arc<str>, shared: Arc<Shared>, socket: TcpListener, drain: Drain) {
    let open = crate::metrics::open_connections(&name);
    // When this loop ends (the listener was removed or replaced by a reload, or the server
    // stops), its connections finish their current request and close.
    let (_closing, closed) = Closing::new();
    loop {
        let (stream, client) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(settings) = shared
            .snapshot
            .load()
            .listeners
            .get(&*name)
            .and_then(|l| l.http.clone())
        else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            name: name.clone(),
            shared: shared.clone(),
            settings,
            drain: drain.clone(),
            listener_closed: closed.clone(),
        };
        let open = open.clone();
        tokio::spawn(async move {
            let _tracked = connection.drain.track();
            open.increment(1.0);
            if let Err(e) = serve_connection(connection, stream, client).await {
                tracing::debug!(%client, "connection ended: {e}");
            }
            open.decrement(1.0);
        });
    }
}

/// What one accepted connection is served with.
struct Connection {
    name: Arc<str>,
    shared: Arc<Shared>,
    settings: Arc<HttpSettings>,
    drain: Drain,
    /// Raised when the listener's accept loop ends (a reload removed the listener, or the
    /// server shuts down: it closes every listener before draining).
    listener_closed: ClosingWatch,
}

/// Serves one accepted connection: PROXY header, TLS handshake, then HTTP.
async fn serve_connection(
    connection: Connection,
    mut stream: TcpStream,
    mut client: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let settings = connection.settings.clone();
    if !settings.accept_proxy_protocol && settings.tls.is_none() {
        let http2 = preface::peek_h2_preface(&stream, settings.header_read_timeout).await?;
        return serve_http_on(connection, stream, client, "http", http2).await;
    }
    let mut prefix = bytes::BytesMut::new();
    if settings.accept_proxy_protocol {
        let (source, rest) = read_proxy_header(&mut stream, settings.handshake_timeout).await?;
        client = source.unwrap_or(client);
        prefix = rest;
    }
    match &settings.tls {
        None => {
            let http2 =
                preface::read_h2_preface(&mut stream, &mut prefix, settings.header_read_timeout)
                    .await?;
            let stream = Prefixed::new(prefix, stream);
            serve_http_on(connection, stream, client, "http", http2).await
        }
        Some(acceptor) => {
            let stream = Prefixed::new(prefix, stream);
            let tls = tokio::time::timeout(settings.handshake_timeout, acceptor.accept(stream))
                .await
                .map_err(|_| "TLS handshake timed out")??;
            let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_http_on(connection, tls, client, "https", http2).await
        }
    }
}

/// Serves HTTP/1.1 (with upgrades) or, when `http2`, HTTP/2 on `io` (whatever it is layered
/// on) until the client is done. When the listener closes, the connection finishes the
/// requests in progress and closes.
async fn serve_http_on<I>(
    connection: Connection,
    io: I,
    client: SocketAddr,
    proto: &'static str,
    http2: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Connection {
        name,
        shared,
        settings,
        drain: _,
        listener_closed,
    } = connection;
    let context = Arc::new(ConnectionContext::new(shared, name, client, proto));
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        proxy::handle(context.clone(), req)
    });
    let io = TokioIo::new(io);
    let closed = listener_closed.closed();
    if http2 {
        let served = settings.http2.serve_connection(io, service);
        until_closed(served, closed, |served| served.graceful_shutdown()).await?;
    } else {
        let served = settings.http1.serve_connection(io, service).with_upgrades();
        until_closed(served, closed, |served| served.graceful_shutdown()).await?;
    }
    Ok(())
}

/// Drives the connection `served` to its end; once `closed` completes first, tells it with
/// `shut_down` to finish the requests in progress and accept no more.
async fn until_closed<C: Future<Output = hyper::Result<()>>>(
    served: C,
    closed: impl Future<Output = ()>,
    shut_down: impl FnOnce(std::pin::Pin<&mut C>),
) -> hyper::Result<()> {
    tokio::pin!(served);
    tokio::select! {
        biased;
        result = served.as_mut() => result,
        () = closed => {
            shut_down(served.as_mut());
            served.await
        }
    }
}
