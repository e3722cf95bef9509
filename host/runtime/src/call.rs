//! What every call into a component shares: a fresh store with its limits, loading (grants
//! checked, imports linked, exports type-checked once), and turning a wasmtime error into a
//! [`CallError`].
//!
//! Every call gets a fresh instance from the pooling allocator rather than a kept one: a trap
//! leaves nothing behind, memory a plugin leaked is returned, and no state crosses between
//! messages of different clients (`tests/isolation.rs`). A whole echo call — pool slot, store,
//! instantiation from the `InstancePre`, `init`, `process` and its `send-to-client` — costs
//! 8–10 µs in a release build (`examples/plugin_bench.rs` and docs/BENCHMARKS.md; the
//! `fresh_instance_cost` test prints it in an unoptimised build), small next to the store write
//! each message already costs. What is left is mostly wasmtime's own work: instantiating the
//! component's core instances, lowering the message into guest memory (one guest `realloc` call
//! per string or list), and dropping the store; how slots are reset is in `runtime.rs`, and why
//! the WASI context is built only on demand in `caps/wasi.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use fleetgate_pb::fleetspeak::Message;
use wasmtime::component::{Component, InstancePre, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::caps::{self, grpc::Upstream, wasi::CallWasi};
use crate::error::{CallError, RuntimeError};
use crate::host::HostServices;
use crate::runtime::Runtime;
use crate::spec::PluginSpec;
use crate::state::{CpuMeter, HostState, MemoryCap, ServiceContext};
use crate::stats::ServiceStats;

/// A compiled component linked for one plugin, ready to instantiate.
pub(crate) struct Loaded {
    pub pre: InstancePre<HostState>,
    pub ctx: Arc<ServiceContext>,
    pub digest: String,
}

/// Compiles (or loads from cache), checks grants, links, and pre-instantiates `spec` as a
/// component of `world` (`service` or `router`).
pub(crate) fn load(
    runtime: &Runtime,
    spec: &PluginSpec,
    host: HostServices,
    world: &'static str,
) -> Result<Loaded, RuntimeError> {
    let engine = runtime.engine();
    let (component, digest) = runtime.compile(&spec.wasm, &spec.origin)?;
    // The wrong world is the clearer error, before any missing grant it would also have.
    let export = if world == "router" {
        "route"
    } else {
        "process"
    };
    if !export_names(engine, &component).iter().any(|e| e == export) {
        return Err(RuntimeError::World {
            service: spec.name.clone(),
            world,
            reason: format!("it does not export `{export}`"),
        });
    }
    caps::check_grants(&spec.name, import_names(engine, &component), &spec.grants)?;
    let cfg = |reason: String| RuntimeError::Config {
        service: spec.name.clone(),
        reason,
    };
    if spec.limits.memory_bytes > runtime.config().max_memory_bytes {
        return Err(cfg(format!(
            "memory limit {} exceeds the runtime's maximum {}",
            spec.limits.memory_bytes,
            runtime.config().max_memory_bytes
        )));
    }
    let mut upstreams = HashMap::new();
    for (name, config) in &spec.grants.upstreams {
        let up = Upstream::new(config, runtime.config().grpc_deadline)
            .map_err(|e| cfg(format!("upstream {name:?}: {e}")))?;
        upstreams.insert(name.clone(), up);
    }
    let linker =
        caps::link(engine, &spec.grants).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| RuntimeError::World {
            service: spec.name.clone(),
            world: "service or router",
            reason: format!("{e:#}"),
        })?;
    let ctx = ServiceContext {
        name: spec.name.clone(),
        host,
        grants: spec.grants.clone(),
        limits: spec.limits,
        upstreams,
        stats: Arc::new(ServiceStats::default()),
    };
    Ok(Loaded {
        pre,
        ctx: Arc::new(ctx),
        digest,
    })
}

pub(crate) fn import_names(engine: &wasmtime::Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

pub(crate) fn export_names(engine: &wasmtime::Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// A store for one call, with the memory cap and the CPU budget armed. `current` is the
/// message being processed, if any.
pub(crate) fn store(
    engine: &wasmtime::Engine,
    ctx: &Arc<ServiceContext>,
    current: Option<Message>,
) -> Result<Store<HostState>, CallError> {
    let wasi = CallWasi::new(&ctx.grants.preopens)
        .map_err(|e| CallError::Instantiate(format!("granting preopens: {e:#}")))?;
    let state = HostState {
        ctx: ctx.clone(),
        wasi,
        table: ResourceTable::new(),
        meter: CpuMeter::new(ctx.limits.cpu_budget),
        memory: MemoryCap {
            bytes: ctx.limits.memory_bytes,
            exceeded: false,
        },
        current,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.memory);
    // Checked every tick while the guest runs; yielding lets other tasks share the thread.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| {
        let meter = &mut cx.data_mut().meter;
        if meter.guest_time() > meter.budget {
            meter.expired = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Yield(1))
    });
    Ok(store)
}

/// What went wrong, from the store's flags first (they know *why* the guest trapped).
pub(crate) fn classify(e: wasmtime::Error, state: &HostState) -> CallError {
    if state.meter.expired {
        return CallError::Timeout(state.meter.budget);
    }
    if state.memory.exceeded {
        return CallError::OutOfMemory(state.memory.bytes);
    }
    let mut text = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}"),
    };
    let stderr = state.wasi.stderr();
    if !stderr.is_empty() {
        text = format!("{text}; stderr: {stderr}");
    }
    CallError::Trap(text)
}

/// Instantiation failures: the memory cap can fire here (initial memory), otherwise it is the
/// host's problem (e.g. pool exhausted), temporary either way.
pub(crate) fn instantiate_error(e: wasmtime::Error, state: &HostState) -> CallError {
    if state.memory.exceeded {
        return CallError::OutOfMemory(state.memory.bytes);
    }
    CallError::Instantiate(format!("{e:#}"))
}
