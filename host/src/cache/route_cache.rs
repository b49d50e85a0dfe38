//! A route's cache on the request path, in two phases the proxy calls around forwarding:
//!
//! 1. [`RouteCache::lookup`], before forwarding: answer from the store ([`Lookup::Answer`]:
//!    a fresh hit, a 304 to the client's own conditional, a stale copy under
//!    `stale-while-revalidate`, or 504 for `only-if-cached`), or let the request go to the
//!    origin ([`Lookup::Forward`]), made conditional when a stale copy can be revalidated.
//!    Concurrent misses for one key wait here for the first one's fetch (coalescing).
//! 2. [`Pending::on_response`] / [`Pending::on_failure`], when the origin answered or failed:
//!    store the response as it streams, refresh a revalidated copy (304), serve a stale copy
//!    on error (`stale-if-error`), or drop the entries an unsafe method changed.
//!
//! Every response of a cached route gets a `Cache-Status` header saying which of these
//! happened, and responses served from the store get `Age`.

use super::PluginCacheControl;
use super::capture::{CaptureBody, Destination};
use super::conditional;
use super::flight::{Flights, Leader, Outcome, Role};
use super::policy::{self, CacheControl, Freshness, NotStorable};
use super::status::{CacheStatus, Forward};
use super::store::{self, Found, Store, Stored};
use crate::config::CacheConfig;
use crate::metrics::{CacheMetrics, CacheResult};
use crate::proxy::ProxyBody;
use crate::upstream::UpstreamBody;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `Cache-Status` (RFC 9211).
static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// A route's cache: its store, the fetches under way, its settings.
pub struct RouteCache {
    store: Arc<Store>,
    flights: Arc<Flights>,
    config: CacheConfig,
    metrics: Arc<CacheMetrics>,
}

/// What to do with a request after [`RouteCache::lookup`].
pub enum Lookup {
    /// Send this response; when `refresh` is set, also revalidate the stored copy in the
    /// background (`stale-while-revalidate`).
    Answer(Response<ProxyBody>, Option<Box<Refresh>>),
    /// Forward the request, then hand the outcome to the [`Pending`].
    Forward(Pending),
}

/// A background revalidation to run: forward `request` (no body) and give the response to
/// `pending`, reading the body to its end.
pub struct Refresh {
    /// The conditional GET to send.
    pub request: http::request::Parts,
    /// What to do with the answer.
    pub pending: Pending,
}

/// A forwarded request the cache waits to hear about.
pub struct Pending {
    mode: Mode,
    status: CacheStatus,
    metrics: Arc<CacheMetrics>,
}

enum Mode {
    /// Not cacheable: pass the response through.
    Pass,
    /// An unsafe method: on success, drop what is stored for these keys.
    Invalidate {
        store: Arc<Store>,
        key: String,
        authority: String,
    },
    /// A miss: store the response if it may be.
    Fill(Box<Fill>),
    /// A stale copy is being revalidated (conditionally when it has validators): refresh it
    /// on 304, serve it on error when allowed, else treat the answer as a miss.
    Revalidate {
        fill: Box<Fill>,
        stored: Arc<Stored>,
        /// The client's own `If-None-Match`/`If-Modified-Since`, to answer after a 304.
        client_conditionals: HeaderMap,
        /// The stale copy may be served if the origin fails.
        may_serve_if_error: bool,
    },
}

/// What storing a response needs to know about its request.
struct Fill {
    store: Arc<Store>,
    key: String,
    leader: Option<Leader>,
    request_headers: HeaderMap,
    request_cc: CacheControl,
    request_time: SystemTime,
    ttl: Option<Duration>,
    max_object_size: u64,
    head_only: bool,
}

/// The unsafe methods, whose success invalidates what is stored for the URI (§4.4).
fn is_unsafe(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    )
}

impl RouteCache {
    /// An empty cache with `config`'s bounds, counting into metrics labelled `route`.
    pub fn new(config: &CacheConfig, route: &str) -> RouteCache {
        RouteCache {
            store: Arc::new(Store::new(config.max_size)),
            flights: Arc::default(),
            config: config.clone(),
            metrics: Arc::new(CacheMetrics::new(route)),
        }
    }

