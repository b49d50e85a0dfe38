//! Stream listeners: `tcp` forwards each connection to its upstream; `tls-passthrough` reads
//! the ClientHello without consuming it, routes by SNI and forwards every byte unchanged
//! (the proxy holds no certificate and never decrypts).
//!
//! A connection goes through these phases:
//! 1. **admit**: over `max_connections` open connections on this listener (all workers
//!    together), it is closed at once;
//! 2. **preface**: a PROXY header when `accept_proxy_protocol` is set (it names the client);
//! 3. **preread** (passthrough): the ClientHello, within `preread_timeout`, for SNI and ALPN;
//! 4. **route**: the SNI table (or the listener's upstream), then the connection plugins,
//!    which may allow, deny or pick another upstream;
//! 5. **connect** to an endpoint chosen by the upstream's balancer, per connection, sending
//!    a PROXY header first if the upstream asks for one, then the bytes read so far;
//! 6. **pipe** both ways until both sides are done or the connection idles out.

use super::client_hello::{self, ClientHello, Peek};
use super::preface::read_proxy_header;
use super::proxy_protocol;
use crate::config::{ListenerConfig, ListenerProtocol, ProxyProtocolVersion};
use crate::plugin::{ConnectionAction, ConnectionInfo, run_connection_chain};
use crate::runtime::drain::Drain;
use crate::runtime::server::Shared;
use crate::upstream::Upstream;
use crate::upstream::balancer::Target;
use crate::upstream::endpoint::InFlight;
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The settings of a `tcp` or `tls-passthrough` listener, from the snapshot current when a
/// connection is accepted.
struct StreamSettings {
    passthrough: bool,
    accept_proxy_protocol: bool,
    preread_timeout: Duration,
    idle_timeout: Duration,
}

impl StreamSettings {
    fn of(config: &ListenerConfig) -> StreamSettings {
        StreamSettings {
            passthrough: config.protocol == ListenerProtocol::TlsPassthrough,
            accept_proxy_protocol: config.accept_proxy_protocol,
            preread_timeout: config.preread_timeout,
            idle_timeout: config.idle_timeout,
        }
    }
}

/// Why a connection was closed before or while it was forwarded.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("bad PROXY header: {0}")]
    ProxyHeader(io::Error),
    #[error("no ClientHello: {0}")]
    Preread(io::Error),
    #[error("no upstream for server name {0:?}")]
    NoRoute(Option<String>),
    #[error("denied by a connection plugin")]
    Denied,
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, io::Error),
    #[error("{0}")]
    Unavailable(crate::upstream::Unavailable),
    #[error("forwarding failed: {0}")]
    Pipe(io::Error),
}

