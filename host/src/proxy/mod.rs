//! The L7 request path, phase by phase.
//!
//! [`handle`] reads top to bottom as the life of a request:
//! 1. **validate** framing headers (smuggling shapes get 400);
//! 2. **route** by host and longest path prefix (no match: 404);
//! 3. **request filters**: the route's plugin chain may edit the head, pick another upstream,
//!    or answer directly;
//! 4. **cache** (routes with a `cache`): answer from the cache, or forward (conditionally when
//!    a stale copy can be revalidated) and store the response as it streams back;
//! 5. **choose an endpoint** with the upstream's balancer and **forward** over a pooled
//!    connection (connect failure 502, no response in time 504);
//! 6. **response filters**: the chain in reverse order may edit the response head (cache
//!    hits included);
//! 7. **log**, and stream the body back.
//!
//! A WebSocket (or other `Upgrade`) handshake takes the same path; when the upstream
//! answers `101 Switching Protocols`, [`upgrade`] pipes the two upgraded connections together.

pub mod body;
mod filters;
pub mod forward;
pub mod headers;
pub mod responses;
pub mod router;
pub mod upgrade;

pub use body::ProxyBody;
pub use headers::{request_authority, rewrite_path_and_query};

use crate::access_log::{self, AccessRecord};
use crate::cache::{Lookup, PluginCacheControl, Refresh};
use crate::config::Oversize;
use crate::plugin::{RequestView, ResponseView};
use crate::runtime::server::Shared;
use crate::runtime::{Route, Snapshot};
use crate::upstream::{Buffered, RequestBody, Upstream};
use filters::ChainRun;
use headers::Forwarding;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What every request on one client connection shares.
pub struct ConnectionContext {
    /// The server's shared state (the current snapshot).
    pub shared: Arc<Shared>,
    /// The listener the connection arrived on.
    pub listener: Arc<str>,
    /// The client's address.
    pub client: SocketAddr,
    /// The client's IP as a header value, for `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
}

impl ConnectionContext {
    /// The context of a new connection from `client` on `listener`, speaking `proto`
    /// (`http` or `https`).
    pub fn new(
        shared: Arc<Shared>,
        listener: Arc<str>,
        client: SocketAddr,
        proto: &'static str,
    ) -> Self {
        let client_ip = HeaderValue::from_str(&client.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        ConnectionContext {
            shared,
            listener,
            client,
            client_ip,
            proto,
        }
    }
}

/// Serves one request. Never fails: every problem becomes a small error response (the
/// `Result` is the shape hyper's services have; it is never `Err`).
///
/// Phases 1 and 2 ([`admit`]) are synchronous; only phases 3 to 7 ([`proxy_on_route`]) are a
/// future of their own. Every level of nested `async fn` costs a copy of the whole inner
/// future per request, so the path stays shallow.
pub async fn handle(
    conn: Arc<ConnectionContext>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let logged = access_log::enabled().then(|| {
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        (SystemTime::now(), req.method().clone(), path.to_owned())
    });
    let mut trace = Trace::starting(started);
    let snapshot = conn.shared.snapshot.load_full();
    let mut response = match admit(&conn, &snapshot, req) {
        Ok(admitted) => {
            let Admitted {
                route,
                parts,
                body,
                upgrade,
            } = admitted;
            trace.route = Some(route.index);
            let method = parts.method.clone();
            let response =
                proxy_on_route(&conn, &snapshot, route, parts, body, upgrade, &mut trace).await;
            route
                .metrics
                .record(&method, response.status(), trace.started.elapsed());
            response
        }
        Err(refused) => refused,
    };
    if let Some((time, method, path)) = logged {
        let record = AccessRecord {
            time,
            client: conn.client,
            method,
            path,
            status: response.status().as_u16(),
            bytes: 0,
            duration: Duration::ZERO,
            route: trace.route,
            upstream: trace.upstream.as_deref().unwrap_or_default().to_owned(),
            endpoint: trace.endpoint,
            plugin_time: trace.plugin_time,
        };
        response.body_mut().log_when_done(record, started);
    }
    Ok(response)
}

/// When a request started, and what the access log records about how it was served.
struct Trace {
    started: Instant,
    route: Option<usize>,
    upstream: Option<Arc<str>>,
    endpoint: Option<SocketAddr>,
    plugin_time: Duration,
}

impl Trace {
    fn starting(started: Instant) -> Trace {
        Trace {
            started,
            route: None,
            upstream: None,
            endpoint: None,
            plugin_time: Duration::ZERO,
        }
    }
}

/// A request that passed phases 1 and 2, split for the rest of its way.
struct Admitted<'s> {
    route: &'s Route,
    parts: http::request::Parts,
    body: Incoming,
    upgrade: Option<upgrade::Requested>,
}

