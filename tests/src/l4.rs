//! Layer 4 for the tests: TCP backends with pluggable per-connection handlers (echo, greeting,
//! PROXY header parsing), and client helpers (lines, closes, checksums).

use maitred::listener::proxy_protocol::{self, Header};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One accepted connection, as a [`TcpHandler`] gets it.
pub struct Conn {
    /// The stream, positioned after the PROXY header when one was expected.
    pub stream: TcpStream,
    /// The TCP peer (the proxy).
    pub peer: SocketAddr,
    /// The PROXY header read first, when the backend expects one.
    pub proxy_header: Option<Header>,
    /// 0 for the first connection this backend accepted, 1 for the next, ...
    pub index: usize,
}

/// A boxed future of a connection handler.
pub type ConnFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// A per-connection handler.
pub type TcpHandler = Arc<dyn Fn(Conn) -> ConnFuture + Send + Sync>;

/// A PROXY header as a backend read it.
#[derive(Debug, Clone)]
pub struct SeenHeader {
    /// The parsed header, or why parsing failed.
    pub header: Result<Header, String>,
    /// The bytes read for it.
    pub raw: Vec<u8>,
}

impl SeenHeader {
    /// Whether the raw bytes are a v1 (text) header.
    pub fn is_v1(&self) -> bool {
        self.raw.starts_with(b"PROXY ")
    }

    /// Whether the raw bytes are a v2 (binary) header.
    pub fn is_v2(&self) -> bool {
        self.raw.starts_with(b"\r\n\r\n\0\r\nQUIT\n")
    }
}

