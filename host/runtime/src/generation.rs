//! Generations: the services installed in an engine, and replacing them while it runs.
//!
//! A reload is build-then-swap. Every service of the new configuration is built first —
//! component read, compiled (or loaded from the on-disk cache), linked, and `init` run once, as
//! at start-up — without touching the engine. If any service fails to build, the reload is
//! refused and the running generation keeps serving. Only when all are built are the engine's
//! entries changed: added services inserted, removed ones removed, changed ones replaced, each
//! changed service's generation bumped. A service whose configuration and component digest are
//! both unchanged keeps its running instance, generation and statistics.
//!
//! Cut-over: the engine hands each call an `Arc` of its entry, so calls in flight finish on the
//! generation they started on and calls after the swap take the new one; a message is processed
//! by exactly one of them. A removed service becomes unknown to this server, which is
//! Fleetspeak's rule for a service a server does not run: fresh client messages for it are
//! stored failed ("unknown service"), server-bound backlog messages for it stay pending.
//!
//! Nothing here closes a connection: only engine entries change.
//!
//! Overlays (plugin rollout): a deployment from the shared store is set as an [`Overlay`] on
//! its service. While one is set, the engine serves what the overlay makes of the file's
//! generation (a canary over it, or the promoted candidate instead of it), and a reload keeps
//! the overlay on top: it rebuilds the file's services as always, then asks the overlay again
//! with the new generation. Clearing the overlay (a rollback) puts the file's entry back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use fleetgate_engine::Engine;
use fleetgate_pb::fleetspeak::server::ServiceConfig;
use tokio::sync::Mutex;

use crate::error::RuntimeError;
use crate::factory::{BuiltService, Factory};

/// One service as currently installed.
#[derive(Clone)]
pub struct Generation {
    pub built: BuiltService,
    /// The configuration it was built from, to tell a changed service from an unchanged one.
    pub config: ServiceConfig,
    /// 1 when first installed, bumped each time a reload replaces it.
    pub number: u64,
    pub loaded_at: SystemTime,
}

impl Generation {
    /// SHA-256 (hex) of the component; empty for a native service (`NOOP`).
    pub fn digest(&self) -> &str {
        self.built.component.as_ref().map_or("", |c| c.digest())
    }
}

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// From the start of building to the last engine entry swapped.
    pub took: Duration,
}

impl ReloadReport {
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.replaced.is_empty() && self.removed.is_empty())
    }
}

/// Why a set of services could not be built (at start) or a reload was refused (the running
/// generation is untouched). Displays as `services[INDEX] "NAME": WHY`; the caller adds the
/// file the services came from.
#[derive(Debug, thiserror::Error)]
#[error("services[{index}] {service:?}: {source}")]
pub struct ReloadError {
    /// 0-based position of the service in the configs given (the last one, if the name is
    /// repeated: that is the one built).
    pub index: usize,
    /// The service that failed to build.
    pub service: String,
    #[source]
    pub source: RuntimeError,
}

/// What a deployment makes of a service, given the file's generation of it (if the file has
/// one): the entry the engine serves, or `None` to serve the file's.
pub type Overlay =
    Arc<dyn Fn(Option<&Generation>) -> Option<fleetgate_engine::ServiceEntry> + Send + Sync>;

/// The services installed in one engine, replaced as a set.
pub struct Generations {
    factory: Factory,
    engine: Engine,
    /// Held for a whole reload, so two reloads never interleave their swaps.
    reloading: Mutex<()>,
    /// Readers (status) clone the map and drop the lock at once; only a reload writes.
    current: RwLock<Arc<BTreeMap<String, Generation>>>,
    /// Deployments on top of the file's services, by service.
    overlays: RwLock<BTreeMap<String, Overlay>>,
    failures: AtomicU64,
}

impl Generations {
    /// Builds every service of `configs`, then installs them (generation 1). Nothing is
    /// installed if any fails.
    pub async fn install(
        factory: Factory,
        engine: Engine,
        configs: &[ServiceConfig],
    ) -> Result<Self, ReloadError> {
        let g = Self {
            factory,
            engine,
            reloading: Mutex::new(()),
            current: RwLock::new(Arc::default()),
            overlays: RwLock::default(),
            failures: AtomicU64::new(0),
        };
        g.reload(configs).await?;
        Ok(g)
    }

    /// The installed services, by name.
    pub fn current(&self) -> Arc<BTreeMap<String, Generation>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The factory services are built with (deployments build their candidates with it too).
    pub fn factory(&self) -> &Factory {
        &self.factory
    }