    /// Whether this cache was made with `config` (a reload keeps it then).
    pub fn has_config(&self, config: &CacheConfig) -> bool {
        self.config == *config
    }

    /// The store, for purges and statistics.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Phase 1 (see the module docs): answer from the store, or say how to forward.
    /// `parts` is the request as it will be forwarded; it is made conditional when a stale
    /// copy is revalidated.
    pub async fn lookup(
        &self,
        parts: &mut http::request::Parts,
        plugin: PluginCacheControl,
    ) -> Lookup {
        let PluginCacheControl { key, bypass, ttl } = plugin;
        if let Some(reason) = bypass {
            let mut status = CacheStatus::forwarded(Forward::Bypass);
            status.detail = Some(reason);
            return self.forward(Mode::Pass, status, CacheResult::Bypass);
        }
        let key = key.unwrap_or_else(|| super::default_key(parts));
        if is_unsafe(&parts.method) {
            let authority = crate::proxy::request_authority(parts)
                .unwrap_or_default()
                .to_ascii_lowercase();
            let mode = Mode::Invalidate {
                store: self.store.clone(),
                key,
                authority,
            };
            return self.forward(
                mode,
                CacheStatus::forwarded(Forward::Method),
                CacheResult::Bypass,
            );
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return self.forward(
                Mode::Pass,
                CacheStatus::forwarded(Forward::Method),
                CacheResult::Bypass,
            );
        }
        let head_only = parts.method == Method::HEAD;
        let mut request_cc = CacheControl::parse(&parts.headers);
        if !parts.headers.contains_key(header::CACHE_CONTROL) && pragma_no_cache(&parts.headers) {
            request_cc.no_cache = Some(policy::FieldScope::All);
        }
        let mut collapsed = false;
        let mut coalesce = true;
        loop {
            let found = self.store.find(&key, &parts.headers);
            let fill = |leader| {
                Box::new(Fill {
                    store: self.store.clone(),
                    key: key.clone(),
                    leader,
                    request_headers: parts.headers.clone(),
                    request_cc: request_cc.clone(),
                    request_time: SystemTime::now(),
                    ttl,
                    max_object_size: self.config.max_object_size,
                    head_only,
                })
            };
            let stored = match found {
                Found::Variant(stored) => stored,
                found => {
                    let fwd = match found {
                        Found::OtherVariants => Forward::VaryMiss,
                        _ => Forward::UriMiss,
                    };
                    if request_cc.only_if_cached {
                        return self.only_if_cached();
                    }
                    if head_only {
                        // HEAD misses are forwarded as they are and not stored.
                        return self.forward(
                            Mode::Pass,
                            CacheStatus::forwarded(fwd),
                            CacheResult::Miss,
                        );
                    }
                    let Some(leader) = self.lead_or_wait(&key, &mut coalesce, &mut collapsed).await
                    else {
                        continue;
                    };
                    let status = CacheStatus::forwarded(fwd);
                    return self.forward(Mode::Fill(fill(leader)), status, CacheResult::Miss);
                }
            };

            let age = stored.age(SystemTime::now());
            let ttl_left = stored.lifetime.as_secs() as i64 - age.as_secs() as i64;
            let hit = |detail: Option<&str>| CacheStatus {
                hit: true,
                ttl: Some(ttl_left),
                collapsed,
                detail: detail.map(str::to_owned),
                ..CacheStatus::default()
            };
            let (may_serve_if_error, fwd) =
                match policy::freshness(stored.lifetime, age, &stored.cc, &request_cc) {
                    Freshness::Fresh | Freshness::AcceptedStale => {
                        let result = if collapsed {
                            CacheResult::Collapsed
                        } else {
                            CacheResult::Hit
                        };
                        self.metrics.record(result);
                        let response = answer(&stored, &parts.headers, head_only, age, &hit(None));
                        return Lookup::Answer(response, None);
                    }
                    Freshness::Stale {
                        may_serve_while_revalidate: true,
                        ..
                    } if !head_only => {
                        self.metrics.record(CacheResult::Stale);
                        let status = hit(Some("stale-while-revalidate"));
                        let response = answer(&stored, &parts.headers, false, age, &status);
                        let refresh = match self.flights.join(&key) {
                            Role::Leader(leader) => {
                                self.refresh(parts, &stored, fill(Some(leader)))
                            }
                            Role::Follower(_) => None,
                        };
                        return Lookup::Answer(response, refresh);
                    }
                    Freshness::Stale {
                        may_serve_if_error, ..
                    } => (may_serve_if_error, Forward::Stale),
                    Freshness::MustRevalidate if request_cc.no_cache.is_some() => {
                        (false, Forward::Request)
                    }
                    Freshness::MustRevalidate => (false, Forward::Stale),
                };
            if request_cc.only_if_cached {
                return self.only_if_cached();
            }
            if head_only {
                return self.forward(Mode::Pass, CacheStatus::forwarded(fwd), CacheResult::Miss);
            }
            let Some(leader) = self.lead_or_wait(&key, &mut coalesce, &mut collapsed).await else {
                continue;
            };
            let client_conditionals = conditionals(&parts.headers);
            let fill = fill(leader);
            // Without validators this is a plain fetch, but the stale copy is still there
            // for `stale-if-error`.
            conditional::add_validators(&mut parts.headers, &stored.headers);
            let mode = Mode::Revalidate {
                fill,
                stored,
                client_conditionals,
                may_serve_if_error,
            };
            return self.forward(mode, CacheStatus::forwarded(fwd), CacheResult::Miss);
        }
    }

