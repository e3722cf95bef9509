//! Messages arriving from clients: validation, IDs, routing to services, storage
//! (client-lifecycle.md §7, server.md §3.3–4).

use std::time::{Instant, SystemTime};

use fleetgate_pb::fleetspeak::{Message, ValidationInfo};
use fleetgate_types::message::{destination_service, failure, success};
use fleetgate_types::time::to_timestamp;
use fleetgate_types::{ClientId, ContactId, MessageId};
use futures::future::join_all;
use tracing::Instrument;

use crate::Engine;
use crate::lifecycle::Settled;
use crate::service::{Outcome, run};
use crate::trace::StepKind;

/// Fills in what the server owns for a message from `client`, or says why it is dropped.
pub fn validate_from_client(
    client: ClientId,
    mut m: Message,
    validation: &Option<ValidationInfo>,
    now: SystemTime,
) -> Result<Message, &'static str> {
    let dest = m.destination.as_ref().ok_or("no destination")?;
    if !dest.client_id.is_empty() {
        return Err("client-to-client messages are not allowed");
    }
    if dest.service_name.is_empty() {
        return Err("empty destination service");
    }
    let source = m.source.as_mut().ok_or("no source")?;
    if source.service_name.is_empty() {
        return Err("empty source service");
    }
    if m.source_message_id.is_empty() {
        return Err("empty source_message_id");
    }
    source.client_id = client.to_vec();
    let id = MessageId::for_client_message(client, &source.service_name, &m.source_message_id);
    m.message_id = id.to_vec();
    m.validation_info = validation.clone();
    m.creation_time = Some(to_timestamp(now));
    m.result = None;
    Ok(m)
}

impl Engine {
    /// Validates, processes and stores the messages of one contact or frame. Returns once every
    /// message is durable; an error means the client must send them again.
    pub(crate) async fn ingest(
        &self,
        client: ClientId,
        blacklisted: bool,
        messages: Vec<Message>,
        contact: ContactId,
    ) -> Result<(), fleetgate_store::StoreError> {
        let now = self.inner.clock.now();
        let mut valid = Vec::with_capacity(messages.len());
        for m in messages {
            match validate_from_client(client, m, &None, now) {
                Ok(mut m) => {
                    m.is_blocklisted_source = blacklisted;
                    if let Some(metrics) = self.metrics() {
                        metrics.message_from_client(destination_service(&m), &m.message_type);
                    }
                    valid.push(m);
                }
                Err(why) => {
                    tracing::info!(client = %client, why, "dropping invalid message from client")
                }
            }
        }
        if valid.is_empty() {
            return Ok(());
        }
        // Through the router, if one is installed: a message may become several rows, or none
        // dispatched (see `router`).
        let processed: Vec<Settled> = join_all(valid.into_iter().map(|m| self.dispatch_fresh(m)))
            .await
            .into_iter()
            .flatten()
            .collect();
        self.store_settled(processed, Some((client, contact)))
            .await?;
        Ok(())
    }

    /// Runs a fresh message through its service: its first attempt.
    pub(crate) async fn process_fresh(&self, m: Message) -> Settled {
        self.process_attempt(m, 1).await
    }

    /// Runs attempt number `attempts` of a message and settles it under its service's policy.
    pub(crate) async fn process_attempt(&self, m: Message, attempts: u32) -> Settled {
        let (outcome, plugin) = self.process(&m).await;
        self.settle(m, outcome, attempts, plugin)
    }

    /// One attempt: the outcome and the version of the service that gave it.
    async fn process(&self, m: &Message) -> (Outcome, Option<String>) {
        let service = destination_service(m);
        let span = tracing::info_span!(
            "message",
            id = %hex::encode(&m.message_id),
            service,
            r#type = %m.message_type
        );
        let start = Instant::now();
        let (outcome, version) = match self.service(service) {
            Some(entry) => run(&entry, m).instrument(span).await,
            None => (
                Outcome::Failed(format!("unknown service \"{service}\"")),
                None,
            ),
        };
        self.trace_message(m, || outcome_step(service, version.clone(), &outcome));
        if let Some(metrics) = self.metrics() {
            let word = match &outcome {
                Outcome::Processed => "processed",
                Outcome::Failed(_) => "failed",
                Outcome::Retry(_) => "retry",
            };
            metrics.message_processed(service, word, start.elapsed());
        }
        (outcome, version)
    }
}

/// The trace step of a processing outcome.
fn outcome_step(service: &str, version: Option<String>, outcome: &Outcome) -> StepKind {
    let service = service.to_owned();
    match outcome {
        Outcome::Processed => StepKind::Processed { service, version },
        Outcome::Failed(error) => StepKind::Failed {
            service,
            version,
            error: error.clone(),
        },
        Outcome::Retry(reason) => StepKind::Retried {
            service,
            reason: reason.clone(),
        },
    }
}

/// Records a processing outcome on the message: a result and no payload when it is finished,
/// the payload kept when it must be retried.
pub fn apply_outcome(m: &mut Message, outcome: Outcome, now: SystemTime) {
    match outcome {
        Outcome::Processed => {
            m.result = Some(success(now));
            m.data = None;
        }
        Outcome::Failed(reason) => {
            tracing::info!(id = %hex::encode(&m.message_id), reason, "message failed permanently");
            m.result = Some(failure(now, &reason));
            m.data = None;
        }
        Outcome::Retry(reason) => {
            tracing::debug!(id = %hex::encode(&m.message_id), reason, "message will be retried");
            m.result = None;
        }
    }
}
