//! Configuration: TOML text -> raw serde structs (with spans) -> a validated [`Config`].
//!
//! Every problem is a [`ConfigError`] naming the file, the line and the key. Nothing here
//! touches the network or compiles plugins: [`crate::runtime`] builds a runnable snapshot
//! from a [`Config`].

mod error;
mod raw;
pub mod units;

pub use error::ConfigError;

use crate::tls::client::UpstreamTlsFiles;
use crate::tls::server::CertificateFiles;
use raw::RawConfig;
use serde_spanned::Spanned;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A validated configuration. Every cross-reference in it resolves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (relative paths resolve against its folder).
    pub source: PathBuf,
    /// Process-wide settings.
    pub runtime: RuntimeConfig,
    /// Listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// Upstreams, sorted by name.
    pub upstreams: Vec<UpstreamConfig>,
    /// Plugins, sorted by name.
    pub plugins: Vec<PluginConfig>,
    /// The admin API, if enabled.
    pub admin: Option<AdminConfig>,
    /// Logging.
    pub log: LogConfig,
}

/// `[runtime]`: process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Worker threads, each running its own single-threaded event loop.
    pub workers: usize,
    /// How long a graceful shutdown (SIGTERM, SIGINT) lets open connections finish.
    pub shutdown_grace: Duration,
    /// Reload when the config file or a plugin's `.wasm` file changes.
    pub watch: bool,
}

/// `[admin]`: the admin API's listener.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Where it listens (loopback unless a token is set).
    pub listen: SocketAddr,
    /// Bearer token every request must carry (required off loopback).
    pub token: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Line format of logs (and access logs).
    pub format: LogFormat,
    /// Level filter (`RUST_LOG` syntax), unless `RUST_LOG` is set.
    pub level: String,
    /// Where access log lines go: `"stderr"`, `"stdout"` or a file path; `None`: off.
    pub access: Option<String>,
    /// The access log line template (see [`crate::access_log`]).
    pub access_format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            access: None,
            access_format: crate::access_log::DEFAULT_FORMAT.into(),
        }
    }
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerProtocol {
    /// Cleartext HTTP/1.1 and HTTP/2 (prior knowledge) on one port.
    #[default]
    Http,
    /// HTTP/1.1 and HTTP/2 over TLS terminated by the proxy (ALPN picks the version).
    Https,
    /// A TCP byte stream forwarded to one upstream endpoint per connection.
    Tcp,
    /// TLS forwarded undecrypted, routed by the SNI of the client's ClientHello.
    TlsPassthrough,
}

impl ListenerProtocol {
    /// Whether requests are proxied at L7 (routes attach to the listener).
    pub fn is_http(self) -> bool {
        matches!(self, ListenerProtocol::Http | ListenerProtocol::Https)
    }

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerProtocol::Http => "http",
            ListenerProtocol::Https => "https",
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::TlsPassthrough => "tls-passthrough",
        }
    }
}

/// The HTTP version spoken to an upstream's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1, with keep-alive connections pooled per worker.
    #[default]
    Http1,
    /// HTTP/2 by prior knowledge over plain TCP; one multiplexed connection per worker.
    H2c,
    /// HTTP/2 over TLS when the endpoint agrees in ALPN (HTTP/1.1 otherwise); needs `tls`.
    H2,
}

/// Which PROXY protocol header is sent to an upstream's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocolVersion {
    /// The human-readable v1 line.
    V1,
    /// The binary v2 header.
    V2,
}
/// `[[listener]]`: a socket the proxy accepts connections on.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Unique name, referenced by routes.
    pub name: String,
    /// Address to bind (port 0 picks a free port).
    pub listen: SocketAddr,
    /// What is spoken on the socket.
    pub protocol: ListenerProtocol,
    /// Time a client has to send a complete request header (slowloris defence).
    pub header_read_timeout: Duration,
    /// Largest request head (request line + headers) accepted, in bytes.
    pub max_header_size: usize,
    /// `tcp`: the upstream every connection goes to, balanced per connection.
    pub upstream: Option<String>,
    /// `tls-passthrough`: SNI patterns (exact or `*.suffix`, lowercase) and their upstreams.
    pub sni: Vec<(String, String)>,
    /// `tls-passthrough`: where an unknown or missing SNI goes; `None`: the connection is closed.
    pub default_upstream: Option<String>,
    /// `https`: certificates by SNI, ALPN and client authentication.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `https`: time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// `tls-passthrough`: time allowed for the client's ClientHello to arrive.
    pub preread_timeout: Duration,
    /// `tcp`, `tls-passthrough`: a connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// `tcp`, `tls-passthrough`: most connections open at once (over all workers).
    pub max_connections: usize,
    /// Whether clients send a PROXY protocol header first (a balancer in front of maitred).
    pub accept_proxy_protocol: bool,
    /// `tcp`, `tls-passthrough`: connection plugins, run in order when a connection arrives.
    pub plugins: Vec<String>,
}

