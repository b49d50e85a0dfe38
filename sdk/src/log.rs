//! Logging into the host's log; each line is tagged with the plugin's name by the host.
//!
//! ```ignore
//! use maitred_sdk::log;
//!
//! log::info("loaded");
//! log::warn(format!("unknown upstream {name:?}, ignoring"));
//! ```

use crate::bindings::maitred::plugin::log as raw;

/// Severity of a log line: `Trace`, `Debug`, `Info`, `Warn` or `Error`.
///
/// ```ignore
/// maitred_sdk::log::log(maitred_sdk::log::Level::Warn, "careful");
/// ```
pub use raw::Level;

/// Writes one log line at `level`. The host may drop lines below its configured level.
///
/// ```ignore
/// maitred_sdk::log::log(maitred_sdk::log::Level::Info, "hello");
/// ```
pub fn log(level: Level, message: impl AsRef<str>) {
    raw::log(level, message.as_ref())
}

/// Writes a `trace` line.
///
/// ```ignore
/// maitred_sdk::log::trace("entering on_request");
/// ```
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message)
}

/// Writes a `debug` line.
///
/// ```ignore
/// maitred_sdk::log::debug(format!("path {}", req.path()));
/// ```
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message)
}

/// Writes an `info` line.
///
/// ```ignore
/// maitred_sdk::log::info("config loaded");
/// ```
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message)
}

/// Writes a `warn` line.
///
/// ```ignore
/// maitred_sdk::log::warn("header value was not UTF-8");
/// ```
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message)
}

/// Writes an `error` line.
///
/// ```ignore
/// maitred_sdk::log::error(format!("cannot route: {err}"));
/// ```
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message)
}
