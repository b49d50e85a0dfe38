//! A loaded plugin: its compiled component, settings, and per-worker pools of initialised
//! instances; and [`PluginInstance`], one store + instance that calls run in.
//!
//! A plugin implements one of three worlds, found out at load time from its exports
//! ([`PluginKind`]): `filter` (HTTP, `on-request`/`on-response`), `connection-filter`
//! (layer 4, `on-connect`) or `balancer` (`pick`). Calling a plugin through another world's
//! method is a [`PluginFailure::WrongKind`], never a panic.
//!
//! Invariants: an instance whose call failed (trap, deadline, memory cap) is dropped, never
//! returned to a pool; every call runs under the plugin's deadline and memory cap; `init`
//! has run successfully on every instance handed out.

use super::balancer::{BalanceTarget, EndpointInfo};
use super::bindings::balancer::{Balancer, BalancerPre};
use super::bindings::connection::{ConnectionFilter, ConnectionFilterPre};
use super::bindings::{Filter, FilterPre, Phases, RequestAction};
use super::connection::{ConnectionAction, ConnectionInfo};
use super::engine::{EPOCH_TICK, MAX_PLUGIN_MEMORY, PluginEngine};
use super::state::{PluginState, RequestView, ResponseView};
use super::{PluginError, PluginFailure};
use crate::config::{Isolation, OnError, PluginConfig};
use crate::runtime::worker_index;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::Resource;

/// How long `init` may run: it may parse rule files, so it gets more than a request call.
const INIT_DEADLINE: Duration = Duration::from_secs(2);

/// Which world a plugin implements, and so where it can be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// The `filter` world: HTTP requests and responses, attached to routes.
    Filter,
    /// The `connection-filter` world: accepted connections, attached to `tcp` and
    /// `tls-passthrough` listeners.
    Connection,
    /// The `balancer` world: chooses an upstream's endpoint, named by the upstream's
    /// `balancer = "plugin:NAME"`.
    Balancer,
}

impl PluginKind {
    /// The WIT world's name.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Filter => "filter",
            PluginKind::Connection => "connection-filter",
            PluginKind::Balancer => "balancer",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Filter => "an HTTP filter plugin",
            PluginKind::Connection => "a connection plugin",
            PluginKind::Balancer => "a balancer plugin",
        })
    }
}

/// The linked component, ready to instantiate, for the world it implements.
enum Pre {
    Filter(FilterPre<PluginState>),
    Connection(ConnectionFilterPre<PluginState>),
    Balancer(BalancerPre<PluginState>),
}

/// An instance's exports, for the world it implements.
enum Exports {
    Filter(Filter),
    Connection(ConnectionFilter),
    Balancer(Balancer),
}

/// A plugin ready to serve: compiled, linked, and known to initialise with its config.
pub struct LoadedPlugin {
    /// The plugin's name in the config.
    pub name: Arc<str>,
    /// What a failure does to the request.
    pub on_error: OnError,
    /// Whether instances are pooled or made per request.
    pub isolation: Isolation,
    phases: Phases,
    config_json: String,
    memory_limit: u64,
    /// Directories mounted read-only into each instance.
    files: Arc<[std::path::PathBuf]>,
    call_ticks: u64,
    pool_size: usize,
    pre: Pre,
    engine: &'static PluginEngine,
    /// Idle initialised instances, one pool per worker thread.
    pools: Box<[Mutex<Vec<PluginInstance>>]>,
    /// Call counts, failures and call time.
    metrics: crate::metrics::PluginMetrics,
}

/// One instantiated, initialised plugin and its store.
pub struct PluginInstance {
    store: Store<PluginState>,
    exports: Exports,
}

impl LoadedPlugin {
    /// Reads, compiles and links the plugin, and runs `init` once to prove its config is good.
    /// `workers` is the number of worker threads (one instance pool each).
    pub fn load(config: &PluginConfig, workers: usize) -> Result<LoadedPlugin, PluginError> {
        let wasm = std::fs::read(&config.wasm)
            .map_err(|e| PluginError::Read(config.wasm.clone(), e.to_string()))?;
        Self::from_bytes(config, &wasm, workers)
    }

