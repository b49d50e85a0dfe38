//! Listeners: accepting connections and speaking the listener's protocol.
//!
//! - [`http`]: cleartext HTTP/1.1 and HTTP/2 (prior knowledge) on one port.
//! - [`client_hello`]: the pure ClientHello parser behind SNI routing.
//! - [`proxy_protocol`]: the pure PROXY protocol v1/v2 parser and encoders.

pub mod client_hello;
pub mod http;
pub mod proxy_protocol;
