//! The server: binds listeners, runs one single-threaded event loop per worker thread, and
//! stops them.
//!
//! Thread-per-core: each worker owns a current-thread tokio runtime and its own
//! `SO_REUSEPORT` socket for every listener, so the kernel spreads connections across
//! workers and a connection, its requests, its upstream connections and its plugin
//! instances all stay on one thread.

use super::{Snapshot, set_worker_index};
use crate::config::{Config, ListenerConfig};
use crate::listener::http::{HttpListener, serve_http};
use crate::listener::stream::{StreamListener, serve_stream};
use crate::upstream::health::HealthChecks;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;
use tokio::sync::watch;

/// State shared by every worker.
pub struct Shared {
    /// The snapshot new requests use.
    pub snapshot: ArcSwap<Snapshot>,
}

/// A running proxy.
pub struct Server {
    shared: Arc<Shared>,
    /// Active health checks of the snapshot's upstreams (stopped on drop).
    _health: Option<HealthChecks>,
    addrs: Vec<(String, SocketAddr)>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A plugin failed to load.
    #[error(transparent)]
    Build(#[from] super::BuildError),
    /// A listener could not be bound.
    #[error("listener {name:?}: cannot listen on {addr}: {error}")]
    Bind {
        /// The listener's name.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// A worker thread or its runtime could not be created.
    #[error("cannot start worker: {0}")]
    Worker(std::io::Error),
}

impl Server {
    /// Builds the snapshot, binds every listener and starts the workers. Returns once the
    /// listeners accept connections.
    pub fn start(config: Config) -> Result<Server, StartError> {
        let snapshot = Snapshot::build(&config)?;
        let health = HealthChecks::start(snapshot.upstreams.values().cloned().collect())
            .map_err(StartError::Worker)?;
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
        });
        let workers = config.runtime.workers.max(1);

        // sockets[w][l]: worker w's socket for listener l.
        let mut sockets: Vec<Vec<std::net::TcpListener>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut addrs = Vec::new();
        for listener in &config.listeners {
            let mut addr = listener.listen;
            for worker_sockets in sockets.iter_mut() {
                let socket = bind_reuseport(addr).map_err(|error| StartError::Bind {
                    name: listener.name.clone(),
                    addr,
                    error,
                })?;
                addr = socket.local_addr().map_err(StartError::Worker)?;
                worker_sockets.push(socket);
            }
            addrs.push((listener.name.clone(), addr));
        }

        // Open-connection counters of each listener, shared by all workers.
        let counters: Vec<Arc<AtomicUsize>> = config
            .listeners
            .iter()
            .map(|_| Arc::new(AtomicUsize::new(0)))
            .collect();
        let (stop, stop_rx) = watch::channel(false);
        let mut handles = Vec::new();
        for (index, worker_sockets) in sockets.into_iter().enumerate() {
            let listeners: Vec<WorkerListener> = config
                .listeners
                .iter()
                .cloned()
                .zip(worker_sockets)
                .zip(counters.iter().cloned())
                .map(|((config, socket), open)| WorkerListener {
                    config,
                    socket,
                    open,
                })
                .collect();
            let shared = shared.clone();
            let stop_rx = stop_rx.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(StartError::Worker)?;
            let handle = std::thread::Builder::new()
                .name(format!("maitred-worker-{index}"))
                .spawn(move || {
                    set_worker_index(index);
                    runtime.block_on(run_worker(listeners, shared, stop_rx));
                })
                .map_err(StartError::Worker)?;
            handles.push(handle);
        }
        Ok(Server {
            shared,
            _health: health,
            addrs,
            stop,
            workers: handles,
        })
    }

    /// The address listener `name` is bound to (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|&(_, a)| a)
    }

    /// The snapshot new requests are served with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Stops accepting, closes connections and waits for the workers to end.
    pub fn shutdown(mut self) {
        self.stop_workers();
    }

    /// Blocks until the workers end (they end when [`Server::shutdown`] is called elsewhere
    /// or the process is interrupted).
    pub fn wait(mut self) {
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }

    fn stop_workers(&mut self) {
        let _ = self.stop.send(true);
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

/// A worker's share of one listener.
struct WorkerListener {
    config: ListenerConfig,
    /// The worker's own `SO_REUSEPORT` socket.
    socket: std::net::TcpListener,
    /// The listener's open connections over all workers.
    open: Arc<AtomicUsize>,
}

/// One worker's event loop: accept on each of its listeners until told to stop.
async fn run_worker(
    listeners: Vec<WorkerListener>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut accept_loops = tokio::task::JoinSet::new();
    for WorkerListener {
        config,
        socket,
        open,
    } in listeners
    {
        match tokio::net::TcpListener::from_std(socket) {
            Ok(socket) if config.protocol.is_http() => {
                let listener = HttpListener::new(&config, shared.clone());
                accept_loops.spawn(serve_http(listener, socket));
            }
            Ok(socket) => {
                let listener = StreamListener::new(&config, shared.clone(), open);
                accept_loops.spawn(serve_stream(listener, socket));
            }
            Err(e) => tracing::error!(listener = %config.name, "cannot use socket: {e}"),
        }
    }
    let _ = stop.wait_for(|stopped| *stopped).await;
    accept_loops.abort_all();
}

/// A non-blocking listening socket with `SO_REUSEPORT`, so every worker can bind the address.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
