//! The server: binds listeners, runs one single-threaded event loop per worker thread,
//! reloads its configuration, and shuts down gracefully.
//!
//! Thread-per-core: each worker owns a current-thread tokio runtime and its own
//! `SO_REUSEPORT` socket for every listener, so the kernel spreads connections across
//! workers and a connection, its requests, its upstream connections and its plugin
//! instances all stay on one thread.
//!
//! Reload ([`Server::reload`]): the new config is read, validated and every plugin compiled
//! and initialised, and new listeners are bound, *before* anything changes; then the new
//! [`Snapshot`] replaces the old one in one atomic store. Requests in flight keep the
//! snapshot they started with. Listeners that disappeared stop accepting; their open
//! connections finish. Any failure leaves the old snapshot serving and is recorded in
//! [`Status`].

use super::drain::{Drain, DrainController};
use super::{Snapshot, set_worker_index};
use crate::config::{Config, ListenerConfig, ListenerProtocol};
use crate::listener::http::serve_http;
use crate::listener::stream::serve_stream;
use crate::upstream::health::HealthChecks;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};

/// State shared by every worker and the admin API.
pub struct Shared {
    /// The snapshot new requests use.
    pub snapshot: ArcSwap<Snapshot>,
    /// Config version, load times and the last reload error.
    pub status: Mutex<Status>,
}

/// What `GET /status` reports about configuration loading.
#[derive(Debug, Clone)]
pub struct Status {
    /// 1 for the config the server started with, +1 per successful reload.
    pub version: u64,
    /// When the serving config was loaded.
    pub loaded_at: SystemTime,
    /// How long building the serving snapshot took.
    pub load_duration: Duration,
    /// The last failed reload: when, and why.
    pub last_error: Option<(SystemTime, String)>,
    /// Successful reloads.
    pub reloads: u64,
    /// Failed reloads.
    pub reload_failures: u64,
}

/// A running proxy. Dropping it stops it.
pub struct Server {
    core: Arc<ServerCore>,
    /// The admin API, when `[admin]` is configured.
    admin: Option<crate::admin::AdminServer>,
    /// The config file watcher, with `[runtime] watch = true`.
    watcher: Option<super::watch::ConfigWatcher>,
}

/// The running proxy itself, shared with the admin API.
pub struct ServerCore {
    shared: Arc<Shared>,
    workers: Vec<Worker>,
    /// Bound listeners by name.
    listeners: Mutex<HashMap<String, Bound>>,
    /// Active health checks of the serving snapshot's upstreams.
    health: Mutex<Option<HealthChecks>>,
    drain: DrainController,
    /// Serialises reloads.
    reloading: Mutex<()>,
    stop: watch::Sender<bool>,
}

/// A worker thread and the channel that tells it which listeners to serve.
struct Worker {
    commands: mpsc::UnboundedSender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What a worker is told to do with its listeners.
enum Command {
    /// Start accepting on this socket.
    Serve(WorkerListener),
    /// Stop accepting on the listener with this name (its connections finish).
    Close(String),
}

/// A listener as bound: what it was bound for and where.
struct Bound {
    /// The configured address (port 0 stays 0 here).
    listen: SocketAddr,
    protocol: ListenerProtocol,
    /// The actual address.
    addr: SocketAddr,
}

/// The server could not start, or a reload failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
    /// Builds the snapshot, binds every listener, starts the workers and (if configured)
    /// the admin API. Returns once the listeners accept connections.
    pub fn start(config: Config) -> Result<Server, StartError> {
        let metrics = config
            .admin
            .as_ref()
            .and_then(|_| crate::metrics::install());
        if let Some(target) = &config.log.access {
            crate::access_log::start(target, &config.log.access_format, config.log.format)
                .map_err(|e| {
                    StartError::Worker(std::io::Error::other(format!("access log {target}: {e}")))
                })?;
        }
        let admin_config = config.admin.clone();
        let watch = config.runtime.watch;
        let core = Arc::new(ServerCore::start(config)?);
        let watcher = match watch {
            true => Some(super::watch::ConfigWatcher::start(&core).map_err(|e| {
                StartError::Worker(std::io::Error::other(format!(
                    "cannot watch the config files: {e}"
                )))
            })?),
            false => None,
        };
        let admin = match admin_config {
            Some(admin) => Some(
                crate::admin::AdminServer::start(&admin, core.clone(), metrics).map_err(
                    |error| StartError::Bind {
                        name: "admin".into(),
                        addr: admin.listen,
                        error,
                    },
                )?,
            ),
            None => None,
        };
        Ok(Server {
            core,
            admin,
            watcher,
        })
    }