/// Phases 1 and 2 (see the module docs): validate the request, then route it. `Err` is the
/// response that refuses it (400 or 404).
fn admit<'s>(
    conn: &ConnectionContext,
    snapshot: &'s Snapshot,
    mut req: Request<Incoming>,
) -> Result<Admitted<'s>, Response<ProxyBody>> {
    let upgrade = upgrade::Requested::take(&mut req);
    let (parts, body) = req.into_parts();

    // 1. validate
    let authority = match headers::validate_request(&parts) {
        Ok(authority) => authority,
        Err(rejection) => {
            tracing::debug!(client = %conn.client, "rejected request: {}", rejection.reason());
            return Err(responses::error(StatusCode::BAD_REQUEST));
        }
    };

    // 2. route
    let host = headers::host_without_port(authority);
    let Some(route) = snapshot.route(&conn.listener, host, parts.uri.path()) else {
        return Err(responses::error(StatusCode::NOT_FOUND));
    };
    Ok(Admitted {
        route,
        parts,
        body,
        upgrade,
    })
}

/// Phases 3 to 7 of a request that matched `route`.
async fn proxy_on_route(
    conn: &ConnectionContext,
    snapshot: &Snapshot,
    route: &Route,
    mut parts: http::request::Parts,
    body: Incoming,
    client_upgrade: Option<upgrade::Requested>,
    trace: &mut Trace,
) -> Response<ProxyBody> {
    // 3. request filters (with the whole body first, for plugins that read it)
    let (inbound, buffered) = match route.body_limit {
        None => (Inbound::Streaming(body), None),
        // Boxed, like every rare await on this path: the request's future stays small, and
        // hyper moves it several times per request.
        Some((max, oversize)) => match Box::pin(read_body(body, max, oversize)).await {
            Ok(read) => read,
            Err(status) => return responses::error(status),
        },
    };
    let mut chain = ChainRun::new(route);
    let mut upstream = &route.upstream;
    let mut cache_control = PluginCacheControl::default();
    if !route.request_plugins.is_empty() {
        let plugins_started = Instant::now();
        let view = RequestView {
            parts,
            client: conn.client,
            upstream: upstream.name.clone(),
            upstream_override: None,
            cache: PluginCacheControl::default(),
            body: buffered,
        };
        let filtered = chain.on_request(snapshot, view);
        trace.plugin_time += plugins_started.elapsed();
        match filtered {
            Ok(view) => {
                if let Some(name) = &view.upstream_override {
                    upstream = &snapshot.upstreams[name];
                }
                parts = view.parts;
                cache_control = view.cache;
            }
            Err(answer) => return *answer,
        }
    }
    trace.upstream = Some(upstream.name.clone());
    let forwarding = Forwarding {
        client_ip: &conn.client_ip,
        proto: conn.proto,
    };

    // 4. cache lookup: answer from the route's cache, or forward (maybe conditionally)
    let mut pending = None;
    if let Some(cache) = route.cache.as_ref().filter(|_| client_upgrade.is_none()) {
        match Box::pin(cache.lookup(&mut parts, cache_control)).await {
            Lookup::Answer(response, refresh) => {
                if let Some(refresh) = refresh {
                    refresh_in_background(upstream.clone(), refresh, forwarding, conn.client);
                }
                let (parts, body) = response.into_parts();
                return respond(route, &mut chain, parts, body, trace);
            }
            Lookup::Forward(forward) => pending = Some(forward),
        }
    }

    // 5. choose an endpoint and forward (retrying elsewhere when safe)
    let body = match inbound {
        Inbound::Ready(body) => body,
        Inbound::Streaming(body) => match RequestBody::prefetch(body).await {
            Ok(body) => body,
            Err(_) => return responses::error(StatusCode::BAD_REQUEST),
        },
    };
    headers::prepare_upstream_request(&mut parts, forwarding);
    if let Some(requested) = &client_upgrade {
        requested.restore(&mut parts.headers);
    }
    let method = parts.method.clone();
    // Boxed: the forwarding future is the largest part of a request's state, and inline it
    // would be copied again at every level above (hyper moves the request future too).
    let forwarded = match Box::pin(forward::forward(upstream, parts, body, conn.client)).await {
        Ok(forwarded) => forwarded,
        Err(failure) => {
            tracing::warn!(route = route.index, upstream = %upstream.name, "{}", failure.reason);
            let Some(pending) = pending else {
                return responses::error(failure.status);
            };
            let mut error = responses::error(failure.status);
            pending.mark(&mut error);
            return match pending.on_failure() {
                Some(stale) => {
                    let (parts, body) = stale.into_parts();
                    respond(route, &mut chain, parts, body, trace)
                }
                None => error,
            };
        }
    };
    let (endpoint, sticky_cookie, response) = (
        forwarded.endpoint,
        forwarded.sticky_cookie,
        forwarded.response,
    );
    trace.endpoint = Some(endpoint);
    let (response, switched) = match client_upgrade {
        Some(requested) => requested.accept(response),
        None => (response, None),
    };
    let upgraded = switched.is_some();
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = switched {
        upgrade::restore_response(&mut parts.headers, protocol);
    }
    let (mut parts, body) = match pending {
        Some(pending) => pending.on_response(parts, body).into_parts(),
        None => (parts, ProxyBody::upstream(body)),
    };
    if let Some(cookie) = sticky_cookie {
        parts.headers.append(http::header::SET_COOKIE, cookie);
    }
    tracing::debug!(
        route = route.index, upstream = %upstream.name, %endpoint, %method,
        status = parts.status.as_u16(), micros = trace.started.elapsed().as_micros() as u64, upgraded,
        "proxied"
    );
    respond(route, &mut chain, parts, body, trace)
}

