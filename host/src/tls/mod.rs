//! TLS with rustls (ring provider, TLS 1.2 and 1.3 only): loading PEM files, the server side
//! of `https` listeners, and the client side of upstreams with `tls = { ... }`.
//!
//! Everything here runs when a config is validated, never per request: a bad file, a key
//! that does not match its certificate or an unreadable CA is a config error.
//!
//! - [`server`]: certificates chosen by SNI (exact names, `*.suffix` wildcards, the first as
//!   default), ALPN `h2` + `http/1.1`, optional client-certificate authentication.
//! - [`client`]: upstream verification against the system roots or a configured CA,
//!   optional client certificate, and the explicit `verify = false` escape hatch.

pub mod client;
mod pem;
pub mod server;

use std::sync::Arc;

/// The crypto provider every TLS config in the process uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions maitred speaks: TLS 1.2 and 1.3, nothing older.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A TLS setting could not be turned into a working configuration.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TlsError {
    /// Which setting is at fault, as a key path relative to the `tls`/listener table
    /// (`certificates[1].key`, `ca`, ...), so config errors can point at it.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl TlsError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        TlsError {
            key: key.into(),
            message: message.into(),
        }
    }
}
