//! The router component, when one is configured (TOML `[router]`, or `--router PATH` with the
//! text-format files): loaded at start and installed in the engine's message path.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use fleetgate_engine::Engine;
use fleetgate_pb::fleetgate::plugin::v1::WasmConfig;
use fleetgate_runtime::{ComponentRouter, HostServices, Runtime, RuntimeConfig};
use fleetgate_types::Clock;

/// What a router gets with `--router`: every router capability (all read-only).
pub const FLAG_GRANTS: [&str; 4] = ["log", "metrics", "clock", "clients"];

/// `--router PATH` and `--router_config TEXT` as a router configuration.
pub fn from_flags(path: &str, config: Option<&str>) -> WasmConfig {
    WasmConfig {
        path: path.to_owned(),
        config: config.unwrap_or_default().as_bytes().to_vec(),
        grants: FLAG_GRANTS.map(str::to_owned).to_vec(),
        ..Default::default()
    }
}

/// Loads the router and puts it in front of the services. The router has its own wasmtime
/// engine (sharing the on-disk compile cache), so it never waits for a service's instance slot.
pub fn install(
    engine: &Engine,
    config: Option<WasmConfig>,
    state_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<()> {
    let Some(config) = config else {
        return Ok(());
    };
    let origin = config.path.clone();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(state_dir.join("wasm-cache")),
        ..Default::default()
    })
    .context("starting the router's plugin runtime")?;
    let host = HostServices::new(Arc::new(engine.clone()))
        .with_clients(Arc::new(engine.clone()))
        .with_clock(clock);
    let router = ComponentRouter::from_config(&runtime, config, host)
        .with_context(|| format!("loading the router {origin}"))?;
    engine.set_router(Some(Arc::new(router)));
    tracing::info!(origin, "router installed");
    Ok(())
}