    /// Joins the fetch of `key` before going to the origin. `Some(leader)`: fetch it (with
    /// `None` when not coalescing any more); `None`: another request fetched it meanwhile,
    /// look again (`collapsed` is set when it was stored, else `coalesce` is cleared so the
    /// next miss goes to the origin without waiting again).
    async fn lead_or_wait(
        &self,
        key: &str,
        coalesce: &mut bool,
        collapsed: &mut bool,
    ) -> Option<Option<Leader>> {
        if !*coalesce {
            return Some(None);
        }
        match self.flights.join(key) {
            Role::Leader(leader) => Some(Some(leader)),
            Role::Follower(follower) => {
                match follower.wait(self.config.lock_timeout).await {
                    Outcome::Stored => *collapsed = true,
                    _ => *coalesce = false,
                }
                None
            }
        }
    }

    fn forward(&self, mode: Mode, status: CacheStatus, result: CacheResult) -> Lookup {
        if !matches!(mode, Mode::Revalidate { .. }) {
            self.metrics.record(result);
        }
        Lookup::Forward(Pending {
            mode,
            status,
            metrics: self.metrics.clone(),
        })
    }

    /// 504 for an `only-if-cached` request that the store cannot answer (§5.2.1.7).
    fn only_if_cached(&self) -> Lookup {
        self.metrics.record(CacheResult::Miss);
        let mut response = crate::proxy::responses::error(StatusCode::GATEWAY_TIMEOUT);
        let status = CacheStatus {
            detail: Some("only-if-cached".into()),
            ..CacheStatus::default()
        };
        response
            .headers_mut()
            .insert(CACHE_STATUS.clone(), status.header_value());
        Lookup::Answer(response, None)
    }

    /// The background revalidation of `stored` for a request like `parts`.
    fn refresh(
        &self,
        parts: &http::request::Parts,
        stored: &Arc<Stored>,
        fill: Box<Fill>,
    ) -> Option<Box<Refresh>> {
        let (mut request, ()) = http::Request::builder()
            .method(Method::GET)
            .uri(parts.uri.clone())
            .version(parts.version)
            .body(())
            .ok()?
            .into_parts();
        request.headers = parts.headers.clone();
        conditional::add_validators(&mut request.headers, &stored.headers);
        let mode = Mode::Revalidate {
            fill,
            stored: stored.clone(),
            client_conditionals: HeaderMap::new(),
            may_serve_if_error: false,
        };
        Some(Box::new(Refresh {
            request,
            pending: Pending {
                mode,
                status: CacheStatus::forwarded(Forward::Stale),
                metrics: self.metrics.clone(),
            },
        }))
    }
}

