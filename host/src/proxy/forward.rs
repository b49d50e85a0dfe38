//! Phases 4 and 5 of a request: choose an endpoint and forward, retrying on another
//! endpoint when that is safe.
//!
//! A retry happens only when all of these hold: the attempt failed before any response
//! byte (connect failure, TLS failure, reset); the method is idempotent; the body is small
//! enough to have been kept (see [`RequestBody::replay_copy`]); the upstream's `retries` are
//! not used up; and its retry budget allows one more retry in flight. Every failure counts
//! toward the endpoint's passive health.

use crate::upstream::balancer::Target;
use crate::upstream::{ForwardError, RequestBody, Unavailable, Upstream, UpstreamBody};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use std::net::SocketAddr;

/// A forwarded request's response, and the cookie to pin the client to the endpoint that
/// answered (sticky sessions).
pub struct Forwarded {
    /// The upstream's response (its body holds the attempt's in-flight count).
    pub response: Response<UpstreamBody>,
    /// The endpoint that answered.
    pub endpoint: SocketAddr,
    /// `Set-Cookie` value to add, when affinity is configured and not yet established.
    pub sticky_cookie: Option<HeaderValue>,
}

/// Why nothing could be forwarded: the status to answer and what to log.
pub struct ForwardFailure {
    /// 502, 503 or 504.
    pub status: StatusCode,
    /// What went wrong, for the log line.
    pub reason: String,
}

/// Sends the request (`parts`, `body`) from `client` to an endpoint of `upstream`.
pub async fn forward(
    upstream: &Upstream,
    mut parts: http::request::Parts,
    mut body: RequestBody,
    client: SocketAddr,
) -> Result<Forwarded, ForwardFailure> {
    let _request = upstream.start_request();
    let mut retry_budget = None;
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let chosen = {
            let target = Target::Request {
                parts: &parts,
                client,
            };
            upstream.choose(&target, &tried).await
        };
        let chosen = match chosen {
            Ok(chosen) => chosen,
            Err(e) => {
                upstream.metrics.unavailable.increment(1);
                let status = match (&e, tried.is_empty()) {
                    // Retries ran out of endpoints: report the last failure's kind.
                    (Unavailable::AllDown, false) => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                return Err(ForwardFailure {
                    status,
                    reason: e.to_string(),
                });
            }
        };
        let endpoint = upstream.endpoints[chosen.index].address;
        let may_retry = tried.len() < upstream.retries as usize
            && upstream.endpoints.len() > tried.len() + 1
            && is_idempotent(&parts.method);
        let replay = if may_retry {
            body.replay_copy().map(|body| (Head::of(&parts), body))
        } else {
            None
        };
        match crate::upstream::client::send(upstream, endpoint, Request::from_parts(parts, body))
            .await
        {
            Ok(mut response) => {
                chosen.in_flight.record_latency();
                let sticky_cookie = chosen
                    .set_sticky
                    .then(|| upstream.sticky_cookie(chosen.index))
                    .flatten();
                response.body_mut().hold(chosen.in_flight);
                return Ok(Forwarded {
                    response,
                    endpoint,
                    sticky_cookie,
                });
            }
            Err(e) => {
                upstream.record_failure(chosen.index);
                if matches!(
                    e,
                    ForwardError::Connect(..)
                        | ForwardError::ConnectTimeout(_)
                        | ForwardError::Tls(..)
                ) {
                    upstream.metrics.connect_errors.increment(1);
                }
                let status = match e {
                    ForwardError::ResponseTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let retry = match (replay, is_retryable(&e)) {
                    (Some(replay), true) => {
                        retry_budget = retry_budget.or_else(|| upstream.start_retry());
                        retry_budget.is_some().then_some(replay)
                    }
                    _ => None,
                };
                let Some((head, replayed)) = retry else {
                    return Err(ForwardFailure {
                        status,
                        reason: e.to_string(),
                    });
                };
                tracing::info!(upstream = %upstream.name, %endpoint, "retrying on another endpoint: {e}");
                upstream.metrics.retries.increment(1);
                tried.push(chosen.index);
                parts = head.into_parts();
                body = replayed;
            }
        }
    }
}

/// Failures where the request certainly or possibly did not reach the application:
/// no connection, no TLS session, or the connection broke before any response byte.
fn is_retryable(e: &ForwardError) -> bool {
    matches!(
        e,
        ForwardError::Connect(..)
            | ForwardError::ConnectTimeout(_)
            | ForwardError::Tls(..)
            | ForwardError::Http(..)
    )
}

/// Methods RFC 9110 defines as idempotent.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A copy of a request head for a retry (`Parts` itself cannot be cloned).
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Head {
    fn of(parts: &http::request::Parts) -> Head {
        Head {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        }
    }

    fn into_parts(self) -> http::request::Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method;
        parts.uri = self.uri;
        parts.version = self.version;
        parts.headers = self.headers;
        parts
    }
}