/// The client's request body on its way to phase 5.
enum Inbound {
    /// Not read yet: streamed to the upstream.
    Streaming(Incoming),
    /// Read (all of it, or the start of a body too large to buffer).
    Ready(RequestBody),
}

/// Longest time to read a request body buffered for plugins (nginx's `client_body_timeout`).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the body for the route's plugins: all of it when it is at most `max` bytes (the
/// plugins get it); a larger one is 413, or with `oversize = "pass"` is forwarded with the
/// plugins seeing none. A malformed body is 400, a body that takes too long 408.
async fn read_body(
    body: Incoming,
    max: u64,
    oversize: Oversize,
) -> Result<(Inbound, Option<bytes::Bytes>), StatusCode> {
    match tokio::time::timeout(BODY_READ_TIMEOUT, RequestBody::buffer(body, max)).await {
        Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
        Ok(Err(_)) => Err(StatusCode::BAD_REQUEST),
        Ok(Ok(Buffered::Whole(bytes))) => Ok((
            Inbound::Ready(RequestBody::whole(bytes.clone())),
            Some(bytes),
        )),
        Ok(Ok(Buffered::TooLarge(body))) => match oversize {
            Oversize::Reject => Err(StatusCode::PAYLOAD_TOO_LARGE),
            Oversize::Pass => Ok((Inbound::Ready(body), None)),
        },
    }
}

/// Phases 6 and 7: the response filters (the chain in reverse order), then the response.
fn respond(
    route: &Route,
    chain: &mut ChainRun<'_>,
    mut parts: http::response::Parts,
    body: ProxyBody,
    trace: &mut Trace,
) -> Response<ProxyBody> {
    if !route.response_plugins.is_empty() {
        let plugins_started = Instant::now();
        let filtered = chain.on_response(ResponseView { parts });
        trace.plugin_time += plugins_started.elapsed();
        match filtered {
            Ok(view) => parts = view.parts,
            Err(answer) => return *answer,
        }
    }
    Response::from_parts(parts, body)
}

/// Revalidates a stale cached response in the background (`stale-while-revalidate`): sends
/// the conditional request to `upstream` and reads the answer to its end, which stores it.
fn refresh_in_background(
    upstream: Arc<Upstream>,
    refresh: Box<Refresh>,
    forwarding: Forwarding<'_>,
    client: SocketAddr,
) {
    let Refresh {
        mut request,
        pending,
    } = *refresh;
    headers::prepare_upstream_request(&mut request, forwarding);
    tokio::spawn(async move {
        match forward::forward(&upstream, request, RequestBody::empty(), client).await {
            Ok(forwarded) => {
                let (mut parts, body) = forwarded.response.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                let response = pending.on_response(parts, body);
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            }
            Err(failure) => {
                tracing::warn!(upstream = %upstream.name, "background revalidation failed: {}", failure.reason);
                let _ = pending.on_failure();
            }
        }
    });
}