    /// The address listener `name` is bound to (useful with port 0); `"admin"` for the
    /// admin API.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        match (name, &self.admin) {
            ("admin", Some(admin)) => Some(admin.local_addr()),
            _ => self.core.local_addr(name),
        }
    }

    /// The snapshot new requests are served with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.core.snapshot()
    }

    /// Client connections open now, over all listeners.
    pub fn open_connections(&self) -> usize {
        self.core.open_connections()
    }

    /// Reloads the config file (see [`ServerCore::reload`]).
    pub fn reload(&self) -> Result<u64, StartError> {
        self.core.reload()
    }

    /// The config version, load time and last reload error.
    pub fn status(&self) -> Status {
        lock(&self.core.shared.status).clone()
    }

    /// Graceful shutdown (see [`ServerCore::shutdown_gracefully`]).
    pub fn shutdown_gracefully(&self, grace: Duration) -> usize {
        self.core.shutdown_gracefully(grace)
    }

    /// Stops accepting, closes connections and waits for the workers to end.
    pub fn shutdown(self) {
        self.core.stop_workers();
    }

    /// Blocks until the workers end (they end when the server is shut down elsewhere).
    pub fn wait(&self) {
        self.core.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.watcher = None;
        self.admin = None;
        self.core.stop_workers();
    }
}

