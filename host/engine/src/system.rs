//! The built-in `system` service: what clients report about themselves and about the messages
//! they were sent (client-lifecycle.md §8).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::monitoring::{KillNotification, ResourceUsageData};
use fleetgate_pb::fleetspeak::{ClientInfoData, Label, Message, MessageAckData, MessageErrorData};
use fleetgate_store::{Store, StoreError};
use fleetgate_types::message::{
    destination_client, failure, source_client, source_service, success,
};
use fleetgate_types::{ClientId, Clock, MessageId};

use crate::cache::ClientCache;
use crate::service::{Service, ServiceError};
use crate::trace::{StepKind, TraceStep, Tracer};

pub const NAME: &str = "system";

pub struct SystemService {
    store: Arc<dyn Store>,
    cache: Arc<ClientCache>,
    clock: Arc<dyn Clock>,
    /// Where `acknowledged` and client-reported `failed` steps go; `None` traces nothing.
    tracer: Option<Arc<Tracer>>,
}

impl SystemService {
    pub fn new(store: Arc<dyn Store>, cache: Arc<ClientCache>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            cache,
            clock,
            tracer: None,
        }
    }

    /// Records acknowledgements and client-reported errors in the message trace.
    pub fn with_tracer(self, tracer: Arc<Tracer>) -> Self {
        Self {
            tracer: Some(tracer),
            ..self
        }
    }

    fn trace(&self, message_id: MessageId, kind: impl FnOnce() -> StepKind) {
        if let Some(t) = self.tracer.as_ref().filter(|t| t.is_enabled()) {
            t.record(TraceStep {
                message_id,
                time: self.clock.now(),
                kind: kind(),
            });
        }
    }
}

#[async_trait]
impl Service for SystemService {
    async fn process(&self, m: &Message) -> Result<(), ServiceError> {
        let client = source_client(m)
            .ok()
            .flatten()
            .ok_or_else(|| permanent("system message without a valid source client ID"))?;
        let data = m
            .data
            .as_ref()
            .ok_or_else(|| permanent("system message without data"))?;
        match m.message_type.as_str() {
            "MessageAck" => {
                self.ack(client, any::unpack(data).map_err(permanent)?)
                    .await
            }
            "MessageError" => {
                self.error(client, any::unpack(data).map_err(permanent)?)
                    .await
            }
            "ClientInfo" => {
                self.client_info(client, any::unpack(data).map_err(permanent)?)
                    .await
            }
            "ResourceUsage" => {
                self.resource_usage(client, any::unpack(data).map_err(permanent)?)
                    .await
            }
            "KillNotification" => {
                let kn: KillNotification = any::unpack(data).map_err(permanent)?;
                self.client_data(client)
                    .await
                    .map_err(|e| permanent(e.to_string()))?;
                tracing::warn!(client = %client, service = %kn.service, reason = kn.reason, "client killed a service");
                Ok(())
            }
            other => Err(permanent(format!("unknown system message type: {other}"))),
        }
    }
}

impl SystemService {
    async fn ack(&self, client: ClientId, data: MessageAckData) -> Result<(), ServiceError> {
        let ids = data
            .message_ids
            .iter()
            .map(|id| MessageId::from_bytes(id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(permanent)?;
        // Unknown IDs are skipped (the original retried such an ack forever).
        let msgs = self
            .store
            .get_existing_messages(&ids, false)
            .await
            .map_err(temporary)?;
        let now = self.clock.now();
        let mut results = Vec::with_capacity(msgs.len());
        for msg in msgs.iter().filter(|m| m.result.is_none()) {
            let dest = destination_client(msg).ok().flatten();
            // A re-keyed client acks its RekeyRequest under its new ID.
            let rekey = source_service(msg) == NAME && msg.message_type == "RekeyRequest";
            if dest != Some(client) && !rekey {
                tracing::warn!(client = %client, "ignoring ack for a message addressed to another client");
                continue;
            }
            if let Ok(id) = MessageId::from_bytes(&msg.message_id) {
                results.push((dest, id, success(now)));
            }
        }
        self.store
            .set_message_results(&results)
            .await
            .map_err(temporary)?;
        for (_, id, _) in &results {
            self.trace(*id, || StepKind::Acknowledged { client });
        }
        Ok(())
    }

    async fn error(&self, client: ClientId, data: MessageErrorData) -> Result<(), ServiceError> {
        let id = MessageId::from_bytes(&data.message_id).map_err(permanent)?;
        let msgs = self
            .store
            .get_messages(&[id], false)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => permanent(format!("message {id} not found")),
                e => temporary(e),
            })?;
        let msg = msgs
            .first()
            .ok_or_else(|| permanent(format!("message {id} not found")))?;
        if destination_client(msg).ok().flatten() != Some(client) {
            return Err(permanent(format!(
                "message {id} was not sent to client {client}"
            )));
        }
        let result = failure(self.clock.now(), &data.error);
        self.store
            .set_message_result(Some(client), id, &result)
            .await
            .map_err(temporary)?;
        self.trace(id, || StepKind::ClientError {
            client,
            error: data.error.clone(),
        });
        Ok(())
    }

    async fn client_info(
        &self,
        client: ClientId,
        data: ClientInfoData,
    ) -> Result<(), ServiceError> {
        let stored = self
            .store
            .get_client_data(client)
            .await
            .map_err(temporary)?;
        let wanted: HashSet<&str> = data
            .labels
            .iter()
            .filter(|l| l.service_name == "client")
            .map(|l| l.label.as_str())
            .collect();
        let have: HashSet<&str> = stored
            .labels
            .iter()
            .filter(|l| l.service_name == "client")
            .map(|l| l.label.as_str())
            .collect();
        for gone in have.difference(&wanted) {
            let label = client_label(gone);
            self.store
                .remove_client_label(client, &label)
                .await
                .map_err(temporary)?;
        }
        for new in wanted.difference(&have) {
            let label = client_label(new);
            self.store
                .add_client_label(client, &label)
                .await
                .map_err(temporary)?;
        }
        self.cache.remove(client);
        Ok(())
    }

    async fn resource_usage(
        &self,
        client: ClientId,
        rud: ResourceUsageData,
    ) -> Result<(), ServiceError> {
        self.client_data(client)
            .await
            .map_err(|e| permanent(e.to_string()))?;
        self.store
            .record_resource_usage_data(client, &rud)
            .await
            .map_err(|e| permanent(e.to_string()))
    }

    async fn client_data(
        &self,
        client: ClientId,
    ) -> Result<fleetgate_store::ClientData, StoreError> {
        if let Some(d) = self.cache.get(client) {
            return Ok(d);
        }
        let d = self.store.get_client_data(client).await?;
        self.cache.put(client, d.clone());
        Ok(d)
    }
}

fn client_label(label: &str) -> Label {
    Label {
        service_name: "client".into(),
        label: label.into(),
    }
}

fn permanent(e: impl ToString) -> ServiceError {
    ServiceError::Permanent(e.to_string())
}

fn temporary(e: impl ToString) -> ServiceError {
    ServiceError::Temporary(e.to_string())
}
