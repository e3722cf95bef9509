//! The data of one store: one call into one component instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetgate_pb::fleetspeak::Message;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::caps::grpc::Upstream;
use crate::caps::wasi::CallWasi;
use crate::host::HostServices;
use crate::spec::{Grants, Limits};
use crate::stats::ServiceStats;

/// What every call of one service shares. Built once when the service is loaded.
pub(crate) struct ServiceContext {
    pub name: String,
    pub host: HostServices,
    pub grants: Grants,
    pub limits: Limits,
    /// Connected lazily; a down upstream does not fail startup.
    pub upstreams: std::collections::HashMap<String, Upstream>,
    pub stats: Arc<ServiceStats>,
}

/// The store's data for one call. Dropped with the store when the call ends, which returns the
/// instance's slots to the pool.
pub(crate) struct HostState {
    pub ctx: Arc<ServiceContext>,
    pub wasi: CallWasi,
    pub table: ResourceTable,
    pub meter: CpuMeter,
    pub memory: MemoryCap,
    /// The message being processed, so `grpc.forward` of it unchanged sends the stored message
    /// byte for byte (priority and background included, which the WIT record leaves out).
    /// `None` when the service is not granted `grpc`, the only reader.
    pub current: Option<Message>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.ctx(),
            table: &mut self.table,
        }
    }
}

/// Guest running time of one call: wall time since the call began minus time spent in async
/// host calls. Checked on every epoch tick by the store's deadline callback.
pub(crate) struct CpuMeter {
    started: Instant,
    in_host: Duration,
    pub budget: Duration,
    pub expired: bool,
}

impl CpuMeter {
    pub fn new(budget: Duration) -> Self {
        Self {
            started: Instant::now(),
            in_host: Duration::ZERO,
            budget,
            expired: false,
        }
    }

    pub fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.in_host)
    }

    /// Runs a host future without charging its wait to the guest.
    pub async fn off_budget<F: Future>(&mut self, f: F) -> F::Output {
        let t = Instant::now();
        let out = f.await;
        self.in_host += t.elapsed();
        out
    }
}

/// The per-instance memory cap (wasmtime's `ResourceLimiter`). Growing past it traps, and the
/// flag tells the caller the trap was an out-of-memory.
pub(crate) struct MemoryCap {
    pub bytes: u64,
    pub exceeded: bool,
}

/// Generous: a Rust component has a handful of tables with a few hundred entries.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.bytes {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes exceeded", self.bytes);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
