//! Operating the proxy, for the reload, shutdown and admin tests: a config *file* (reload
//! re-reads it) rewritten atomically, plugin copies whose content hash differs, a client of
//! the admin API, a Prometheus text parser, a backend whose `/slow` requests answer late and
//! say when they arrived, sustained keep-alive load that checks every response, and waiting
//! for a port to refuse connections.

use crate::{Backend, Reply, TempDir, http1_client, send};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------
// Config files and plugin files
// ---------------------------------------------------------------------------------------

/// A config file `maitred.toml` in a temp folder of its own. [`ConfigFile::write`] replaces
/// it atomically (write a sibling, then rename), so a reload or the file watcher never
/// reads half a file.
pub struct ConfigFile {
    /// The folder (relative paths in the config resolve against it).
    pub dir: TempDir,
    /// The config file.
    pub path: PathBuf,
}

impl ConfigFile {
    /// Creates the folder and writes `toml` as the config.
    pub fn new(tag: &str, toml: &str) -> ConfigFile {
        let dir = TempDir::new(tag);
        let path = dir.path.join("maitred.toml");
        let file = ConfigFile { dir, path };
        file.write(toml);
        file
    }

    /// Replaces the config with `toml`.
    pub fn write(&self, toml: &str) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tmp = self.dir.path.join(format!(".maitred.toml.{n}.tmp"));
        std::fs::write(&tmp, toml).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    /// Loads the config from the file (panics with the config error).
    pub fn load(&self) -> maitred::Config {
        maitred::Config::load(&self.path).unwrap_or_else(|e| panic!("config: {e}"))
    }

    /// Loads the config from the file and starts a server with it (panics on errors).
    pub fn start(&self) -> maitred::Server {
        maitred::Server::start(self.load()).unwrap_or_else(|e| panic!("start: {e}"))
    }

    /// `NAME` in the config's folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path.join(name)
    }
}

/// A string no other call in this process (or an earlier run) returns: for plugin copies
/// whose content hash the process-wide compile cache has never seen.
pub fn unique_salt() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Writes `dest`: a copy of the test plugin `source` (a `.wasm` in [`crate::plugin_dir`])
/// with a custom section `maitred-test-salt` holding `salt` appended. Same code, different
/// bytes: a different SHA-256, so the proxy sees a new plugin version and compiles it.
pub fn salted_plugin(source: &str, dest: &Path, salt: &str) -> PathBuf {
    let mut bytes = std::fs::read(crate::plugin_dir().join(source))
        .unwrap_or_else(|e| panic!("reading test plugin {source}: {e}"));
    bytes.extend_from_slice(&custom_section("maitred-test-salt", salt.as_bytes()));
    std::fs::write(dest, bytes).unwrap();
    dest.to_path_buf()
}

/// A WebAssembly custom section (id 0): the name and the payload. Valid at the end of a
/// core module and of a component.
pub fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut contents = leb128(name.len() as u64);
    contents.extend_from_slice(name.as_bytes());
    contents.extend_from_slice(payload);
    let mut section = vec![0u8];
    section.extend(leb128(contents.len() as u64));
    section.extend(contents);
    section
}

