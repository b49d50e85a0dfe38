//! Load balancing for the tests: HTTP backends (HTTP/1.1 or h2c) that can hold their
//! requests, answer slowly, be killed and revived on the same port, and change their
//! `/health` answer; clients that connect from a chosen loopback address, or send many
//! requests over one HTTP/2 connection; and a gRPC test service and client (tonic, with the
//! messages written by hand: no protoc, no build script).

use crate::Reply;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The HTTP version an [`LbBackend`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 by prior knowledge (cleartext).
    H2c,
}

/// What every connection of a backend shares.
struct Shared {
    name: String,
    speaks: Speaks,
    /// Requests other than `GET /health` received so far.
    requests: watch::Sender<usize>,
    /// `/health` requests received so far.
    health_checks: watch::Sender<usize>,
    health_status: AtomicU16,
    delay_ms: AtomicU64,
    /// While true, requests wait (counted in flight) until it turns false.
    held: watch::Sender<bool>,
    in_flight: watch::Sender<usize>,
    max_in_flight: AtomicUsize,
    connections: AtomicUsize,
    /// The running connections; aborted by [`LbBackend::kill`].
    conns: Mutex<JoinSet<()>>,
}

/// An HTTP backend on 127.0.0.1 for balancing tests.
///
/// Every request except `GET /health` is counted, and answered `200` with `x-backend: NAME`
/// and the body `NAME METHOD PATH\n` followed by the request body. `/health` answers the
/// status set with [`LbBackend::set_health`] (200 at first) and is counted apart.
pub struct LbBackend {
    /// Where it listens (the same address after [`LbBackend::revive`]).
    pub addr: SocketAddr,
    /// Its name, sent back in `x-backend`.
    pub name: String,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl LbBackend {
    /// An HTTP/1.1 backend.
    pub async fn start(name: &str) -> LbBackend {
        Self::start_speaking(name, Speaks::Http1).await
    }

    /// An HTTP/2 (prior knowledge) backend.
    pub async fn start_h2c(name: &str) -> LbBackend {
        Self::start_speaking(name, Speaks::H2c).await
    }

    /// A backend speaking `speaks`.
    pub async fn start_speaking(name: &str, speaks: Speaks) -> LbBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            speaks,
            requests: watch::Sender::new(0),
            health_checks: watch::Sender::new(0),
            health_status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            held: watch::Sender::new(false),
            in_flight: watch::Sender::new(0),
            max_in_flight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            conns: Mutex::new(JoinSet::new()),
        });
        LbBackend {
            addr,
            name: name.to_string(),
            accept: Mutex::new(Some(accept_loop(listener, shared.clone()))),
            shared,
        }
    }

    /// Requests received so far (not counting `/health`).
    pub fn requests(&self) -> usize {
        *self.shared.requests.borrow()
    }

    /// `/health` requests received so far.
    pub fn health_checks(&self) -> usize {
        *self.shared.health_checks.borrow()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        *self.shared.in_flight.borrow()
    }

    /// The most requests ever handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The status `/health` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.shared.health_status.store(status, Ordering::SeqCst);
    }

    /// Requests are answered after `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// From now on requests wait (in flight) until [`LbBackend::release`].
    pub fn hold(&self) {
        self.shared.held.send_replace(true);
    }

    /// Lets held requests (and later ones) be answered.
    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    /// Waits until the number of requests in flight satisfies `pred`; false after `within`.
    pub async fn wait_in_flight(&self, within: Duration, pred: impl Fn(usize) -> bool) -> bool {
        wait_watch(&self.shared.in_flight, within, pred).await
    }

    /// Waits until the request count satisfies `pred`; false after `within`.
    pub async fn wait_requests(&self, within: Duration, pred: impl Fn(usize) -> bool) -> bool {
        wait_watch(&self.shared.requests, within, pred).await
    }

    /// Waits until the `/health` count satisfies `pred`; false after `within`.
    pub async fn wait_health_checks(&self, within: Duration, pred: impl Fn(usize) -> bool) -> bool {
        wait_watch(&self.shared.health_checks, within, pred).await
    }

    /// Stops listening and drops every connection at once (in-flight requests included):
    /// when this returns, the port is closed.
    pub async fn kill(&self) {
        let accept = self.accept.lock().unwrap().take();
        if let Some(accept) = accept {
            accept.abort();
            let _ = accept.await;
        }
        let mut conns = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        conns.shutdown().await;
    }

    /// Listens again on the same address (after [`LbBackend::kill`]).
    pub async fn revive(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("rebinding {}: {e}", self.addr));
        let mut accept = self.accept.lock().unwrap();
        assert!(accept.is_none(), "{} is still running", self.name);
        *accept = Some(accept_loop(listener, self.shared.clone()));
    }
}

impl Drop for LbBackend {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
        }
        self.shared.conns.lock().unwrap().abort_all();
    }
}

