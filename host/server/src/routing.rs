//! The router component, when one is configured (TOML `[router]`, or `--router PATH` with the
//! text-format files): loaded at start, installed in the engine's message path, and rebuilt by
//! every plugin reload whose component file changed (see `plugins::Plugins::reload_now`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use fleetgate_admin::PluginStatus;
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

/// The installed router and what is needed to build it again.
pub struct Router {
    config: WasmConfig,
    runtime: Runtime,
    host: HostServices,
    engine: Engine,
    serving: Mutex<Serving>,
}

/// The router in the message path, for the status and the next reload.
#[derive(Default)]
struct Serving {
    router: Option<Arc<ComponentRouter>>,
    /// SHA-256 of its component file.
    digest: String,
    generation: u64,
    loaded_at: Option<SystemTime>,
}

/// A router built by a reload, not yet serving.
pub struct Rebuilt {
    router: ComponentRouter,
    digest: String,
}

/// Loads the router and puts it in front of the services. The router has its own wasmtime
/// engine (sharing the on-disk compile cache), so it never waits for a service's instance slot.
pub fn install(
    engine: &Engine,
    config: Option<WasmConfig>,
    state_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<Option<Router>> {
    let Some(config) = config else {
        return Ok(None);
    };
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(state_dir.join("wasm-cache")),
        ..Default::default()
    })
    .context("starting the router's plugin runtime")?;
    let host = HostServices::new(Arc::new(engine.clone()))
        .with_clients(Arc::new(engine.clone()))
        .with_clock(clock);
    let router = Router {
        config,
        runtime,
        host,
        engine: engine.clone(),
        serving: Mutex::default(),
    };
    // The digest starts empty, so this always builds.
    if let Some(built) = router.rebuild()? {
        router.swap(built);
    }
    tracing::info!(origin = router.config.path, "router installed");
    Ok(Some(router))
}

impl Router {
    /// The component file, watched by `--watch_plugins` (none for a bundled router).
    pub fn file(&self) -> Option<PathBuf> {
        (!self.config.path.starts_with("bundled:")).then(|| PathBuf::from(&self.config.path))
    }

    /// Builds the router again if its component changed; `None` if it did not. Nothing is
    /// swapped: the caller decides, after the services were built too. The component is read
    /// once, and the digest compared is that of the bytes loaded (a compiled component comes
    /// from the cache, so an unchanged one costs no compilation).
    pub fn rebuild(&self) -> Result<Option<Rebuilt>> {
        let origin = &self.config.path;
        let router =
            ComponentRouter::from_config(&self.runtime, self.config.clone(), self.host.clone())
                .with_context(|| format!("loading the router {origin}"))?;
        let digest = router.digest().to_owned();
        if self.serving().digest == digest {
            return Ok(None);
        }
        Ok(Some(Rebuilt { router, digest }))
    }

    /// Puts a rebuilt router in the message path. Calls already running finish on the old one.
    pub fn swap(&self, rebuilt: Rebuilt) {
        let router = Arc::new(rebuilt.router);
        self.engine.set_router(Some(router.clone()));
        let mut serving = self.serving();
        serving.router = Some(router);
        serving.digest = rebuilt.digest;
        serving.generation += 1;
        serving.loaded_at = Some(SystemTime::now());
    }

    /// The router as `plugins list` shows it, as the service `(router)`.
    pub fn status(&self) -> PluginStatus {
        let serving = self.serving();
        let mut s = PluginStatus {
            service: NAME.into(),
            factory: "ROUTER".into(),
            digest: serving.digest.clone(),
            generation: serving.generation,
            loaded_at: serving.loaded_at,
            ..Default::default()
        };
        if let Some(r) = &serving.router {
            let st = r.stats();
            (s.calls, s.errors, s.traps, s.p50_ms, s.p99_ms) =
                (st.calls, st.errors, st.traps, st.p50_ms, st.p99_ms);
        }
        s
    }

    fn serving(&self) -> std::sync::MutexGuard<'_, Serving> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.serving.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How the router appears in `plugins list` and reload reports.
pub const NAME: &str = "(router)";
