//! [`MessageStore`] over the `messages` and `pending_messages` tables.

mod lease;
mod purge;
mod read;
pub(crate) mod rows;
mod supersede;
pub(crate) mod write;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use fleetgate_types::pb::fleetspeak::{Message, MessageResult};
use fleetgate_types::{ClientId, ContactId, MessageId};

use crate::api::{LeasedMessage, MessageStore, Result};
use crate::store::SeaOrmStore;
use write::ResultUpdate;

#[async_trait]
impl MessageStore for SeaOrmStore {
    async fn store_messages(&self, msgs: &[Message], contact: Option<ContactId>) -> Result<()> {
        write::store_messages(self, msgs, contact).await
    }

    async fn set_message_result(
        &self,
        dest: Option<ClientId>,
        id: MessageId,
        result: &MessageResult,
    ) -> Result<()> {
        self.set_message_results(&[(dest, id, result.clone())])
            .await
    }

    async fn set_message_results(
        &self,
        results: &[(Option<ClientId>, MessageId, MessageResult)],
    ) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let updates: Vec<ResultUpdate<'_>> = results
            .iter()
            .map(|(dest, id, result)| ResultUpdate {
                for_server: dest.is_none(),
                id: *id,
                result,
            })
            .collect();
        let updates = &updates;
        self.tx("set_message_results", move |tx| {
            Box::pin(async move { write::apply_results(&tx.q(), updates, now).await })
        })
        .await
    }

    async fn get_messages(&self, ids: &[MessageId], want_data: bool) -> Result<Vec<Message>> {
        read::get_messages(self, ids, want_data, true).await
    }

    async fn get_existing_messages(
        &self,
        ids: &[MessageId],
        want_data: bool,
    ) -> Result<Vec<Message>> {
        read::get_messages(self, ids, want_data, false).await
    }

    async fn get_message_result(&self, id: MessageId) -> Result<Option<MessageResult>> {
        Ok(read::status(self, id).await?.and_then(|(_, r)| r))
    }

    async fn get_message_status(
        &self,
        id: MessageId,
    ) -> Result<Option<(prost_types::Timestamp, Option<MessageResult>)>> {
        read::status(self, id).await
    }

    async fn client_messages_for_processing(
        &self,
        client: ClientId,
        limit: usize,
        service_limits: Option<&HashMap<String, u64>>,
        contact: Option<ContactId>,
    ) -> Result<Vec<Message>> {
        lease::client_messages(self, client, limit, service_limits, contact).await
    }

    async fn redeliver_superseded(
        &self,
        client: ClientId,
        contact: ContactId,
        grace: Duration,
    ) -> Result<u64> {
        supersede::redeliver(self, client, contact, grace).await
    }

    async fn lease_server_messages(&self, limit: usize) -> Result<Vec<LeasedMessage>> {
        lease::server_messages(self, limit).await
    }

    async fn get_pending_messages(
        &self,
        clients: &[ClientId],
        offset: u64,
        limit: u64,
        want_data: bool,
    ) -> Result<Vec<Message>> {
        read::pending(self, clients, offset, limit, want_data).await
    }

    async fn get_pending_message_count(&self, clients: &[ClientId]) -> Result<u64> {
        read::pending_count(self, clients).await
    }

    async fn delete_pending_messages(&self, clients: &[ClientId]) -> Result<()> {
        read::delete_pending_messages(self, clients).await
    }

    async fn purge_pending_messages(
        &self,
        clients: &[ClientId],
        service: Option<&str>,
        message_type: Option<&str>,
        older_than: Option<Duration>,
    ) -> Result<u64> {
        let filter = purge::Filter {
            service,
            message_type,
            older_than,
        };
        purge::purge(self, clients, &filter).await
    }
}
