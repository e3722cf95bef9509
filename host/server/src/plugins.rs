//! Services from the services config, built by the plugin runtime and installed in the engine,
//! and their status for the admin API.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use fleetgate_admin::{PluginControl, PluginStatus};
use fleetgate_engine::Engine;
use fleetgate_pb::fleetspeak::server::ServerConfig;
use fleetgate_runtime::{BuiltService, Factory, HostServices, Runtime, RuntimeConfig};
use fleetgate_types::Clock;

/// The services this server runs.
pub struct Plugins {
    built: Vec<BuiltService>,
    loaded_at: SystemTime,
}

/// Builds every service of `services` (all or nothing), then installs them in the engine.
pub async fn install(
    engine: &Engine,
    services: &ServerConfig,
    state_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<Plugins> {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(state_dir.join("wasm-cache")),
        ..Default::default()
    })
    .context("starting the plugin runtime")?;
    let host = HostServices::new(Arc::new(engine.clone())).with_clock(clock);
    let built = Factory::new(runtime, host)
        .install(engine, &services.services)
        .await
        .context("Unable to initialize Fleetspeak server")?;
    for b in &built {
        tracing::info!(service = %b.name, factory = %b.factory, "service installed");
    }
    Ok(Plugins {
        built,
        loaded_at: SystemTime::now(),
    })
}

#[tonic::async_trait]
impl PluginControl for Plugins {
    async fn list(&self) -> Vec<PluginStatus> {
        self.built
            .iter()
            .map(|b| {
                let mut s = PluginStatus {
                    service: b.name.clone(),
                    factory: b.factory.clone(),
                    generation: 1,
                    loaded_at: Some(self.loaded_at),
                    ..Default::default()
                };
                if let Some(c) = &b.component {
                    let st = c.stats();
                    s.digest = c.digest().to_owned();
                    (s.calls, s.errors, s.traps, s.p50_ms, s.p99_ms) =
                        (st.calls, st.errors, st.traps, st.p50_ms, st.p99_ms);
                }
                s
            })
            .collect()
    }

    async fn reload(&self) -> Result<Vec<PluginStatus>, String> {
        Err(
            "live reload is not available in this build; restart the server to load new plugins"
                .into(),
        )
    }
}
