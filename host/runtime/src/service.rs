//! [`ComponentService`]: a component of the `service` world as a [`fleetgate_engine::Service`].

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use fleetgate_engine::{Service, ServiceError};
use fleetgate_pb::fleetspeak::Message;

use crate::bindings::{ServiceWorldPre, WitProcessError};
use crate::call::{self, Loaded};
use crate::caps::Capability;
use crate::convert::to_wit;
use crate::error::{CallError, RuntimeError};
use crate::host::HostServices;
use crate::runtime::Runtime;
use crate::spec::PluginSpec;
use crate::state::ServiceContext;
use crate::stats::StatsSnapshot;

/// A loaded service component. Every call runs on a fresh instance (see [`crate::call`]).
pub struct ComponentService {
    runtime: Runtime,
    pre: ServiceWorldPre<crate::state::HostState>,
    ctx: Arc<ServiceContext>,
    config: Vec<u8>,
    origin: String,
    digest: String,
    /// The generation number reported with each call's metrics (set when installed).
    generation: std::sync::atomic::AtomicU64,
}

impl ComponentService {
    /// Loads `spec` and runs `init` once on a throwaway instance, so a bad plugin config fails
    /// at startup rather than on every message.
    pub async fn load(
        runtime: &Runtime,
        spec: PluginSpec,
        host: HostServices,
    ) -> Result<Self, RuntimeError> {
        let Loaded { pre, ctx, digest } = call::load(runtime, &spec, host, "service")?;
        let pre = ServiceWorldPre::new(pre).map_err(|e| RuntimeError::World {
            service: spec.name.clone(),
            world: "service",
            reason: format!("{e:#}"),
        })?;
        let service = Self {
            runtime: runtime.clone(),
            pre,
            ctx,
            config: spec.config,
            origin: spec.origin,
            digest,
            generation: std::sync::atomic::AtomicU64::new(1),
        };
        service
            .init_once()
            .await
            .map_err(|reason| RuntimeError::Init {
                service: spec.name,
                reason,
            })?;
        Ok(service)
    }

    pub fn name(&self) -> &str {
        &self.ctx.name
    }

    /// Where the component came from: a path, or `bundled:<name>`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// SHA-256 of the component binary, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.ctx.stats.snapshot()
    }

    /// Sets the generation its metrics carry (see [`crate::Generations`]).
    pub fn set_generation(&self, generation: u64) {
        self.generation
            .store(generation, std::sync::atomic::Ordering::Relaxed);
    }

    /// Processes one message and says exactly how it ended. [`Service::process`] is this,
    /// counted in the statistics and folded into temporary/permanent.
    pub async fn call(&self, message: &Message) -> Result<(), CallError> {
        // Declared before the store so it is released after the store frees the pool slot.
        let _slot = self.runtime.slot().await;
        let engine = self.runtime.engine();
        // Only `grpc.forward` reads the stored original; without the grant it would be a copy
        // of every string in the message made and freed for nothing, on every call.
        let current = self
            .ctx
            .grants
            .grants(Capability::Grpc)
            .then(|| message.clone());
        let mut store = call::store(engine, &self.ctx, current)?;
        let world = match self.pre.instantiate_async(&mut store).await {
            Ok(w) => w,
            Err(e) => return Err(call::instantiate_error(e, store.data())),
        };
        match world.call_init(&mut store, &self.config).await {
            Ok(Ok(())) => {}
            // It passed at load time, so this is the environment, not the config.
            Ok(Err(reason)) => {
                return Err(CallError::Guest(ServiceError::Temporary(format!(
                    "init: {reason}"
                ))));
            }
            Err(e) => return Err(call::classify(e, store.data())),
        }
        match world.call_process(&mut store, &to_wit(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(WitProcessError::Temporary(r))) => {
                Err(CallError::Guest(ServiceError::Temporary(r)))
            }
            Ok(Err(WitProcessError::Permanent(r))) => {
                Err(CallError::Guest(ServiceError::Permanent(r)))
            }
            Err(e) => Err(call::classify(e, store.data())),
        }
    }

    async fn init_once(&self) -> Result<(), String> {
        let _slot = self.runtime.slot().await;
        let engine = self.runtime.engine();
        let mut store = call::store(engine, &self.ctx, None).map_err(|e| e.to_string())?;
        let world = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| call::instantiate_error(e, store.data()).to_string())?;
        match world.call_init(&mut store, &self.config).await {
            Ok(r) => r,
            Err(e) => Err(call::classify(e, store.data()).to_string()),
        }
    }
}

/// How one call ended, for the canary's window: traps include CPU-budget timeouts and
/// out-of-memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Ok,
    Temporary,
    Permanent,
    Trap,
}

impl ComponentService {
    /// [`Service::process`], also saying how the call ended.
    pub async fn process_classified(
        &self,
        message: &Message,
    ) -> (Result<(), ServiceError>, CallKind) {
        let started = Instant::now();
        let result = self.call(message).await;
        let trap = result.as_ref().is_err_and(CallError::is_trap);
        let took = started.elapsed();
        self.ctx.stats.record(took, result.is_ok(), trap);
        let generation = self.generation.load(std::sync::atomic::Ordering::Relaxed);
        crate::call_metrics::record(&self.ctx.host, self.name(), generation, &result, took);
        if let Err(e) = &result {
            if trap {
                tracing::warn!(service = self.name(), "{e}");
            } else {
                tracing::debug!(service = self.name(), "{e}");
            }
        }
        let result = result.map_err(CallError::into_service_error);
        let kind = match &result {
            Ok(()) => CallKind::Ok,
            Err(_) if trap => CallKind::Trap,
            Err(ServiceError::Permanent(_)) => CallKind::Permanent,
            Err(ServiceError::Temporary(_)) => CallKind::Temporary,
        };
        (result, kind)
    }
}

#[async_trait]
impl Service for ComponentService {
    async fn process(&self, message: &Message) -> Result<(), ServiceError> {
        self.process_classified(message).await.0
    }

    fn version(&self) -> Option<String> {
        Some(self.digest.clone())
    }
}
