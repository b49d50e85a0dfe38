//! The immutable runtime snapshot: routes compiled to per-listener lookup tables, upstreams,
//! and loaded plugins. Built whole from a [`Config`] before anything serves with it; the
//! request path only reads it.

use crate::cache::RouteCache;
use crate::config::{Config, ListenerConfig};
use crate::listener::http::HttpSettings;
use crate::plugin::{LoadedPlugin, PluginError, PluginKind};
use crate::proxy::router::{HostMap, Router};
use crate::upstream::Upstream;
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::sync::Arc;

/// Everything the request path needs, built from one config.
pub struct Snapshot {
    /// All routes; routers hold indexes into this.
    pub routes: Vec<Route>,
    /// A router per listener name.
    pub routers: FxHashMap<String, Router>,
    /// Upstreams by name (plugins may pick any of them).
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// Loaded plugins by name.
    pub plugins: HashMap<String, Arc<LoadedPlugin>>,
    /// Where each `tcp` and `tls-passthrough` listener sends connections, by listener name.
    pub streams: FxHashMap<String, StreamRoutes>,
    /// Every listener's settings, by name.
    pub listeners: FxHashMap<String, Arc<ListenerRuntime>>,
    /// Each plugin's content hash and load time, by name.
    pub plugin_records: HashMap<String, PluginRecord>,
    /// The config this snapshot was built from.
    pub config: Config,
}

/// Which build of a plugin is serving.
#[derive(Debug, Clone)]
pub struct PluginRecord {
    /// SHA-256 of the `.wasm` file, hex.
    pub sha256: String,
    /// When this build was loaded (kept across reloads that do not change it).
    pub loaded_at: std::time::SystemTime,
}

/// The SHA-256 of `bytes` in lowercase hex.
fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A listener's settings as accept loops read them for each new connection.
pub struct ListenerRuntime {
    /// The validated config.
    pub config: ListenerConfig,
    /// `http`/`https`: the connection settings (hyper builder, TLS acceptor).
    pub http: Option<Arc<HttpSettings>>,
}

/// The routing of one `tcp` or `tls-passthrough` listener.
pub struct StreamRoutes {
    /// Upstream by SNI (exact, `*.suffix`); the catch-all is a `tcp` listener's upstream or
    /// a passthrough listener's `default_upstream` (`None`: close the connection).
    pub upstreams: HostMap<Option<Arc<Upstream>>>,
    /// Connection plugins, run in order on every new connection.
    pub plugins: Vec<Arc<LoadedPlugin>>,
}

/// A route, ready to serve.
pub struct Route {
    /// Position in the config's routes, for logs (`route[3]`).
    pub index: usize,
    /// Where requests go unless a plugin chooses otherwise.
    pub upstream: Arc<Upstream>,
    /// The plugin chain, in config order.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Indexes into `plugins` of those that want requests, in order.
    pub request_plugins: Vec<usize>,
    /// Indexes into `plugins` of those that want responses, in reverse order.
    pub response_plugins: Vec<usize>,
    /// Request counters and latency, labelled `route[INDEX]`.
    pub metrics: crate::metrics::RouteMetrics,
    /// The route's HTTP cache, if it has one.
    pub cache: Option<Arc<RouteCache>>,
    /// When a plugin of the chain reads request bodies: the most bytes buffered for it, and
    /// what happens to larger bodies.
    pub body_limit: Option<(u64, crate::config::Oversize)>,
}

/// A snapshot could not be built: a plugin failed to load.
#[derive(Debug, thiserror::Error)]
#[error("{file}: plugin.{plugin}: {error}")]
pub struct BuildError {
    /// The config file.
    pub file: String,
    /// The plugin's name.
    pub plugin: String,
    /// What went wrong (already part of this error's message, so not a `source`: the CLI
    /// prints error chains and would repeat it).
    pub error: PluginError,
}