fn leb128(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// SHA-256 of `bytes` as lowercase hex (through rustls's ring provider: no extra crate).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let hash = suite.tls13().unwrap().common.hash_provider.hash(bytes);
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------

/// A client of the admin API.
#[derive(Clone)]
pub struct Admin {
    /// Where the admin API listens.
    pub addr: SocketAddr,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
}

impl Admin {
    /// The admin API of `server` (panics if it has none).
    pub fn of(server: &maitred::Server) -> Admin {
        Admin {
            addr: server
                .local_addr("admin")
                .expect("the server has an admin API"),
            token: None,
        }
    }

    /// The same client, sending `token`.
    pub fn with_token(&self, token: &str) -> Admin {
        Admin {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// Sends `METHOD path` (10 s limit) and reads the reply.
    pub async fn request(&self, method: http::Method, path: &str) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(token) = &self.token {
            b = b.header("authorization", format!("Bearer {token}"));
        }
        send(&http1_client(), b.body(Full::new(Bytes::new())).unwrap()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(http::Method::GET, path).await
    }

    /// `POST path`.
    pub async fn post(&self, path: &str) -> Reply {
        self.request(http::Method::POST, path).await
    }

    /// `GET path`, which must answer 200 with JSON; the parsed JSON.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let reply = self.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            "application/json",
            "GET {path}"
        );
        serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", reply.body))
    }

    /// `GET /status`.
    pub async fn status(&self) -> serde_json::Value {
        self.json("/status").await
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "GET /metrics: {}", reply.body);
        Metrics::parse(&reply.body)
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The metric name (with `_bucket`, `_sum`, `_count` suffixes as written).
    pub name: String,
    /// The labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Every sample, in page order.
    pub samples: Vec<Sample>,
    /// The page as text.
    pub text: String,
}

impl Metrics {
    /// Parses the Prometheus text exposition format (comments skipped).
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(parse_sample)
            .collect();
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    /// The samples called `name` carrying at least `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .collect()
    }

    /// The sum of the samples [`Metrics::find`] returns (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).iter().map(|s| s.value).sum()
    }

    /// Whether any sample is called `name` with at least `labels`.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        !self.find(name, labels).is_empty()
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(brace) => (&line[..brace], &line[brace..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some(Sample {
                name: name.to_owned(),
                labels: Vec::new(),
                value: parse_value(value)?,
            });
        }
    };
    // Labels: {k="v",k2="v2"} with \" \\ \n escapes in values.
    let mut labels = Vec::new();
    let mut chars = rest[1..].char_indices().peekable();
    let mut end = None;
    loop {
        // Skip separators.
        while let Some((_, c)) = chars.peek() {
            if *c == ',' || *c == ' ' {
                chars.next();
            } else {
                break;
            }
        }
        match chars.peek() {
            Some((i, '}')) => {
                end = Some(1 + i + 1);
                break;
            }
            None => break,
            _ => {}
        }
        let mut key = String::new();
        for (_, c) in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next().map(|(_, c)| c) != Some('"') {
            return None;
        }
        let mut value = String::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => return None,
                },
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_owned(), value));
    }
    let value = rest.get(end?..)?.trim();
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value.split(' ').next()?)?,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    match text.trim() {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

// ---------------------------------------------------------------------------------------
// Backends and sockets
// ---------------------------------------------------------------------------------------

/// An echo [`Backend`] (see [`crate::echo`]) whose requests to paths starting with `/slow`
/// are counted on arrival and answered after `delay`.
pub struct SlowBackend {
    /// The backend.
    pub backend: Backend,
    arrived: watch::Receiver<usize>,
}

impl SlowBackend {
    /// Starts it.
    pub async fn start(name: &str, delay: Duration) -> SlowBackend {
        let (tx, arrived) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let backend = Backend::start_with(
            name,
            Arc::new(move |req: Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                Box::pin(async move {
                    if req.uri().path().starts_with("/slow") {
                        tx.send_modify(|n| *n += 1);
                        tokio::time::sleep(delay).await;
                    }
                    crate::echo(req).await
                }) as crate::HandlerFuture
            }),
        )
        .await;
        SlowBackend { backend, arrived }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.backend.addr
    }

    /// Waits until `n` slow requests have arrived; false after `within`.
    pub async fn wait_arrived(&self, n: usize, within: Duration) -> bool {
        let mut rx = self.arrived.clone();
        tokio::time::timeout(within, rx.wait_for(|got| *got >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Connecting to `addr` now: `Ok(())` when it is accepted (the connection is closed again),
/// `Err(kind)` otherwise (e.g. `ConnectionRefused`). Bounded by 2 s.
pub async fn try_connect(addr: SocketAddr) -> Result<(), std::io::ErrorKind> {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.kind()),
        Err(_) => Err(std::io::ErrorKind::TimedOut),
    }
}

/// Polls `addr` until connecting to it is refused. `Ok(time it took)`, or `Err` describing
/// the last attempt once `within` has passed. (No signal exists for "the kernel closed the
/// socket", hence the polling, every 5 ms.)
pub async fn wait_refused(addr: SocketAddr, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let attempt = try_connect(addr).await;
        if attempt == Err(std::io::ErrorKind::ConnectionRefused) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(format!(
                "{addr} still not refusing connections after {within:?} (last attempt: {attempt:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An HTTP/1.1 connection to `addr` of its own (exactly one TCP connection, kept alive),
/// for tests that care which connection a request travels on.
pub struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// Resolves when the connection ends (the server closed it, or it failed).
    pub closed: tokio::task::JoinHandle<()>,
    /// The `Host` header sent.
    pub host: String,
}

impl KeepAlive {
    /// Connects (5 s limit) and completes the HTTP/1.1 handshake.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let tcp =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(std::io::Error::other)?;
        let closed = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(KeepAlive {
            sender,
            closed,
            host: addr.to_string(),
        })
    }

    /// `GET path` on this connection, with `headers`; the whole reply, or what failed.
    /// Bounded by 10 s.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let mut b = Request::get(path).header("host", &self.host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::new())).unwrap();
        let fut = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("connection not ready: {e}"))?;
            let resp: Response<hyper::body::Incoming> = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .unwrap_or_else(|_| Err("timed out after 10 s".into()))
    }

    /// Whether the connection has ended (the server closed it).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Waits until the connection ends; false if it is still open after `within`.
    pub async fn wait_closed(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, &mut self.closed).await.is_ok()
    }
}

// ---------------------------------------------------------------------------------------
// Sustained keep-alive load
// ---------------------------------------------------------------------------------------

/// Checks one response: `Ok(tag)` for a good one (the tag it carries), `Err(why)` otherwise.
pub type Classify = Arc<dyn Fn(&Reply) -> Result<String, String> + Send + Sync>;

