//! Retrying server-bound messages whose processing failed temporarily (server.md §6).
//!
//! Every 300 ms the loop leases due messages in batches of 10 until none are due; the store
//! reschedules each leased message by the original's back-off, so a crash mid-batch only delays it.

use std::time::Duration;

use fleetgate_store::LeasedMessage;
use fleetgate_types::message::{destination_service, source_client};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use crate::Engine;
use crate::lifecycle::Settled;

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
        let settled = join_all(batch.into_iter().map(|leased| async move {
            let LeasedMessage {
                message: mut m,
                attempts,
            } = leased;
            m.is_blocklisted_source = self.is_blacklisted_source(&m).await;
            // A client message whose routing failed is routed now, not dispatched unrouted.
            if let Some(rows) = self.route_from_backlog(&m).await {
                return rows;
            }
            match self.service(destination_service(&m)) {
                Some(_) => match self.process_attempt(m, attempts).await {
                    // To be retried on the original's back-off: the lease already set when.
                    Settled::Keep { message, due: None } if message.result.is_none() => Vec::new(),
                    settled => vec![settled],
                },
                // Another server may run this service; it must not be failed, nor its attempts
                // judged, here. The lease already set when it is due again.
                None => {
                    self.trace_message(&m, || crate::trace::StepKind::Retried {
                        service: destination_service(&m).to_owned(),
                        reason: "not run by this server".into(),
                    });
                    Vec::new()
                }
            }
        }))
        .await;
        // Copy 0 of a routed message merges into the leased row (its result set if processed);
        // the other copies are new rows.
        self.store_settled(settled.into_iter().flatten().collect(), None)
            .await?;
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