impl Snapshot {
    /// Builds a snapshot: compiles and initialises every plugin, compiles the routes.
    ///
    /// With the `previous` snapshot (a reload), a plugin whose settings and `.wasm` bytes
    /// are unchanged is reused as it is (instances and all), and so is an upstream whose
    /// settings are unchanged (endpoint health, in-flight counts and balancer state).
    pub fn build(config: &Config, previous: Option<&Snapshot>) -> Result<Snapshot, BuildError> {
        let workers = config.runtime.workers;
        let mut plugins = HashMap::new();
        let mut plugin_records = HashMap::new();
        for p in &config.plugins {
            let failed = |error| BuildError {
                file: config.source.display().to_string(),
                plugin: p.name.clone(),
                error,
            };
            let bytes = std::fs::read(&p.wasm)
                .map_err(|e| failed(PluginError::Read(p.wasm.clone(), e.to_string())))?;
            let sha256 = hex_sha256(&bytes);
            let unchanged = previous.and_then(|prev| {
                let same_config = prev.config.plugins.iter().any(|q| q == p);
                let record = prev.plugin_records.get(&p.name)?;
                (same_config && record.sha256 == sha256)
                    .then(|| (prev.plugins.get(&p.name).cloned(), record.clone()))
            });
            let (loaded, record) = match unchanged {
                Some((Some(loaded), record)) => (loaded, record),
                _ => {
                    let loaded = LoadedPlugin::load(p, workers).map_err(failed)?;
                    let record = PluginRecord {
                        sha256,
                        loaded_at: std::time::SystemTime::now(),
                    };
                    (Arc::new(loaded), record)
                }
            };
            plugins.insert(p.name.clone(), loaded);
            plugin_records.insert(p.name.clone(), record);
        }
        // A plugin attached where its world does not fit: filters on routes, connection
        // plugins on stream listeners.
        let attached = config
            .routes
            .iter()
            .flat_map(|r| r.plugins.iter().map(|p| (p, PluginKind::Filter)))
            .chain(
                config
                    .listeners
                    .iter()
                    .flat_map(|l| l.plugins.iter().map(|p| (p, PluginKind::Connection))),
            )
            .chain(config.upstreams.iter().filter_map(|u| match &u.balancer {
                crate::config::BalancerConfig::Plugin(p) => Some((p, PluginKind::Balancer)),
                _ => None,
            }));
        for (name, wanted) in attached {
            let kind = plugins[name].kind();
            if kind != wanted {
                return Err(BuildError {
                    file: config.source.display().to_string(),
                    plugin: name.clone(),
                    error: PluginError::Config(format!(
                        "is {kind} (world `{}`) but is attached where {wanted} (world `{}`) is expected",
                        kind.world(),
                        wanted.world()
                    )),
                });
            }
        }
        for u in &config.upstreams {
            if u.tls.as_ref().is_some_and(|t| !t.verify) {
                tracing::warn!(upstream = %u.name, "tls.verify = false: the upstream's certificate is not checked");
            }
        }
        let upstreams: HashMap<String, Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|u| {
                let reused = previous.and_then(|prev| {
                    let same_config = prev.config.upstreams.iter().any(|v| v == u);
                    let same_plugin = match &u.balancer {
                        crate::config::BalancerConfig::Plugin(name) => prev
                            .plugins
                            .get(name)
                            .zip(plugins.get(name))
                            .is_some_and(|(a, b)| Arc::ptr_eq(a, b)),
                        _ => true,
                    };
                    (same_config && same_plugin)
                        .then(|| prev.upstreams.get(&u.name).cloned())
                        .flatten()
                });
                let upstream = reused.unwrap_or_else(|| {
                    Arc::new(Upstream::new(u, |name| plugins.get(name).cloned()))
                });
                (u.name.clone(), upstream)
            })
            .collect();

        let mut routers: FxHashMap<String, Router> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), Router::default()))
            .collect();
        let mut routes = Vec::new();
        for (index, r) in config.routes.iter().enumerate() {
            let chain: Vec<Arc<LoadedPlugin>> =
                r.plugins.iter().map(|name| plugins[name].clone()).collect();
            let cache = r.cache.as_ref().map(|c| {
                previous
                    .and_then(|prev| prev.reusable_cache(r))
                    .unwrap_or_else(|| Arc::new(RouteCache::new(c, &format!("route[{index}]"))))
            });
            let body_limit = chain
                .iter()
                .any(|p| p.wants_request_body())
                .then_some((r.max_body, r.oversize));
            routes.push(Route {
                index,
                cache,
                body_limit,
                metrics: crate::metrics::RouteMetrics::new(&format!("route[{index}]")),
                upstream: upstreams[&r.upstream].clone(),
                request_plugins: (0..chain.len())
                    .filter(|&i| chain[i].wants_request())
                    .collect(),
                response_plugins: (0..chain.len())
                    .rev()
                    .filter(|&i| chain[i].wants_response())
                    .collect(),
                plugins: chain,
            });
            for listener in &r.listeners {
                if let Some(router) = routers.get_mut(listener) {
                    router.insert(r.host.as_deref(), &r.path_prefix, index);
                }
            }
        }
        let mut streams = FxHashMap::default();
        for l in config.listeners.iter().filter(|l| !l.protocol.is_http()) {
            let mut table = HostMap::default();
            for (pattern, upstream) in &l.sni {
                *table.entry(Some(pattern)) = Some(upstreams[upstream].clone());
            }
            *table.entry(None) = l
                .upstream
                .as_ref()
                .or(l.default_upstream.as_ref())
                .map(|u| upstreams[u].clone());
            let chain = l.plugins.iter().map(|name| plugins[name].clone()).collect();
            streams.insert(
                l.name.clone(),
                StreamRoutes {
                    upstreams: table,
                    plugins: chain,
                },
            );
        }
        let listeners = config
            .listeners
            .iter()
            .map(|l| {
                let http = l.protocol.is_http().then(|| Arc::new(HttpSettings::new(l)));
                let runtime = ListenerRuntime {
                    config: l.clone(),
                    http,
                };
                (l.name.clone(), Arc::new(runtime))
            })
            .collect();
        Ok(Snapshot {
            routes,
            routers,
            upstreams,
            plugins,
            streams,
            listeners,
            plugin_records,
            config: config.clone(),
        })
    }

    /// The cache of this snapshot's route that matches the same requests as `route` with
    /// the same cache settings, to keep across a reload.
    fn reusable_cache(&self, route: &crate::config::RouteConfig) -> Option<Arc<RouteCache>> {
        let settings = route.cache.as_ref()?;
        self.config
            .routes
            .iter()
            .zip(&self.routes)
            .find(|(old, _)| {
                old.listeners == route.listeners
                    && old.host == route.host
                    && old.path_prefix == route.path_prefix
            })
            .and_then(|(_, old)| old.cache.clone())
            .filter(|cache| cache.has_config(settings))
    }

    /// The route for a request on `listener` to `host` (without port) and `path`.
    pub fn route(&self, listener: &str, host: &str, path: &str) -> Option<&Route> {
        let index = self.routers.get(listener)?.lookup(host, path)?;
        self.routes.get(index)
    }
}
