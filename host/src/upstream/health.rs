//! Active health checks: for every upstream with `health = { ... }`, each endpoint is
//! probed every `interval` (a TCP connect, or `GET path` expecting a status range, over TLS
//! when the upstream uses TLS); `fall` consecutive failures take it out, `rise` consecutive
//! successes bring it back.
//!
//! The checks run on their own thread with its own event loop, never on a worker and never
//! on the request path; requests only read the verdict (an atomic in the endpoint).

use super::Upstream;
use super::endpoint::{Endpoint, now_ms};
use crate::config::{ActiveHealth, HealthCheckKind};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The running health checks; dropping this stops them.
pub struct HealthChecks {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthChecks {
    /// Starts checking every endpoint of the `upstreams` that configure active checks.
    /// Returns `None` when none do (no thread is started).
    pub fn start(upstreams: Vec<Arc<Upstream>>) -> std::io::Result<Option<HealthChecks>> {
        let checked: Vec<Arc<Upstream>> = upstreams
            .into_iter()
            .filter(|u| u.health.is_some())
            .collect();
        if checked.is_empty() {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, mut stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("maitred-health".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut checks = tokio::task::JoinSet::new();
                    for upstream in checked {
                        for endpoint in upstream.endpoints.clone() {
                            checks.spawn(check_forever(upstream.clone(), endpoint));
                        }
                    }
                    let _ = stopped.wait_for(|s| *s).await;
                    checks.abort_all();
                });
            })?;
        Ok(Some(HealthChecks {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Probes one endpoint every interval and applies the rise/fall thresholds.
async fn check_forever(upstream: Arc<Upstream>, endpoint: Arc<Endpoint>) {
    let Some(health) = upstream.health.clone() else {
        return;
    };
    let mut ticks = tokio::time::interval(health.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        ticks.tick().await;
        let result = tokio::time::timeout(health.timeout, probe(&upstream, &endpoint, &health))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        let healthy = endpoint.is_healthy(now_ms());
        match result {
            Ok(()) => {
                (successes, failures) = (successes + 1, 0);
                if successes >= health.rise && endpoint.set_active_health(true, now_ms()) {
                    tracing::info!(upstream = %upstream.name, endpoint = %endpoint.address, "health check passing: endpoint is up");
                }
            }
            Err(reason) => {
                (successes, failures) = (0, failures + 1);
                if failures >= health.fall && endpoint.set_active_health(false, now_ms()) {
                    tracing::warn!(upstream = %upstream.name, endpoint = %endpoint.address, "health check failing ({reason}): endpoint is down");
                } else if healthy {
                    tracing::debug!(upstream = %upstream.name, endpoint = %endpoint.address, "health check failed: {reason}");
                }
            }
        }
    }
}

/// One probe: Ok if the endpoint passes.
async fn probe(
    upstream: &Upstream,
    endpoint: &Endpoint,
    health: &ActiveHealth,
) -> Result<(), String> {
    let stream = TcpStream::connect(endpoint.address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let HealthCheckKind::Http { path, host } = &health.kind else {
        return Ok(());
    };
    let status = match &upstream.tls {
        None => get(stream, endpoint, path, host.as_deref()).await?,
        Some(tls) => {
            let stream = super::client::tls_connect(tls, endpoint.address, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            get(stream, endpoint, path, host.as_deref()).await?
        }
    };
    if health.expect.contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// `GET path` over `io`; the response status.
async fn get<I>(io: I, endpoint: &Endpoint, path: &str, host: Option<&str>) -> Result<u16, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let host = host.map_or_else(|| endpoint.address.to_string(), str::to_owned);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "maitred-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}
