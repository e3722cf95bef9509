//! Services from the services config, built by the plugin runtime and installed in the engine;
//! reloading them (see `reload` for the triggers), and their status for the admin API.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use fleetgate_admin::{PluginControl, PluginStatus};
use fleetgate_engine::Engine;
use fleetgate_pb::fleetspeak::server::ServerConfig;
use fleetgate_runtime::{
    Factory, Generation, Generations, HostServices, ReloadReport, Runtime, RuntimeConfig,
};
use fleetgate_types::Clock;

use crate::reload::Source;
use crate::routing::Router;

/// What the deployments make of one service (set by the rollout loop), for `ListPlugins`.
#[derive(Clone)]
pub struct Deployed {
    pub deployment: u64,
    /// The promoted component serving instead of the file's, if any.
    pub promoted: Option<Arc<fleetgate_runtime::ComponentService>>,
    /// The canary's candidate digest, empty when none.
    pub candidate: String,
}

/// The services this server runs, and where to read them again.
pub struct Plugins {
    /// Deployments on top of the file's services, by service.
    deployed: std::sync::RwLock<std::collections::BTreeMap<String, Deployed>>,
    generations: Generations,
    source: Source,
    /// Reloads refused because the source could not be read (build failures are counted by
    /// `generations`).
    unreadable: AtomicU64,
    /// For the reload counter, once telemetry is attached.
    engine: Engine,
    /// The router, if one is configured: rebuilt by the same reloads, all or nothing with the
    /// services.
    router: Option<Router>,
    /// The file the services come from, prefixed to their build errors.
    origin: String,
}

/// Builds every service of `services` (all or nothing), then installs them in the engine;
/// reloads read `source` again. `origin` names the services' file in errors.
pub async fn install(
    engine: &Engine,
    services: &ServerConfig,
    source: Source,
    state_dir: &Path,
    clock: Arc<dyn Clock>,
    origin: &str,
) -> Result<Plugins> {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(state_dir.join("wasm-cache")),
        ..Default::default()
    })
    .context("starting the plugin runtime")?;
    let mut host = HostServices::new(Arc::new(engine.clone())).with_clock(clock);
    if let Some(m) = engine.metrics() {
        host = host.with_metrics(m.clone());
    }
    let generations = Generations::install(
        Factory::new(runtime, host),
        engine.clone(),
        &services.services,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    for g in generations.current().values() {
        let b = &g.built;
        tracing::info!(service = %b.name, factory = %b.factory, digest = %short(g.digest()), "service installed");
    }
    Ok(Plugins {
        deployed: Default::default(),
        generations,
        source,
        unreadable: AtomicU64::new(0),
        engine: engine.clone(),
        router: None,
        origin: origin.to_owned(),
    })
}

impl Plugins {
    /// Records what the deployments make of `service` (`None`: nothing, the file serves).
    pub fn set_deployed(&self, service: &str, d: Option<Deployed>) {
        let mut m = self.deployed.write().unwrap_or_else(|p| p.into_inner());
        match d {
            Some(d) => m.insert(service.to_owned(), d),
            None => m.remove(service),
        };
    }

    /// The installed services, with the deployments' overlays.
    pub fn generations(&self) -> &Generations {
        &self.generations
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Puts the router under the reloads' control.
    pub fn set_router(&mut self, router: Option<Router>) {
        self.router = router;
    }

    /// The router's component file, watched with the services' files.
    pub fn router_file(&self) -> Option<std::path::PathBuf> {
        self.router.as_ref().and_then(Router::file)
    }

    /// Re-reads the source (and the router's component) and swaps in what changed; on error
    /// the running plugins and router stay. Every outcome is logged here, with what `trigger`ed
    /// it; failures are also counted.
    pub async fn reload_now(&self, trigger: &str) -> Result<ReloadReport, String> {
        let refused = |e: anyhow::Error| {
            self.unreadable.fetch_add(1, Ordering::Relaxed);
            format!("reload refused, the running plugins keep serving: {e:#}")
        };
        // The router is built first and swapped last, so a broken router or a broken service
        // leaves both as they were.
        let router = self.router.as_ref().map(Router::rebuild).transpose();
        let result = match (self.source.read(), router) {
            (Err(e), _) | (_, Err(e)) => Err(refused(e)),
            (Ok(services), Ok(router)) => {
                let reloaded = self
                    .generations
                    .reload(&services.services)
                    .await
                    .map_err(|e| {
                        format!(
                            "reload refused, the running plugins keep serving: {}: {e}",
                            self.origin
                        )
                    });
                match (reloaded, self.router.as_ref(), router.flatten()) {
                    (Ok(mut report), Some(current), Some(rebuilt)) => {
                        current.swap(rebuilt);
                        report.replaced.push(crate::routing::NAME.into());
                        Ok(report)
                    }
                    (reloaded, ..) => reloaded,
                }
            }
        };
        if let Some(m) = self.engine.metrics() {
            m.plugin_reload(result.is_ok());
        }
        match &result {
            Ok(r) => tracing::info!(
                trigger,
                added = ?r.added,
                replaced = ?r.replaced,
                removed = ?r.removed,
                took_ms = r.took.as_secs_f64() * 1000.0,
                "plugin reload done"
            ),
            Err(e) => tracing::error!(trigger, failed_reloads = self.failures(), "{e}"),
        }
        result
    }

    /// Reloads refused since start.
    pub fn failures(&self) -> u64 {
        self.generations.failures() + self.unreadable.load(Ordering::Relaxed)
    }

    fn statuses(&self) -> Vec<PluginStatus> {
        let current = self.generations.current();
        let deployed = self
            .deployed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let services = current.values().map(|g| {
            let mut s = status(g);
            if let Some(d) = deployed.get(&s.service) {
                s.deployment = d.deployment;
                s.candidate_digest = d.candidate.clone();
                if let Some(p) = &d.promoted {
                    let st = p.stats();
                    s.digest = p.digest().to_owned();
                    (s.calls, s.errors, s.traps, s.p50_ms, s.p99_ms) =
                        (st.calls, st.errors, st.traps, st.p50_ms, st.p99_ms);
                }
            }
            s
        });
        services
            .chain(self.router.as_ref().map(Router::status))
            .collect()
    }
}

fn status(g: &Generation) -> PluginStatus {
    let mut s = PluginStatus {
        service: g.built.name.clone(),
        factory: g.built.factory.clone(),
        digest: g.digest().to_owned(),
        generation: g.number,
        loaded_at: Some(g.loaded_at),
        ..Default::default()
    };
    if let Some(c) = &g.built.component {
        let st = c.stats();
        (s.calls, s.errors, s.traps, s.p50_ms, s.p99_ms) =
            (st.calls, st.errors, st.traps, st.p50_ms, st.p99_ms);
    }
    s
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

#[tonic::async_trait]
impl PluginControl for Plugins {
    async fn list(&self) -> Vec<PluginStatus> {
        self.statuses()
    }

    async fn reload(&self) -> Result<Vec<PluginStatus>, String> {
        self.reload_now("admin API").await?;
        Ok(self.statuses())
    }

    async fn check_deployment(
        &self,
        service: &str,
        wasm: &[u8],
        config: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, String> {
        use prost::Message as _;
        let config = config
            .map(|c| {
                fleetgate_runtime::WasmConfig::decode(c.as_slice()).map_err(|e| {
                    format!("the plugin config is not a fleetgate.plugin.v1.WasmConfig: {e}")
                })
            })
            .transpose()?;
        let c = crate::rollout::check_deployment(&self.generations, service, wasm, config).await?;
        Ok(c.encode_to_vec())
    }
}
