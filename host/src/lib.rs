//! # maitred
//!
//! A programmable edge proxy whose per-route policies are WebAssembly components.
//!
//! Configuration flows one way: TOML ([`config`]) -> a validated [`Config`] -> an immutable
//! [`runtime::Snapshot`] (routes compiled, upstreams built, plugins compiled and
//! initialised) -> the request path ([`proxy`]), which only reads it.
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | TOML schema, validation with file:line:key errors, durations and sizes |
//! | [`runtime`] | the snapshot, the server and its worker threads |
//! | [`listener`] | accepting connections: HTTP/1.1 + h2c, HTTPS, TCP, TLS passthrough by SNI |
//! | [`l4`] | byte streams: the bidirectional copy, upstream connects for L4 listeners |
//! | [`tls`] | rustls server and client configurations from PEM files |
//! | [`proxy`] | the request path, phase by phase; header rules; routing |
//! | [`upstream`] | endpoints, balancing, pooled connections, timeouts |
//! | [`plugin`] | the wasmtime engine, plugin instances, limits, host functions |
//! | [`demo`] | the demo backends behind `maitred demo` |
//!
//! ```no_run
//! let config = maitred::Config::load("maitred.toml".as_ref())?;
//! let server = maitred::Server::start(config)?;
//! println!("listening on {:?}", server.local_addr("web"));
//! server.wait();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod config;
pub mod demo;
pub mod l4;
pub mod listener;
pub mod metrics;
pub mod plugin;
pub mod proxy;
pub mod runtime;
pub mod tls;
pub mod upstream;

pub use config::{Config, ConfigError};
pub use runtime::{Server, Snapshot};

/// Validates the config at `path` and loads every plugin in it, as `maitred check` does.
/// Returns a one-line summary.
pub fn check(path: &std::path::Path) -> Result<String, CheckError> {
    let config = Config::load(path)?;
    let snapshot = Snapshot::build(&config, None)?;
    Ok(format!(
        "{}: ok ({} listeners, {} routes, {} upstreams, {} plugins)",
        path.display(),
        config.listeners.len(),
        snapshot.routes.len(),
        snapshot.upstreams.len(),
        snapshot.plugins.len()
    ))
}

/// Why `check` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin failed to load.
    #[error(transparent)]
    Plugin(#[from] runtime::BuildError),
}
