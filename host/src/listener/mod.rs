//! Listeners: accepting connections and speaking the listener's protocol.
//!
//! - [`http`]: `http` (HTTP/1.1 + h2c) and `https` (TLS terminated, ALPN) listeners.
//! - [`stream`]: `tcp` and `tls-passthrough` listeners, which forward byte streams.
//! - [`closing`]: the signal that tells a listener's connections to finish.
//! - [`preface`]: the PROXY protocol header a listener may expect before anything else.
//! - [`client_hello`]: the pure ClientHello parser behind SNI routing.
//! - [`proxy_protocol`]: the pure PROXY protocol v1/v2 parser and encoders.

pub mod client_hello;
pub mod closing;
pub mod http;
pub mod preface;
pub mod proxy_protocol;
pub mod stream;
