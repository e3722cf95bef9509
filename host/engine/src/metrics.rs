//! The engine's side of telemetry: the [`Metrics`] handle it records into, and the task that
//! refreshes the pending-queue gauges (sizes, oldest message per service) from the store.
//!
//! The engine only records; it never serves. The handle comes from `fleetgate-telemetry` without
//! its `serve` feature, so no HTTP code is linked through here.

use std::collections::HashSet;
use std::time::Duration;

use fleetgate_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// How often the pending-queue gauge is refreshed. Counting is a scan of the queue's primary key,
/// cheap at this rate even with millions of rows.
pub const PENDING_REFRESH: Duration = Duration::from_secs(30);

impl Engine {
    /// Records into `metrics` from now on. Set once, before the engine serves; later calls are
    /// ignored. Services already installed keep their own label values.
    pub fn set_metrics(&self, metrics: Metrics) {
        for name in self
            .inner
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .names()
        {
            metrics.known_service(name);
        }
        self.inner.tracer.set_metrics(metrics.clone());
        let _ = self.inner.metrics.set(metrics);
    }

    /// The handle, if one was set.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.inner.metrics.get()
    }

    /// Refreshes `fleetgate_pending_messages` every `every` until `shutdown` fires. Does nothing
    /// without a metrics handle.
    pub async fn run_pending_gauge(&self, every: Duration, shutdown: CancellationToken) {
        let Some(metrics) = self.metrics().cloned() else {
            return;
        };
        // Series set last time, so a queue that emptied reads 0 rather than its last age.
        let mut shown: HashSet<(String, bool)> = HashSet::new();
        loop {
            match self.inner.store.pending_counts().await {
                Ok(c) => metrics.set_pending(c.to_clients, c.to_servers),
                Err(e) => tracing::debug!(error = %e, "counting pending messages"),
            }
            match self.inner.store.oldest_pending().await {
                Ok(oldest) => {
                    let now = self.inner.clock.now();
                    let mut seen = HashSet::new();
                    for o in oldest {
                        let age = now.duration_since(o.created).unwrap_or_default();
                        metrics.set_oldest_pending(&o.service, o.to_client, age);
                        seen.insert((o.service, o.to_client));
                    }
                    for (service, to_client) in shown.difference(&seen) {
                        metrics.set_oldest_pending(service, *to_client, Duration::ZERO);
                    }
                    shown = seen;
                }
                Err(e) => tracing::debug!(error = %e, "reading the oldest pending messages"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
