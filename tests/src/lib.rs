//! Test harness for maitred's black-box tests: backends that count what they see, a proxy
//! started from a TOML string, and clients (HTTP/1.1, h2c, raw TCP). Everything listens on
//! 127.0.0.1 with ephemeral ports, so tests run in parallel.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod cache;
pub mod l4;
pub mod lb;
pub mod ops;
pub mod tls;
pub mod ws;

/// The folder holding the `.wasm` plugins built by this crate's build script.
pub fn plugin_dir() -> PathBuf {
    PathBuf::from(env!("MAITRED_TEST_PLUGINS"))
}

/// The settings of test plugin `wasm` (in [`plugin_dir`]) with `config_json`: fail-closed,
/// pooled, a 10 ms deadline, 32 MiB of memory, 4 idle instances per worker.
pub fn plugin_config(wasm: &str, config_json: &str) -> maitred::config::PluginConfig {
    maitred::config::PluginConfig {
        name: wasm.trim_end_matches(".wasm").to_string(),
        wasm: plugin_dir().join(wasm),
        config_json: config_json.to_string(),
        on_error: maitred::config::OnError::FailClosed,
        isolation: maitred::config::Isolation::Pooled,
        timeout: Duration::from_millis(10),
        memory_limit: 32 << 20,
        pool_size: 4,
        files: Vec::new(),
    }
}

/// A boxed response future, for custom backend handlers.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
/// A custom backend handler.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;

/// A backend on 127.0.0.1 that counts requests and TCP connections.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, sent back in `x-backend`.
    pub name: String,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// A backend that answers `200` with `x-backend: NAME`, `server: test-backend`, and a
    /// body listing the request line and headers (`name: value` lines).
    pub async fn start(name: &str) -> Backend {
        Self::start_with(
            name,
            Arc::new(|req| Box::pin(async move { echo(req).await })),
        )
        .await
    }

    /// A backend answering with `handler` (it still adds `x-backend`).
    pub async fn start_with(name: &str, handler: Handler) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c, n) = (requests.clone(), connections.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, n, handler) = (r.clone(), n.clone(), handler.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        r.fetch_add(1, Ordering::SeqCst);
                        let (n, handler) = (n.clone(), handler.clone());
                        async move {
                            let mut resp = handler(req).await;
                            resp.headers_mut().insert("x-backend", n.parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            addr,
            name: name.to_string(),
            requests,
            connections,
            task,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The echo handler: request line and headers as the body.
pub async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    Response::builder()
        .header("server", "test-backend")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// A running proxy started from a TOML string. Relative `wasm` paths resolve against
/// [`plugin_dir`], so configs can say `wasm = "headers.wasm"`.
pub struct Proxy {
    /// The server.
    pub server: maitred::Server,
}

impl Proxy {
    /// Validates `toml` and starts the proxy; panics with the config error otherwise.
    pub fn start(toml: &str) -> Proxy {
        let config = maitred::Config::from_toml(toml, &plugin_dir().join("test.toml"))
            .unwrap_or_else(|e| panic!("config: {e}"));
        Proxy {
            server: maitred::Server::start(config).unwrap_or_else(|e| panic!("start: {e}")),
        }
    }

    /// The address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.server.local_addr(name).expect("listener exists")
    }

    /// `http://ADDR` of listener `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}", self.addr(name))
    }
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The whole body as text (lossy).
    pub body: String,
}

impl Reply {
    /// A header's value as text, or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An HTTP/1.1 client with keep-alive (one pool per client).
pub fn http1_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 cleartext (prior knowledge) client.
pub fn h2c_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends `req` with `client` and reads the whole reply (10 s limit).
pub async fn send(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    req: Request<Full<Bytes>>,
) -> Reply {
    let fut = async {
        let resp = client.request(req).await.expect("request failed");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body failed").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("request timed out")
}

/// `GET url` with extra headers, over a fresh HTTP/1.1 client.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&http1_client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Writes raw bytes to `addr` and reads until the server closes or 2 s pass; returns the text.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 response text (`"HTTP/1.1 400 ..."` -> 400), 0 if none.
pub fn raw_status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A fresh folder under the system temp dir, removed on drop (for PEM files and configs).
pub struct TempDir {
    /// The folder.
    pub path: PathBuf,
}

impl TempDir {
    /// Creates `maitred-test-PID-N-TAG` under the temp dir.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("maitred-test-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    /// Writes `contents` to `NAME` in the folder and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `path` as a quoted TOML string.
pub fn toml_path(path: &std::path::Path) -> String {
    toml_str(&path.display().to_string())
}

/// `s` as a quoted TOML basic string.
pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
