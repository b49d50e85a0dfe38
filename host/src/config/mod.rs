//! Configuration: TOML text -> raw serde structs (with spans) -> a validated [`Config`].
//!
//! Every problem is a [`ConfigError`] naming the file, the line and the key. Nothing here
//! touches the network or compiles plugins: [`crate::runtime`] builds a runnable snapshot
//! from a [`Config`].

mod error;
mod raw;
pub mod units;

pub use error::ConfigError;

use raw::RawConfig;
use serde_spanned::Spanned;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
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
}

/// `[runtime]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Worker threads, each running its own single-threaded event loop.
    pub workers: usize,
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerProtocol {
    /// Cleartext HTTP/1.1 and HTTP/2 (prior knowledge) on one port.
    #[default]
    Http,
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
}

/// `[[route]]`: which requests go where, through which plugins.
#[derive(Debug, Clone)]
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
}

/// How an upstream spreads requests over its endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancerKind {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
}

/// `[upstream.NAME]`: a group of interchangeable backend endpoints.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The upstream's name.
    pub name: String,
    /// Endpoint addresses (names are resolved when the config is loaded).
    pub endpoints: Vec<SocketAddr>,
    /// Balancing algorithm.
    pub balancer: BalancerKind,
    /// Time allowed to establish a TCP connection (exceeded: 502).
    pub connect_timeout: Duration,
    /// Time allowed for the response head after the request is sent (exceeded: 504).
    pub response_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Most idle connections kept per endpoint and worker.
    pub max_idle: usize,
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

/// `[plugin.NAME]`: a WASM component and its settings.
#[derive(Debug, Clone)]
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

        let upstreams = raw
            .upstreams
            .iter()
            .map(|(name, up)| self.upstream(name, up))
            .collect::<Result<Vec<_>, _>>()?;
        let plugins = raw
            .plugins
            .iter()
            .map(|(name, p)| self.plugin(base, name, p))
            .collect::<Result<Vec<_>, _>>()?;

        let mut listener_names = HashSet::new();
        let mut listeners = Vec::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            let key = format!("listener[{i}]");
            if !listener_names.insert(l.name.get_ref().clone()) {
                return self.err(
                    l.name.span(),
                    format!("{key}.name"),
                    format!("duplicate listener name {:?}", l.name.get_ref()),
                );
            }
            listeners.push(ListenerConfig {
                name: l.name.get_ref().clone(),
                listen: self.address(&l.listen, &format!("{key}.listen"))?,
                protocol: l.protocol,
                header_read_timeout: l
                    .header_read_timeout
                    .map_or(Duration::from_secs(10), |d| d.0),
                max_header_size: l.max_header_size.map_or(64 * 1024, |s| s.0 as usize),
            });
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

        let upstream_names: HashSet<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
        let plugin_names: HashSet<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
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
                    vec![name.get_ref().clone()]
                }
                None => listeners.iter().map(|l| l.name.clone()).collect(),
            };
            if !upstream_names.contains(r.upstream.get_ref().as_str()) {
                return self.err(
                    r.upstream.span(),
                    format!("{key}.upstream"),
                    format!(
                        "unknown upstream {:?}{}",
                        r.upstream.get_ref(),
                        defined(upstream_names.iter().copied())
                    ),
                );
            }
            for (j, p) in r.plugins.iter().enumerate() {
                if !plugin_names.contains(p.get_ref().as_str()) {
                    return self.err(
                        p.span(),
                        format!("{key}.plugins[{j}]"),
                        format!(
                            "unknown plugin {:?}{}",
                            p.get_ref(),
                            defined(plugin_names.iter().copied())
                        ),
                    );
                }
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
            });
        }

        Ok(Config {
            source: self.file.to_path_buf(),
            runtime: RuntimeConfig { workers },
            listeners,
            routes,
            upstreams,
            plugins,
        })
    }

    fn upstream(&self, name: &str, up: &raw::RawUpstream) -> Result<UpstreamConfig, ConfigError> {
        let key = format!("upstream.{name}");
        if up.endpoints.get_ref().is_empty() {
            return self.err(
                up.endpoints.span(),
                format!("{key}.endpoints"),
                "needs at least one endpoint",
            );
        }
        let mut endpoints = Vec::new();
        for (i, e) in up.endpoints.get_ref().iter().enumerate() {
            let addr = self.address(e, &format!("{key}.endpoints[{i}]"))?;
            if endpoints.contains(&addr) {
                return self.err(
                    e.span(),
                    format!("{key}.endpoints[{i}]"),
                    format!("duplicate endpoint {addr}"),
                );
            }
            endpoints.push(addr);
        }
        Ok(UpstreamConfig {
            name: name.to_owned(),
            endpoints,
            balancer: up.balancer.unwrap_or_default(),
            connect_timeout: up.connect_timeout.map_or(Duration::from_secs(5), |d| d.0),
            response_timeout: up.response_timeout.map_or(Duration::from_secs(60), |d| d.0),
            idle_timeout: up.idle_timeout.map_or(Duration::from_secs(60), |d| d.0),
            max_idle: up.max_idle.unwrap_or(64),
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
        Ok(PluginConfig {
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

/// ` (defined: a, b)` for error messages about unknown names.
fn defined<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = names.collect();
    if names.is_empty() {
        return " (none are defined)".to_string();
    }
    names.sort_unstable();
    format!(" (defined: {})", names.join(", "))
}
