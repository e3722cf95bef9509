//! From the services configuration (`fleetspeak.server.ServiceConfig`) to running services.
//!
//! | `factory` | `config` (an `Any`) | service |
//! |---|---|---|
//! | `GRPC` | `fleetspeak.grpcservice.Config` | the bundled `grpc-forwarder`, granted that upstream as `default` |
//! | `WASM` | `fleetgate.plugin.v1.WasmConfig` ([`WasmConfig`]) | any component, with the grants the config lists |
//! | `NOOP` | ignored | the engine's native [`NoopService`] |
//!
//! Anything else is refused with the service's name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_engine::{Backoff, Engine, NoopService, RetryPolicy, Service, ServiceEntry};
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::grpcservice;
use fleetgate_pb::fleetspeak::server::ServiceConfig;

use crate::bundled;
use crate::caps::Capability;
use crate::error::RuntimeError;
use crate::host::HostServices;
use crate::runtime::Runtime;
use crate::service::ComponentService;
use crate::spec::{Grants, Limits, PluginSpec, Preopen};

pub use crate::wasm_config::{WasmConfig, WasmPreopen, WasmUpstream};

/// Builds services from their configuration, all on one [`Runtime`] and [`HostServices`].
#[derive(Clone)]
pub struct Factory {
    runtime: Runtime,
    host: HostServices,
}

/// One service built from its configuration.
#[derive(Clone)]
pub struct BuiltService {
    pub name: String,
    pub factory: String,
    pub max_parallelism: u32,
    /// When its messages are retried and when they go to the dead letters.
    pub policy: RetryPolicy,
    /// Set for component services (for status: digest, statistics).
    pub component: Option<Arc<ComponentService>>,
    service: Arc<dyn Service>,
}

impl BuiltService {
    /// The service the engine calls.
    pub fn service(&self) -> Arc<dyn Service> {
        self.service.clone()
    }

    /// What [`Engine::set_service`] takes (`max_parallelism` 0 means 100, as in Fleetspeak).
    pub fn entry(&self) -> ServiceEntry {
        ServiceEntry::new(self.service.clone(), self.max_parallelism).with_policy(self.policy)
    }
}

