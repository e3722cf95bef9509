//! Choosing what a client receives (client-lifecycle.md §6, server.md §7.2).

use std::collections::HashMap;
use std::time::Duration;

use fleetgate_pb::fleetspeak::{Label, Message};
use fleetgate_store::StoreError;
use fleetgate_types::message::{address, destination_service, success};
use fleetgate_types::time::{client_retry_time, to_timestamp};
use fleetgate_types::{ClientId, ContactId, MessageId};

use crate::Engine;
use crate::trace::{Handout, StepKind};

/// At most this many queued messages go out in one contact or push.
pub const MAX_BATCH: usize = 100;

/// The default [`EngineConfig::redelivery_grace`](crate::EngineConfig): the client builds its
/// first frame within 1 s of connecting and batches acks for up to 1 s more, so acks it still had
/// for the old stream arrive within about 2 s of the new one starting.
pub const REDELIVERY_GRACE: Duration = Duration::from_secs(3);

/// Per-service flow-control tokens of one connection. `None`: the client sent no map (legacy),
/// so there is no limit.
pub type Tokens = Option<HashMap<String, u64>>;

fn is_die(m: &Message) -> bool {
    m.message_type == "Die" && destination_service(m) == "system"
}

impl Engine {
    /// Leases queued messages for the client within its tokens and spends the tokens; with
    /// `broadcast_labels` (the client's labels, when this contact is checked for broadcasts)
    /// appends instances of the broadcasts it qualifies for, which ignore tokens.
    /// Blacklisted clients get only a fresh RekeyRequest.
    pub(crate) async fn select_for_client(
        &self,
        client: ClientId,
        blacklisted: bool,
        tokens: &mut Tokens,
        contact: ContactId,
        broadcast_labels: Option<&[Label]>,
    ) -> Result<Vec<Message>, StoreError> {
        let store = &self.inner.store;
        if blacklisted {
            let rekey = self.rekey_request(client);
            store
                .store_messages(std::slice::from_ref(&rekey), Some(contact))
                .await?;
            return Ok(vec![rekey]);
        }
        let mut msgs = if tokens.as_ref().is_some_and(|t| t.values().all(|&n| n == 0)) {
            Vec::new()
        } else {
            // Linked to the contact in the lease's own transaction.
            let leased = store
                .client_messages_for_processing(client, MAX_BATCH, tokens.as_ref(), Some(contact))
                .await?;
            self.drop_expired(leased).await?
        };
        if let Some(t) = tokens.as_mut() {
            for m in msgs.iter().filter(|m| !is_die(m)) {
                if let Some(n) = t.get_mut(destination_service(m)) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        if let Some(labels) = broadcast_labels {
            let instances = self.broadcast_messages(client, labels).await;
            let ids: Vec<MessageId> = instances
                .iter()
                .filter_map(|m| MessageId::from_bytes(&m.message_id).ok())
                .collect();
            // The instances are already stored, so failing now would strand them. The link is
            // bookkeeping; delivering matters more.
            if !ids.is_empty()
                && let Err(e) = store.link_messages_to_contact(contact, &ids).await
            {
                tracing::warn!(client = %client, contact = %contact, error = %e, "linking broadcast messages to the contact");
            }
            msgs.extend(instances);
        }
        if msgs.is_empty() {
            return Ok(msgs);
        }
        if self.is_tracing() {
            let until = client_retry_time(self.inner.clock.now());
            for m in &msgs {
                self.trace_message(m, || StepKind::Leased { contact, until });
            }
        }
        // The client never acks Die, so it is done once handed out.
        let now = self.inner.clock.now();
        let dies: Vec<_> = msgs
            .iter()
            .filter(|m| is_die(m))
            .filter_map(|m| MessageId::from_bytes(&m.message_id).ok())
            .map(|id| (Some(client), id, success(now)))
            .collect();
        if !dies.is_empty() {
            store.set_message_results(&dies).await?;
        }
        Ok(msgs)
    }

    /// `contact` is a new stream of `client`: what its earlier contacts (on any server) were
    /// handed and never acknowledged becomes due `grace` from now, instead of when the 15-minute
    /// lease ends. Returns whether anything was. A failure only leaves those leases to run out, as
    /// they would have anyway, so it is logged and not returned.
    pub(crate) async fn redeliver_superseded(
        &self,
        client: ClientId,
        contact: ContactId,
        grace: Duration,
    ) -> bool {
        match self
            .inner
            .store
            .redeliver_superseded(client, contact, grace)
            .await
        {
            Ok(0) => false,
            Ok(n) => {
                tracing::info!(client = %client, contact = %contact, messages = n, ?grace, "unacknowledged messages of superseded contacts due again");
                if let Some(m) = self.metrics() {
                    m.messages_redelivered(n);
                }
                true
            }
            Err(e) => {
                tracing::warn!(client = %client, contact = %contact, error = %e, "making superseded leases due again");
                false
            }
        }
    }

    /// The `pushed` steps of a batch handed to the frontend.
    pub(crate) fn trace_pushed(&self, msgs: &[Message], contact: ContactId, how: Handout) {
        for m in msgs {
            self.trace_message(m, || StepKind::Pushed { contact, how });
        }
    }

    fn rekey_request(&self, client: ClientId) -> Message {
        Message {
            message_id: MessageId::random().to_vec(),
            source: Some(address(None, "system")),
            destination: Some(address(Some(client), "system")),
            message_type: "RekeyRequest".into(),
            creation_time: Some(to_timestamp(self.inner.clock.now())),
            ..Default::default()
        }
    }
}