/// A TCP backend on 127.0.0.1 that counts connections, optionally reads a PROXY header
/// (v1 or v2) from each, and runs a handler on every connection.
pub struct TcpBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name.
    pub name: String,
    connections: Arc<AtomicUsize>,
    headers: Arc<Mutex<Vec<SeenHeader>>>,
    active: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpBackend {
    /// A backend running `handler` on each connection. With `expect_proxy`, each connection
    /// must start with a PROXY header, which is parsed with
    /// [`maitred::listener::proxy_protocol::parse`] and recorded (a bad or missing one is
    /// recorded as an error and the connection closed).
    pub async fn start_with(name: &str, expect_proxy: bool, handler: TcpHandler) -> TcpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let headers = Arc::new(Mutex::new(Vec::new()));
        let (active_tx, active) = watch::channel(0usize);
        let active_tx = Arc::new(active_tx);
        let (c, h) = (connections.clone(), headers.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, peer)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let index = c.fetch_add(1, Ordering::SeqCst);
                active_tx.send_modify(|n| *n += 1);
                let (h, handler, active_tx) = (h.clone(), handler.clone(), active_tx.clone());
                tokio::spawn(async move {
                    let proxy_header = if expect_proxy {
                        let mut raw = Vec::new();
                        let read = tokio::time::timeout(
                            Duration::from_secs(5),
                            read_proxy_header(&mut stream, &mut raw),
                        )
                        .await
                        .unwrap_or_else(|_| Err("timed out reading a PROXY header".into()));
                        h.lock().unwrap().push(SeenHeader {
                            header: read.clone(),
                            raw,
                        });
                        read.ok()
                    } else {
                        None
                    };
                    if !expect_proxy || proxy_header.is_some() {
                        handler(Conn {
                            stream,
                            peer,
                            proxy_header,
                            index,
                        })
                        .await;
                    }
                    active_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        TcpBackend {
            addr,
            name: name.to_string(),
            connections,
            headers,
            active,
            task,
        }
    }

    /// An echo backend: every byte comes back; the client's FIN is passed on as a FIN.
    pub async fn echo(name: &str) -> TcpBackend {
        Self::start_with(
            name,
            false,
            Arc::new(|c: Conn| Box::pin(echo(c.stream, None))),
        )
        .await
    }

    /// An echo backend that first writes `NAME\n`.
    pub async fn greeting_echo(name: &str) -> TcpBackend {
        let greeting = format!("{name}\n");
        Self::start_with(
            name,
            false,
            Arc::new(move |c: Conn| Box::pin(echo(c.stream, Some(greeting.clone())))),
        )
        .await
    }

    /// An echo backend that expects a PROXY header on every connection and then writes
    /// `NAME source=ADDR destination=ADDR\n` (`local`/`unknown` for those headers), then
    /// echoes.
    pub async fn proxy_header_echo(name: &str) -> TcpBackend {
        let n = name.to_string();
        Self::start_with(
            name,
            true,
            Arc::new(move |c: Conn| {
                let greeting = match c.proxy_header {
                    Some(Header::Proxied {
                        source,
                        destination,
                    }) => format!("{n} source={source} destination={destination}\n"),
                    Some(Header::Local) => format!("{n} local\n"),
                    Some(Header::Unknown) | None => format!("{n} unknown\n"),
                };
                Box::pin(echo(c.stream, Some(greeting)))
            }),
        )
        .await
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// PROXY headers read so far (errors as text), in order of arrival.
    pub fn proxy_headers(&self) -> Vec<SeenHeader> {
        self.headers.lock().unwrap().clone()
    }

    /// Connections whose handler is still running.
    pub fn active(&self) -> usize {
        *self.active.borrow()
    }

    /// Waits until the number of running connections satisfies `pred`; false after `within`.
    pub async fn wait_active(&self, within: Duration, pred: impl Fn(usize) -> bool) -> bool {
        let mut rx = self.active.clone();
        tokio::time::timeout(within, rx.wait_for(|n| pred(*n)))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a PROXY header byte by byte (so nothing after it is consumed).
async fn read_proxy_header(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Header, String> {
    loop {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Ok(0) => return Err(format!("EOF after {} bytes: {:?}", buf.len(), buf)),
            Ok(_) => buf.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
        match proxy_protocol::parse(buf) {
            Ok(None) => continue,
            Ok(Some((header, used))) if used == buf.len() => return Ok(header),
            Ok(Some((_, used))) => return Err(format!("parser used {used} of {}", buf.len())),
            Err(e) => {
                return Err(format!(
                    "{e} (first bytes: {:?})",
                    String::from_utf8_lossy(buf)
                ));
            }
        }
    }
}

/// Echoes `stream` after writing `greeting`: every byte read is written back; at EOF the
/// write side is shut down.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, greeting: Option<String>) {
    if let Some(g) = greeting
        && stream.write_all(g.as_bytes()).await.is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// Reads one `\n`-terminated line (without the `\n`), byte by byte, within 5 s.
pub async fn read_line<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<String> {
    let fut = async {
        let mut line = Vec::new();
        loop {
            let mut b = [0u8; 1];
            if stream.read(&mut b).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("EOF after {:?}", String::from_utf8_lossy(&line)),
                ));
            }
            if b[0] == b'\n' {
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            line.push(b[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no line within 5 s",
            ))
        })
}

/// How a connection ended, as seen by a reader.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The peer closed (EOF), after sending these bytes.
    Eof(Vec<u8>),
    /// The connection was reset (or another error), after these bytes.
    Error(Vec<u8>, std::io::ErrorKind),
    /// Still open when the time was up, after these bytes.
    StillOpen(Vec<u8>),
}

impl Ending {
    /// Closed (by FIN or reset) with nothing received.
    pub fn is_closed_empty(&self) -> bool {
        matches!(self, Ending::Eof(b) | Ending::Error(b, _) if b.is_empty())
    }

    /// Closed (by FIN or reset).
    pub fn is_closed(&self) -> bool {
        !matches!(self, Ending::StillOpen(_))
    }
}

/// Reads until the peer closes or `within` passes.
pub async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> Ending {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Ending::StillOpen(got),
            Ok(Ok(0)) => return Ending::Eof(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Ending::Error(got, e.kind()),
        }
    }
}

/// FNV-1a, 64 bits, continued from `state` (start with [`FNV_START`]).
pub fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        state ^= u64::from(*b);
        state = state.wrapping_mul(0x100000001b3);
    }
    state
}

/// The FNV-1a offset basis.
pub const FNV_START: u64 = 0xcbf29ce484222325;

/// `len` pseudo-random bytes from `seed` (xorshift), for payloads whose corruption shows.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A port on 127.0.0.1 that nobody listens on (bound, then released).
pub fn dead_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Connects to `addr` with TCP_NODELAY, within 5 s.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    s.set_nodelay(true).unwrap();
    s
}
