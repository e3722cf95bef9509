//! [`TimedStore`]: a [`Store`] decorator that times every call into
//! `fleetgate_store_operation_seconds{operation, errored}` (the original's
//! `datastore_operations_completed_latency`), without touching the store's SQL.
//!
//! `errored` is true for any error except `NotFound`, which callers use as an answer (enrolment
//! asks for a client to learn that it is new).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use fleetgate_store::{
    AllocationInfo, BroadcastInfo, BroadcastStore, ClientData, ClientStore, ContactRecord,
    DeadLetter, DeadLetterInfo, DeadLetterQuery, Deployment, DeploymentStore, FileStore,
    LeasedMessage, LifecycleStore, MaintenanceStore, MessageStore, NewDeployment, OldestPending,
    PendingCounts, Replayed, Result, ServingRecord, Store, StoreError, TraceRecord, TraceStore,
};
use fleetgate_types::pb::fleetspeak::server::{
    Broadcast, Client, ClientContact, ClientResourceUsageRecord,
};
use fleetgate_types::pb::fleetspeak::{
    Label, Message, MessageResult, monitoring::ResourceUsageData,
};
use fleetgate_types::{BroadcastId, ClientId, ContactId, MessageId};

use crate::Metrics;

/// Wraps a store; every method forwards to it and records its duration.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Metrics,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn time<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let r = call.await;
        let errored = matches!(&r, Err(e) if !matches!(e, StoreError::NotFound(_)));
        self.metrics.store_operation(op, errored, start.elapsed());
        r
    }
}

