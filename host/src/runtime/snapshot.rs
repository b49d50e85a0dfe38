//! The immutable runtime snapshot: routes compiled to per-listener lookup tables, upstreams,
//! and loaded plugins. Built whole from a [`Config`] before anything serves with it; the
//! request path only reads it.

use crate::config::Config;
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
    pub fn build(config: &Config) -> Result<Snapshot, BuildError> {
        let workers = config.runtime.workers;
        let mut plugins = HashMap::new();
        for p in &config.plugins {
            let loaded = LoadedPlugin::load(p, workers).map_err(|error| BuildError {
                file: config.source.display().to_string(),
                plugin: p.name.clone(),
                error,
            })?;
            plugins.insert(p.name.clone(), Arc::new(loaded));
        }
        // A plugin attached where its world does not fit: filters on routes, connection
        // plugins on stream listeners.
        let attached = config
            .routes
            .iter()
            .flat_map(|r| r.plugins.iter().map(|p| (p, PluginKind::Filter)))
            .chain(config.listeners.iter().flat_map(|l| {
                l.plugins.iter().map(|p| (p, PluginKind::Connection))
            }))
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
                let upstream = Upstream::new(u, |name| plugins.get(name).cloned());
                (u.name.clone(), Arc::new(upstream))
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
            routes.push(Route {
                index,
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
        Ok(Snapshot {
            routes,
            routers,
            upstreams,
            plugins,
            streams,
        })
    }

    /// The route for a request on `listener` to `host` (without port) and `path`.
    pub fn route(&self, listener: &str, host: &str, path: &str) -> Option<&Route> {
        let index = self.routers.get(listener)?.lookup(host, path)?;
        self.routes.get(index)
    }
}