/// `[[route]]`: which requests go where, through which plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The listeners this route is attached to.
    pub listeners: Vec<String>,
    /// Host to match: exact (`api.example.com`) or wildcard (`*.example.com`); `None` matches any.
    pub host: Option<String>,
    /// Path prefix to match; the longest matching prefix wins.
    pub path_prefix: String,
    /// The upstream requests are sent to (plugins may choose another).
    pub upstream: String,
    /// Plugin chain, run in order on requests and in reverse order on responses.
    pub plugins: Vec<String>,
    /// The route's HTTP cache, if it has one.
    pub cache: Option<CacheConfig>,
    /// Largest request body buffered for plugins that read bodies (`max_body`).
    pub max_body: u64,
    /// What happens to a larger body (`oversize`).
    pub oversize: Oversize,
}

/// What a route whose plugins read request bodies does with a body over its `max_body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Oversize {
    /// Answer 413 Content Too Large.
    #[default]
    Reject,
    /// Forward it uninspected: the plugins see no body.
    Pass,
}

/// A route's HTTP cache (`cache = { ... }` on a route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most bytes of responses (bodies plus headers) kept; least-used entries go first.
    pub max_size: u64,
    /// Largest body stored; bigger ones stream through uncached.
    pub max_object_size: u64,
    /// How long requests for a key that is being fetched wait for that fetch to finish
    /// (and be answered from the cache) before going to the origin themselves.
    pub lock_timeout: Duration,
}

/// How an upstream spreads requests (L7) and connections (L4) over its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalancerConfig {
    /// Each available endpoint in turn.
    RoundRobin,
    /// Smooth weighted round-robin (nginx's): endpoints in proportion to their weights.
    Weighted,
    /// Fewest in-flight requests (or connections) relative to weight.
    LeastConn,
    /// Consistent hash of the client's IP address.
    IpHash,
    /// Consistent hash of a key taken from each request.
    Hash(HashKey),
    /// Power of two random choices, scored by in-flight count and latency EWMA.
    P2c,
    /// A WASM plugin implementing the `balancer` world.
    Plugin(String),
}

/// Where the `hash` balancer takes its key from (`hash_key = "..."`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `header:NAME`: a request header's value.
    Header(http::HeaderName),
    /// `cookie:NAME`: a cookie's value.
    Cookie(String),
    /// `path`: the request path.
    Path,
    /// `client_ip`: the client's address.
    ClientIp,
}

/// One endpoint of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Where it listens.
    pub address: SocketAddr,
    /// Relative share of traffic for weight-aware balancers (default 1).
    pub weight: u32,
    /// Draining: no new requests or connections; in-flight ones finish.
    pub drain: bool,
}

/// Cookie-based session affinity (`sticky = { cookie = "...", ttl = "1h" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// The cookie's name.
    pub cookie: String,
    /// The cookie's lifetime (`Max-Age`).
    pub ttl: Duration,
}

/// Passive health (nginx's `max_fails`/`fail_timeout`): `max_fails` failed requests within
/// `fail_timeout` take an endpoint out for `fail_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealth {
    /// Failures that mark an endpoint down; 0 turns passive health off.
    pub max_fails: u32,
    /// The window failures are counted in, and how long the endpoint then stays out.
    pub fail_timeout: Duration,
}

/// What an active health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// A TCP connect succeeds.
    Tcp,
    /// `GET path` (with `Host: host`) answers with a status in the expected range.
    Http {
        /// The path requested.
        path: String,
        /// The `Host` header sent (default: the endpoint's address).
        host: Option<String>,
    },
}

/// Active health checks (`health = { type = "http", path = "/health", ... }`), run in the
/// background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHealth {
    /// TCP connect or HTTP GET.
    pub kind: HealthCheckKind,
    /// Statuses that count as healthy (HTTP checks), e.g. `200-399`.
    pub expect: std::ops::RangeInclusive<u16>,
    /// Time between checks of one endpoint.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive successes that bring a down endpoint back.
    pub rise: u32,
    /// Consecutive failures that take an endpoint out.
    pub fall: u32,
}

/// `[upstream.NAME]`: a group of interchangeable backend endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// The upstream's name.
    pub name: String,
    /// Endpoints (names are resolved when the config is loaded).
    pub endpoints: Vec<EndpointConfig>,
    /// Balancing algorithm.
    pub balancer: BalancerConfig,
    /// Cookie-based session affinity, if configured.
    pub sticky: Option<StickyConfig>,
    /// Extra attempts on another endpoint for idempotent requests that failed before any
    /// response byte (connect failure, reset).
    pub retries: u32,
    /// Retries in flight allowed as a share of requests in flight (at least 3 are always
    /// allowed), so retries cannot multiply load during an outage.
    pub retry_budget: f64,
    /// Most requests in flight per endpoint; `None`: no limit.
    pub max_conns: Option<u32>,
    /// How long a request waits for a free endpoint when all are at `max_conns` (0: 503 at once).
    pub queue_timeout: Duration,
    /// Time over which a recovered or new endpoint's weight ramps up to its full value.
    pub slow_start: Option<Duration>,
    /// Passive health.
    pub passive: PassiveHealth,
    /// Active health checks, if configured.
    pub health: Option<ActiveHealth>,
    /// Time allowed to establish a TCP connection (exceeded: 502).
    pub connect_timeout: Duration,
    /// Time allowed for the response head after the request is sent (exceeded: 504).
    pub response_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Most idle connections kept per endpoint and worker.
    pub max_idle: usize,
    /// TLS to the endpoints (`tls = { ... }`); `None`: plain TCP.
    pub tls: Option<UpstreamTls>,
    /// PROXY protocol header sent first on L4 connections to the endpoints.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// HTTP version spoken to the endpoints.
    pub protocol: UpstreamProtocol,
}

