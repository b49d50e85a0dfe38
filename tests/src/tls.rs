//! TLS for the tests: certificate authorities and certificates made with rcgen, rustls client
//! and server configs, an HTTPS client that reports what was negotiated, and TLS backends
//! (a raw TLS echo server for passthrough, an HTTP server for bridging).
//!
//! Everything uses rustls with the ring provider, as the proxy does.

use crate::l4::{Conn, TcpBackend};
use crate::{Handler, Reply, TempDir};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, ServerConfig};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The crypto provider the tests use (ring, like the proxy).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test certificate authority.
pub struct Ca {
    /// The CA's certificate.
    pub cert: CertificateDer<'static>,
    /// The CA's certificate as PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate issued by a [`Ca`] (or self-signed) with its private key.
pub struct Leaf {
    /// The subject alternative names it was issued for.
    pub names: Vec<String>,
    /// The certificate (DER).
    pub der: CertificateDer<'static>,
    /// The certificate as PEM.
    pub cert_pem: String,
    /// The private key as PEM (PKCS#8).
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl Ca {
    /// A new self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names, `*.wildcards` or IP addresses).
    pub fn server_cert(&self, names: &[&str]) -> Leaf {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `name`.
    pub fn client_cert(&self, name: &str) -> Leaf {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            names,
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// Writes the CA certificate to `dir/NAME` and returns its path.
    pub fn write(&self, dir: &TempDir, name: &str) -> PathBuf {
        dir.write(name, &self.pem)
    }

    /// A root store holding only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        roots
    }
}

impl Leaf {
    /// The private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The certificate chain to present (the leaf alone; the peer trusts its CA).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }

    /// Writes `dir/BASE.pem` (certificate) and `dir/BASE.key` (key); returns both paths.
    pub fn write(&self, dir: &TempDir, base: &str) -> (PathBuf, PathBuf) {
        (
            dir.write(&format!("{base}.pem"), &self.cert_pem),
            dir.write(&format!("{base}.key"), &self.key_pem),
        )
    }

    /// Whether the DER certificate carries `name` (a SAN dNSName is stored as its raw bytes).
    pub fn der_names(der: &[u8], name: &str) -> bool {
        der.windows(name.len()).any(|w| w == name.as_bytes())
    }
}

/// How a test client speaks TLS. Build with the methods, then [`ClientTls::connect`].
#[derive(Clone, Default)]
pub struct ClientTls {
    roots: Vec<CertificateDer<'static>>,
    alpn: Vec<Vec<u8>>,
    identity: Option<(Vec<CertificateDer<'static>>, Vec<u8>)>,
    tls12_only: bool,
    no_verify: bool,
    max_fragment: Option<usize>,
}

impl ClientTls {
    /// A client trusting only `ca`.
    pub fn trusting(ca: &Ca) -> ClientTls {
        ClientTls {
            roots: vec![ca.cert.clone()],
            ..Default::default()
        }
    }

    /// A client that accepts any server certificate (it still records it).
    pub fn insecure() -> ClientTls {
        ClientTls {
            no_verify: true,
            ..Default::default()
        }
    }

    /// Offers these ALPN protocols (e.g. `["h2", "http/1.1"]`).
    pub fn alpn(mut self, protocols: &[&str]) -> ClientTls {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// Presents `leaf` as the client certificate.
    pub fn identity(mut self, leaf: &Leaf) -> ClientTls {
        self.identity = Some((leaf.chain(), leaf.key_der.clone()));
        self
    }

    /// Speaks TLS 1.2 only.
    pub fn tls12_only(mut self) -> ClientTls {
        self.tls12_only = true;
        self
    }

    /// Splits handshake messages into TLS records of at most `size` bytes (32 or more).
    pub fn max_fragment(mut self, size: usize) -> ClientTls {
        self.max_fragment = Some(size);
        self
    }

    /// The rustls config.
    pub fn config(&self) -> Arc<ClientConfig> {
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = if self.no_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
        } else {
            let mut roots = RootCertStore::empty();
            for r in &self.roots {
                roots.add(r.clone()).unwrap();
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(
                    chain.clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        config.max_fragment_size = self.max_fragment;
        Arc::new(config)
    }

    /// Connects to `addr` and completes a handshake for `server_name` (an IP address sends
    /// no SNI). Bounded by 10 s.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        self.handshake(tcp, server_name).await
    }

    /// Completes a client handshake over an already connected stream.
    pub async fn handshake<S>(
        &self,
        stream: S,
        server_name: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let connector = tokio_rustls::TlsConnector::from(self.config());
        let name = server_name_of(server_name);
        match tokio::time::timeout(Duration::from_secs(10), connector.connect(name, stream)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

/// `name` as a rustls server name: an IP address (no SNI is sent) or a DNS name.
pub fn server_name_of(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_string()).expect("valid server name")
}

/// A verifier that accepts every certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a TLS client saw of the handshake.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The server's end-entity certificate.
    pub peer_cert: Option<CertificateDer<'static>>,
    /// The ALPN protocol agreed, if any.
    pub alpn: Option<Vec<u8>>,
    /// The TLS version.
    pub version: Option<ProtocolVersion>,
}

impl Negotiated {
    /// Reads what `tls` negotiated.
    pub fn of<S>(tls: &tokio_rustls::client::TlsStream<S>) -> Negotiated {
        let conn = tls.get_ref().1;
        Negotiated {
            peer_cert: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned()),
            alpn: conn.alpn_protocol().map(|p| p.to_vec()),
            version: conn.protocol_version(),
        }
    }

    /// The ALPN protocol as text ("" when none).
    pub fn alpn_str(&self) -> String {
        self.alpn
            .as_deref()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default()
    }
}

/// The reply to an HTTPS request, with what the handshake negotiated.
#[derive(Debug)]
pub struct HttpsReply {
    /// The response.
    pub reply: Reply,
    /// The handshake.
    pub tls: Negotiated,
}

/// `GET https://SERVER_NAME{path}` sent to `addr` on a fresh TLS connection: HTTP/2 when ALPN
/// agreed on `h2`, HTTP/1.1 otherwise. `Err` describes the first failure (handshake,
/// request, body). Bounded by 10 s.
pub async fn https_get(
    addr: SocketAddr,
    server_name: &str,
    tls: &ClientTls,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<HttpsReply, String> {
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        https_get_on(tcp, server_name, tls, path, headers).await
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Like [`https_get`], over an already connected `stream` (e.g. after writing a PROXY
/// header to it).
pub async fn https_get_on<S>(
    stream: S,
    server_name: &str,
    tls: &ClientTls,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<HttpsReply, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let fut = async {
        let stream = tls
            .handshake(stream, server_name)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let negotiated = Negotiated::of(&stream);
        let io = TokioIo::new(stream);
        let mut b = http::Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = if negotiated.alpn.as_deref() == Some(b"h2") {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
            tokio::spawn(conn);
            let req = b
                .uri(format!("https://{server_name}{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("h2 request: {e}"))?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("h1 handshake: {e}"))?;
            tokio::spawn(conn);
            let req = b
                .header("host", server_name)
                .body(Full::new(Bytes::new()))
                .unwrap();
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("h1 request: {e}"))?
        };
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(HttpsReply {
            reply: Reply {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
            tls: negotiated,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// A rustls server config presenting `leaf`, offering `alpn`, and requiring client
/// certificates signed by `client_ca` when given.
pub fn server_config(leaf: &Leaf, client_ca: Option<&Ca>, alpn: &[&str]) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                provider(),
            )
            .build()
            .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(leaf.chain(), leaf.key()).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// What a TLS backend saw of one accepted handshake.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// The ALPN protocol agreed.
    pub alpn: Option<String>,
    /// Whether the client presented a certificate.
    pub client_cert: bool,
}

/// A TLS server on 127.0.0.1: a [`TcpBackend`] that completes a TLS handshake on every
/// connection, records it, and hands the decrypted stream to a handler.
pub struct TlsServer {
    /// The TCP side (address, connection count, PROXY headers).
    pub tcp: TcpBackend,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    failed: Arc<AtomicUsize>,
}

/// The decrypted server stream a [`TlsServer`] handler gets.
pub type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// A handler of decrypted connections.
pub type TlsHandler =
    Arc<dyn Fn(ServerTls) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl TlsServer {
    /// Serves `config`; every completed handshake goes to `handler`. With `expect_proxy`, a
    /// PROXY header is read (and recorded) before the handshake.
    pub async fn start(
        name: &str,
        config: Arc<ServerConfig>,
        expect_proxy: bool,
        handler: TlsHandler,
    ) -> TlsServer {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicUsize::new(0));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (acc, fail) = (accepted.clone(), failed.clone());
        let tcp = TcpBackend::start_with(
            name,
            expect_proxy,
            Arc::new(move |conn: Conn| {
                let (acceptor, acc, fail, handler) =
                    (acceptor.clone(), acc.clone(), fail.clone(), handler.clone());
                Box::pin(async move {
                    let hs =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(conn.stream))
                            .await;
                    let Ok(Ok(tls)) = hs else {
                        fail.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let c = tls.get_ref().1;
                    acc.lock().unwrap().push(Accepted {
                        sni: c.server_name().map(str::to_string),
                        alpn: c
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned()),
                        client_cert: c.peer_certificates().is_some_and(|c| !c.is_empty()),
                    });
                    handler(tls).await;
                })
            }),
        )
        .await;
        TlsServer {
            tcp,
            accepted,
            failed,
        }
    }

    /// A TLS echo server: after the handshake it writes `NAME sni=SNI\n`, then echoes every
    /// byte until the client closes, then closes its side.
    pub async fn echo(name: &str, config: Arc<ServerConfig>) -> TlsServer {
        let n = name.to_string();
        Self::start(
            name,
            config,
            false,
            Arc::new(move |mut tls: ServerTls| {
                let n = n.clone();
                Box::pin(async move {
                    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                    if tls
                        .write_all(format!("{n} sni={sni}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let _ = tls.flush().await;
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => {
                                if tls.write_all(&buf[..k]).await.is_err() {
                                    return;
                                }
                                let _ = tls.flush().await;
                            }
                        }
                    }
                    let _ = tls.shutdown().await;
                })
            }),
        )
        .await
    }

    /// An HTTP server (HTTP/1.1, and HTTP/2 when ALPN or the preface says so) answering with
    /// `handler`, adding `x-backend: NAME`, `x-sni` (the connection's SNI, "-" if none) and
    /// `x-alpn` (the agreed protocol, "-" if none). Counts requests.
    pub async fn http(name: &str, config: Arc<ServerConfig>, handler: Handler) -> TlsHttpBackend {
        let requests = Arc::new(AtomicUsize::new(0));
        let (r, n) = (requests.clone(), name.to_string());
        let server = Self::start(
            name,
            config,
            false,
            Arc::new(move |tls: ServerTls| {
                let (r, n, handler) = (r.clone(), n.clone(), handler.clone());
                Box::pin(async move {
                    let c = tls.get_ref().1;
                    let sni = c.server_name().unwrap_or("-").to_string();
                    let alpn = c
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_else(|| "-".into());
                    let service = hyper::service::service_fn(move |req| {
                        r.fetch_add(1, Ordering::SeqCst);
                        let (n, handler, sni, alpn) =
                            (n.clone(), handler.clone(), sni.clone(), alpn.clone());
                        async move {
                            let mut resp = handler(req).await;
                            let h = resp.headers_mut();
                            h.insert("x-backend", n.parse().unwrap());
                            h.insert("x-sni", sni.parse().unwrap());
                            h.insert("x-alpn", alpn.parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                })
            }),
        )
        .await;
        TlsHttpBackend { server, requests }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.tcp.addr
    }

    /// The handshakes completed so far, in order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }

    /// Handshakes that failed (or timed out) so far.
    pub fn failed_handshakes(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

/// An HTTPS backend made by [`TlsServer::http`].
pub struct TlsHttpBackend {
    /// The TLS server.
    pub server: TlsServer,
    requests: Arc<AtomicUsize>,
}

impl TlsHttpBackend {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.server.tcp.connections()
    }
}

/// A stream whose first `remaining` written bytes go out one per write, `pause` apart (with
/// `TCP_NODELAY`, one byte per segment): a ClientHello that arrives in pieces.
pub struct Trickle<S> {
    inner: S,
    remaining: usize,
    pause: Duration,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Trickle<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, remaining: usize, pause: Duration) -> Trickle<S> {
        Trickle {
            inner,
            remaining,
            pause,
            sleep: None,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Trickle<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Trickle<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if self.remaining == 0 || buf.is_empty() {
            return std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..1]) {
            Poll::Ready(Ok(n)) => {
                self.remaining -= n.min(self.remaining);
                let pause = self.pause;
                self.sleep = Some(Box::pin(tokio::time::sleep(pause)));
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An HTTP/2 connection over TLS to `addr` (the client must offer `h2` in ALPN and the
/// server agree), for several requests on one connection.
pub async fn h2_connect(
    addr: SocketAddr,
    server_name: &str,
    tls: &ClientTls,
) -> Result<
    (
        hyper::client::conn::http2::SendRequest<Full<Bytes>>,
        Negotiated,
    ),
    String,
> {
    let stream = tls
        .connect(addr, server_name)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let negotiated = Negotiated::of(&stream);
    if negotiated.alpn.as_deref() != Some(b"h2") {
        return Err(format!("ALPN agreed {:?}, not h2", negotiated.alpn_str()));
    }
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    Ok((sender, negotiated))
}
