//! For the HTTP cache tests: an origin whose answers are scripted per path (status, headers,
//! body, chunking, delay, failure) and which logs every request it gets, so a test can say
//! exactly how often the origin was reached and with which (conditional) headers; a proxy
//! config with one caching route; HTTP-dates; and small client helpers.
//!
//! The origin answers a conditional request (`If-None-Match` against the scripted `ETag`,
//! else `If-Modified-Since` against the scripted `Last-Modified`) with `304 Not Modified`,
//! as a real server does, unless the script says otherwise.

use crate::{Reply, http1_client, send};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------
// Scripted answers
// ---------------------------------------------------------------------------------------

/// What the origin answers on one path.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status of a full answer.
    pub status: u16,
    /// Headers, in order (a `date` here replaces the one hyper would add).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
    /// Send the body as chunks of this size without `Content-Length` (chunked encoding).
    pub chunked: Option<usize>,
    /// Wait this long (after counting the request) before answering.
    pub delay: Duration,
    /// Request headers whose values are appended to the body as `\nNAME=VALUE`.
    pub echo: Vec<String>,
    /// Append `#N` to the body, N being how many requests this path has had (1 for the first).
    pub serial: bool,
    /// Answer conditionals that match with 304 (default true).
    pub conditional: bool,
    /// Extra headers for 304 answers only.
    pub headers_304: Vec<(String, String)>,
    /// Close the connection instead of answering.
    pub reset: bool,
    /// Send only this many body bytes, then fail the body (the connection is cut short).
    pub truncate: Option<usize>,
}

impl Answer {
    /// `200` with `body` and no caching headers.
    pub fn ok(body: &str) -> Answer {
        Answer {
            status: 200,
            headers: Vec::new(),
            body: Bytes::from(body.to_string()),
            chunked: None,
            delay: Duration::ZERO,
            echo: Vec::new(),
            serial: false,
            conditional: true,
            headers_304: Vec::new(),
            reset: false,
            truncate: None,
        }
    }