/// Implements one store trait by forwarding every listed method through [`TimedStore::time`],
/// labelled with the method's name.
macro_rules! timed {
    ($trait:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        #[async_trait]
        impl $trait for TimedStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ret> {
                    self.time(stringify!($name), self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

timed!(MessageStore {
    fn store_messages(&self, msgs: &[Message], contact: Option<ContactId>) -> ();
    fn set_message_result(&self, dest: Option<ClientId>, id: MessageId, result: &MessageResult) -> ();
    fn set_message_results(&self, results: &[(Option<ClientId>, MessageId, MessageResult)]) -> ();
    fn get_messages(&self, ids: &[MessageId], want_data: bool) -> Vec<Message>;
    fn get_existing_messages(&self, ids: &[MessageId], want_data: bool) -> Vec<Message>;
    fn get_message_result(&self, id: MessageId) -> Option<MessageResult>;
    fn get_message_status(&self, id: MessageId) -> Option<(prost_types::Timestamp, Option<MessageResult>)>;
    fn client_messages_for_processing(&self, client: ClientId, limit: usize, service_limits: Option<&HashMap<String, u64>>, contact: Option<ContactId>) -> Vec<Message>;
    fn redeliver_superseded(&self, client: ClientId, contact: ContactId, grace: Duration) -> u64;
    fn lease_server_messages(&self, limit: usize) -> Vec<LeasedMessage>;
    fn get_pending_messages(&self, clients: &[ClientId], offset: u64, limit: u64, want_data: bool) -> Vec<Message>;
    fn get_pending_message_count(&self, clients: &[ClientId]) -> u64;
    fn delete_pending_messages(&self, clients: &[ClientId]) -> ();
    fn purge_pending_messages(&self, clients: &[ClientId], service: Option<&str>, message_type: Option<&str>, older_than: Option<Duration>) -> u64;
});

timed!(ClientStore {
    fn list_clients(&self, ids: &[ClientId]) -> Vec<Client>;
    fn stream_client_ids(&self, include_blacklisted: bool, last_contact_after: Option<SystemTime>) -> Vec<ClientId>;
    fn get_client_data(&self, id: ClientId) -> ClientData;
    fn add_client(&self, id: ClientId, data: &ClientData) -> ();
    fn add_client_label(&self, id: ClientId, label: &Label) -> ();
    fn remove_client_label(&self, id: ClientId, label: &Label) -> ();
    fn blacklist_client(&self, id: ClientId) -> ();
    fn record_client_contact(&self, contact: &ContactRecord) -> ContactId;
    fn list_client_contacts(&self, id: ClientId) -> Vec<ClientContact>;
    fn link_messages_to_contact(&self, contact: ContactId, ids: &[MessageId]) -> ();
    fn record_resource_usage_data(&self, id: ClientId, rud: &ResourceUsageData) -> ();
    fn fetch_resource_usage_records(&self, id: ClientId, start: SystemTime, end: SystemTime) -> Vec<ClientResourceUsageRecord>;
});

timed!(BroadcastStore {
    fn create_broadcast(&self, b: &Broadcast, limit: u64) -> ();
    fn disable_broadcasts(&self, ids: &[BroadcastId]) -> ();
    fn list_active_broadcasts(&self) -> Vec<BroadcastInfo>;
    fn list_sent_broadcasts(&self, client: ClientId) -> Vec<BroadcastId>;
    fn create_allocation(&self, id: BroadcastId, frac: f32, expiry: SystemTime) -> Option<AllocationInfo>;
    fn save_broadcast_message(&self, msg: &Message, broadcast: BroadcastId, client: ClientId, allocation: Option<[u8; 8]>) -> ();
    fn cleanup_allocation(&self, broadcast: BroadcastId, allocation: Option<[u8; 8]>, final_sent: u64) -> ();
});

timed!(FileStore {
    fn store_file(&self, service: &str, name: &str, data: &[u8]) -> ();
    fn delete_file(&self, service: &str, name: &str) -> ();
    fn stat_file(&self, service: &str, name: &str) -> SystemTime;
    fn read_file(&self, service: &str, name: &str) -> (Vec<u8>, SystemTime);
});

timed!(MaintenanceStore {
    fn pending_counts(&self) -> PendingCounts;
    fn prune_contacts(&self, before: SystemTime, limit: usize) -> u64;
    fn prune_messages(&self, before: SystemTime, limit: usize) -> u64;
    fn prune_resource_usage(&self, before: SystemTime, limit: usize) -> u64;
});

timed!(LifecycleStore {
    fn dead_letter(&self, letters: &[DeadLetter]) -> Vec<MessageId>;
    fn list_dead_letters(&self, query: &DeadLetterQuery) -> Vec<DeadLetterInfo>;
    fn get_dead_letter(&self, id: MessageId) -> Option<DeadLetterInfo>;
    fn replay_dead_letters(&self, ids: &[MessageId]) -> Replayed;
    fn purge_dead_letters(&self, query: &DeadLetterQuery) -> u64;
    fn prune_dead_letters(&self, before: SystemTime, limit: usize) -> u64;
    fn expiring_client_messages(&self, service: Option<&str>, except: &[String], created_before: SystemTime, limit: usize) -> Vec<Message>;
    fn reschedule_server_messages(&self, due: &[(MessageId, SystemTime)]) -> ();
    fn oldest_pending(&self) -> Vec<OldestPending>;
});

timed!(TraceStore {
    fn record_trace(&self, steps: &[TraceRecord]) -> ();
    fn message_trace(&self, id: MessageId) -> Vec<TraceRecord>;
    fn prune_trace(&self, before: SystemTime, limit: usize) -> u64;
});

timed!(DeploymentStore {
    fn create_deployment(&self, d: &NewDeployment) -> Deployment;
    fn promote_deployment(&self, service: &str, id: Option<u64>) -> Deployment;
    fn rollback_deployment(&self, service: &str, id: Option<u64>, reason: &str) -> Deployment;
    fn list_deployments(&self, service: Option<&str>) -> Vec<Deployment>;
    fn active_deployments(&self) -> Vec<Deployment>;
    fn get_component(&self, digest: &str) -> Vec<u8>;
    fn record_serving(&self, r: &ServingRecord) -> ();
    fn list_serving(&self, service: Option<&str>) -> Vec<ServingRecord>;
});

timed!(Store {
    fn ping(&self) -> ();
    fn close(&self) -> ();
});
