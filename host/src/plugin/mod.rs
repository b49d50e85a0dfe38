//! The plugin runtime: WebAssembly components run by wasmtime, one concept per file.
//!
//! - [`engine`]: the process-wide engine, linker, compiled-code cache and deadline ticker.
//! - [`instance`]: a loaded plugin with its per-worker instance pools, and the calls.
//! - [`connection`]: what connection (layer 4) plugins are asked and answer, and a
//!   listener's chain of them.
//! - [`balancer`]: what balancer plugins are shown (endpoints, the request or connection).
//! - [`state`]: the store's data and the host functions plugins import.
//! - [`bindings`]: types generated from `wit/plugin.wit`.
//!
//! Calls run synchronously on the worker thread that handles the request: a call costs
//! about a microsecond, far less than a hop to a blocking pool would.

pub mod balancer;
pub mod bindings;
pub mod connection;
pub mod engine;
pub mod instance;
pub mod shared_state;
pub mod state;

pub use balancer::{BalanceTarget, EndpointInfo};
pub use bindings::{DirectResponse, Phases, RequestAction};
pub use connection::{ConnectionAction, ConnectionInfo, run_connection_chain};
pub use engine::PluginEngine;
pub use instance::{LoadedPlugin, PluginInstance, PluginKind};
pub use state::{RequestView, ResponseView};

use std::path::PathBuf;

/// A plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The wasmtime engine could not be created.
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    /// The `.wasm` file could not be read.
    #[error("cannot read {path}: {1}", path = .0.display())]
    Read(PathBuf, String),
    /// The bytes are not a valid component.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component does not fit the world (`filter`, `connection-filter` or `balancer`,
    /// told by its exports) or imports what the host does not offer.
    #[error("the component does not implement maitred's `{0}` world: {1}")]
    Link(&'static str, String),
    /// `init` failed or trapped.
    #[error("init failed: {0}")]
    Init(String),
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
}

/// A plugin call went wrong; only the current request is affected.
#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    /// The call ran past its deadline.
    #[error("call exceeded its deadline")]
    Timeout,
    /// The plugin tried to grow its memory past the cap.
    #[error("memory limit exceeded")]
    MemoryLimit,
    /// The plugin trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// `init` returned an error on a new instance.
    #[error("init failed: {0}")]
    Init(String),
    /// The plugin asked for something the host cannot do (e.g. an unknown upstream, or an
    /// endpoint index out of range).
    #[error("{0}")]
    Invalid(String),
    /// The call (named) belongs to another world: e.g. `on-connect` on an HTTP filter.
    #[error("{0} cannot be called on {1}")]
    WrongKind(&'static str, PluginKind),
}

impl PluginFailure {
    /// Classifies an error returned by a call into the plugin.
    fn from_call(e: wasmtime::Error) -> Self {
        if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            return PluginFailure::Timeout;
        }
        // The root cause is the trap itself ("wasm trap: ..."); the outer error is only the
        // plugin's backtrace. A `StoreLimits` cap says "forcing trap when growing memory".
        let cause = e.root_cause().to_string();
        if cause.contains("forcing trap when growing memory")
            || cause.contains("memory growth failure")
            || cause.contains("memory allocation failed")
        {
            return PluginFailure::MemoryLimit;
        }
        PluginFailure::Trap(cause.lines().next().unwrap_or("").to_owned())
    }
}