    /// `status` with `body`.
    pub fn status(status: u16, body: &str) -> Answer {
        Answer {
            status,
            ..Answer::ok(body)
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds `Cache-Control: value`.
    pub fn cc(self, value: &str) -> Answer {
        self.header("cache-control", value)
    }

    /// Adds `ETag: value` (give the quotes).
    pub fn etag(self, value: &str) -> Answer {
        self.header("etag", value)
    }

    /// Replaces the body with raw bytes.
    pub fn bytes(mut self, body: Vec<u8>) -> Answer {
        self.body = Bytes::from(body);
        self
    }

    /// Sends the body chunked, `chunk` bytes at a time.
    pub fn chunked(mut self, chunk: usize) -> Answer {
        self.chunked = Some(chunk.max(1));
        self
    }

    /// Answers after `delay`.
    pub fn delay(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }

    /// Appends the value of request header `name` to the body.
    pub fn echo(mut self, name: &str) -> Answer {
        self.echo.push(name.to_ascii_lowercase());
        self
    }

    /// Appends `#N` (the path's request count) to the body.
    pub fn serial(mut self) -> Answer {
        self.serial = true;
        self
    }

    /// Never answers 304.
    pub fn unconditional(mut self) -> Answer {
        self.conditional = false;
        self
    }

    /// Adds a header to 304 answers only.
    pub fn header_304(mut self, name: &str, value: &str) -> Answer {
        self.headers_304.push((name.to_string(), value.to_string()));
        self
    }

    /// Closes the connection instead of answering.
    pub fn reset(mut self) -> Answer {
        self.reset = true;
        self
    }

    /// Sends only the first `n` body bytes (the head still announces the whole body when
    /// it has a `Content-Length`), then cuts the connection.
    pub fn truncate(mut self, n: usize) -> Answer {
        self.truncate = Some(n);
        self
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request the origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// Path and `?query`.
    pub uri: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The status the origin answered (0 for a reset).
    pub status: u16,
}

impl Seen {
    /// A request header as text, "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    /// Keyed by `METHOD path?query`, `METHOD path`, `path?query` or `path` (tried in that order).
    answers: Mutex<HashMap<String, Answer>>,
    log: Mutex<Vec<Seen>>,
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
    stopped: AtomicBool,
}

/// The scripted origin, on 127.0.0.1 with an ephemeral port. Paths without an answer get
/// `200 origin` without caching headers.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Starts it.
    pub async fn start() -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let s = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s2 = s.clone();
                let conn = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let s = s2.clone();
                        async move { answer(&s, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut conns = s.connections.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn.abort_handle());
            }
        });
        Origin {
            addr,
            state,
            accept,
        }
    }

    /// Scripts the answer for `path` (exact `path?query` when it has a query), any method.
    pub fn set(&self, path: &str, answer: Answer) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(path.to_string(), answer);
    }

    /// Scripts the answer for `METHOD path` only.
    pub fn set_for(&self, method: &str, path: &str, answer: Answer) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(format!("{method} {path}"), answer);
    }

    /// Every request received so far.
    pub fn log(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }

    /// The requests for `path` (the exact `path?query` when `path` has a `?`), any method.
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.log()
            .into_iter()
            .filter(|s| {
                if path.contains('?') {
                    s.uri == path
                } else {
                    s.path == path
                }
            })
            .collect()
    }

    /// How many requests reached `path` (see [`Origin::requests`]).
    pub fn hits(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    /// How many `method` requests reached `path`.
    pub fn hits_by(&self, method: &str, path: &str) -> usize {
        self.requests(path)
            .iter()
            .filter(|s| s.method == method)
            .count()
    }

    /// How many of `path`'s requests were answered 304.
    pub fn not_modified(&self, path: &str) -> usize {
        self.requests(path)
            .iter()
            .filter(|s| s.status == 304)
            .count()
    }

    /// All requests received.
    pub fn total(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// Stops listening and closes every open connection; returns once connecting is refused.
    pub async fn stop(&self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.accept.abort();
        for c in self.state.connections.lock().unwrap().drain(..) {
            c.abort();
        }
        crate::ops::wait_refused(self.addr, Duration::from_secs(5))
            .await
            .expect("origin stops");
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.state.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

fn lookup(state: &State, method: &str, path: &str, uri: &str) -> Answer {
    let answers = state.answers.lock().unwrap();
    [
        format!("{method} {uri}"),
        format!("{method} {path}"),
        uri.to_string(),
        path.to_string(),
    ]
    .iter()
    .find_map(|k| answers.get(k).cloned())
    .unwrap_or_else(|| Answer::ok("origin"))
}

/// Weak comparison of an `If-None-Match` list against an entity tag.
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let etag = strip(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == etag)
}

async fn answer(state: &State, req: Request<Incoming>) -> Result<Response<OriginBody>, String> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map_or(path.clone(), |pq| pq.to_string());
    let headers = req.headers().clone();
    let answer = lookup(state, &method, &path, &uri);
    let index = {
        let mut log = state.log.lock().unwrap();
        log.push(Seen {
            method: method.clone(),
            path: path.clone(),
            uri: uri.clone(),
            headers: headers.clone(),
            status: 0,
        });
        log.len() - 1
    };
    let nth = state
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == path)
        .count();
    // Drain the request body (POST and friends).
    let _ = http_body_util::BodyExt::collect(req.into_body()).await;
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    if answer.reset {
        return Err("reset".into());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let not_modified = answer.conditional
        && (method == "GET" || method == "HEAD")
        && answer.status == 200
        && match (header("if-none-match"), answer.get("etag")) {
            (Some(inm), Some(etag)) => etag_matches(inm, etag),
            (Some(_), None) => false,
            (None, _) => match (header("if-modified-since"), answer.get("last-modified")) {
                (Some(ims), Some(lm)) => match (parse_http_date(ims), parse_http_date(lm)) {
                    (Some(ims), Some(lm)) => lm <= ims,
                    _ => false,
                },
                _ => false,
            },
        };
    let mut b = Response::builder();
    let status = if not_modified {
        // RFC 9110 §15.4.5: the fields a 200 would have carried that describe the
        // representation's caching, plus the 304-only extras; hyper adds a current `Date`.
        for (k, v) in &answer.headers {
            let k_l = k.to_ascii_lowercase();
            if matches!(
                k_l.as_str(),
                "etag"
                    | "last-modified"
                    | "cache-control"
                    | "expires"
                    | "vary"
                    | "content-location"
            ) {
                b = b.header(k, v);
            }
        }
        for (k, v) in &answer.headers_304 {
            b = b.header(k, v);
        }
        304
    } else {
        for (k, v) in &answer.headers {
            b = b.header(k, v);
        }
        answer.status
    };
    b = b.status(status);
    let body = if status == 304 {
        OriginBody::full(Bytes::new())
    } else {
        let mut body = answer.body.to_vec();
        for name in &answer.echo {
            body.extend_from_slice(format!("\n{name}={}", header(name).unwrap_or("")).as_bytes());
        }
        if answer.serial {
            body.extend_from_slice(format!("#{nth}").as_bytes());
        }
        let mut body = match answer.chunked {
            Some(size) => OriginBody::chunks(&body, size),
            None => OriginBody::full(Bytes::from(body)),
        };
        if let Some(n) = answer.truncate {
            body.cut(n);
        }
        body
    };
    state.log.lock().unwrap()[index].status = status;
    Ok(b.body(body).unwrap())
}

/// A body sent whole (with `Content-Length`) or as chunks (without), possibly failing
/// part way.
pub struct OriginBody {
    chunks: VecDeque<Bytes>,
    length: Option<u64>,
    fail: bool,
    /// Before failing, a pause that lets the head and the bytes before the cut leave.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl OriginBody {
    fn full(bytes: Bytes) -> OriginBody {
        let length = Some(bytes.len() as u64);
        let chunks = if bytes.is_empty() {
            VecDeque::new()
        } else {
            VecDeque::from([bytes])
        };
        OriginBody {
            chunks,
            length,
            fail: false,
            pause: None,
        }
    }

    fn chunks(bytes: &[u8], size: usize) -> OriginBody {
        OriginBody {
            chunks: bytes.chunks(size).map(Bytes::copy_from_slice).collect(),
            length: None,
            fail: false,
            pause: None,
        }
    }

    /// Keeps the first `n` bytes and fails after them.
    fn cut(&mut self, n: usize) {
        let mut left = n;
        let mut kept = VecDeque::new();
        for mut c in self.chunks.drain(..) {
            if left == 0 {
                break;
            }
            if c.len() > left {
                c.truncate(left);
            }
            left -= c.len();
            kept.push_back(c);
        }
        self.chunks = kept;
        self.fail = true;
        self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(200))));
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(c) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(c))));
        }
        if self.fail {
            if let Some(pause) = self.pause.as_mut() {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.pause = None;
            }
            self.fail = false;
            return Poll::Ready(Some(Err(std::io::Error::other(
                "origin cut the body short",
            ))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.length.is_some() && self.chunks.is_empty() && !self.fail
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Proxy configs
// ---------------------------------------------------------------------------------------

/// A config: one worker, `[admin]` on an ephemeral loopback port, listener `web`, and one
/// route to `origin` with `cache = CACHE` (a TOML inline table; "" for no cache). The
/// upstream makes no retries, so origin counts are exact.
pub fn cache_config(origin: SocketAddr, cache: &str) -> String {
    cache_config_with(1, origin, &[("/", cache)])
}

/// Like [`cache_config`] with `workers` and one route per `(path_prefix, cache)`.
pub fn cache_config_with(workers: usize, origin: SocketAddr, routes: &[(&str, &str)]) -> String {
    let mut toml = format!(
        "[runtime]\nworkers = {workers}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n"
    );
    for (prefix, cache) in routes {
        toml.push_str(&format!(
            "[[route]]\nlistener = \"web\"\npath_prefix = \"{prefix}\"\nupstream = \"origin\"\n"
        ));
        if !cache.is_empty() {
            toml.push_str(&format!("cache = {cache}\n"));
        }
    }
    toml.push_str(&format!(
        "[upstream.origin]\nendpoints = [\"{origin}\"]\nretries = 0\n"
    ));
    toml
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// `METHOD url` with headers and a body, over a fresh HTTP/1.1 client (10 s limit).
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(
        &http1_client(),
        b.body(Full::new(Bytes::from(body.to_string()))).unwrap(),
    )
    .await
}

/// `GET url` over a fresh HTTP/1.1 client (10 s limit): the reply, or why there is no
/// complete one (the connection failed or the body was cut short).
pub async fn try_get(url: &str) -> Result<Reply, String> {
    let fut = async {
        let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        let resp = http1_client()
            .request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = http_body_util::BodyExt::collect(body)
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
        .map_err(|_| "timed out".to_string())?
}

/// The `Cache-Status` of a reply ("" when absent).
pub fn cache_status(reply: &Reply) -> &str {
    reply.header("cache-status")
}

/// The `Age` of a reply in seconds, `None` when absent or not a number.
pub fn age(reply: &Reply) -> Option<u64> {
    reply.header("age").trim().parse().ok()
}

/// The `ttl` parameter of a `Cache-Status` value.
pub fn cache_status_ttl(value: &str) -> Option<i64> {
    value
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("ttl="))
        .and_then(|t| t.parse().ok())
}

/// `s` percent-encoded for a query value (everything but unreserved characters).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `n` bytes of printable ASCII in a pattern that does not repeat every power of two.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b'a' + ((i * 7 + i / 251) % 26) as u8)
        .collect()
}

/// A unique number, for bodies that must differ between tests and runs.
pub fn unique() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------
// HTTP-dates (IMF-fixdate)
// ---------------------------------------------------------------------------------------

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `t` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The HTTP-date `secs` seconds from now (negative: in the past).
pub fn http_date_in(secs: i64) -> String {
    let now = SystemTime::now();
    let t = if secs >= 0 {
        now + Duration::from_secs(secs as u64)
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    };
    http_date(t)
}

/// Parses an IMF-fixdate.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let d: i64 = parts[1].parse().ok()?;
    let m = MONTHS.iter().position(|x| *x == parts[2])? as i64 + 1;
    let y: i64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let secs = days as u64 * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

// Howard Hinnant's algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        let now = UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            );
        assert_eq!(parse_http_date(&http_date(now)), Some(now));
    }

    #[test]
    fn weak_etag_comparison() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("W/\"a\", \"b\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }
}
