//! Plugin rollout on this server: the convergence loop that applies the deployments of the
//! shared store, and the checks a deploy passes before it is stored.
//!
//! Every [`POLL_EVERY`] the loop reads the active deployments (`canary` or `promoted`) and, for
//! each service whose deployments changed, builds the candidate from the stored component — the
//! same compile, link and `init` as a file's service — before anything routes to it. Then it
//! sets the service's overlay on the file's generation (`fleetgate_runtime::generation`):
//!
//! * a canary: a [`Canary`] over the stable version (the promoted deployment if there is one,
//!   else the file's service) and the candidate;
//! * promoted only: the candidate instead of the file's service;
//! * nothing active (rolled back, or never deployed): the overlay is cleared, the file serves.
//!
//! A candidate that fails to build here is rolled back for the whole fleet, with this server's
//! name and the error as the reason, so no server serves it. A canary whose automatic rollback
//! tripped here is rolled back in the store the same way; it already sends everything to the
//! stable version on this server, and the other servers follow at their next poll. Each server
//! records what it serves (`fleetgate_deployment_servers`) when that changes, and its canaries'
//! statistics every poll.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fleetgate_engine::{Engine, ServiceEntry};
use fleetgate_pb::fleetgate::plugin::v1::WasmUpstream;
use fleetgate_pb::fleetspeak::grpcservice;
use fleetgate_runtime::canary::{Selection, Thresholds, Version};
use fleetgate_runtime::{Canary, ComponentService, Generation, Generations, Overlay, WasmConfig};
use fleetgate_store::{Deployment, DeploymentState, ServingRecord, Store};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

/// How often every server reads the deployments.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// What this server applied for one service.
#[derive(Clone, Default)]
struct Applied {
    promoted: Option<(u64, Arc<ComponentService>)>,
    canary: Option<(u64, Arc<Canary>)>,
    since: Option<SystemTime>,
    failure: String,
}

impl Applied {
    fn ids(&self) -> (Option<u64>, Option<u64>) {
        (
            self.promoted.as_ref().map(|p| p.0),
            self.canary.as_ref().map(|c| c.0),
        )
    }
}

/// The convergence loop of one server.
pub struct Rollout {
    engine: Engine,
    store: Arc<dyn Store>,
    plugins: Arc<crate::plugins::Plugins>,
    server: String,
    applied: tokio::sync::Mutex<BTreeMap<String, Applied>>,
}

/// The name a server reports what it serves under: the host name and the first bound address.
pub fn server_name(addr: Option<std::net::SocketAddr>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    match addr {
        Some(a) => format!("{host}:{}", a.port()),
        None => format!("{host}/{}", std::process::id()),
    }
}

/// The plugin config a deployment of `service` gets when none is given: the file's, without
/// the component path (a `GRPC` service's upstream becomes the `default` upstream).
pub fn inherited_config(g: &Generation) -> WasmConfig {
    let Some(any) = g.config.config.as_ref() else {
        return WasmConfig::default();
    };
    match g.config.factory.as_str() {
        "WASM" => match fleetgate_pb::any::unpack::<WasmConfig>(any) {
            Ok(mut c) => {
                c.path.clear();
                c
            }
            Err(_) => WasmConfig::default(),
        },
        "GRPC" => match fleetgate_pb::any::unpack::<grpcservice::Config>(any) {
            Ok(grpc) => WasmConfig {
                upstreams: vec![WasmUpstream {
                    name: "default".into(),
                    config: Some(grpc),
                }],
                ..Default::default()
            },
            Err(_) => WasmConfig::default(),
        },
        _ => WasmConfig::default(),
    }
}