    /// Sets (or with `None` clears) the overlay of service `name` and changes the engine's
    /// entry accordingly; serialised with reloads.
    pub async fn set_overlay(
        &self,
        name: &str,
        overlay: Option<Overlay>,
    ) -> Result<(), fleetgate_engine::EngineError> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.current();
        let base = current.get(name);
        let entry = match &overlay {
            Some(o) => o(base),
            None => None,
        }
        .or_else(|| base.map(|g| g.built.entry()));
        {
            let mut overlays = self.overlays.write().unwrap_or_else(|p| p.into_inner());
            match overlay {
                Some(o) => overlays.insert(name.to_owned(), o),
                None => overlays.remove(name),
            };
        }
        match entry {
            Some(e) => self.engine.set_service(name, e),
            None => {
                self.engine.remove_service(name);
                Ok(())
            }
        }
    }

    /// The services that have an overlay.
    pub fn overlaid(&self) -> Vec<String> {
        self.overlays
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn overlay(&self, name: &str) -> Option<Overlay> {
        self.overlays
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Reloads refused since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Builds every service of `configs` (a later entry with the same name wins, as in
    /// Fleetspeak), then swaps the engine's entries. On error nothing changed.
    pub async fn reload(&self, configs: &[ServiceConfig]) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let started = Instant::now();
        let old = self.current();
        let wanted: BTreeMap<&str, (usize, &ServiceConfig)> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), (i, c)))
            .collect();
        let mut next = BTreeMap::new();
        let mut report = ReloadReport::default();
        let wanted_index: BTreeMap<String, usize> = wanted
            .iter()
            .map(|(n, (i, _))| ((*n).to_owned(), *i))
            .collect();
        for (name, (index, config)) in wanted {
            let built = match self.factory.build(config).await {
                Ok(b) => b,
                Err(e) => {
                    // Counted here, logged once by the caller (which knows the file).
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(ReloadError {
                        index,
                        service: name.to_owned(),
                        source: e,
                    });
                }
            };
            let g = match old.get(name) {
                Some(prev) if prev.config == *config && prev.digest() == digest(&built) => {
                    report.unchanged.push(name.to_owned());
                    prev.clone()
                }
                prev => {
                    match prev {
                        Some(_) => report.replaced.push(name.to_owned()),
                        None => report.added.push(name.to_owned()),
                    }
                    let number = prev.map_or(1, |p| p.number + 1);
                    if let Some(c) = &built.component {
                        c.set_generation(number);
                    }
                    Generation {
                        built,
                        config: config.clone(),
                        number,
                        loaded_at: SystemTime::now(),
                    }
                }
            };
            next.insert(name.to_owned(), g);
        }
        report.removed = old
            .keys()
            .filter(|n| !next.contains_key(*n))
            .cloned()
            .collect();
        let index = |name: &str| wanted_index.get(name).copied().unwrap_or_default();
        self.swap(&next, &report, index)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        report.took = started.elapsed();
        if report.changed() {
            tracing::info!(
                added = ?report.added,
                replaced = ?report.replaced,
                removed = ?report.removed,
                took_ms = report.took.as_secs_f64() * 1000.0,
                "plugins reloaded"
            );
        }
        Ok(report)
    }

    /// Changes the engine's entries. Names were checked when building, so `set_service`
    /// cannot refuse one here; if it did, the entries set so far stay and the error is returned.
    fn swap(
        &self,
        next: &BTreeMap<String, Generation>,
        report: &ReloadReport,
        index: impl Fn(&str) -> usize,
    ) -> Result<(), ReloadError> {
        for name in report.added.iter().chain(&report.replaced) {
            let base = &next[name];
            let entry = self
                .overlay(name)
                .and_then(|o| o(Some(base)))
                .unwrap_or_else(|| base.built.entry());
            self.engine
                .set_service(name, entry)
                .map_err(|e| ReloadError {
                    index: index(name),
                    service: name.clone(),
                    source: RuntimeError::Config {
                        service: name.clone(),
                        reason: e.to_string(),
                    },
                })?;
        }
        for name in &report.removed {
            // A deployment of a service the file no longer has keeps serving it.
            match self.overlay(name).and_then(|o| o(None)) {
                Some(entry) => {
                    let _ = self.engine.set_service(name, entry);
                }
                None => {
                    self.engine.remove_service(name);
                }
            }
        }
        Ok(())
    }
}

fn digest(b: &BuiltService) -> &str {
    b.component.as_ref().map_or("", |c| c.digest())
}