impl ServerCore {
    fn start(config: Config) -> Result<ServerCore, StartError> {
        let started = Instant::now();
        let snapshot = Snapshot::build(&config, None)?;
        let health = HealthChecks::start(snapshot.upstreams.values().cloned().collect())
            .map_err(StartError::Worker)?;
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            status: Mutex::new(Status {
                version: 1,
                loaded_at: SystemTime::now(),
                load_duration: started.elapsed(),
                last_error: None,
                reloads: 0,
                reload_failures: 0,
            }),
        });
        let (drain, connections) = DrainController::new();
        let (stop, stop_rx) = watch::channel(false);
        let mut workers = Vec::new();
        for index in 0..config.runtime.workers.max(1) {
            let (commands, receiver) = mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(StartError::Worker)?;
            let (shared, stop_rx, drain) = (shared.clone(), stop_rx.clone(), connections.clone());
            let thread = std::thread::Builder::new()
                .name(format!("maitred-worker-{index}"))
                .spawn(move || {
                    set_worker_index(index);
                    runtime.block_on(run_worker(receiver, shared, drain, stop_rx));
                })
                .map_err(StartError::Worker)?;
            workers.push(Worker {
                commands,
                thread: Mutex::new(Some(thread)),
            });
        }
        let server = ServerCore {
            shared,
            workers,
            listeners: Mutex::new(HashMap::new()),
            health: Mutex::new(health),
            drain,
            reloading: Mutex::new(()),
            stop,
        };
        let bound = server.bind_new(&config)?;
        server.serve(bound);
        Ok(server)
    }

    /// The address listener `name` is bound to (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        lock(&self.listeners).get(name).map(|b| b.addr)
    }

    /// The snapshot new requests are served with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// The state shared with workers (snapshot and status), for the admin API.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Client connections open now, over all listeners.
    pub fn open_connections(&self) -> usize {
        self.drain.open_connections()
    }

    /// Reloads the config file the serving config came from. On success returns the new
    /// config version; on failure the old config keeps serving and the error is recorded.
    pub fn reload(&self) -> Result<u64, StartError> {
        let _one_at_a_time = lock(&self.reloading);
        let started = Instant::now();
        let result = self.try_reload();
        let mut status = lock(&self.shared.status);
        match result {
            Ok(()) => {
                crate::metrics::reloads(true).increment(1);
                status.version += 1;
                status.reloads += 1;
                status.loaded_at = SystemTime::now();
                status.load_duration = started.elapsed();
                tracing::info!(
                    version = status.version,
                    millis = started.elapsed().as_millis() as u64,
                    "configuration reloaded"
                );
                Ok(status.version)
            }
            Err(e) => {
                crate::metrics::reloads(false).increment(1);
                status.reload_failures += 1;
                status.last_error = Some((SystemTime::now(), e.to_string()));
                tracing::error!("reload failed, the previous configuration keeps serving: {e}");
                Err(e)
            }
        }
    }

    fn try_reload(&self) -> Result<(), StartError> {
        let old = self.shared.snapshot.load_full();
        let config = Config::load(&old.config.source)?;
        if config.runtime.workers != old.config.runtime.workers {
            tracing::warn!("runtime.workers changed: it takes effect at the next restart");
        }
        let snapshot = Snapshot::build(&config, Some(&old))?;
        let bound = self.bind_new(&config)?;
        let health = HealthChecks::start(snapshot.upstreams.values().cloned().collect())
            .map_err(StartError::Worker)?;
        self.shared.snapshot.store(Arc::new(snapshot));
        *lock(&self.health) = health;
        self.close_removed(&config);
        self.serve(bound);
        Ok(())
    }

    /// Binds every listener of `config` not bound yet (or bound for another address or
    /// protocol): one `SO_REUSEPORT` socket per worker.
    fn bind_new(&self, config: &Config) -> Result<Vec<Binding>, StartError> {
        let listeners = lock(&self.listeners);
        let mut bound = Vec::new();
        for listener in &config.listeners {
            let unchanged = listeners
                .get(&listener.name)
                .is_some_and(|b| b.listen == listener.listen && b.protocol == listener.protocol);
            if unchanged {
                continue;
            }
            let mut addr = listener.listen;
            let mut sockets = Vec::new();
            for _ in &self.workers {
                let socket = bind_reuseport(addr).map_err(|error| StartError::Bind {
                    name: listener.name.clone(),
                    addr,
                    error,
                })?;
                addr = socket.local_addr().map_err(StartError::Worker)?;
                sockets.push(socket);
            }
            bound.push(Binding {
                config: listener.clone(),
                addr,
                sockets,
            });
        }
        Ok(bound)
    }

    /// Hands freshly bound listeners to the workers (replacing any with the same name).
    fn serve(&self, bound: Vec<Binding>) {
        let mut listeners = lock(&self.listeners);
        for binding in bound {
            // A worker serving a listener of the same name swaps the accept loops.
            let name = binding.config.name.clone();
            let open = Arc::new(AtomicUsize::new(0));
            for (worker, socket) in self.workers.iter().zip(binding.sockets) {
                let _ = worker.commands.send(Command::Serve(WorkerListener {
                    name: Arc::from(name.as_str()),
                    protocol: binding.config.protocol,
                    socket,
                    open: open.clone(),
                }));
            }
            tracing::info!(listener = %name, addr = %binding.addr, protocol = binding.config.protocol.as_str(), "listening");
            listeners.insert(
                name,
                Bound {
                    listen: binding.config.listen,
                    protocol: binding.config.protocol,
                    addr: binding.addr,
                },
            );
        }
    }

    /// Stops accepting on listeners `config` no longer has.
    fn close_removed(&self, config: &Config) {
        let mut listeners = lock(&self.listeners);
        let removed: Vec<String> = listeners
            .keys()
            .filter(|name| !config.listeners.iter().any(|l| &&l.name == name))
            .cloned()
            .collect();
        for name in removed {
            self.command(|| Command::Close(name.clone()));
            listeners.remove(&name);
            tracing::info!(listener = %name, "listener removed: no longer accepting");
        }
    }

    fn command(&self, command: impl Fn() -> Command) {
        for worker in &self.workers {
            let _ = worker.commands.send(command());
        }
    }

    /// Graceful shutdown: stops accepting, lets open connections finish for up to `grace`
    /// (HTTP connections close after their current request), then stops the workers.
    /// Returns the number of connections cut off at the end of the grace period.
    pub fn shutdown_gracefully(&self, grace: Duration) -> usize {
        let names: Vec<String> = lock(&self.listeners)
            .drain()
            .map(|(name, _)| name)
            .collect();
        for name in names {
            self.command(|| Command::Close(name.clone()));
        }
        let waited = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(self.drain.drain(grace)))
            .unwrap_or(0);
        self.stop_workers();
        waited
    }

    /// Blocks until the workers end.
    pub fn wait(&self) {
        for worker in &self.workers {
            if let Some(thread) = lock(&worker.thread).take() {
                let _ = thread.join();
            }
        }
    }

    /// Stops the workers (cutting open connections) and the health checks.
    pub fn stop_workers(&self) {
        let _ = self.stop.send(true);
        *lock(&self.health) = None;
        self.wait();
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listener freshly bound on every worker, not serving yet.
struct Binding {
    config: ListenerConfig,
    addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

/// A worker's share of one listener.
struct WorkerListener {
    name: Arc<str>,
    protocol: ListenerProtocol,
    /// The worker's own `SO_REUSEPORT` socket.
    socket: std::net::TcpListener,
    /// The listener's open connections over all workers (for `max_connections`).
    open: Arc<AtomicUsize>,
}

/// One worker's event loop: accept on the listeners it is given until told to stop.
async fn run_worker(
    mut commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    drain: Drain,
    mut stop: watch::Receiver<bool>,
) {
    let mut accept_loops: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    loop {
        let command = tokio::select! {
            command = commands.recv() => command,
            _ = stop.wait_for(|stopped| *stopped) => None,
        };
        match command {
            None => break,
            Some(Command::Close(name)) => {
                if let Some(accepting) = accept_loops.remove(&name) {
                    accepting.abort();
                }
            }
            Some(Command::Serve(listener)) => {
                let WorkerListener {
                    name,
                    protocol,
                    socket,
                    open,
                } = listener;
                let socket = match tokio::net::TcpListener::from_std(socket) {
                    Ok(socket) => socket,
                    Err(e) => {
                        tracing::error!(listener = %name, "cannot use socket: {e}");
                        continue;
                    }
                };
                let (key, shared, drain) = (name.to_string(), shared.clone(), drain.clone());
                let task = if protocol.is_http() {
                    tokio::spawn(serve_http(name, shared, socket, drain))
                } else {
                    tokio::spawn(serve_stream(name, shared, socket, open, drain))
                };
                if let Some(previous) = accept_loops.insert(key, task.abort_handle()) {
                    previous.abort();
                }
            }
        }
    }
    for accepting in accept_loops.values() {
        accepting.abort();
    }
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
