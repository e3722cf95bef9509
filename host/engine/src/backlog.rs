//! Retrying server-bound messages whose processing failed temporarily (server.md §6).
//!
//! Every 300 ms the loop leases due messages in batches of 10 until none are due; the store
//! reschedules each leased message by the original's back-off, so a crash mid-batch only delays it.

use std::time::Duration;

use fleetgate_types::MessageId;
use fleetgate_types::message::source_client;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::Engine;
use crate::ingest::apply_outcome;

const TICK: Duration = Duration::from_millis(300);
const BATCH: usize = 10;

impl Engine {
    /// Runs until `shutdown` fires; checks for it between batches.
    pub async fn run_backlog(&self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            while !shutdown.is_cancelled() {
                match self.backlog_batch().await {
                    Ok(0) => break,
                    Ok(_) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, "leasing server messages failed");
                        // Back off during database outages instead of spinning.
                        let wait = TICK * failures.min(20);
                        tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(wait) => {} }
                        break;
                    }
                }
            }
        }
    }

    /// Processes one leased batch; returns how many messages it held.
    async fn backlog_batch(&self) -> Result<usize, fleetgate_store::StoreError> {
        let batch = self.inner.store.lease_server_messages(BATCH).await?;
        let n = batch.len();
        let done = join_all(batch.into_iter().map(|mut m| async move {
            m.is_blocklisted_source = self.is_blacklisted_source(&m).await;
            // A client message whose routing failed is routed now, not dispatched unrouted.
            if let Some(rows) = self.route_from_backlog(&m).await {
                return Err(rows);
            }
            // Another server may run this service; it must not be failed here.
            let outcome = match self.service(fleetgate_types::message::destination_service(&m)) {
                Some(_) => self.process(&m).await,
                None => {
                    let outcome = crate::Outcome::Retry("service not run by this server".into());
                    self.trace_message(&m, || crate::trace::StepKind::Retried {
                        service: fleetgate_types::message::destination_service(&m).to_owned(),
                        reason: "not run by this server".into(),
                    });
                    outcome
                }
            };
            apply_outcome(&mut m, outcome, self.inner.clock.now());
            Ok(m)
        }))
        .await;
        let mut routed = Vec::new();
        let results: Vec<_> = done
            .into_iter()
            .filter_map(|d| match d {
                Ok(m) => Some((None, MessageId::from_bytes(&m.message_id).ok()?, m.result?)),
                Err(rows) => {
                    routed.extend(rows);
                    None
                }
            })
            .collect();
        if !routed.is_empty() {
            // Copy 0 merges into the leased row (its result set if processed); the other copies
            // are new rows.
            self.inner.store.store_messages(&routed, None).await?;
        }
        if !results.is_empty() {
            self.inner.store.set_message_results(&results).await?;
        }
        Ok(n)
    }

    async fn is_blacklisted_source(&self, m: &fleetgate_pb::fleetspeak::Message) -> bool {
        let Ok(Some(client)) = source_client(m) else {
            return false;
        };
        if let Some(d) = self.inner.cache.get(client) {
            return d.blacklisted;
        }
        match self.inner.store.get_client_data(client).await {
            Ok(d) => {
                let b = d.blacklisted;
                self.inner.cache.put(client, d);
                b
            }
            Err(_) => false,
        }
    }
}