/// An upstream's TLS settings, ready to connect with. Two are equal when their settings
/// and the contents of their files are.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The rustls client configuration (roots, client certificate, ALPN).
    pub config: Arc<rustls::ClientConfig>,
    /// The name sent as SNI and verified in the certificate; `None`: the endpoint's IP.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
    /// Whether the certificate is verified (`verify = false` turns it off, with a warning).
    pub verify: bool,
    /// A digest of every setting above, part of the key of pooled connections, so a
    /// connection is never reused for a different peer identity.
    pub identity: u64,
}
/// What a failing plugin (trap, timeout, limit) does to its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Answer 500.
    FailClosed,
    /// Skip the plugin and carry on.
    FailOpen,
}

/// How plugin instances are shared between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// A bounded pool of initialised instances reused across requests.
    Pooled,
    /// A fresh instance for every request.
    PerRequest,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
    }
}

/// `[plugin.NAME]`: a WASM component and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin's name.
    pub name: String,
    /// Path to the `.wasm` component (resolved against the config file's folder).
    pub wasm: PathBuf,
    /// The plugin's own `config` table, passed to its `init` as JSON.
    pub config_json: String,
    /// Trap/timeout policy.
    pub on_error: OnError,
    /// Instance sharing.
    pub isolation: Isolation,
    /// Deadline for one call into the plugin.
    pub timeout: Duration,
    /// Cap on the plugin's linear memory, in bytes.
    pub memory_limit: u64,
    /// Most idle instances kept per worker (pooled isolation).
    pub pool_size: usize,
    /// Directories the plugin may read (only it, read-only), mounted at their absolute paths.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::at(path, "", None, "", format!("cannot read config file: {e}"))
        })?;
        Self::from_toml(&text, path)
    }

    /// Validates config `text`, which is reported as coming from `path` (relative plugin paths
    /// resolve against `path`'s folder; the file itself need not exist).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw = RawConfig::parse(text, path)?;
        Validator { file: path, text }.validate(raw)
    }
}