    /// Like [`LoadedPlugin::load`], from the component's bytes.
    pub fn from_bytes(
        config: &PluginConfig,
        wasm: &[u8],
        workers: usize,
    ) -> Result<LoadedPlugin, PluginError> {
        if config.memory_limit > MAX_PLUGIN_MEMORY {
            return Err(PluginError::Config(format!(
                "memory_limit may be at most {} MiB",
                MAX_PLUGIN_MEMORY >> 20
            )));
        }
        let engine = PluginEngine::global()?;
        let component = engine.compile(wasm)?;
        // The world is told by the exports: only a connection plugin exports `on-connect`,
        // only a balancer exports `pick`.
        let exports = |name| component.get_export_index(None, name).is_some();
        let kind = if exports("on-connect") {
            PluginKind::Connection
        } else if exports("pick") {
            PluginKind::Balancer
        } else {
            PluginKind::Filter
        };
        let link_error = |e: wasmtime::Error| PluginError::Link(kind.world(), format!("{e:#}"));
        let pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = match kind {
            PluginKind::Filter => Pre::Filter(FilterPre::new(pre).map_err(link_error)?),
            PluginKind::Connection => {
                Pre::Connection(ConnectionFilterPre::new(pre).map_err(link_error)?)
            }
            PluginKind::Balancer => Pre::Balancer(BalancerPre::new(pre).map_err(link_error)?),
        };
        let mut plugin = LoadedPlugin {
            name: Arc::from(config.name.as_str()),
            on_error: config.on_error,
            isolation: config.isolation,
            phases: Phases::empty(),
            config_json: config.config_json.clone(),
            memory_limit: config.memory_limit,
            files: config.files.clone().into(),
            call_ticks: ticks(config.timeout),
            pool_size: config.pool_size,
            pre,
            engine,
            pools: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            metrics: crate::metrics::PluginMetrics::new(&config.name),
        };
        let (first, phases) = plugin.instantiate().map_err(|f| match f {
            PluginFailure::Init(message) => PluginError::Init(message),
            other => PluginError::Init(other.to_string()),
        })?;
        plugin.phases = phases;
        if !plugin.files.is_empty() && plugin.isolation == Isolation::Pooled {
            // Plugins that read files usually have a heavy `init` (rule sets): give every
            // worker's pool an instance now rather than on a first request.
            for pool in plugin.pools.iter().skip(1) {
                let (instance, _) = plugin
                    .instantiate()
                    .map_err(|f| PluginError::Init(f.to_string()))?;
                pool.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(instance);
            }
            plugin.pools[0]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(first);
        } else {
            plugin.release(first);
        }
        Ok(plugin)
    }

    /// Which world the plugin implements: where it may be attached, which calls it takes.
    pub fn kind(&self) -> PluginKind {
        match self.pre {
            Pre::Filter(_) => PluginKind::Filter,
            Pre::Connection(_) => PluginKind::Connection,
            Pre::Balancer(_) => PluginKind::Balancer,
        }
    }

    /// Whether the plugin asked to see requests (never, for connection and balancer plugins).
    pub fn wants_request(&self) -> bool {
        self.phases.contains(Phases::REQUEST)
    }

    /// Whether the plugin asked to see responses (never, for connection and balancer plugins).
    pub fn wants_response(&self) -> bool {
        self.phases.contains(Phases::RESPONSE)
    }

    /// Whether the plugin reads request bodies (the route buffers them for it).
    pub fn wants_request_body(&self) -> bool {
        self.phases.contains(Phases::REQUEST_BODY)
    }

    /// An initialised instance: an idle one from this worker's pool, or a new one.
    pub fn acquire(&self) -> Result<PluginInstance, PluginFailure> {
        if self.isolation == Isolation::Pooled
            && let Some(instance) = self.pool().lock().unwrap_or_else(|e| e.into_inner()).pop()
        {
            return Ok(instance);
        }
        self.instantiate().map(|(instance, _)| instance)
    }

    /// Gives back an instance whose calls all succeeded (pooled plugins keep it for reuse).
    pub fn release(&self, instance: PluginInstance) {
        if self.isolation == Isolation::Pooled {
            let mut pool = self.pool().lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < self.pool_size {
                pool.push(instance);
            }
        }
    }