impl Pending {
    /// Phase 2: the origin answered with `parts` (hop-by-hop headers already removed) and
    /// `body`. Returns the response for the client.
    pub fn on_response(
        self,
        mut parts: http::response::Parts,
        body: UpstreamBody,
    ) -> Response<ProxyBody> {
        let Pending {
            mode,
            mut status,
            metrics,
        } = self;
        status.fwd_status = status.fwd.is_some().then_some(parts.status.as_u16());
        let body = match mode {
            Mode::Pass => ProxyBody::upstream(body),
            Mode::Invalidate {
                store,
                key,
                authority,
            } => {
                if parts.status.is_success() || parts.status.is_redirection() {
                    invalidate(&store, &key, &authority, &parts.headers);
                }
                ProxyBody::upstream(body)
            }
            Mode::Fill(fill) => fill.fill(&mut parts, body, &mut status, false),
            Mode::Revalidate {
                fill,
                stored,
                client_conditionals,
                may_serve_if_error,
            } => {
                if parts.status == StatusCode::NOT_MODIFIED {
                    metrics.record(CacheResult::Revalidated);
                    return fill.refreshed(&stored, &parts.headers, &client_conditionals, &status);
                }
                if may_serve_if_error && is_error(parts.status) {
                    metrics.record(CacheResult::Stale);
                    status.detail = Some("stale-if-error".into());
                    return stale_answer(&stored, &fill.request_headers, &status);
                }
                metrics.record(CacheResult::Miss);
                fill.fill(&mut parts, body, &mut status, true)
            }
        };
        parts
            .headers
            .insert(CACHE_STATUS.clone(), status.header_value());
        Response::from_parts(parts, body)
    }

    /// Phase 2 when the origin could not be reached or gave no answer in time: the stale
    /// copy when `stale-if-error` allows it, else `None` (the caller sends its error).
    pub fn on_failure(self) -> Option<Response<ProxyBody>> {
        match self.mode {
            Mode::Revalidate {
                fill,
                stored,
                may_serve_if_error: true,
                ..
            } => {
                self.metrics.record(CacheResult::Stale);
                let mut status = self.status;
                status.detail = Some("stale-if-error".into());
                Some(stale_answer(&stored, &fill.request_headers, &status))
            }
            Mode::Revalidate { .. } => {
                self.metrics.record(CacheResult::Miss);
                None
            }
            _ => None,
        }
    }

    /// Adds this request's `Cache-Status` to an error response made by the proxy.
    pub fn mark(&self, response: &mut Response<ProxyBody>) {
        response
            .headers_mut()
            .insert(CACHE_STATUS.clone(), self.status.header_value());
    }
}

impl Fill {
    /// A new response from the origin: store it as it streams if it may be stored.
    /// `replaces`: it answered the revalidation of a stored response.
    fn fill(
        self: Box<Self>,
        parts: &mut http::response::Parts,
        body: UpstreamBody,
        status: &mut CacheStatus,
        replaces: bool,
    ) -> ProxyBody {
        match self.storable(parts) {
            Ok(head) => {
                status.stored = true;
                let Fill {
                    store,
                    key,
                    leader,
                    max_object_size,
                    ..
                } = *self;
                let destination = Destination {
                    store,
                    key,
                    head,
                    max_object_size,
                    leader,
                };
                ProxyBody::caching(CaptureBody::new(body, destination))
            }
            Err(why) => {
                status.detail = Some(why.to_owned());
                if replaces && !parts.status.is_server_error() {
                    // The origin sent a new response that may not be stored: the stored one
                    // is outdated.
                    self.store.remove(&self.key);
                }
                ProxyBody::upstream(body)
            }
        }
    }

