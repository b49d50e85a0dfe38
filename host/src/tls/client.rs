//! The client side of upstream TLS ("bridging"): verification on by default, against the
//! system roots or a configured CA; an optional client certificate; `verify = false` only
//! when written explicitly.

use super::{TlsError, VERSIONS, pem, provider};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// The `tls = { ... }` table of an upstream, with paths resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTlsFiles {
    /// CA bundle to verify the upstream against; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// Whether the upstream's certificate is verified at all.
    pub verify: bool,
    /// Client certificate chain and key presented to the upstream.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Offer HTTP/2 in ALPN (before HTTP/1.1).
    pub http2: bool,
}

/// Builds the rustls client configuration for an upstream.
pub fn client_config(files: &UpstreamTlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::new("protocol", e.to_string()))?;
    let builder = if files.verify {
        let roots = match &files.ca {
            Some(path) => pem::roots(path).map_err(|e| TlsError::new("ca", e))?,
            None => system_roots(),
        };
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let mut config = match &files.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = pem::certificates(cert).map_err(|e| TlsError::new("client_cert", e))?;
            let key = pem::private_key(key).map_err(|e| TlsError::new("client_key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::new("client_key", e.to_string()))?
        }
    };
    config.alpn_protocols = match files.http2 {
        true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        false => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}

/// The operating system's trust store; certificates it cannot parse are skipped.
fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!("system CA certificates: {error}");
    }
    store.add_parsable_certificates(found.certs);
    store
}

/// Accepts any certificate (`verify = false`), but still checks the handshake signatures so
/// the session keys belong to whoever holds the presented certificate.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
