//! The admin API: its own listener (`[admin] listen = "127.0.0.1:9901"`) on its own thread,
//! so it answers even when the workers are saturated, and nothing it does runs on a worker.
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | config version and load time, listeners, routes with their plugin chains (name, content hash, load time), last reload error |
//! | `GET /upstreams` | every endpoint: health, draining, in flight, latency EWMA, recent failures |
//! | `POST /reload` | reloads the config file; 200 with the new version, or 500 with the error (the old config keeps serving) |
//! | `POST /upstreams/{name}/endpoints/{addr}/drain` (or `/undrain`) | starts (stops) draining an endpoint |
//! | `GET /metrics` | Prometheus text format |
//!
//! Answers are JSON (except `/metrics`). With a `token`, every request must carry
//! `Authorization: Bearer TOKEN` (401 otherwise); off loopback a token is required.

use crate::config::AdminConfig;
use crate::runtime::server::ServerCore;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The running admin API; dropping it stops it.
pub struct AdminServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the admin handlers work with.
struct Admin {
    core: Arc<ServerCore>,
    metrics: Option<PrometheusHandle>,
    token: Option<String>,
}

impl AdminServer {
    /// Binds `config.listen` and serves the admin API for `core` on a new thread.
    pub fn start(
        config: &AdminConfig,
        core: Arc<ServerCore>,
        metrics: Option<PrometheusHandle>,
    ) -> std::io::Result<AdminServer> {
        let socket = std::net::TcpListener::bind(config.listen)?;
        socket.set_nonblocking(true)?;
        let addr = socket.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let admin = Arc::new(Admin {
            core,
            metrics,
            token: config.token.clone(),
        });
        let (stop, mut stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("maitred-admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(socket) = tokio::net::TcpListener::from_std(socket) else {
                        return;
                    };
                    tracing::info!(%addr, "admin API listening");
                    loop {
                        tokio::select! {
                            _ = stopped.wait_for(|s| *s) => break,
                            accepted = socket.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let admin = admin.clone();
                                tokio::spawn(async move {
                                    let service = hyper::service::service_fn(move |req| {
                                        let admin = admin.clone();
                                        async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })?;
        Ok(AdminServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where the admin API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Admin {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(token) = &self.token {
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if presented != Some(token.as_str()) {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "missing or wrong bearer token"}),
                );
            }
        }
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        // The body is not used; read it so keep-alive works.
        let _ = req.into_body().collect().await;
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["status"]) => json_response(StatusCode::OK, self.status()),
            (&Method::GET, ["upstreams"]) => json_response(StatusCode::OK, self.upstreams()),
            (&Method::GET, ["metrics"]) => self.metrics(),
            (&Method::POST, ["reload"]) => {
                let core = self.core.clone();
                match tokio::task::spawn_blocking(move || core.reload()).await {
                    Ok(Ok(version)) => json_response(StatusCode::OK, json!({"version": version})),
                    Ok(Err(e)) => json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": e.to_string()}),
                    ),
                    Err(e) => json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": e.to_string()}),
                    ),
                }
            }
            (
                &Method::POST,
                [
                    "upstreams",
                    name,
                    "endpoints",
                    addr,
                    action @ ("drain" | "undrain"),
                ],
            ) => self.set_draining(name, addr, *action == "drain"),
            (&Method::GET, ["cache"]) => json_response(StatusCode::OK, self.caches()),
            (&Method::POST, ["cache", "purge"]) => self.purge(&query),
            (_, ["status" | "upstreams" | "metrics" | "reload" | "cache"] | ["cache", "purge"]) => {
                json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    json!({"error": "method not allowed"}),
                )
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "no such admin resource"}),
            ),
        }
    }

    fn status(&self) -> Value {
        let status = self
            .core
            .shared()
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let snapshot = self.core.snapshot();
        let config = &snapshot.config;
        let plugin = |name: &String| {
            let record = snapshot.plugin_records.get(name);
            json!({
                "name": name,
                "sha256": record.map(|r| r.sha256.clone()),
                "loaded_at": record.map(|r| unix(r.loaded_at)),
            })
        };
        json!({
            "config": config.source.display().to_string(),
            "version": status.version,
            "loaded_at": unix(status.loaded_at),
            "load_ms": status.load_duration.as_secs_f64() * 1000.0,
            "reloads": status.reloads,
            "reload_failures": status.reload_failures,
            "last_error": status.last_error.as_ref().map(|(at, message)| json!({"at": unix(*at), "message": message})),
            "open_connections": self.core.open_connections(),
            "listeners": config.listeners.iter().map(|l| json!({
                "name": l.name,
                "protocol": l.protocol.as_str(),
                "address": self.core.local_addr(&l.name).map(|a| a.to_string()),
                "plugins": l.plugins.iter().map(plugin).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "routes": config.routes.iter().enumerate().map(|(i, r)| json!({
                "route": format!("route[{i}]"),
                "listeners": r.listeners,
                "host": r.host,
                "path_prefix": r.path_prefix,
                "upstream": r.upstream,
                "plugins": r.plugins.iter().map(plugin).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    fn upstreams(&self) -> Value {
        let snapshot = self.core.snapshot();
        let now = crate::upstream::endpoint::now_ms();
        let mut names: Vec<&String> = snapshot.upstreams.keys().collect();
        names.sort();
        let upstreams: serde_json::Map<String, Value> = names
            .into_iter()
            .map(|name| {
                let upstream = &snapshot.upstreams[name];
                let endpoints: Vec<Value> = upstream
                    .endpoints
                    .iter()
                    .map(|e| {
                        json!({
                            "address": e.address.to_string(),
                            "weight": e.weight,
                            "healthy": e.is_healthy(now),
                            "draining": e.is_draining(),
                            "in_flight": e.in_flight(),
                            "ewma_latency_us": e.ewma_micros(),
                            "recent_failures": e.recent_failures(),
                        })
                    })
                    .collect();
                (name.clone(), json!({ "endpoints": endpoints }))
            })
            .collect();
        Value::Object(upstreams)
    }

    fn set_draining(&self, name: &str, addr: &str, draining: bool) -> Response<Full<Bytes>> {
        let snapshot = self.core.snapshot();
        let Some(upstream) = snapshot.upstreams.get(name) else {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no upstream {name:?}")}),
            );
        };
        let Some(endpoint) = upstream
            .endpoints
            .iter()
            .find(|e| e.address.to_string() == addr)
        else {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("upstream {name:?} has no endpoint {addr}")}),
            );
        };
        endpoint.set_draining(draining);
        tracing::info!(
            upstream = name,
            endpoint = addr,
            draining,
            "endpoint drain state changed"
        );
        json_response(
            StatusCode::OK,
            json!({"upstream": name, "endpoint": addr, "draining": draining, "in_flight": endpoint.in_flight()}),
        )
    }

    /// Each cached route: its matchers, and its cache's keys and bytes.
    fn caches(&self) -> Value {
        let snapshot = self.core.snapshot();
        let routes: Vec<Value> = snapshot
            .config
            .routes
            .iter()
            .zip(&snapshot.routes)
            .filter_map(|(config, route)| {
                let (entries, bytes, max_size) = route.cache.as_ref()?.store().usage();
                Some(json!({
                    "route": route.index,
                    "host": config.host,
                    "path_prefix": config.path_prefix,
                    "entries": entries,
                    "bytes": bytes,
                    "max_size": max_size,
                }))
            })
            .collect();
        json!({ "routes": routes })
    }

    /// `POST /cache/purge?key=K` drops key `K`, `?prefix=P` every key starting with `P`, from
    /// every route's cache.
    fn purge(&self, query: &str) -> Response<Full<Bytes>> {
        let mut key = None;
        let mut prefix = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "key" => key = Some(value.into_owned()),
                "prefix" => prefix = Some(value.into_owned()),
                _ => {}
            }
        }
        let snapshot = self.core.snapshot();
        let caches = snapshot.routes.iter().filter_map(|r| r.cache.as_ref());
        let purged: usize = match (key, prefix) {
            (Some(key), None) => caches.filter(|c| c.store().remove(&key)).count(),
            (None, Some(prefix)) => caches.map(|c| c.store().remove_prefix(&prefix)).sum(),
            _ => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "give exactly one of ?key=KEY or ?prefix=PREFIX"}),
                );
            }
        };
        json_response(StatusCode::OK, json!({ "purged": purged }))
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let Some(handle) = &self.metrics else {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "metrics recorder not installed"}),
            );
        };
        let snapshot = self.core.snapshot();
        crate::metrics::update_endpoint_gauges(snapshot.upstreams.values().map(|u| &**u));
        for route in &snapshot.routes {
            if let Some(cache) = &route.cache {
                let (entries, bytes, _) = cache.store().usage();
                crate::metrics::update_cache_gauges(
                    &format!("route[{}]", route.index),
                    entries,
                    bytes,
                );
            }
        }
        Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(handle.render())))
            .unwrap_or_default()
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_vec_pretty(&body).unwrap_or_default();
    text.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_default()
}

/// Seconds since the Unix epoch.
fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