/// Checks a component for a deployment of `service` on this server: the service is one this
/// server runs, the file is a component of the `service` world, its imports are granted by
/// `config` (or the file's config), and it compiles, links and passes `init`. Returns the
/// plugin config the deployment records.
pub async fn check_deployment(
    generations: &Generations,
    service: &str,
    wasm: &[u8],
    config: Option<WasmConfig>,
) -> Result<WasmConfig, String> {
    let current = generations.current();
    let Some(base) = current.get(service) else {
        let known: Vec<&str> = current.keys().map(String::as_str).collect();
        return Err(format!(
            "unknown service {service:?}: this server runs {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ));
    };
    let report =
        fleetgate_runtime::check_on(generations.factory().runtime(), "the component", wasm)
            .map_err(|e| format!("not a usable component: {e}"))?;
    if report.world != "service" {
        return Err(format!(
            "the component is of the `{}` world, not `service`: it cannot run as service {service:?}",
            report.world
        ));
    }
    let config = config.unwrap_or_else(|| inherited_config(base));
    generations
        .factory()
        .build_component(service, "deployment".into(), wasm.to_vec(), config.clone())
        .await
        .map_err(|e| format!("the component does not load as service {service:?}: {e}"))?;
    Ok(config)
}

fn thresholds(d: &Deployment) -> Thresholds {
    let t = &d.thresholds;
    Thresholds {
        window: t.window,
        window_calls: t.window_calls,
        min_calls: t.min_calls,
        error_rate_points: t.error_rate_points,
        p99_ratio: t.p99_ratio,
    }
}

fn selection(d: &Deployment) -> Selection {
    match &d.selection {
        fleetgate_store::Selection::Share(s) => Selection::Share(*s),
        fleetgate_store::Selection::Labels(l) => Selection::Labels(l.clone()),
    }
}

fn entry_like(
    service: Arc<dyn fleetgate_engine::Service>,
    base: Option<&Generation>,
) -> ServiceEntry {
    match base {
        Some(g) => ServiceEntry::new(service, g.built.max_parallelism).with_policy(g.built.policy),
        None => ServiceEntry::new(service, 0),
    }
}

fn stats_json(a: &Applied) -> String {
    let side = |s: &fleetgate_runtime::canary::WindowStats| {
        serde_json::json!({
            "calls": s.calls, "errors": s.errors, "traps": s.traps, "permanent": s.permanent,
            "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
        })
    };
    match (&a.canary, &a.promoted) {
        (Some((_, c)), _) => {
            let (s, k) = c.window_stats();
            let shadow = c.shadow().map(|sh| {
                serde_json::json!({
                    "copies": sh.copies, "agreed": sh.agreed,
                    "candidate_failed": sh.candidate_failed,
                    "candidate_succeeded": sh.candidate_succeeded,
                    "withheld_messages": sh.withheld_messages,
                    "withheld_grpc_calls": sh.withheld_grpc_calls,
                    "last_difference": sh.last_difference,
                })
            });
            serde_json::json!({
                "window": true, "stable": side(&s), "candidate": side(&k), "shadow": shadow,
            })
            .to_string()
        }
        (None, Some((_, p))) => {
            let s = p.stats();
            serde_json::json!({"window": false, "stable": {
                "calls": s.calls, "errors": s.errors, "traps": s.traps, "permanent": 0,
                "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
            }})
            .to_string()
        }
        (None, None) => String::new(),
    }
}

/// What `a` makes of the file's generation of its service (see `Generations::set_overlay`):
/// the canary over it (a reload changes the canary's stable version unless a promoted
/// deployment is the stable one), the promoted candidate instead of it, or nothing.
fn overlay(a: &Applied) -> Option<Overlay> {
    match (&a.canary, &a.promoted) {
        (Some((_, c)), promoted) => {
            let (c, fixed) = (c.clone(), promoted.is_some());
            Some(Arc::new(move |base: Option<&Generation>| {
                if !fixed && let Some(g) = base {
                    c.set_stable(Version {
                        service: g.built.service(),
                        component: g.built.component.clone(),
                    });
                }
                Some(entry_like(c.clone(), base))
            }))
        }
        (None, Some((_, p))) => {
            let p = p.clone();
            Some(Arc::new(move |base: Option<&Generation>| {
                Some(entry_like(p.clone(), base))
            }))
        }
        (None, None) => None,
    }
}

impl Rollout {
    pub fn new(engine: Engine, plugins: Arc<crate::plugins::Plugins>, server: String) -> Self {
        Self {
            store: engine.store().clone(),
            engine,
            plugins,
            server,
            applied: tokio::sync::Mutex::default(),
        }
    }

    /// Polls until `shutdown`; a failed poll is logged and tried again at the next.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(server = %self.server, every_ms = POLL_EVERY.as_millis() as u64, "following plugin deployments");
        loop {
            if let Err(e) = self.poll().await {
                tracing::warn!("plugin deployments: {e}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }

    async fn component(&self, d: &Deployment) -> Result<Arc<ComponentService>, String> {
        self.build(d, None).await
    }

    /// Builds `d`'s component; with `withheld`, as a shadow run's candidate.
    async fn build(
        &self,
        d: &Deployment,
        withheld: Option<Arc<fleetgate_runtime::Withheld>>,
    ) -> Result<Arc<ComponentService>, String> {
        let wasm = self
            .store
            .get_component(&d.digest)
            .await
            .map_err(|e| e.to_string())?;
        let config = WasmConfig::decode(d.config.as_slice())
            .map_err(|e| format!("the stored plugin config does not decode: {e}"))?;
        let origin = format!("deployment {} (sha256:{})", d.id, d.digest);
        let factory = self.plugins.generations().factory();
        match withheld {
            Some(w) => {
                factory
                    .build_shadow(&d.service, origin, wasm, config, w)
                    .await
            }
            None => {
                factory
                    .build_component(&d.service, origin, wasm, config)
                    .await
            }
        }
        .map_err(|e| e.to_string())
    }

    /// One round: read, build what changed, swap overlays, report.
    pub async fn poll(&self) -> Result<(), fleetgate_store::StoreError> {
        let active = self.store.active_deployments().await?;
        let mut wanted: BTreeMap<String, (Option<Deployment>, Option<Deployment>)> =
            BTreeMap::new();
        for d in active {
            let w = wanted.entry(d.service.clone()).or_default();
            match d.state {
                DeploymentState::Promoted => w.0 = Some(d),
                DeploymentState::Canary => w.1 = Some(d),
                _ => {}
            }
        }
        let mut applied = self.applied.lock().await;
        let services: std::collections::BTreeSet<String> =
            wanted.keys().chain(applied.keys()).cloned().collect();
        for service in services {
            let (promoted, canary) = wanted.remove(&service).unwrap_or_default();
            let have = applied.get(&service).cloned().unwrap_or_default();
            let want_ids = (
                promoted.as_ref().map(|d| d.id),
                canary.as_ref().map(|d| d.id),
            );
            if want_ids == have.ids() {
                if let Some((id, c)) = &have.canary {
                    if let Some(reason) = c.tripped()
                        && self.roll_back(&service, *id, reason).await
                    {
                        self.event(&service, "automatic_rollback");
                    }
                    self.report(&service, &have).await;
                }
                continue;
            }
            let next = self.apply(&service, &have, promoted, canary).await;
            self.report(&service, &next).await;
            if next.ids() == (None, None) && next.failure.is_empty() {
                applied.remove(&service);
            } else {
                applied.insert(service, next);
            }
        }
        Ok(())
    }

    fn event(&self, service: &str, event: &'static str) {
        if let Some(m) = self.engine.metrics() {
            m.plugin_rollout_event(service, event);
        }
    }

    /// Rolls the canary `id` back in the store; whether this call did it.
    async fn roll_back(&self, service: &str, id: u64, reason: &str) -> bool {
        match self
            .store
            .rollback_deployment(service, Some(id), reason)
            .await
        {
            Ok(_) => {
                tracing::warn!(service, deployment = id, "deployment rolled back: {reason}");
                true
            }
            // Someone else (another server, an operator) ended it first.
            Err(fleetgate_store::StoreError::Conflict(_)) => false,
            Err(e) => {
                tracing::warn!(service, deployment = id, "recording the rollback: {e}");
                false
            }
        }
    }

    async fn apply(
        &self,
        service: &str,
        have: &Applied,
        promoted: Option<Deployment>,
        canary: Option<Deployment>,
    ) -> Applied {
        let mut next = Applied {
            since: Some(SystemTime::now()),
            ..Default::default()
        };
        if let Some(d) = promoted {
            match self.promoted(have, &d).await {
                Ok(c) => next.promoted = Some((d.id, c)),
                Err(e) => {
                    tracing::error!(
                        service,
                        deployment = d.id,
                        "cannot build the promoted deployment, the services file serves: {e}"
                    );
                    next.failure = format!("deployment {}: {e}", d.id);
                }
            }
        }
        if let Some(d) = canary {
            let stable = next.promoted.as_ref().map(|(_, p)| Version::of(p.clone()));
            match self.canary(service, have, &d, stable).await {
                Ok(c) => next.canary = Some((d.id, c)),
                Err(reason) => {
                    tracing::error!(service, deployment = d.id, "{reason}");
                    next.failure = reason.clone();
                    self.event(service, "build_failure");
                    self.roll_back(service, d.id, &reason).await;
                }
            }
        }
        if let Err(e) = self
            .plugins
            .generations()
            .set_overlay(service, overlay(&next))
            .await
        {
            tracing::error!(service, "applying the deployment: {e}");
        }
        let deployed = next
            .canary
            .as_ref()
            .map(|c| c.0)
            .or(next.promoted.as_ref().map(|p| p.0));
        self.plugins.set_deployed(
            service,
            deployed.map(|deployment| crate::plugins::Deployed {
                deployment,
                promoted: next.promoted.as_ref().map(|p| p.1.clone()),
                candidate: next
                    .canary
                    .as_ref()
                    .map(|(_, c)| c.candidate().digest())
                    .unwrap_or_default(),
            }),
        );
        self.event(service, "applied");
        tracing::info!(
            service,
            promoted = ?next.promoted.as_ref().map(|p| p.0),
            canary = ?next.canary.as_ref().map(|c| c.0),
            "plugin deployments applied"
        );
        next
    }

    /// The promoted deployment's component: kept if it already serves, the canary's candidate
    /// if that is what was promoted (a shadow run's is rebuilt, with its side effects), else
    /// built.
    async fn promoted(
        &self,
        have: &Applied,
        d: &Deployment,
    ) -> Result<Arc<ComponentService>, String> {
        if let Some((id, c)) = &have.promoted
            && *id == d.id
        {
            return Ok(c.clone());
        }
        if let Some((id, c)) = &have.canary
            && *id == d.id
            && c.shadow().is_none()
            && let Some(comp) = c.candidate().component.clone()
        {
            return Ok(comp);
        }
        self.component(d).await
    }

    /// The canary of `d` over `stable` (the file's version when `None`). The error is the
    /// rollback reason.
    async fn canary(
        &self,
        service: &str,
        have: &Applied,
        d: &Deployment,
        stable: Option<Version>,
    ) -> Result<Arc<Canary>, String> {
        let shadow = d
            .shadow
            .then(|| Arc::new(fleetgate_runtime::canary::ShadowStats::default()));
        let reused = match &have.canary {
            Some((id, c)) if *id == d.id => c.candidate().component.clone(),
            _ => None,
        };
        let candidate = match reused {
            Some(c) => c,
            None => self
                .build(d, shadow.as_ref().map(|s| s.withheld.clone()))
                .await
                .map_err(|e| {
                    format!(
                        "server {} could not build sha256:{}: {e}",
                        self.server, d.digest
                    )
                })?,
        };
        let base = self
            .plugins
            .generations()
            .current()
            .get(service)
            .map(|g| Version {
                service: g.built.service(),
                component: g.built.component.clone(),
            });
        let stable = stable.or(base).ok_or_else(|| {
            format!(
                "deployment {}: no stable version of {service:?} to canary against",
                d.id
            )
        })?;
        let mut c = Canary::new(
            d.id,
            stable,
            Version::of(candidate),
            selection(d),
            self.engine.clone(),
            thresholds(d),
            d.auto_rollback,
        );
        if let Some(stats) = shadow {
            c = c.shadowing(stats);
        }
        Ok(Arc::new(c))
    }

    async fn report(&self, service: &str, a: &Applied) {
        let file_digest = || {
            self.plugins
                .generations()
                .current()
                .get(service)
                .map(|g| g.digest().to_owned())
                .unwrap_or_default()
        };
        let stable = match (&a.canary, &a.promoted) {
            (Some((_, c)), _) => c.stable().digest(),
            (None, Some((_, p))) => p.digest().to_owned(),
            (None, None) => file_digest(),
        };
        let rec = ServingRecord {
            server: self.server.clone(),
            service: service.to_owned(),
            stable,
            candidate: a
                .canary
                .as_ref()
                .map(|(_, c)| c.candidate().digest())
                .unwrap_or_default(),
            deployment: a
                .canary
                .as_ref()
                .map(|c| c.0)
                .or(a.promoted.as_ref().map(|p| p.0))
                .unwrap_or(0),
            since: a.since,
            updated: None,
            stats: stats_json(a),
            failure: a.failure.clone(),
        };
        if let Err(e) = self.store.record_serving(&rec).await {
            tracing::warn!(service, "recording what this server serves: {e}");
        }
    }
}
