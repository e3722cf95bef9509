//! Wiring for operators: the metrics registry, the `/metrics` and health listeners, readiness, and
//! the engine's telemetry and retention tasks. `run` calls into this at fixed points of start-up and
//! shutdown; everything else lives in `fleetgate-telemetry` and the engine.
//!
//! Order (server.md §1.4, §15): the health and stats listeners start before the store opens and
//! stop after it closes, so probes see the whole life of the process; `/readyz` turns 503 as soon
//! as shutdown begins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use fleetgate_config::{Field, Origin};
use fleetgate_engine::Engine;
use fleetgate_engine::metrics::PENDING_REFRESH;
use fleetgate_engine::retention::RetentionConfig;
use fleetgate_pb::fleetspeak::components;
use fleetgate_store::Store;
use fleetgate_telemetry::{Metrics, Observed, Readiness, TimedStore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The operator-facing side of one server process.
pub struct Telemetry {
    pub metrics: Metrics,
    pub readiness: Arc<Readiness>,
    /// Bound `stats_config.address`, if configured.
    pub stats: Option<SocketAddr>,
    /// Bound `health_check_config.listen_address`, if configured.
    pub health: Option<SocketAddr>,
    /// Stops the two listeners; cancelled last, after the store is closed.
    stop: CancellationToken,
    /// Each ends only when `stop` is cancelled, or with why it died.
    listeners: JoinSet<Result<(), String>>,
}

impl Telemetry {
    /// Binds and starts the configured listeners; a bind error names the file and field.
    pub async fn start(c: &components::Config, origin: &Origin) -> Result<Self> {
        let mut t = Telemetry {
            metrics: Metrics::new(),
            readiness: Readiness::new(),
            stats: None,
            health: None,
            stop: CancellationToken::new(),
            listeners: JoinSet::new(),
        };
        if let Some(h) = c.health_check_config.as_ref() {
            let listener = crate::run::bind(&h.listen_address, origin, Field::HealthListen).await?;
            t.health = listener.local_addr().ok();
            let (r, stop) = (t.readiness.clone(), t.stop.clone());
            t.listeners.spawn(async move {
                fleetgate_telemetry::serve_health(listener, r, stop)
                    .await
                    .map_err(|e| format!("health check listener failed: {e}"))
            });
        }
        if let Some(s) = c.stats_config.as_ref().filter(|s| !s.address.is_empty()) {
            let listener = crate::run::bind(&s.address, origin, Field::StatsAddress).await?;
            t.stats = listener.local_addr().ok();
            let (m, stop) = (t.metrics.clone(), t.stop.clone());
            t.listeners.spawn(async move {
                fleetgate_telemetry::serve_metrics(listener, m, stop)
                    .await
                    .map_err(|e| format!("metrics listener failed: {e}"))
            });
        }
        Ok(t)
    }

    /// Times every store call, and lets `/readyz` ping the store.
    pub fn wrap_store(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(TimedStore::new(store, self.metrics.clone()));
        self.readiness.set_store(store.clone());
        store
    }

    /// Hands the engine its metrics handle once its services are installed.
    pub fn attach(&self, engine: &Engine) {
        engine.set_metrics(self.metrics.clone());
        self.readiness.set_plugins_loaded();
    }

    /// The engine as the frontend should see it: each contact in a span, and counted.
    pub fn handler(&self, engine: &Engine) -> Arc<Observed<Engine>> {
        Arc::new(Observed::new(
            Arc::new(engine.clone()),
            self.metrics.clone(),
        ))
    }

    /// Copies the notifier's own counters into the registry whenever it is refreshed.
    pub fn count_notifications(&self, stats: Arc<fleetgate_notify::Stats>) {
        self.metrics.on_scrape(move |m| {
            m.set_notification_totals(
                stats.sent.load(Ordering::Relaxed),
                stats.failed.load(Ordering::Relaxed),
                stats.received.load(Ordering::Relaxed),
            );
        });
    }

    /// The pending-queue gauge and retention, as engine tasks stopped by `shutdown`.
    pub fn spawn_engine_tasks(
        &self,
        engine: &Engine,
        retention: RetentionConfig,
        tasks: &mut JoinSet<Result<()>>,
        shutdown: &CancellationToken,
    ) {
        // Both return at once when there is nothing to do (no metrics, no retention ages); they
        // then wait for shutdown, since a task that ends early counts as dead.
        let (e, token) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            e.run_pending_gauge(PENDING_REFRESH, token.clone()).await;
            token.cancelled().await;
            Ok(())
        });
        let (e, token) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            e.run_retention(retention, token.clone()).await;
            token.cancelled().await;
            Ok(())
        });
    }

    /// Resolves when a listener ends before [`Telemetry::stop`], with why; never if none is
    /// configured.
    pub async fn died(&mut self) -> String {
        match self.listeners.join_next().await {
            None => std::future::pending().await,
            Some(Ok(Ok(()))) => "a telemetry listener stopped unexpectedly".into(),
            Some(Ok(Err(why))) => why,
            Some(Err(e)) => format!("a telemetry listener task failed: {e}"),
        }
    }

    /// Closes the listeners, last of all.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while let Some(r) = self.listeners.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(why)) => tracing::warn!("{why}"),
                Err(e) => tracing::warn!(error = %e, "telemetry listener task failed"),
            }
        }
    }
}