    /// Runs `on-request` on `instance` with `view` lent to it; the view comes back either way.
    /// A connection or balancer plugin's instance fails with [`PluginFailure::WrongKind`].
    pub fn on_request(
        &self,
        instance: &mut PluginInstance,
        view: RequestView,
    ) -> (RequestView, Result<RequestAction, PluginFailure>) {
        let Exports::Filter(filter) = &instance.exports else {
            return (
                view,
                Err(PluginFailure::WrongKind("on-request", self.kind())),
            );
        };
        let store = &mut instance.store;
        store.data_mut().request = Some(view);
        store.set_epoch_deadline(self.call_ticks);
        let result = self.observe(|| filter.call_on_request(&mut *store, Resource::new_borrow(0)));
        let view = store
            .data_mut()
            .request
            .take()
            .expect("the request view stays in the store during the call");
        (view, result)
    }

    /// Runs `on-response` on `instance` with `view` lent to it; the view comes back either way.
    /// A connection or balancer plugin's instance fails with [`PluginFailure::WrongKind`].
    pub fn on_response(
        &self,
        instance: &mut PluginInstance,
        view: ResponseView,
    ) -> (ResponseView, Result<(), PluginFailure>) {
        let Exports::Filter(filter) = &instance.exports else {
            return (
                view,
                Err(PluginFailure::WrongKind("on-response", self.kind())),
            );
        };
        let store = &mut instance.store;
        store.data_mut().response = Some(view);
        store.set_epoch_deadline(self.call_ticks);
        let result = self.observe(|| filter.call_on_response(&mut *store, Resource::new_borrow(0)));
        let view = store
            .data_mut()
            .response
            .take()
            .expect("the response view stays in the store during the call");
        (view, result)
    }

    /// Asks a connection plugin about a new connection: takes an instance (from this worker's
    /// pool, or a new one), runs `on-connect` under the call deadline and memory cap, and gives
    /// the instance back on success (dropped on failure, or always with `per-request`
    /// isolation, which here means one instance per connection).
    ///
    /// On `Err` the caller applies the plugin's `on_error`, e.g. with
    /// [`LoadedPlugin::on_error_action`]; [`LoadedPlugin::decide`] does both in one call.
    /// An HTTP filter or balancer plugin fails with [`PluginFailure::WrongKind`].
    pub fn on_connect(&self, info: &ConnectionInfo<'_>) -> Result<ConnectionAction, PluginFailure> {
        if self.kind() != PluginKind::Connection {
            return Err(PluginFailure::WrongKind("on-connect", self.kind()));
        }
        let mut instance = self.acquire()?;
        let Exports::Connection(exports) = &instance.exports else {
            unreachable!("a connection plugin's instances are connection-filter instances");
        };
        let store = &mut instance.store;
        store.set_epoch_deadline(self.call_ticks);
        let action = self.observe(|| exports.call_on_connect(&mut *store, &info.to_wit()))?;
        self.release(instance);
        Ok(action.into())
    }

    /// Asks a balancer plugin which of `endpoints` gets `target`: takes an instance (from
    /// this worker's pool, or a new one), runs `pick` under the call deadline and memory cap,
    /// and gives the instance back on success (dropped on failure, or always with
    /// `per-request` isolation).
    ///
    /// `Ok(Some(i))` is an index into `endpoints`; `Ok(None)` means the plugin has no
    /// preference (use the default, round-robin over available endpoints). An index out of
    /// range is [`PluginFailure::Invalid`]. The plugin is shown every endpoint it is given,
    /// unhealthy and draining ones included; whether to honour a pick of one of those is the
    /// caller's decision. A request's headers are not copied: the plugin looks up the ones it
    /// wants during the call. A plugin of another world fails with
    /// [`PluginFailure::WrongKind`].
    pub fn pick(
        &self,
        target: &BalanceTarget<'_>,
        endpoints: &[EndpointInfo],
    ) -> Result<Option<usize>, PluginFailure> {
        if self.kind() != PluginKind::Balancer {
            return Err(PluginFailure::WrongKind("pick", self.kind()));
        }
        let mut instance = self.acquire()?;
        let Exports::Balancer(exports) = &instance.exports else {
            unreachable!("a balancer plugin's instances are balancer instances");
        };
        let list: Vec<_> = endpoints.iter().map(|e| e.to_wit()).collect();
        let store = &mut instance.store;
        store.set_epoch_deadline(self.call_ticks);
        let picked = match *target {
            BalanceTarget::Request { parts, client } => {
                PluginState::lend_request(store, parts, client, |store| {
                    let target = BalanceTarget::wit_request();
                    self.observe(|| exports.call_pick(&mut *store, &target, &list))
                })
            }
            BalanceTarget::Connection(info) => {
                let target = BalanceTarget::wit_connection(info);
                self.observe(|| exports.call_pick(&mut *store, &target, &list))
            }
        }?;
        let picked = match picked {
            Some(i) if (i as usize) < endpoints.len() => Some(i as usize),
            Some(i) => {
                return Err(PluginFailure::Invalid(format!(
                    "picked endpoint {i} of a list of {}",
                    endpoints.len()
                )));
            }
            None => None,
        };
        self.release(instance);
        Ok(picked)
    }