/// What a [`KeepAliveLoad`] saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Good responses.
    pub ok: usize,
    /// Requests that failed (connection error, timeout, or a response `classify` rejected).
    pub failed: usize,
    /// The first failures, described.
    pub failures: Vec<String>,
    /// Good responses by tag.
    pub by_tag: BTreeMap<String, usize>,
    /// Good responses sent and answered within one stable period (see
    /// [`KeepAliveLoad::expect`]) whose tag was not the one expected.
    pub stale: usize,
    /// The first stale responses, described.
    pub stale_examples: Vec<String>,
    /// Responses checked against an expected tag.
    pub checked: usize,
    /// Connections opened beyond the first of each client (the proxy closed one).
    pub reconnects: usize,
}

struct LoadState {
    report: Mutex<LoadReport>,
    /// (period, expected tag): the period changes at every [`KeepAliveLoad::unsettled`] and
    /// [`KeepAliveLoad::expect`].
    expected: RwLock<(u64, Option<String>)>,
    completed: watch::Sender<usize>,
}

/// `clients` tasks, each with one keep-alive HTTP/1.1 connection, sending `GET path` back to
/// back until stopped and checking every response with a [`Classify`].
pub struct KeepAliveLoad {
    state: Arc<LoadState>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl KeepAliveLoad {
    /// Starts the clients (each connects first; panics if one cannot).
    pub async fn start(
        addr: SocketAddr,
        clients: usize,
        path: &str,
        classify: Classify,
    ) -> KeepAliveLoad {
        let state = Arc::new(LoadState {
            report: Mutex::new(LoadReport::default()),
            expected: RwLock::new((0, None)),
            completed: watch::channel(0).0,
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let conn = KeepAlive::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("load client cannot connect to {addr}: {e}"));
            let (state, stopped, classify, path) = (
                state.clone(),
                stopped.clone(),
                classify.clone(),
                path.to_owned(),
            );
            tasks.push(tokio::spawn(client_loop(
                conn, addr, path, classify, state, stopped,
            )));
        }
        KeepAliveLoad { state, stop, tasks }
    }

    /// Responses completed so far (good or not).
    pub fn completed(&self) -> usize {
        *self.state.completed.borrow()
    }

    /// Waits until `n` responses have completed in total; false after `within`.
    pub async fn wait_completed(&self, n: usize, within: Duration) -> bool {
        let mut rx = self.state.completed.subscribe();
        tokio::time::timeout(within, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// From now on, responses are not checked against a tag (call before a reload starts).
    pub fn unsettled(&self) {
        let mut e = self.state.expected.write().unwrap();
        *e = (e.0 + 1, None);
    }

    /// From now on, a request sent after this call and answered before the next
    /// [`KeepAliveLoad::unsettled`] must carry `tag` (call once a reload has returned).
    pub fn expect(&self, tag: &str) {
        let mut e = self.state.expected.write().unwrap();
        *e = (e.0 + 1, Some(tag.to_owned()));
    }

    /// What was seen so far.
    pub fn report(&self) -> LoadReport {
        self.state.report.lock().unwrap().clone()
    }

    /// Stops the clients (each finishes its current request) and returns the report.
    pub async fn stop(self) -> LoadReport {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
        self.state.report.lock().unwrap().clone()
    }
}

async fn client_loop(
    mut conn: KeepAlive,
    addr: SocketAddr,
    path: String,
    classify: Classify,
    state: Arc<LoadState>,
    stopped: watch::Receiver<bool>,
) {
    const KEEP: usize = 10;
    loop {
        if *stopped.borrow() {
            return;
        }
        if conn.is_closed() {
            // The proxy closed the idle connection: count it and open another.
            state.report.lock().unwrap().reconnects += 1;
            match KeepAlive::connect(addr).await {
                Ok(c) => conn = c,
                Err(e) => {
                    {
                        let mut r = state.report.lock().unwrap();
                        r.failed += 1;
                        if r.failures.len() < KEEP {
                            r.failures.push(format!("reconnect: {e}"));
                        }
                    }
                    state.completed.send_modify(|c| *c += 1);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let before = state.expected.read().unwrap().clone();
        let result = conn.get(&path, &[]).await;
        let after_period = state.expected.read().unwrap().0;
        {
            let mut r = state.report.lock().unwrap();
            match result.and_then(|reply| classify(&reply)) {
                Ok(tag) => {
                    r.ok += 1;
                    if let (Some(expected), true) = (&before.1, before.0 == after_period) {
                        r.checked += 1;
                        if *expected != tag {
                            r.stale += 1;
                            if r.stale_examples.len() < KEEP {
                                r.stale_examples.push(format!(
                                    "expected {expected:?} (period {}), got {tag:?}",
                                    before.0
                                ));
                            }
                        }
                    }
                    *r.by_tag.entry(tag).or_default() += 1;
                }
                Err(why) => {
                    r.failed += 1;
                    if r.failures.len() < KEEP {
                        r.failures.push(why);
                    }
                }
            }
        }
        state.completed.send_modify(|c| *c += 1);
    }
}
