//! Running the proxy: the immutable [`Snapshot`] built from a config, and the [`Server`]
//! with its worker threads.

pub mod drain;
pub(crate) mod server;
mod snapshot;
pub mod watch;

pub use server::{Server, Shared, StartError, Status};
pub use snapshot::{BuildError, ListenerRuntime, PluginRecord, Route, Snapshot};

use std::cell::Cell;

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running the caller (0 outside workers). Per-worker pools
/// (plugin instances) are picked with it.
pub fn worker_index() -> usize {
    WORKER_INDEX.get()
}

/// Marks the current thread as worker `index`.
fn set_worker_index(index: usize) {
    WORKER_INDEX.set(index);
}