    /// Everything but the body of the response to store, or why it must not be stored.
    fn storable(&self, parts: &http::response::Parts) -> Result<Stored, &'static str> {
        let response_cc = CacheControl::parse(&parts.headers);
        policy::is_storable(
            &Method::GET,
            &self.request_headers,
            parts.status,
            &parts.headers,
            &self.request_cc,
            &response_cc,
        )
        .map_err(NotStorable::detail)?;
        let response_time = SystemTime::now();
        let lifetime = self.ttl.unwrap_or_else(|| {
            policy::freshness_lifetime(parts.status, &parts.headers, &response_cc, response_time)
        });
        let validators = parts.headers.contains_key(header::ETAG)
            || parts.headers.contains_key(header::LAST_MODIFIED);
        if lifetime.is_zero() && !validators {
            return Err("no-freshness");
        }
        let too_large = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|length| length > self.max_object_size);
        if too_large {
            return Err("too-large");
        }
        let mut headers = parts.headers.clone();
        headers.remove(header::SET_COOKIE);
        Ok(Stored {
            status: parts.status,
            vary: store::vary_values(&parts.headers, &self.request_headers),
            headers,
            body: bytes::Bytes::new(),
            request_time: self.request_time,
            response_time,
            lifetime,
            cc: response_cc,
        })
    }

    /// A 304 answered the revalidation of `stored`: refresh it and answer from it.
    fn refreshed(
        self: Box<Self>,
        stored: &Stored,
        not_modified: &HeaderMap,
        client_conditionals: &HeaderMap,
        status: &CacheStatus,
    ) -> Response<ProxyBody> {
        let headers = conditional::refreshed_headers(&stored.headers, not_modified);
        let cc = CacheControl::parse(&headers);
        let response_time = SystemTime::now();
        let lifetime = self.ttl.unwrap_or_else(|| {
            policy::freshness_lifetime(stored.status, &headers, &cc, response_time)
        });
        let refreshed = Arc::new(Stored {
            status: stored.status,
            headers,
            body: stored.body.clone(),
            request_time: self.request_time,
            response_time,
            lifetime,
            cc,
            vary: stored.vary.clone(),
        });
        self.store.insert(&self.key, refreshed.clone());
        if let Some(leader) = self.leader {
            leader.finish(Outcome::Stored);
        }
        let age = refreshed.age(SystemTime::now());
        answer(&refreshed, client_conditionals, self.head_only, age, status)
    }
}

/// A response from the store: a 304 when the client's conditionals in `request` match it,
/// else the stored response (without a body for HEAD), with `Age` and `Cache-Status`.
fn answer(
    stored: &Stored,
    request: &HeaderMap,
    head_only: bool,
    age: Duration,
    status: &CacheStatus,
) -> Response<ProxyBody> {
    let get_ok = stored.status == StatusCode::OK;
    let (status_code, mut headers, body) =
        if get_ok && conditional::not_modified(request, &stored.headers) {
            (
                StatusCode::NOT_MODIFIED,
                conditional::not_modified_headers(&stored.headers),
                ProxyBody::full(bytes::Bytes::new()),
            )
        } else {
            let body = if head_only {
                ProxyBody::full(bytes::Bytes::new())
            } else {
                ProxyBody::full(stored.body.clone())
            };
            (stored.status, stored.headers.clone(), body)
        };
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    headers.insert(CACHE_STATUS.clone(), status.header_value());
    let mut response = Response::new(body);
    *response.status_mut() = status_code;
    *response.headers_mut() = headers;
    response
}

/// The stale copy served when the origin failed (`stale-if-error`).
fn stale_answer(stored: &Stored, request: &HeaderMap, status: &CacheStatus) -> Response<ProxyBody> {
    answer(
        stored,
        request,
        false,
        stored.age(SystemTime::now()),
        status,
    )
}

/// The statuses that count as an origin error for `stale-if-error` (RFC 5861 §4).
fn is_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Whether `Pragma` says `no-cache` (honoured only without `Cache-Control`, RFC 9111 §5.4).
fn pragma_no_cache(headers: &HeaderMap) -> bool {
    headers.get_all(header::PRAGMA).iter().any(|line| {
        line.as_bytes()
            .split(|&b| b == b',')
            .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-cache"))
    })
}

/// The client's `If-None-Match` and `If-Modified-Since` lines.
fn conditionals(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
        for value in headers.get_all(&name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Drops what is stored for `key`, and for the same-host URIs in the response's `Location`
/// and `Content-Location` (RFC 9111 §4.4), taken as default keys on `authority`.
fn invalidate(store: &Store, key: &str, authority: &str, response: &HeaderMap) {
    store.remove(key);
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(target) = response.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Ok(uri) = target.parse::<http::Uri>() else {
            continue;
        };
        let same_host = uri
            .authority()
            .is_none_or(|a| a.as_str().eq_ignore_ascii_case(authority));
        if same_host {
            let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
            store.remove(&super::key(authority, path));
        }
    }
}