    fn pool(&self) -> &Mutex<Vec<PluginInstance>> {
        &self.pools[worker_index() % self.pools.len()]
    }

    /// A new instance with `init` run on it, and the phases `init` asked for.
    fn instantiate(&self) -> Result<(PluginInstance, Phases), PluginFailure> {
        if !self.files.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            // WASI's synchronous filesystem calls block on a Tokio runtime of their own, which
            // cannot be done on a worker's: a plugin that reads files starts on a thread of
            // its own (pools are filled at load, so this is rare).
            return std::thread::scope(|scope| {
                scope
                    .spawn(|| self.instantiate_here())
                    .join()
                    .unwrap_or_else(|_| Err(PluginFailure::Trap("init panicked".into())))
            });
        }
        self.instantiate_here()
    }

    fn instantiate_here(&self) -> Result<(PluginInstance, Phases), PluginFailure> {
        let mut store = Store::new(
            &self.engine.engine,
            PluginState::new(self.name.clone(), self.memory_limit, &self.files)
                .map_err(|e| PluginFailure::Init(format!("{e:#}")))?,
        );
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(ticks(INIT_DEADLINE));
        let (exports, phases) = match &self.pre {
            Pre::Filter(pre) => {
                let filter = contain(|| pre.instantiate(&mut store))?;
                let phases = contain(|| filter.call_init(&mut store, &self.config_json))?
                    .map_err(PluginFailure::Init)?;
                (Exports::Filter(filter), phases)
            }
            Pre::Connection(pre) => {
                let connection = contain(|| pre.instantiate(&mut store))?;
                contain(|| connection.call_init(&mut store, &self.config_json))?
                    .map_err(PluginFailure::Init)?;
                (Exports::Connection(connection), Phases::empty())
            }
            Pre::Balancer(pre) => {
                let balancer = contain(|| pre.instantiate(&mut store))?;
                contain(|| balancer.call_init(&mut store, &self.config_json))?
                    .map_err(PluginFailure::Init)?;
                (Exports::Balancer(balancer), Phases::empty())
            }
        };
        Ok((PluginInstance { store, exports }, phases))
    }
}

impl LoadedPlugin {
    /// Runs one call into the plugin under [`contain`], counting it, its time and how it
    /// failed in the plugin's metrics.
    fn observe<T>(&self, call: impl FnOnce() -> wasmtime::Result<T>) -> Result<T, PluginFailure> {
        let started = std::time::Instant::now();
        let result = contain(call);
        self.metrics.calls.increment(1);
        self.metrics
            .duration
            .record(started.elapsed().as_secs_f64());
        match &result {
            Err(PluginFailure::Timeout) => self.metrics.timeouts.increment(1),
            Err(PluginFailure::Trap(_) | PluginFailure::MemoryLimit) => {
                self.metrics.traps.increment(1)
            }
            _ => {}
        }
        result
    }
}

/// Runs one call into a plugin, turning a trap or a panic raised inside a host function it
/// called (e.g. a WASI function that must not run on a worker thread) into a failure of
/// this call alone. The instance is dropped by the caller either way.
fn contain<T>(call: impl FnOnce() -> wasmtime::Result<T>) -> Result<T, PluginFailure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result.map_err(PluginFailure::from_call),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned());
            Err(PluginFailure::Trap(format!(
                "host function failed: {}",
                what.unwrap_or_default()
            )))
        }
    }
}

/// A deadline in epoch ticks: at least one full tick, rounded up.
fn ticks(d: Duration) -> u64 {
    (d.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64).max(1) + 1
}
