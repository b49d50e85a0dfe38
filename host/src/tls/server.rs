//! The server side of `https` listeners: certificates picked by SNI, ALPN, and optional
//! client-certificate authentication (mTLS).

use super::{TlsError, VERSIONS, pem, provider};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A certificate chain and its key, as named in `certificates = [{ cert, key }]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM file with the certificate chain, end-entity certificate first.
    pub cert: PathBuf,
    /// PEM file with the matching private key.
    pub key: PathBuf,
}

/// Builds the rustls server configuration of an `https` listener.
///
/// The names each certificate serves are read from its subject alternative names; the first
/// certificate also answers clients that send no SNI or an unknown name. With `client_ca`,
/// clients must present a certificate signed by it or the handshake fails.
pub fn server_config(
    certificates: &[CertificateFiles],
    client_ca: Option<&std::path::Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut resolver = SniResolver::default();
    for (i, files) in certificates.iter().enumerate() {
        let chain = pem::certificates(&files.cert)
            .map_err(|e| TlsError::new(format!("certificates[{i}].cert"), e))?;
        let key = pem::private_key(&files.key)
            .map_err(|e| TlsError::new(format!("certificates[{i}].key"), e))?;
        let end_entity = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
            TlsError::new(
                format!("certificates[{i}].cert"),
                format!("{}: unusable certificate: {e}", files.cert.display()),
            )
        })?;
        let names: Vec<String> = end_entity
            .valid_dns_names()
            .map(str::to_ascii_lowercase)
            .collect();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            TlsError::new(
                format!("certificates[{i}].key"),
                format!(
                    "{} does not go with {}: {e}",
                    files.key.display(),
                    files.cert.display()
                ),
            )
        })?;
        resolver.add(&names, Arc::new(certified));
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::new("protocol", e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = pem::roots(path).map_err(|e| TlsError::new("client_ca", e))?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::new("client_ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Picks a certificate by SNI: an exact name, then the wildcard for the name's parent
/// domain (`*.example.com` covers `a.example.com`, not `a.b.example.com`), then the default.
#[derive(Debug, Default)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Serves `names` (from the certificate's SANs) with `key`; earlier certificates win.
    fn add(&mut self, names: &[String], key: Arc<CertifiedKey>) {
        for name in names {
            let (map, name) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent),
                None => (&mut self.exact, name.as_str()),
            };
            map.entry(name.to_owned()).or_insert_with(|| key.clone());
        }
        self.default.get_or_insert(key);
    }

    fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = name.to_ascii_lowercase();
            if let Some(key) = self.exact.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = self.wildcard.get(parent)
            {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.lookup(hello.server_name())
    }
}
