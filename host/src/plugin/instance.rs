//! A loaded plugin: its compiled component, settings, and per-worker pools of initialised
//! instances; and [`PluginInstance`], one store + instance that calls run in.
//!
//! Invariants: an instance whose call failed (trap, deadline, memory cap) is dropped, never
//! returned to a pool; every call runs under the plugin's deadline and memory cap; `init`
//! has run successfully on every instance handed out.

use super::bindings::{Filter, FilterPre, Phases, RequestAction};
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
    call_ticks: u64,
    pool_size: usize,
    pre: FilterPre<PluginState>,
    engine: &'static PluginEngine,
    /// Idle initialised instances, one pool per worker thread.
    pools: Box<[Mutex<Vec<PluginInstance>>]>,
}

/// One instantiated, initialised plugin and its store.
pub struct PluginInstance {
    store: Store<PluginState>,
    filter: Filter,
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
        let pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Link(format!("{e:#}")))?;
        let pre = FilterPre::new(pre).map_err(|e| PluginError::Link(format!("{e:#}")))?;
        let mut plugin = LoadedPlugin {
            name: Arc::from(config.name.as_str()),
            on_error: config.on_error,
            isolation: config.isolation,
            phases: Phases::empty(),
            config_json: config.config_json.clone(),
            memory_limit: config.memory_limit,
            call_ticks: ticks(config.timeout),
            pool_size: config.pool_size,
            pre,
            engine,
            pools: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        };
        let (first, phases) = plugin
            .instantiate()
            .map_err(|f| PluginError::Init(f.to_string()))?;
        plugin.phases = phases;
        plugin.release(first);
        Ok(plugin)
    }

    /// Whether the plugin asked to see requests.
    pub fn wants_request(&self) -> bool {
        self.phases.contains(Phases::REQUEST)
    }

    /// Whether the plugin asked to see responses.
    pub fn wants_response(&self) -> bool {
        self.phases.contains(Phases::RESPONSE)
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
    pub fn on_request(
        &self,
        instance: &mut PluginInstance,
        view: RequestView,
    ) -> (RequestView, Result<RequestAction, PluginFailure>) {
        let store = &mut instance.store;
        store.data_mut().request = Some(view);
        store.set_epoch_deadline(self.call_ticks);
        let filter = &instance.filter;
        let result = contain(|| filter.call_on_request(&mut *store, Resource::new_borrow(0)));
        let view = store
            .data_mut()
            .request
            .take()
            .expect("the request view stays in the store during the call");
        (view, result)
    }

    /// Runs `on-response` on `instance` with `view` lent to it; the view comes back either way.
    pub fn on_response(
        &self,
        instance: &mut PluginInstance,
        view: ResponseView,
    ) -> (ResponseView, Result<(), PluginFailure>) {
        let store = &mut instance.store;
        store.data_mut().response = Some(view);
        store.set_epoch_deadline(self.call_ticks);
        let filter = &instance.filter;
        let result = contain(|| filter.call_on_response(&mut *store, Resource::new_borrow(0)));
        let view = store
            .data_mut()
            .response
            .take()
            .expect("the response view stays in the store during the call");
        (view, result)
    }

    fn pool(&self) -> &Mutex<Vec<PluginInstance>> {
        &self.pools[worker_index() % self.pools.len()]
    }

    /// A new instance with `init` run on it, and the phases `init` asked for.
    fn instantiate(&self) -> Result<(PluginInstance, Phases), PluginFailure> {
        let mut store = Store::new(
            &self.engine.engine,
            PluginState::new(self.name.clone(), self.memory_limit),
        );
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(ticks(INIT_DEADLINE));
        let filter = contain(|| self.pre.instantiate(&mut store))?;
        let phases = contain(|| filter.call_init(&mut store, &self.config_json))?
            .map_err(PluginFailure::Init)?;
        Ok((PluginInstance { store, filter }, phases))
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
