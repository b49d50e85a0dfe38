//! The one wasmtime [`Engine`] and [`Linker`] of the process, the compiled-component cache and
//! the epoch ticker that enforces call deadlines.
//!
//! Invariants: there is exactly one engine per process (so compiled code and the pooling
//! allocator's slots are shared by every snapshot); the ticker advances the engine's epoch
//! every [`EPOCH_TICK`], and a store's deadline is counted in those ticks.

use super::PluginError;
use super::bindings::Filter;
use super::bindings::balancer::maitred::plugin::balancing;
use super::state::PluginState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticker advances the engine's epoch: the granularity of plugin deadlines
/// (a call is stopped between its deadline and one tick later). Each tick wakes a thread, so a
/// finer tick costs CPU on every core's budget.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Bytes at the start of each linear memory that stay resident between instances: reset by
/// scanning for dirty pages (`pagemap_scan`) instead of being unmapped and faulted in again.
/// A Rust plugin's stack (1 MiB), data and first heap pages fit in it.
const KEEP_RESIDENT: usize = 2 << 20;

/// Largest linear memory any plugin may be configured with (the pooling allocator's slot size).
pub const MAX_PLUGIN_MEMORY: u64 = 1 << 30;

/// The process-wide plugin engine: compiles components and links them against the host.
pub struct PluginEngine {
    pub(super) engine: Engine,
    pub(super) linker: Linker<PluginState>,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
}

impl PluginEngine {
    /// The process-wide engine, created (with its epoch ticker thread) on first use.
    pub fn global() -> Result<&'static PluginEngine, PluginError> {
        static ENGINE: OnceLock<Result<PluginEngine, String>> = OnceLock::new();
        ENGINE
            .get_or_init(|| PluginEngine::new().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| PluginError::Engine(e.clone()))
    }

    fn new() -> wasmtime::Result<PluginEngine> {
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(2000)
            .total_core_instances(4000)
            .total_memories(2000)
            .total_tables(2000)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(MAX_PLUGIN_MEMORY as usize)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
            .wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Filter::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        // The balancer world's own import (its `log` and `host` are the filter world's).
        balancing::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        start_epoch_ticker(engine.weak());
        Ok(PluginEngine {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// Compiles `wasm` (a component), or returns the cached compilation of identical bytes.
    pub fn compile(&self, wasm: &[u8]) -> Result<Component, PluginError> {
        let hash: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(c) = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
        {
            return Ok(c.clone());
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash, component.clone());
        Ok(component)
    }

    /// The linker every plugin is instantiated with.
    pub(super) fn linker(&self) -> &Linker<PluginState> {
        &self.linker
    }
}

/// One thread for the whole process that advances the epoch, ending when the engine is gone.
fn start_epoch_ticker(engine: wasmtime::EngineWeak) {
    std::thread::Builder::new()
        .name("maitred-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}
