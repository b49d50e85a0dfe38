//! Listeners: accepting connections and speaking the listener's protocol.
//!
//! - [`http`]: cleartext HTTP/1.1 and HTTP/2 (prior knowledge) on one port.

pub mod http;