/// Accepts connections on listener `name` until the task is aborted (or the listener is
/// gone from the snapshot). `open` counts the listener's connections over all workers.
pub async fn serve_stream(
    name: Arc<str>,
    shared: Arc<Shared>,
    socket: TcpListener,
    open: Arc<AtomicUsize>,
    drain: Drain,
) {
    let open_gauge = crate::metrics::open_connections(&name);
    loop {
        let (stream, client) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(listener = %name, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (settings, max_connections) = match shared.snapshot.load().listeners.get(&*name) {
            Some(l) => (StreamSettings::of(&l.config), l.config.max_connections),
            None => return,
        };
        // 1. admit
        let Some(slot) = OpenSlot::claim(&open, max_connections) else {
            tracing::warn!(listener = %name, %client, "max_connections reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (name, shared, guard) = (name.clone(), shared.clone(), drain.track());
        let gauge = open_gauge.clone();
        gauge.increment(1.0);
        tokio::spawn(async move {
            let _slot = (slot, guard);
            match serve_connection(&name, &shared, &settings, stream, client).await {
                Ok(()) => {}
                Err(e @ (StreamError::Connect(..) | StreamError::Unavailable(_))) => {
                    tracing::warn!(listener = %name, %client, "{e}");
                }
                Err(e) => tracing::debug!(listener = %name, %client, "{e}"),
            }
            gauge.decrement(1.0);
        });
    }
}

/// A claimed place under the listener's `max_connections`, released on drop.
struct OpenSlot(Arc<AtomicUsize>);

impl OpenSlot {
    fn claim(open: &Arc<AtomicUsize>, max: usize) -> Option<OpenSlot> {
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(OpenSlot(open.clone()))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_connection(
    name: &str,
    shared: &Shared,
    listener: &StreamSettings,
    mut client_stream: TcpStream,
    mut client: SocketAddr,
) -> Result<(), StreamError> {
    // 2. preface
    let mut received = BytesMut::new();
    if listener.accept_proxy_protocol {
        let (source, rest) = read_proxy_header(&mut client_stream, listener.preread_timeout)
            .await
            .map_err(StreamError::ProxyHeader)?;
        client = source.unwrap_or(client);
        received = rest;
    }
    // 3. preread
    let hello = if listener.passthrough {
        let read = read_client_hello(&mut client_stream, &mut received);
        Some(
            tokio::time::timeout(listener.preread_timeout, read)
                .await
                .map_err(|_| StreamError::Preread(io::ErrorKind::TimedOut.into()))?
                .map_err(StreamError::Preread)?,
        )
    } else {
        None
    };
    let server_name = hello.as_ref().and_then(|h| h.server_name.as_deref());
    let info = ConnectionInfo {
        client,
        listener: name,
        server_name,
        alpn: hello.as_ref().map_or(&[], |h| h.alpn.as_slice()),
    };

    // 4. route
    let snapshot = shared.snapshot.load_full();
    let Some(routes) = snapshot.streams.get(name) else {
        return Err(StreamError::NoRoute(server_name.map(str::to_owned)));
    };
    let mut upstream: Option<Arc<Upstream>> = match server_name {
        Some(name) => routes.upstreams.get(name),
        None => routes.upstreams.any(),
    }
    .cloned()
    .flatten();
    if !routes.plugins.is_empty() {
        let has_upstream = |name: &str| snapshot.upstreams.contains_key(name);
        match run_connection_chain(&routes.plugins, &info, has_upstream) {
            ConnectionAction::Allow => {}
            ConnectionAction::Deny => return Err(StreamError::Denied),
            ConnectionAction::Route(name) => upstream = snapshot.upstreams.get(&name).cloned(),
        }
    }
    let upstream = upstream.ok_or_else(|| StreamError::NoRoute(server_name.map(str::to_owned)))?;
    drop(snapshot);

    // 5. connect (another endpoint after a failure, up to the upstream's retries)
    let (mut upstream_stream, _in_flight) = connect(&upstream, &info).await?;
    let _ = upstream_stream.set_nodelay(true);
    let mut first = Vec::new();
    if let Some(version) = upstream.proxy_protocol {
        let local = client_stream.local_addr().map_err(StreamError::Pipe)?;
        match version {
            ProxyProtocolVersion::V1 => proxy_protocol::encode_v1(client, local, &mut first),
            ProxyProtocolVersion::V2 => proxy_protocol::encode_v2(client, local, &mut first),
        }
    }
    first.extend_from_slice(&received);
    if !first.is_empty() {
        upstream_stream
            .write_all(&first)
            .await
            .map_err(StreamError::Pipe)?;
    }

    // 6. pipe
    crate::l4::copy::pipe(
        &mut client_stream,
        &mut upstream_stream,
        listener.idle_timeout,
    )
    .await
    .map_err(StreamError::Pipe)?;
    Ok(())
}

/// Connects to an endpoint of `upstream` chosen for `info`; after a failed connect, tries
/// another endpoint, at most `retries` times. The in-flight guard counts the connection
/// (for `least_conn` and `max_conns`) until dropped.
async fn connect(
    upstream: &Upstream,
    info: &ConnectionInfo<'_>,
) -> Result<(TcpStream, InFlight), StreamError> {
    let mut tried = Vec::new();
    loop {
        let chosen = upstream
            .choose(&Target::Connection(info), &tried)
            .await
            .map_err(StreamError::Unavailable)?;
        let endpoint = upstream.endpoints[chosen.index].address;
        let connected = tokio::time::timeout(
            upstream.settings.connect_timeout,
            TcpStream::connect(endpoint),
        )
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        match connected {
            Ok(stream) => {
                chosen.in_flight.record_latency();
                return Ok((stream, chosen.in_flight));
            }
            Err(e) => {
                upstream.record_failure(chosen.index);
                upstream.metrics.connect_errors.increment(1);
                tried.push(chosen.index);
                if tried.len() > upstream.retries as usize
                    || tried.len() >= upstream.endpoints.len()
                {
                    return Err(StreamError::Connect(endpoint, e));
                }
                tracing::info!(upstream = %upstream.name, %endpoint, "connect failed, trying another endpoint: {e}");
            }
        }
    }
}

/// Reads from `stream` into `buf` until it holds a whole ClientHello (bounded by
/// [`client_hello::MAX_CLIENT_HELLO`]).
async fn read_client_hello(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<ClientHello> {
    loop {
        match client_hello::parse(buf) {
            Ok(Peek::Hello(hello)) => return Ok(hello),
            Ok(Peek::Incomplete) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}