impl Factory {
    pub fn new(runtime: Runtime, host: HostServices) -> Self {
        Self { runtime, host }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Compiles, links and initialises a deployed component from its bytes (see
    /// [`wasm_spec_bytes`]), as a file's `WASM` service would be, without installing it.
    pub async fn build_component(
        &self,
        service: &str,
        origin: String,
        wasm: Vec<u8>,
        config: WasmConfig,
    ) -> Result<Arc<ComponentService>, RuntimeError> {
        let spec = wasm_spec_bytes(service, origin, wasm, config)?;
        Ok(Arc::new(
            ComponentService::load(&self.runtime, spec, self.host.clone()).await?,
        ))
    }

    /// [`build_component`](Self::build_component) for a shadow run: messages it sends and gRPC
    /// calls it makes are counted in `withheld` instead of performed, and it gets no preopened
    /// directories (writing files would be a side effect).
    pub async fn build_shadow(
        &self,
        service: &str,
        origin: String,
        wasm: Vec<u8>,
        mut config: WasmConfig,
        withheld: Arc<crate::host::Withheld>,
    ) -> Result<Arc<ComponentService>, RuntimeError> {
        config.preopens.clear();
        let spec = wasm_spec_bytes(service, origin, wasm, config)?;
        let host = self.host.clone().withholding(withheld);
        Ok(Arc::new(
            ComponentService::load(&self.runtime, spec, host).await?,
        ))
    }

    /// Builds every service, then installs them in order (a later entry with the same name
    /// replaces an earlier one, as in Fleetspeak). Nothing is installed if any fails.
    pub async fn install(
        &self,
        engine: &Engine,
        configs: &[ServiceConfig],
    ) -> Result<Vec<BuiltService>, RuntimeError> {
        let mut built = Vec::with_capacity(configs.len());
        for config in configs {
            built.push(self.build(config).await?);
        }
        for b in &built {
            engine
                .set_service(&b.name, b.entry())
                .map_err(|e| RuntimeError::Config {
                    service: b.name.clone(),
                    reason: e.to_string(),
                })?;
        }
        Ok(built)
    }

    /// Builds one service. Must run inside a Tokio runtime (gRPC channels spawn a worker).
    pub async fn build(&self, config: &ServiceConfig) -> Result<BuiltService, RuntimeError> {
        let name = config.name.clone();
        let bad = |reason: String| RuntimeError::Config {
            service: name.clone(),
            reason,
        };
        // The engine's rule (server.md §5.2), checked here so `install` fails before installing.
        if name.is_empty() || name == "system" || name == "client" {
            return Err(bad(format!("illegal service name [{name}]")));
        }
        let (service, component): (Arc<dyn Service>, _) = match config.factory.as_str() {
            "NOOP" => (Arc::new(NoopService), None),
            "GRPC" => {
                let any = config
                    .config
                    .as_ref()
                    .ok_or_else(|| bad("GRPC needs a fleetspeak.grpcservice.Config".into()))?;
                let grpc: grpcservice::Config = any::unpack(any).map_err(|e| bad(e.to_string()))?;
                let spec = PluginSpec {
                    name: name.clone(),
                    origin: "bundled:grpc-forwarder".into(),
                    wasm: bundled::GRPC_FORWARDER.to_vec(),
                    config: Vec::new(),
                    grants: Grants::basic().with_upstream("default", grpc),
                    limits: Limits::default(),
                };
                let c =
                    Arc::new(ComponentService::load(&self.runtime, spec, self.host.clone()).await?);
                (c.clone() as Arc<dyn Service>, Some(c))
            }
            "WASM" => {
                let any = config
                    .config
                    .as_ref()
                    .ok_or_else(|| bad("WASM needs a fleetgate.plugin.v1.WasmConfig".into()))?;
                let wasm: WasmConfig = any::unpack(any).map_err(|e| bad(e.to_string()))?;
                let spec = wasm_spec(&name, wasm)?;
                let c =
                    Arc::new(ComponentService::load(&self.runtime, spec, self.host.clone()).await?);
                (c.clone() as Arc<dyn Service>, Some(c))
            }
            other => {
                return Err(RuntimeError::UnknownFactory {
                    service: name,
                    factory: other.to_owned(),
                });
            }
        };
        Ok(BuiltService {
            name,
            factory: config.factory.clone(),
            max_parallelism: config.max_parallelism,
            policy: config
                .retry_policy
                .as_ref()
                .map(retry_policy)
                .unwrap_or_default(),
            component,
            service,
        })
    }
}

/// A service's `retry_policy` (validated by the config loader) as the engine's: every field left
/// out keeps Fleetspeak's behaviour.
pub fn retry_policy(p: &fleetgate_pb::fleetgate::lifecycle::v1::RetryPolicy) -> RetryPolicy {
    let duration = |d: &Option<prost_types::Duration>| d.and_then(|d| Duration::try_from(d).ok());
    let default = Backoff::default();
    RetryPolicy {
        max_attempts: p.max_attempts,
        max_age: duration(&p.max_age),
        backoff: Backoff {
            initial: duration(&p.initial_backoff).unwrap_or(default.initial),
            multiplier: p.backoff_multiplier.unwrap_or(default.multiplier),
            max: duration(&p.max_backoff),
        },
    }
}

/// A `WasmConfig` as a [`PluginSpec`]: reads the component, parses the grants.
pub fn wasm_spec(service: &str, c: WasmConfig) -> Result<PluginSpec, RuntimeError> {
    let bad = |reason: String| RuntimeError::Config {
        service: service.to_owned(),
        reason,
    };
    let (origin, wasm) = match c.path.strip_prefix("bundled:") {
        Some(n) => (
            c.path.clone(),
            bundled::by_name(n)
                .ok_or_else(|| bad(format!("no bundled component {n:?}")))?
                .to_vec(),
        ),
        None if c.path.is_empty() => return Err(bad("WasmConfig.path is empty".into())),
        None => {
            let path = PathBuf::from(&c.path);
            let wasm =
                std::fs::read(&path).map_err(|source| RuntimeError::Read { path, source })?;
            (c.path.clone(), wasm)
        }
    };
    wasm_spec_bytes(service, origin, wasm, c)
}

/// A `WasmConfig` whose component is already in memory (a deployment's, from the store) as a
/// [`PluginSpec`]; `c.path` is ignored.
pub fn wasm_spec_bytes(
    service: &str,
    origin: String,
    wasm: Vec<u8>,
    c: WasmConfig,
) -> Result<PluginSpec, RuntimeError> {
    let bad = |reason: String| RuntimeError::Config {
        service: service.to_owned(),
        reason,
    };
    let mut grants = if c.grants.is_empty() {
        Grants::basic()
    } else {
        Grants::default()
    };
    for g in &c.grants {
        let capability: Capability = g.parse().map_err(|name| RuntimeError::UnknownCapability {
            service: service.to_owned(),
            name,
        })?;
        if capability == Capability::Grpc && c.upstreams.is_empty() {
            return Err(bad("`grpc` is granted by listing upstreams".into()));
        }
        grants.capabilities.insert(capability);
    }
    for u in c.upstreams {
        let config = u
            .config
            .ok_or_else(|| bad(format!("upstream {:?} has no config", u.name)))?;
        grants.upstreams.insert(u.name, config);
    }
    for p in c.preopens {
        grants.preopens.push(Preopen {
            host_path: p.host_path.into(),
            guest_path: p.guest_path,
            read_only: p.read_only,
        });
    }
    let mut limits = Limits::default();
    if c.memory_limit_bytes > 0 {
        limits.memory_bytes = c.memory_limit_bytes;
    }
    if c.cpu_budget_ms > 0 {
        limits.cpu_budget = Duration::from_millis(u64::from(c.cpu_budget_ms));
    }
    Ok(PluginSpec {
        name: service.to_owned(),
        origin,
        wasm,
        config: c.config,
        grants,
        limits,
    })
}