/// Turns a [`RawConfig`] into a [`Config`], checking every reference.
struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    /// Validates a route's `cache` table; `route_span` locates errors about absent keys.
    fn cache(
        &self,
        raw: &raw::RawCache,
        route_span: std::ops::Range<usize>,
        key: &str,
    ) -> Result<CacheConfig, ConfigError> {
        let size = |s: &Option<Spanned<units::SizeStr>>, default: u64| {
            s.as_ref().map_or(default, |s| s.get_ref().0)
        };
        let max_size = size(&raw.max_size, 256 << 20);
        let max_object_size = size(&raw.max_object_size, (8 << 20).min(max_size));
        if max_size == 0 {
            let span = raw.max_size.as_ref().map_or(route_span, Spanned::span);
            return self.err(span, format!("{key}.max_size"), "must be more than 0");
        }
        if max_object_size > max_size.min(1 << 30) {
            let span = raw
                .max_object_size
                .as_ref()
                .map_or(route_span, Spanned::span);
            return self.err(
                span,
                format!("{key}.max_object_size"),
                "must be at most max_size, and at most 1GiB",
            );
        }
        Ok(CacheConfig {
            max_size,
            max_object_size,
            lock_timeout: raw
                .lock_timeout
                .as_ref()
                .map_or(Duration::from_secs(5), |d| d.0),
        })
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::at(
            self.file,
            self.text,
            Some(span),
            key,
            message,
        ))
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let base = self.file.parent().unwrap_or(Path::new("."));
        let workers = match raw.runtime.workers {
            Some(w) if *w.get_ref() == 0 => {
                return self.err(w.span(), "runtime.workers", "must be at least 1");
            }
            Some(w) => *w.get_ref(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };

        let plugins = raw
            .plugins
            .iter()
            .map(|(name, p)| self.plugin(base, name, p))
            .collect::<Result<Vec<_>, _>>()?;

        let plugin_names: HashSet<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
        let upstreams = raw
            .upstreams
            .iter()
            .map(|(name, up)| self.upstream(base, name, up, &plugin_names))
            .collect::<Result<Vec<_>, _>>()?;
        let upstream_names: HashSet<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
        let names = Names {
            upstreams: &upstream_names,
            plugins: &plugin_names,
        };
        let mut listener_names = HashSet::new();
        let mut listeners = Vec::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            if !listener_names.insert(l.name.get_ref().clone()) {
                return self.err(
                    l.name.span(),
                    format!("listener[{i}].name"),
                    format!("duplicate listener name {:?}", l.name.get_ref()),
                );
            }
            listeners.push(self.listener(base, i, l, &names)?);
        }
        let mut bound = HashMap::new();
        for (i, l) in listeners.iter().enumerate() {
            if l.listen.port() != 0
                && let Some(other) = bound.insert(l.listen, &l.name)
            {
                return self.err(
                    raw.listeners[i].listen.span(),
                    format!("listener[{i}].listen"),
                    format!("address {} is already used by listener {other:?}", l.listen),
                );
            }
        }

        let mut routes = Vec::new();
        let mut seen_matches = HashMap::new();
        for (i, r) in raw.routes.iter().enumerate() {
            let key = format!("route[{i}]");
            let route_listeners = match &r.listener {
                Some(name) => {
                    if !listener_names.contains(name.get_ref()) {
                        return self.err(
                            name.span(),
                            format!("{key}.listener"),
                            format!(
                                "unknown listener {:?}{}",
                                name.get_ref(),
                                defined(listener_names.iter().map(String::as_str))
                            ),
                        );
                    }
                    let protocol = listeners
                        .iter()
                        .find(|l| &l.name == name.get_ref())
                        .map(|l| l.protocol);
                    if let Some(p) = protocol.filter(|p| !p.is_http()) {
                        return self.err(
                            name.span(),
                            format!("{key}.listener"),
                            format!(
                                "listener {:?} is a {} listener; routes attach to http and https listeners",
                                name.get_ref(),
                                p.as_str()
                            ),
                        );
                    }
                    vec![name.get_ref().clone()]
                }
                None => listeners
                    .iter()
                    .filter(|l| l.protocol.is_http())
                    .map(|l| l.name.clone())
                    .collect(),
            };
            self.reference(
                &r.upstream,
                &format!("{key}.upstream"),
                names.upstreams,
                "upstream",
            )?;
            for (j, p) in r.plugins.iter().enumerate() {
                self.reference(p, &format!("{key}.plugins[{j}]"), names.plugins, "plugin")?;
            }
            let host = match &r.host {
                Some(h) => Some(self.host_pattern(h, &format!("{key}.host"))?),
                None => None,
            };
            let path_prefix = match &r.path_prefix {
                Some(p) if !p.get_ref().starts_with('/') => {
                    return self.err(
                        p.span(),
                        format!("{key}.path_prefix"),
                        "must start with '/'",
                    );
                }
                Some(p) => p.get_ref().clone(),
                None => "/".to_string(),
            };
            for l in &route_listeners {
                if let Some(other) =
                    seen_matches.insert((l.clone(), host.clone(), path_prefix.clone()), i)
                {
                    let span = r
                        .path_prefix
                        .as_ref()
                        .map_or(r.upstream.span(), Spanned::span);
                    return self.err(span, key, format!("matches the same host and path prefix as route[{other}] on listener {l:?}"));
                }
            }
            routes.push(RouteConfig {
                listeners: route_listeners,
                host,
                path_prefix,
                upstream: r.upstream.get_ref().clone(),
                plugins: r.plugins.iter().map(|p| p.get_ref().clone()).collect(),
                max_body: r.max_body.as_ref().map_or(1 << 20, |s| s.get_ref().0),
                oversize: r.oversize.unwrap_or_default(),
                cache: match &r.cache {
                    Some(c) => Some(self.cache(c, r.upstream.span(), &format!("{key}.cache"))?),
                    None => None,
                },
            });
        }

        let admin = match &raw.admin {
            Some(a) => {
                let listen = self.address(&a.listen, "admin.listen")?;
                if !listen.ip().is_loopback() && a.token.as_deref().is_none_or(str::is_empty) {
                    return self.err(a.listen.span(), "admin.listen", "a non-loopback admin address needs `token = \"...\"` (sent as `Authorization: Bearer ...`)");
                }
                Some(AdminConfig {
                    listen,
                    token: a.token.clone().filter(|t| !t.is_empty()),
                })
            }
            None => None,
        };
        Ok(Config {
            source: self.file.to_path_buf(),
            runtime: RuntimeConfig {
                workers,
                shutdown_grace: raw
                    .runtime
                    .shutdown_grace
                    .map_or(Duration::from_secs(30), |d| d.0),
                watch: raw.runtime.watch.unwrap_or(false),
            },
            admin,
            log: LogConfig {
                format: raw.log.format.unwrap_or_default(),
                level: raw.log.level.clone().unwrap_or_else(|| "info".into()),
                access: raw.log.access.clone().filter(|a| a != "off"),
                access_format: raw
                    .log
                    .access_format
                    .clone()
                    .unwrap_or_else(|| crate::access_log::DEFAULT_FORMAT.into()),
            },
            listeners,
            routes,
            upstreams,
            plugins,
        })
    }

    fn balancer(
        &self,
        key: &str,
        up: &raw::RawUpstream,
        plugin_names: &HashSet<&str>,
    ) -> Result<BalancerConfig, ConfigError> {
        let hash_key = match &up.hash_key {
            Some(k) => Some(self.hash_key(k, &format!("{key}.hash_key"))?),
            None => None,
        };
        let Some(name) = &up.balancer else {
            return match &up.hash_key {
                Some(k) => self.err(
                    k.span(),
                    format!("{key}.hash_key"),
                    "only used with balancer = \"hash\"",
                ),
                None => Ok(BalancerConfig::RoundRobin),
            };
        };
        let field = format!("{key}.balancer");
        let balancer = match name.get_ref().as_str() {
            "round_robin" => BalancerConfig::RoundRobin,
            "weighted" => BalancerConfig::Weighted,
            "least_conn" => BalancerConfig::LeastConn,
            "ip_hash" => BalancerConfig::IpHash,
            "p2c" => BalancerConfig::P2c,
            "hash" => match hash_key {
                Some(k) => return Ok(BalancerConfig::Hash(k)),
                None => return self.err(name.span(), field, "balancer = \"hash\" needs hash_key = \"header:NAME\" | \"cookie:NAME\" | \"path\" | \"client_ip\""),
            },
            other => match other.strip_prefix("plugin:") {
                Some(plugin) => {
                    let spanned = Spanned::new(name.span(), plugin.to_owned());
                    BalancerConfig::Plugin(self.reference(&spanned, &field, plugin_names, "plugin")?)
                }
                None => return self.err(name.span(), field, format!("unknown balancer {other:?}; expected round_robin, weighted, least_conn, ip_hash, hash, p2c or \"plugin:NAME\"")),
            },
        };
        if let Some(k) = &up.hash_key {
            return self.err(
                k.span(),
                format!("{key}.hash_key"),
                "only used with balancer = \"hash\"",
            );
        }
        Ok(balancer)
    }

    fn hash_key(&self, text: &Spanned<String>, key: &str) -> Result<HashKey, ConfigError> {
        let s = text.get_ref();
        let parsed = match s.split_once(':') {
            Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(HashKey::Header),
            Some(("cookie", name)) if !name.is_empty() => Some(HashKey::Cookie(name.to_owned())),
            None if s == "path" => Some(HashKey::Path),
            None if s == "client_ip" => Some(HashKey::ClientIp),
            _ => None,
        };
        match parsed {
            Some(k) => Ok(k),
            None => self.err(text.span(), key, format!("invalid hash key {s:?}; expected \"header:NAME\", \"cookie:NAME\", \"path\" or \"client_ip\"")),
        }
    }

    fn active_health(
        &self,
        key: &str,
        health: &Spanned<raw::RawHealth>,
    ) -> Result<ActiveHealth, ConfigError> {
        let h = health.get_ref();
        let key = format!("{key}.health");
        let kind = match h.kind.as_ref().map(|k| k.get_ref().as_str()) {
            Some("tcp") => HealthCheckKind::Tcp,
            Some("http") | None => {
                let path = h.path.as_ref().map_or("/", |p| p.get_ref().as_str());
                if !path.starts_with('/') {
                    let span = h.path.as_ref().map_or(health.span(), Spanned::span);
                    return self.err(span, format!("{key}.path"), "must start with '/'");
                }
                HealthCheckKind::Http {
                    path: path.to_owned(),
                    host: h.host.clone(),
                }
            }
            Some(other) => {
                let span = h.kind.as_ref().map_or(health.span(), Spanned::span);
                return self.err(
                    span,
                    format!("{key}.type"),
                    format!("unknown check type {other:?}; expected \"http\" or \"tcp\""),
                );
            }
        };
        let expect = match &h.expect {
            None => 200..=399,
            Some(text) => {
                let s = text.get_ref();
                let (lo, hi) = s.split_once('-').unwrap_or((s, s));
                match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
                    (Ok(lo), Ok(hi)) if (100..=999).contains(&lo) && lo <= hi && hi <= 999 => {
                        lo..=hi
                    }
                    _ => {
                        return self.err(
                            text.span(),
                            format!("{key}.expect"),
                            format!("invalid status range {s:?}; write \"200-399\" or \"200\""),
                        );
                    }
                }
            }
        };
        let positive = |v: Option<u32>, field: &str, default: u32| match v {
            Some(0) => self.err(
                health.span(),
                format!("{key}.{field}"),
                "must be at least 1",
            ),
            v => Ok(v.unwrap_or(default)),
        };
        Ok(ActiveHealth {
            kind,
            expect,
            interval: h
                .interval
                .map_or(Duration::from_secs(5), |d| d.0)
                .max(Duration::from_millis(10)),
            timeout: h.timeout.map_or(Duration::from_secs(1), |d| d.0),
            rise: positive(h.rise, "rise", 2)?,
            fall: positive(h.fall, "fall", 2)?,
        })
    }

    fn listener(
        &self,
        base: &Path,
        i: usize,
        l: &raw::RawListener,
        names: &Names<'_>,
    ) -> Result<ListenerConfig, ConfigError> {
        use ListenerProtocol::{Https, Tcp, TlsPassthrough};
        let key = format!("listener[{i}]");
        let protocol = l.protocol;
        // Settings that only mean something for some protocols are errors elsewhere.
        let only =
            |span: Option<std::ops::Range<usize>>, field: &str, allowed: &[ListenerProtocol]| {
                match span {
                    Some(span) if !allowed.contains(&protocol) => {
                        let list: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
                        self.err(
                            span,
                            format!("{key}.{field}"),
                            format!(
                                "only applies to {} listeners, not {}",
                                list.join(" and "),
                                protocol.as_str()
                            ),
                        )
                    }
                    _ => Ok(()),
                }
            };
        only(l.upstream.as_ref().map(Spanned::span), "upstream", &[Tcp])?;
        only(l.sni.as_ref().map(Spanned::span), "sni", &[TlsPassthrough])?;
        only(
            l.default_upstream.as_ref().map(Spanned::span),
            "default_upstream",
            &[TlsPassthrough],
        )?;
        only(
            l.certificates.as_ref().map(Spanned::span),
            "certificates",
            &[Https],
        )?;
        only(
            l.client_ca.as_ref().map(Spanned::span),
            "client_ca",
            &[Https],
        )?;
        only(
            l.max_connections.as_ref().map(Spanned::span),
            "max_connections",
            &[Tcp, TlsPassthrough],
        )?;
        only(
            l.plugins.first().map(Spanned::span),
            "plugins",
            &[Tcp, TlsPassthrough],
        )?;

        let upstream = match (&l.upstream, protocol) {
            (Some(u), _) => {
                Some(self.reference(u, &format!("{key}.upstream"), names.upstreams, "upstream")?)
            }
            (None, Tcp) => {
                return self.err(
                    l.name.span(),
                    format!("{key}.upstream"),
                    "a tcp listener needs `upstream = \"NAME\"`",
                );
            }
            (None, _) => None,
        };
        let mut sni = Vec::new();
        if let Some(map) = &l.sni {
            for (pattern, target) in map.get_ref() {
                let field = format!("{key}.sni.{pattern:?}");
                let pattern = Spanned::new(target.span(), pattern.clone());
                sni.push((
                    self.host_pattern(&pattern, &field)?,
                    self.reference(target, &field, names.upstreams, "upstream")?,
                ));
            }
        }
        let default_upstream = match &l.default_upstream {
            Some(u) => Some(self.reference(
                u,
                &format!("{key}.default_upstream"),
                names.upstreams,
                "upstream",
            )?),
            None => None,
        };
        if protocol == TlsPassthrough && sni.is_empty() && default_upstream.is_none() {
            return self.err(
                l.name.span(),
                key,
                "a tls-passthrough listener needs `sni = { ... }` or `default_upstream`",
            );
        }
        let tls = match (&l.certificates, protocol) {
            (Some(certs), Https) if !certs.get_ref().is_empty() => {
                let files: Vec<CertificateFiles> = certs
                    .get_ref()
                    .iter()
                    .map(|c| CertificateFiles {
                        cert: base.join(c.cert.get_ref()),
                        key: base.join(c.key.get_ref()),
                    })
                    .collect();
                let client_ca = l.client_ca.as_ref().map(|c| base.join(c.get_ref()));
                let config = crate::tls::server::server_config(&files, client_ca.as_deref())
                    .or_else(|e| {
                        // Point at the offending `cert`/`key`/`client_ca` value.
                        let span = certs
                            .get_ref()
                            .iter()
                            .enumerate()
                            .find_map(|(n, c)| {
                                if e.key == format!("certificates[{n}].cert") {
                                    Some(c.cert.span())
                                } else if e.key == format!("certificates[{n}].key") {
                                    Some(c.key.span())
                                } else {
                                    None
                                }
                            })
                            .or_else(|| l.client_ca.as_ref().map(Spanned::span))
                            .unwrap_or(certs.span());
                        self.err(span, format!("{key}.{}", e.key), e.message)
                    })?;
                Some(config)
            }
            (_, Https) => {
                let span = l.certificates.as_ref().map_or(l.name.span(), Spanned::span);
                return self.err(span, format!("{key}.certificates"), "an https listener needs `certificates = [{ cert = \"FILE\", key = \"FILE\" }]`");
            }
            _ => None,
        };
        let mut plugins = Vec::new();
        for (j, p) in l.plugins.iter().enumerate() {
            plugins.push(self.reference(
                p,
                &format!("{key}.plugins[{j}]"),
                names.plugins,
                "plugin",
            )?);
        }
        if let Some(max) = &l.max_connections
            && *max.get_ref() == 0
        {
            return self.err(
                max.span(),
                format!("{key}.max_connections"),
                "must be at least 1",
            );
        }
        Ok(ListenerConfig {
            name: l.name.get_ref().clone(),
            listen: self.address(&l.listen, &format!("{key}.listen"))?,
            protocol,
            header_read_timeout: l
                .header_read_timeout
                .map_or(Duration::from_secs(10), |d| d.0),
            max_header_size: l.max_header_size.map_or(64 * 1024, |s| s.0 as usize),
            upstream,
            sni,
            default_upstream,
            tls,
            handshake_timeout: l.handshake_timeout.map_or(Duration::from_secs(10), |d| d.0),
            preread_timeout: l.preread_timeout.map_or(Duration::from_secs(5), |d| d.0),
            idle_timeout: l.idle_timeout.map_or(Duration::from_secs(600), |d| d.0),
            max_connections: l.max_connections.as_ref().map_or(10_000, |m| *m.get_ref()),
            accept_proxy_protocol: l.accept_proxy_protocol.unwrap_or(false),
            plugins,
        })
    }

    /// Checks that `name` is one of the defined `kind`s (`upstream`, `plugin`).
    fn reference(
        &self,
        name: &Spanned<String>,
        key: &str,
        defined_names: &HashSet<&str>,
        kind: &str,
    ) -> Result<String, ConfigError> {
        if defined_names.contains(name.get_ref().as_str()) {
            return Ok(name.get_ref().clone());
        }
        self.err(
            name.span(),
            key,
            format!(
                "unknown {kind} {:?}{}",
                name.get_ref(),
                defined(defined_names.iter().copied())
            ),
        )
    }

    fn upstream_tls(
        &self,
        base: &Path,
        key: &str,
        tls: &Spanned<raw::RawUpstreamTls>,
        protocol: UpstreamProtocol,
    ) -> Result<UpstreamTls, ConfigError> {
        use std::hash::{Hash, Hasher};
        let t = tls.get_ref();
        let path = |p: &Option<Spanned<String>>| p.as_ref().map(|p| base.join(p.get_ref()));
        let client_cert = match (&t.client_cert, &t.client_key) {
            (Some(cert), Some(k)) => Some((base.join(cert.get_ref()), base.join(k.get_ref()))),
            (None, None) => None,
            (Some(s), None) | (None, Some(s)) => {
                return self.err(
                    s.span(),
                    format!("{key}.tls"),
                    "client_cert and client_key go together",
                );
            }
        };
        let verify = t.verify.as_ref().is_none_or(|v| *v.get_ref());
        let files = UpstreamTlsFiles {
            ca: path(&t.ca),
            verify,
            client_cert,
            http2: protocol == UpstreamProtocol::H2,
        };
        let config = crate::tls::client::client_config(&files).or_else(|e| {
            let span = match e.key.as_str() {
                "ca" => t.ca.as_ref().map(Spanned::span),
                "client_cert" => t.client_cert.as_ref().map(Spanned::span),
                "client_key" => t.client_key.as_ref().map(Spanned::span),
                _ => None,
            };
            self.err(
                span.unwrap_or(tls.span()),
                format!("{key}.tls.{}", e.key),
                e.message,
            )
        })?;
        let server_name = match &t.server_name {
            Some(n) => Some(
                rustls::pki_types::ServerName::try_from(n.get_ref().clone()).or_else(|_| {
                    self.err(
                        n.span(),
                        format!("{key}.tls.server_name"),
                        format!("invalid server name {:?}", n.get_ref()),
                    )
                })?,
            ),
            None => None,
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&files, t.server_name.as_ref().map(|n| n.get_ref())).hash(&mut hasher);
        // The files' contents too: a rotated certificate at the same path is a new identity.
        let file_paths = files
            .ca
            .iter()
            .chain(files.client_cert.iter().flat_map(|(c, k)| [c, k]));
        for path in file_paths {
            std::fs::read(path).unwrap_or_default().hash(&mut hasher);
        }
        Ok(UpstreamTls {
            config,
            server_name,
            verify,
            // Never 0: that key is plain TCP.
            identity: hasher.finish() | 1,
        })
    }

    fn upstream(
        &self,
        base: &Path,
        name: &str,
        up: &raw::RawUpstream,
        plugin_names: &HashSet<&str>,
    ) -> Result<UpstreamConfig, ConfigError> {
        let key = format!("upstream.{name}");
        let protocol = up
            .protocol
            .as_ref()
            .map_or(UpstreamProtocol::Http1, |p| *p.get_ref());
        match (&up.protocol, &up.tls) {
            (Some(p), None) if *p.get_ref() == UpstreamProtocol::H2 => {
                return self.err(p.span(), format!("{key}.protocol"), "\"h2\" is HTTP/2 over TLS and needs `tls = { ... }`; use \"h2c\" for cleartext HTTP/2");
            }
            (Some(p), Some(_)) if *p.get_ref() == UpstreamProtocol::H2c => {
                return self.err(
                    p.span(),
                    format!("{key}.protocol"),
                    "\"h2c\" is cleartext HTTP/2; with `tls` use \"h2\"",
                );
            }
            _ => {}
        }
        if up.endpoints.get_ref().is_empty() {
            return self.err(
                up.endpoints.span(),
                format!("{key}.endpoints"),
                "needs at least one endpoint",
            );
        }
        let mut endpoints: Vec<EndpointConfig> = Vec::new();
        for (i, e) in up.endpoints.get_ref().iter().enumerate() {
            let field = format!("{key}.endpoints[{i}]");
            let (address, weight, drain) = match e.get_ref() {
                raw::RawEndpoint::Address(a) => (a, 1, false),
                raw::RawEndpoint::Table(t) => {
                    (&t.address, t.weight.unwrap_or(1), t.drain.unwrap_or(false))
                }
            };
            let address = self.address(&Spanned::new(e.span(), address.clone()), &field)?;
            if weight == 0 || weight > 10_000 {
                return self.err(
                    e.span(),
                    format!("{field}.weight"),
                    "must be between 1 and 10000",
                );
            }
            if endpoints.iter().any(|other| other.address == address) {
                return self.err(e.span(), field, format!("duplicate endpoint {address}"));
            }
            endpoints.push(EndpointConfig {
                address,
                weight,
                drain,
            });
        }
        let balancer = self.balancer(&key, up, plugin_names)?;
        let health = match &up.health {
            Some(h) => Some(self.active_health(&key, h)?),
            None => None,
        };
        if let Some(budget) = &up.retry_budget
            && !(0.0..=1.0).contains(budget.get_ref())
        {
            return self.err(
                budget.span(),
                format!("{key}.retry_budget"),
                "must be between 0.0 and 1.0",
            );
        }
        if let Some(max) = &up.max_conns
            && *max.get_ref() == 0
        {
            return self.err(max.span(), format!("{key}.max_conns"), "must be at least 1");
        }
        let passive = up.passive.as_ref();
        Ok(UpstreamConfig {
            name: name.to_owned(),
            endpoints,
            balancer,
            sticky: up.sticky.as_ref().map(|s| StickyConfig {
                cookie: s.cookie.clone(),
                ttl: s.ttl.map_or(Duration::from_secs(3600), |d| d.0),
            }),
            retries: up.retries.unwrap_or(1),
            retry_budget: up.retry_budget.as_ref().map_or(0.2, |b| *b.get_ref()),
            max_conns: up.max_conns.as_ref().map(|m| *m.get_ref()),
            queue_timeout: up.queue_timeout.map_or(Duration::ZERO, |d| d.0),
            slow_start: up.slow_start.map(|d| d.0).filter(|d| !d.is_zero()),
            passive: PassiveHealth {
                max_fails: passive.and_then(|p| p.max_fails).unwrap_or(1),
                fail_timeout: passive
                    .and_then(|p| p.fail_timeout)
                    .map_or(Duration::from_secs(10), |d| d.0),
            },
            health,
            connect_timeout: up.connect_timeout.map_or(Duration::from_secs(5), |d| d.0),
            response_timeout: up.response_timeout.map_or(Duration::from_secs(60), |d| d.0),
            idle_timeout: up.idle_timeout.map_or(Duration::from_secs(60), |d| d.0),
            max_idle: up.max_idle.unwrap_or(64),
            tls: match &up.tls {
                Some(tls) => Some(self.upstream_tls(base, &key, tls, protocol)?),
                None => None,
            },
            proxy_protocol: up.proxy_protocol,
            protocol,
        })
    }

    fn plugin(
        &self,
        base: &Path,
        name: &str,
        p: &raw::RawPlugin,
    ) -> Result<PluginConfig, ConfigError> {
        let key = format!("plugin.{name}");
        let config_json = match &p.config {
            Some(v) => serde_json::to_string(v.get_ref()).map_err(|e| {
                ConfigError::at(
                    self.file,
                    self.text,
                    Some(v.span()),
                    format!("{key}.config"),
                    e.to_string(),
                )
            })?,
            None => "{}".to_string(),
        };
        let memory_limit = p.memory_limit.as_ref().map_or(64 << 20, |s| s.get_ref().0);
        if let Some(limit) = &p.memory_limit
            && !(1 << 20..=crate::plugin::engine::MAX_PLUGIN_MEMORY).contains(&memory_limit)
        {
            return self.err(
                limit.span(),
                format!("{key}.memory_limit"),
                format!(
                    "must be between 1MiB and {}MiB",
                    crate::plugin::engine::MAX_PLUGIN_MEMORY >> 20
                ),
            );
        }
        let mut files = Vec::new();
        for (i, dir) in p.files.iter().enumerate() {
            let path = base.join(dir.get_ref());
            if !path.is_dir() {
                return self.err(
                    dir.span(),
                    format!("{key}.files[{i}]"),
                    format!("{} is not a directory", path.display()),
                );
            }
            files.push(std::path::absolute(&path).unwrap_or(path));
        }
        Ok(PluginConfig {
            files,
            name: name.to_owned(),
            wasm: base.join(p.wasm.get_ref()),
            config_json,
            on_error: p.on_error.unwrap_or(OnError::FailClosed),
            isolation: p.isolation.unwrap_or(Isolation::Pooled),
            timeout: p.timeout.map_or(Duration::from_millis(10), |d| d.0),
            memory_limit,
            pool_size: p.pool_size.unwrap_or(64),
        })
    }

    fn address(&self, text: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        let s = text.get_ref();
        if let Ok(addr) = s.parse() {
            return Ok(addr);
        }
        match s.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(addr)) if s.contains(':') => Ok(addr),
            _ => self.err(text.span(), key, format!("invalid address {s:?}; write IP:PORT such as \"127.0.0.1:8080\" or \"[::1]:8080\"")),
        }
    }

    fn host_pattern(&self, host: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let h = host.get_ref().to_ascii_lowercase();
        let name = h.strip_prefix("*.").unwrap_or(&h);
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !name.starts_with('.');
        if !valid {
            return self.err(
                host.span(),
                key,
                format!(
                    "invalid host {:?}; write \"api.example.com\" or \"*.example.com\"",
                    host.get_ref()
                ),
            );
        }
        Ok(h)
    }
}

/// The names listeners and routes may refer to.
struct Names<'a> {
    upstreams: &'a HashSet<&'a str>,
    plugins: &'a HashSet<&'a str>,
}

/// ` (defined: a, b)` for error messages about unknown names.
fn defined<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = names.collect();
    if names.is_empty() {
        return " (none are defined)".to_string();
    }
    names.sort_unstable();
    format!(" (defined: {})", names.join(", "))
}