async fn wait_watch(
    sender: &watch::Sender<usize>,
    within: Duration,
    pred: impl Fn(usize) -> bool,
) -> bool {
    let mut rx = sender.subscribe();
    tokio::time::timeout(within, rx.wait_for(|n| pred(*n)))
        .await
        .is_ok_and(|r| r.is_ok())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let mut conns = shared.conns.lock().unwrap();
            while conns.try_join_next().is_some() {}
            conns.spawn(serve(stream, shared.clone()));
        }
    })
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let s = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let s = s.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, s).await) }
    });
    let io = TokioIo::new(stream);
    match shared.speaks {
        Speaks::Http1 => {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        }
        Speaks::H2c => {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await;
        }
    }
}

/// Counts a request in flight until dropped (also when its task is aborted).
struct InFlightGuard(Arc<Shared>);

impl InFlightGuard {
    fn new(shared: &Arc<Shared>) -> InFlightGuard {
        let mut now = 0;
        shared.in_flight.send_modify(|n| {
            *n += 1;
            now = *n;
        });
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(shared.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n -= 1);
    }
}

async fn handle(req: Request<Incoming>, s: Arc<Shared>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/health" {
        s.health_checks.send_modify(|n| *n += 1);
        let status = s.health_status.load(Ordering::SeqCst);
        return Response::builder()
            .status(status)
            .header("x-backend", s.name.as_str())
            .body(Full::new(Bytes::from_static(b"health\n")))
            .unwrap();
    }
    let _in_flight = InFlightGuard::new(&s);
    s.requests.send_modify(|n| *n += 1);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut held = s.held.subscribe();
    let _ = held.wait_for(|held| !*held).await;
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut text = format!("{} {} {}\n", s.name, parts.method, parts.uri.path()).into_bytes();
    text.extend_from_slice(&body);
    Response::builder()
        .header("x-backend", s.name.as_str())
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// Sends `req` with `client` and reads the whole reply within 10 s; errors as text.
pub async fn try_send(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    req: Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let fut = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        collect(resp).await
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

async fn collect<B>(resp: Response<B>) -> Result<Reply, String>
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e:?}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET path` to `proxy` over a fresh HTTP/1.1 connection made from `source` (any address in
/// 127.0.0.0/8 works on Linux), so the proxy sees that client address.
pub async fn get_from(source: Ipv4Addr, proxy: SocketAddr, path: &str) -> Reply {
    let fut = async {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from((source, 0)))
            .unwrap_or_else(|e| panic!("binding {source}: {e}"));
        let stream = socket.connect(proxy).await.expect("connect to the proxy");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "lb.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.expect("request failed");
        collect(resp).await.expect("reply")
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("request timed out")
}

/// One HTTP/2 (prior knowledge) connection to a server; requests on it are multiplexed.
#[derive(Clone)]
pub struct H2Connection {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    authority: String,
}

impl H2Connection {
    /// Opens the connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> H2Connection {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        H2Connection {
            sender,
            authority: addr.to_string(),
        }
    }

    /// `GET path` on this connection; the whole reply within 10 s.
    pub async fn get(&self, path: &str) -> Reply {
        let mut sender = self.sender.clone();
        let req = Request::get(format!("http://{}{path}", self.authority))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let fut = async {
            sender.ready().await.expect("connection ready");
            let resp = sender.send_request(req).await.expect("request failed");
            collect(resp).await.expect("reply")
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("request timed out")
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// The status of a reply that must be 200, with its `x-backend`.
pub fn backend_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.header("x-backend").to_string()
}

/// A gRPC test service, `maitred.test.Echo`, over h2c: `Unary` answers the text in upper case
/// (and `missing` with `NOT_FOUND`), `Stream` sends `count` messages then trailers with custom
/// metadata.
// tonic's `Status`, a large error type, is what its service and stream APIs require.
#[allow(clippy::result_large_err)]
pub mod grpc {
    use super::*;
    use std::task::{Context, Poll};
    use tonic::codec::ProstCodec;
    use tonic::metadata::MetadataMap;
    use tonic::{Code, Status};

    /// The request of both methods.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoRequest {
        /// Text to echo.
        #[prost(string, tag = "1")]
        pub text: String,
        /// `Stream`: how many messages to send.
        #[prost(uint32, tag = "2")]
        pub count: u32,
    }

    /// A reply message.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoReply {
        /// `Unary`: the text in upper case; `Stream`: `TEXT-SEQ`.
        #[prost(string, tag = "1")]
        pub text: String,
        /// The backend's name.
        #[prost(string, tag = "2")]
        pub backend: String,
        /// `Stream`: 0, 1, ...
        #[prost(uint32, tag = "3")]
        pub seq: u32,
        /// A payload of `seq` bytes of value `seq`, so lengths differ from message to message.
        #[prost(bytes = "vec", tag = "4")]
        pub payload: Vec<u8>,
    }

    /// The unary method's path.
    pub const UNARY: &str = "/maitred.test.Echo/Unary";
    /// The server-streaming method's path.
    pub const STREAM: &str = "/maitred.test.Echo/Stream";

    /// The checksum `Stream` sends in its `x-checksum` trailer: FNV-1a over the texts.
    pub fn checksum(texts: impl IntoIterator<Item = String>) -> String {
        let mut h = crate::l4::FNV_START;
        for t in texts {
            h = crate::l4::fnv1a(h, t.as_bytes());
        }
        format!("{h:016x}")
    }

    /// A gRPC backend (HTTP/2 prior knowledge) on 127.0.0.1.
    pub struct GrpcBackend {
        /// Where it listens.
        pub addr: SocketAddr,
        /// Its name (in every reply's `backend` and the `x-backend` metadata).
        pub name: String,
        calls: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    impl GrpcBackend {
        /// Starts the service.
        pub async fn start(name: &str) -> GrpcBackend {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let calls = Arc::new(AtomicUsize::new(0));
            let (c, n) = (calls.clone(), name.to_string());
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (c, n) = (c.clone(), n.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            c.fetch_add(1, Ordering::SeqCst);
                            let n = n.clone();
                            async move { Ok::<_, std::convert::Infallible>(route(req, n).await) }
                        });
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            GrpcBackend {
                addr,
                name: name.to_string(),
                calls,
                task,
            }
        }

        /// Calls received so far.
        pub fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Drop for GrpcBackend {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn route(req: Request<Incoming>, name: String) -> Response<tonic::body::Body> {
        match req.uri().path() {
            UNARY => {
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default())
                    .unary(Unary { name }, req)
                    .await
            }
            STREAM => {
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default())
                    .server_streaming(Streamer { name }, req)
                    .await
            }
            _ => {
                let mut resp = Response::new(tonic::body::Body::empty());
                let headers = resp.headers_mut();
                headers.insert("content-type", "application/grpc".parse().unwrap());
                headers.insert("grpc-status", "12".parse().unwrap());
                resp
            }
        }
    }

    struct Unary {
        name: String,
    }

    impl tower_service::Service<tonic::Request<EchoRequest>> for Unary {
        type Response = tonic::Response<EchoReply>;
        type Error = Status;
        type Future = std::future::Ready<Result<Self::Response, Status>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: tonic::Request<EchoRequest>) -> Self::Future {
            let request_id = req.metadata().get("x-request-id").cloned();
            let msg = req.into_inner();
            if msg.text == "missing" {
                let mut md = MetadataMap::new();
                md.insert("x-reason", "no-such-item".parse().unwrap());
                return std::future::ready(Err(Status::with_metadata(
                    Code::NotFound,
                    "no such item",
                    md,
                )));
            }
            let mut resp = tonic::Response::new(EchoReply {
                text: msg.text.to_uppercase(),
                backend: self.name.clone(),
                seq: 0,
                payload: Vec::new(),
            });
            resp.metadata_mut()
                .insert("x-backend", self.name.parse().unwrap());
            if let Some(id) = request_id {
                resp.metadata_mut().insert("x-request-id", id);
            }
            std::future::ready(Ok(resp))
        }
    }

    /// The stream `Stream` answers with.
    pub type ReplyStream =
        futures_util::stream::Iter<std::vec::IntoIter<Result<EchoReply, Status>>>;

    struct Streamer {
        name: String,
    }

    impl tower_service::Service<tonic::Request<EchoRequest>> for Streamer {
        type Response = tonic::Response<ReplyStream>;
        type Error = Status;
        type Future = std::future::Ready<Result<Self::Response, Status>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: tonic::Request<EchoRequest>) -> Self::Future {
            let msg = req.into_inner();
            let texts: Vec<String> = (0..msg.count)
                .map(|i| format!("{}-{i}", msg.text))
                .collect();
            let mut items: Vec<Result<EchoReply, Status>> = texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    Ok(EchoReply {
                        text: text.clone(),
                        backend: self.name.clone(),
                        seq: i as u32,
                        payload: vec![i as u8; i],
                    })
                })
                .collect();
            // The end of the stream: OK, with custom trailing metadata.
            let mut md = MetadataMap::new();
            md.insert("x-count", msg.count.to_string().parse().unwrap());
            md.insert("x-checksum", checksum(texts).parse().unwrap());
            md.insert("x-backend", self.name.parse().unwrap());
            items.push(Err(Status::with_metadata(Code::Ok, "", md)));
            std::future::ready(Ok(tonic::Response::new(futures_util::stream::iter(items))))
        }
    }

    /// A gRPC client over h2c (prior knowledge) to `url` (`http://HOST:PORT`).
    pub type Client = tonic::client::Grpc<
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            tonic::body::Body,
        >,
    >;

    /// A client of the service at `url`.
    pub fn client(url: &str) -> Client {
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        tonic::client::Grpc::with_origin(http, url.parse().unwrap())
    }

    /// Calls `Unary`.
    pub async fn unary(
        client: &mut Client,
        req: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        client
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        client
            .unary(
                req,
                http::uri::PathAndQuery::from_static(UNARY),
                ProstCodec::<EchoRequest, EchoReply>::default(),
            )
            .await
    }

    /// Calls `Stream`.
    pub async fn stream(
        client: &mut Client,
        req: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<tonic::codec::Streaming<EchoReply>>, Status> {
        client
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        client
            .server_streaming(
                req,
                http::uri::PathAndQuery::from_static(STREAM),
                ProstCodec::<EchoRequest, EchoReply>::default(),
            )
            .await
    }
}
