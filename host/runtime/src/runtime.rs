//! The wasmtime engine every plugin runs on: component model, async host calls, the pooling
//! allocator, epoch interruption driven by a ticker thread, and the compile cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::ComponentCache;
use crate::error::RuntimeError;

/// Engine-wide settings. Per-plugin limits are in [`crate::Limits`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are kept between runs; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may exist at once across all plugins (calls in flight). A call that finds
    /// the pool full waits for a slot.
    pub max_instances: u32,
    /// The largest memory any plugin may be given (its pool slot size).
    pub max_memory_bytes: u64,
    /// How often the epoch advances: the granularity of CPU budgets.
    pub epoch_tick: Duration,
    /// Deadline of one `grpc.forward`, retries included.
    pub grpc_deadline: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 256,
            max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(10),
            grpc_deadline: crate::caps::grpc::DEFAULT_DEADLINE,
        }
    }
}

/// Cheap to clone; every clone shares the engine, the pool and the ticker, which stops when the
/// last clone (and the last service built from it) is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: RuntimeConfig,
    cache: ComponentCache,
    /// One permit per pool slot: a call waits for a slot instead of failing when the pool is
    /// full (backpressure, like the engine's `max_parallelism`).
    slots: Arc<Semaphore>,
    /// Set on drop; the ticker thread exits at its next tick.
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine = Engine::new(&engine_config(&config)?)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), config.epoch_tick, stop.clone())?;
        let cache = ComponentCache::new(config.cache_dir.clone());
        let slots = Arc::new(Semaphore::new(config.max_instances.max(1) as usize));
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                config,
                cache,
                slots,
                stop,
            }),
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Waits for a free instance slot. Hold the permit until the call's store is dropped.
    pub(crate) async fn slot(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed.
        self.inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("slots closed"))
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Compiles `wasm` (or loads it from the cache). Returns the component and its SHA-256 (hex).
    /// `origin` (the file, or `bundled:NAME`) names it in errors.
    pub(crate) fn compile(
        &self,
        wasm: &[u8],
        origin: &str,
    ) -> Result<(Component, String), RuntimeError> {
        let digest = hex::encode(Sha256::digest(wasm));
        let component = self
            .inner
            .cache
            .load(&self.inner.engine, wasm, &digest, origin)?;
        Ok((component, digest))
    }
}

fn engine_config(rc: &RuntimeConfig) -> Result<Config, RuntimeError> {
    let n = rc.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component built for wasm32-wasip2 has one memory and a few core instances (the
    // module and wit-component's shims); the per-component maxima leave room for more.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n)
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_core_instances_per_component(16)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_memory_size(usize::try_from(rc.max_memory_bytes).unwrap_or(usize::MAX));
    keep_slots_resident(&mut pool);
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .memory_reservation(rc.max_memory_bytes)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(c)
}

/// Pages of a memory slot kept mapped when its instance is dropped, as long as the next
/// instance would otherwise fault them back in. Past this the rest is released to the kernel.
const MEMORY_KEEP_RESIDENT: usize = 1 << 20;
/// The same for a table slot (a Rust component's tables fit in one page).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Every call returns its slots to the pool, so how a slot is reset is paid per message. By
/// default wasmtime `madvise`s the whole slot away: the next instance page-faults every page it
/// touches back in, and in a multi-threaded process each `madvise` also stops the other
/// threads' CPUs to flush their TLBs, so more worker threads made calls slower, not faster.
/// With the kernel's `PAGEMAP_SCAN` (Linux 6.7+) wasmtime instead finds the pages the instance
/// actually wrote and restores just those in place (zero, or the component's initial data),
/// which is the same isolation without a system call per page or a fault on reuse.
///
/// Without `PAGEMAP_SCAN`, keeping pages resident would mean `memset`ting the first bytes of
/// every slot whether or not they were touched (for a Rust component, the unused bottom of its
/// stack), so the default `madvise` is kept there.
fn keep_slots_resident(pool: &mut PoolingAllocationConfig) {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
    }
}

fn spawn_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) -> Result<(), RuntimeError> {
    std::thread::Builder::new()
        .name("fleetgate-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .map(drop)
        .map_err(|e| RuntimeError::Engine(format!("starting the epoch ticker: {e}")))
}
