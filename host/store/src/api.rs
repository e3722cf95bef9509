//! The store contract: what the engine and the admin service may ask of persistent state.
//!
//! Every method is atomic. Times come from the store's injected [`Clock`](fleetgate_types::Clock),
//! so the conformance suite can run on a fake clock.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use fleetgate_types::pb::fleetspeak::server::{
    Broadcast, Client, ClientContact, ClientResourceUsageRecord,
};
use fleetgate_types::pb::fleetspeak::{
    Label, Message, MessageResult, monitoring::ResourceUsageData,
};
use fleetgate_types::{BroadcastId, ClientId, ContactId, MessageId};

use crate::StoreError;

pub type Result<T> = std::result::Result<T, StoreError>;

/// What the server keeps about a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientData {
    /// DER SubjectPublicKeyInfo.
    pub key: Vec<u8>,
    /// Labels of every service.
    pub labels: Vec<Label>,
    pub blacklisted: bool,
}

/// One contact to record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactRecord {
    pub client_id: Option<ClientId>,
    pub sent_nonce: u64,
    pub received_nonce: u64,
    pub address: String,
    pub client_clock: Option<prost_types::Timestamp>,
    /// Notification address of the server holding this client's stream; empty for a poll.
    pub streaming_to: String,
}

/// An active broadcast with its counters.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastInfo {
    pub broadcast: Broadcast,
    pub sent: u64,
    pub limit: u64,
}

/// A share of a broadcast's limit reserved by one server.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationInfo {
    pub id: [u8; 8],
    pub limit: u64,
    pub expiry: SystemTime,
}

/// The limit meaning "unlimited".
pub const BROADCAST_UNLIMITED: u64 = i64::MAX as u64;

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Inserts or merges messages (datastore.md §2.1), linking each to `contact` if given.
    async fn store_messages(&self, msgs: &[Message], contact: Option<ContactId>) -> Result<()>;
    /// Sets the result of a message and removes it from the pending queue. A missing message is no error.
    async fn set_message_result(
        &self,
        dest: Option<ClientId>,
        id: MessageId,
        result: &MessageResult,
    ) -> Result<()>;
    /// Sets the results of many messages in one transaction (acks arrive in batches).
    async fn set_message_results(
        &self,
        results: &[(Option<ClientId>, MessageId, MessageResult)],
    ) -> Result<()>;
    /// The messages in request order; any missing ID is `StoreError::NotFound`.
    async fn get_messages(&self, ids: &[MessageId], want_data: bool) -> Result<Vec<Message>>;
    /// Like `get_messages` but skips unknown IDs instead of failing.
    async fn get_existing_messages(
        &self,
        ids: &[MessageId],
        want_data: bool,
    ) -> Result<Vec<Message>>;
    /// The message's result, `None` if pending or unknown.
    async fn get_message_result(&self, id: MessageId) -> Result<Option<MessageResult>>;
    /// Creation time and result of a message; `None` if unknown.
    async fn get_message_status(
        &self,
        id: MessageId,
    ) -> Result<Option<(prost_types::Timestamp, Option<MessageResult>)>>;
    /// Leases up to `limit` due messages for a client; at most `service_limits[svc]` per service when
    /// limits are given (a missing service gets 0). Each leased message becomes due again after the
    /// client lease. With `contact`, the leased messages are also linked to it (an existing link
    /// is kept) in the same transaction.
    async fn client_messages_for_processing(
        &self,
        client: ClientId,
        limit: usize,
        service_limits: Option<&HashMap<String, u64>>,
        contact: Option<ContactId>,
    ) -> Result<Vec<Message>>;
    /// `contact` is a new stream of `client`, which supersedes its earlier contacts: the client's
    /// pending messages last linked to one of its contacts before `contact` (none to `contact` or
    /// a later one) and not due within `grace` (still leased, never acknowledged) become due
    /// `grace` from now. Returns how many.
    async fn redeliver_superseded(
        &self,
        client: ClientId,
        contact: ContactId,
        grace: Duration,
    ) -> Result<u64>;
    /// Leases up to `limit` due server-bound messages; each becomes due again per the server retry
    /// schedule. Returns the messages with data and how many attempts each has had.
    async fn lease_server_messages(&self, limit: usize) -> Result<Vec<LeasedMessage>>;
    async fn get_pending_messages(
        &self,
        clients: &[ClientId],
        offset: u64,
        limit: u64,
        want_data: bool,
    ) -> Result<Vec<Message>>;
    async fn get_pending_message_count(&self, clients: &[ClientId]) -> Result<u64>;
    /// Fails every pending client-bound message of these clients with "Removed by admin action.".
    async fn delete_pending_messages(&self, clients: &[ClientId]) -> Result<()>;
    /// Like `delete_pending_messages`, filtered: pending client-bound messages of `clients` (every
    /// client if empty), of destination service `service` and type `message_type` if given, and
    /// created more than `older_than` before now if given. Returns how many were removed.
    async fn purge_pending_messages(
        &self,
        clients: &[ClientId],
        service: Option<&str>,
        message_type: Option<&str>,
        older_than: Option<Duration>,
    ) -> Result<u64>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Clients with these IDs (all clients if empty), with their labels.
    async fn list_clients(&self, ids: &[ClientId]) -> Result<Vec<Client>>;
    async fn stream_client_ids(
        &self,
        include_blacklisted: bool,
        last_contact_after: Option<SystemTime>,
    ) -> Result<Vec<ClientId>>;
    /// `StoreError::NotFound` if the client is unknown.
    async fn get_client_data(&self, id: ClientId) -> Result<ClientData>;
    async fn add_client(&self, id: ClientId, data: &ClientData) -> Result<()>;
    async fn add_client_label(&self, id: ClientId, label: &Label) -> Result<()>;
    async fn remove_client_label(&self, id: ClientId, label: &Label) -> Result<()>;
    async fn blacklist_client(&self, id: ClientId) -> Result<()>;
    async fn record_client_contact(&self, contact: &ContactRecord) -> Result<ContactId>;
    async fn list_client_contacts(&self, id: ClientId) -> Result<Vec<ClientContact>>;
    async fn link_messages_to_contact(&self, contact: ContactId, ids: &[MessageId]) -> Result<()>;
    async fn record_resource_usage_data(&self, id: ClientId, rud: &ResourceUsageData)
    -> Result<()>;
    async fn fetch_resource_usage_records(
        &self,
        id: ClientId,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Vec<ClientResourceUsageRecord>>;
}

#[async_trait]
pub trait BroadcastStore: Send + Sync {
    async fn create_broadcast(&self, b: &Broadcast, limit: u64) -> Result<()>;
    async fn disable_broadcasts(&self, ids: &[BroadcastId]) -> Result<()>;
    async fn list_active_broadcasts(&self) -> Result<Vec<BroadcastInfo>>;
    async fn list_sent_broadcasts(&self, client: ClientId) -> Result<Vec<BroadcastId>>;
    async fn create_allocation(
        &self,
        id: BroadcastId,
        frac: f32,
        expiry: SystemTime,
    ) -> Result<Option<AllocationInfo>>;
    async fn save_broadcast_message(
        &self,
        msg: &Message,
        broadcast: BroadcastId,
        client: ClientId,
        allocation: Option<[u8; 8]>,
    ) -> Result<()>;
    async fn cleanup_allocation(
        &self,
        broadcast: BroadcastId,
        allocation: Option<[u8; 8]>,
        final_sent: u64,
    ) -> Result<()>;
}

#[async_trait]
pub trait FileStore: Send + Sync {
    async fn store_file(&self, service: &str, name: &str, data: &[u8]) -> Result<()>;
    async fn delete_file(&self, service: &str, name: &str) -> Result<()>;
    /// Modification time; `StoreError::NotFound` if missing.
    async fn stat_file(&self, service: &str, name: &str) -> Result<SystemTime>;
    /// Content and modification time; `StoreError::NotFound` if missing.
    async fn read_file(&self, service: &str, name: &str) -> Result<(Vec<u8>, SystemTime)>;
}

/// A server-bound message leased for another processing attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedMessage {
    /// The message with its payload.
    pub message: Message,
    /// Processing attempts including the one this lease is for: the inline attempt when the
    /// message arrived, plus one per lease (`retry_count + 1` after the lease).
    pub attempts: u32,
}

/// Why a message ended in the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// Its service's retry policy allowed no more attempts.
    Exhausted,
    /// It was older than its service's retry policy allows.
    MaxAge,
    /// Its service failed it permanently.
    Permanent,
    /// A client-bound message older than its expiry, never delivered.
    Expired,
}

impl DeadReason {
    /// Every reason, in display order.
    pub const ALL: [DeadReason; 4] = [
        DeadReason::Exhausted,
        DeadReason::MaxAge,
        DeadReason::Permanent,
        DeadReason::Expired,
    ];

    /// The word stored in the database, shown by the CLI and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Exhausted => "exhausted",
            DeadReason::MaxAge => "max_age",
            DeadReason::Permanent => "permanent",
            DeadReason::Expired => "expired",
        }
    }

    /// The reason stored as `word`, if it is one.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to move to the dead letters.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message with its payload (kept for replay); its result is ignored.
    pub message: Message,
    pub reason: DeadReason,
    /// The last processing error, or what expired.
    pub last_error: String,
    /// Version (component digest) of the plugin that failed it; empty when none applies.
    pub plugin: String,
    /// Processing attempts made.
    pub attempts: u32,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterInfo {
    pub id: MessageId,
    /// Destination service.
    pub service: String,
    /// Destination client of a client-bound message.
    pub client: Option<ClientId>,
    pub message_type: String,
    pub reason: DeadReason,
    pub last_error: String,
    pub plugin: String,
    pub attempts: u32,
    /// The message's creation time.
    pub created: SystemTime,
    /// When it was last dead-lettered.
    pub died: SystemTime,
    /// How often it was replayed.
    pub replays: u32,
    /// When it was last replayed, if it has been since it last died: such a letter is not dead.
    pub replayed: Option<SystemTime>,
    /// The message with its payload, filled by [`LifecycleStore::get_dead_letter`] only.
    pub message: Option<Message>,
}

/// Which dead letters a listing or purge covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Destination service, if given.
    pub service: Option<String>,
    /// Dead-lettered at or after this time, if given.
    pub since: Option<SystemTime>,
    /// Also letters replayed since they died.
    pub include_replayed: bool,
    /// At most this many (0: no limit).
    pub limit: usize,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replayed {
    /// The messages now pending again (without payload), in ID order.
    pub replayed: Vec<Message>,
    /// IDs asked for that were not dead (unknown, or replayed already); when there are any,
    /// nothing was replayed.
    pub not_dead: Vec<MessageId>,
}

/// The oldest pending message of one service and direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldestPending {
    /// Destination service.
    pub service: String,
    /// Client-bound (`true`) or server-bound.
    pub to_client: bool,
    pub created: SystemTime,
}

/// The end of a message's life: dead letters, replay, expiry and per-service back-off.
#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Moves messages to the dead letters, in one transaction: each message is stored (or merged)
    /// as failed with its reason, leaves the pending queue, and its letter (with the payload)
    /// replaces any earlier one for that ID. A message already finished (acknowledged or
    /// processed meanwhile) is left alone. Returns the IDs that were dead-lettered.
    async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<Vec<MessageId>>;
    /// Dead letters matching `query`, newest death first.
    async fn list_dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetterInfo>>;
    /// One letter with its message, whether dead or replayed; `None` if unknown.
    async fn get_dead_letter(&self, id: MessageId) -> Result<Option<DeadLetterInfo>>;
    /// Puts dead messages back in the pending queue, due now, with their payload, in one
    /// transaction; each letter is marked replayed, so replaying it again does nothing. All or
    /// nothing: if any ID is not dead, none is replayed and `not_dead` lists those.
    async fn replay_dead_letters(&self, ids: &[MessageId]) -> Result<Replayed>;
    /// Deletes the letters matching `query` (messages stay as they are). Returns how many.
    async fn purge_dead_letters(&self, query: &DeadLetterQuery) -> Result<u64>;
    /// Letters that died before `before`, at most `limit` (retention).
    async fn prune_dead_letters(&self, before: SystemTime, limit: usize) -> Result<u64>;
    /// Up to `limit` pending client-bound messages created before `created_before`, with their
    /// payload: of `service` if given, else of every service not in `except`.
    async fn expiring_client_messages(
        &self,
        service: Option<&str>,
        except: &[String],
        created_before: SystemTime,
        limit: usize,
    ) -> Result<Vec<Message>>;
    /// Sets when pending server-bound messages are next due (a service's own back-off).
    async fn reschedule_server_messages(&self, due: &[(MessageId, SystemTime)]) -> Result<()>;
    /// The oldest pending message per destination service and direction.
    async fn oldest_pending(&self) -> Result<Vec<OldestPending>>;
}

/// Where a plugin deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentState {
    /// Serving the clients its selection picks; the stable version serves the rest.
    Canary,
    /// Serving every message of its service, on top of the services file.
    Promoted,
    /// Stopped by an operator, a failed build or the automatic rollback; serves nothing.
    RolledBack,
    /// A promoted deployment replaced by a later promotion; serves nothing.
    Superseded,
}

impl DeploymentState {
    pub const ALL: [DeploymentState; 4] = [
        DeploymentState::Canary,
        DeploymentState::Promoted,
        DeploymentState::RolledBack,
        DeploymentState::Superseded,
    ];

    /// The word stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Canary => "canary",
            DeploymentState::Promoted => "promoted",
            DeploymentState::RolledBack => "rolled_back",
            DeploymentState::Superseded => "superseded",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

impl std::fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which messages a canary takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Clients whose stable hash falls below this percentage (0–100).
    Share(u8),
    /// Clients having every one of these labels (`service:label` or a bare label of any service).
    Labels(Vec<String>),
}

/// When the automatic rollback stops a canary: over the last `window` or the last
/// `window_calls` calls of each version, whichever holds fewer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub window: Duration,
    pub window_calls: u32,
    /// Candidate calls needed in the window before a decision.
    pub min_calls: u32,
    /// The candidate's trap + timeout + permanent-error rate may exceed the stable version's
    /// by at most this many percentage points.
    pub error_rate_points: f64,
    /// The candidate's p99 call time may be at most this multiple of the stable version's.
    pub p99_ratio: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            window_calls: 50,
            min_calls: 5,
            error_rate_points: 10.0,
            p99_ratio: 2.0,
        }
    }
}

/// A deployment to create: the component bytes are stored once per digest.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    pub service: String,
    /// SHA-256 of `wasm`, hex; checked by the store.
    pub digest: String,
    pub wasm: Vec<u8>,
    /// `fleetgate.plugin.v1.WasmConfig` without its path: config bytes, grants, preopens,
    /// upstreams and limits.
    pub config: Vec<u8>,
    pub selection: Selection,
    pub shadow: bool,
    pub auto_rollback: bool,
    pub thresholds: Thresholds,
    /// Who asked: the admin caller's identity, empty when unknown (plaintext listener).
    pub requested_by: String,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: u64,
    pub service: String,
    pub digest: String,
    pub config: Vec<u8>,
    pub selection: Selection,
    pub shadow: bool,
    pub auto_rollback: bool,
    pub thresholds: Thresholds,
    pub requested_by: String,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub state: DeploymentState,
    /// Why it was rolled back; empty otherwise.
    pub reason: String,
}

/// What one server serves for one service, as it last reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServingRecord {
    pub server: String,
    pub service: String,
    /// Digest of the version serving everything not picked by a canary.
    pub stable: String,
    /// Digest of the canary candidate it serves, empty when none.
    pub candidate: String,
    /// The deployment it applied last (canary or promoted), 0 when none.
    pub deployment: u64,
    /// Since when it serves this pair of versions.
    pub since: Option<SystemTime>,
    /// When it last reported.
    pub updated: Option<SystemTime>,
    /// Its statistics of both versions, as the reporting server encoded them (JSON).
    pub stats: String,
    /// Why it could not build the deployment's component, empty when it could.
    pub failure: String,
}

/// Plugin deployments shared by every server of an installation, and what each one serves.
/// The invariants are checked in the store's transaction: at most one canary per service, and
/// only the current canary is promoted or rolled back.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Stores the component (once per digest) and a new deployment in state `canary`.
    /// `StoreError::Conflict` if the service has a canary already.
    async fn create_deployment(&self, d: &NewDeployment) -> Result<Deployment>;
    /// The service's canary becomes `promoted`; the deployment promoted before it becomes
    /// `superseded`. `StoreError::Conflict` if there is no canary (or it is not `id`, when
    /// given).
    async fn promote_deployment(&self, service: &str, id: Option<u64>) -> Result<Deployment>;
    /// The service's canary becomes `rolled_back` with `reason`. `StoreError::Conflict` if
    /// there is no canary (or it is not `id`, when given: a server rolling back what it saw
    /// never stops a newer deployment).
    async fn rollback_deployment(
        &self,
        service: &str,
        id: Option<u64>,
        reason: &str,
    ) -> Result<Deployment>;
    /// Every deployment of `service` (all services if `None`), newest first.
    async fn list_deployments(&self, service: Option<&str>) -> Result<Vec<Deployment>>;
    /// What the fleet should serve: every deployment in state `canary` or `promoted`, by
    /// service then id.
    async fn active_deployments(&self) -> Result<Vec<Deployment>>;
    /// The component with this digest; `StoreError::NotFound` if none.
    async fn get_component(&self, digest: &str) -> Result<Vec<u8>>;
    /// Inserts or replaces the record of (`server`, `service`).
    async fn record_serving(&self, r: &ServingRecord) -> Result<()>;
    /// The servers' records for `service` (all if `None`), by service then server.
    async fn list_serving(&self, service: Option<&str>) -> Result<Vec<ServingRecord>>;
}

/// Sizes of the pending queue, for the backlog gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCounts {
    pub to_clients: u64,
    pub to_servers: u64,
}

/// Housekeeping: queue sizes and retention (datastore.md §4). Every prune deletes at most `limit`
/// rows older than `before`, chosen by key, so one call never holds locks on a whole table; it
/// returns how many rows it deleted, and callers repeat until that is less than `limit`.
#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    async fn pending_counts(&self) -> Result<PendingCounts>;
    /// Contacts recorded before `before`, with their message links (`ON DELETE CASCADE`).
    async fn prune_contacts(&self, before: SystemTime, limit: usize) -> Result<u64>;
    /// Finished messages (no pending row) created before `before`, with their contact links.
    /// Pending messages, client- or server-bound, are never deleted.
    async fn prune_messages(&self, before: SystemTime, limit: usize) -> Result<u64>;
    /// Resource usage records received (`server_timestamp`) before `before`.
    async fn prune_resource_usage(&self, before: SystemTime, limit: usize) -> Result<u64>;
}

/// One step in the life of a message, as the trace keeps it (Fleetgate's own table
/// `fleetgate_message_trace`; Go servers neither read nor write it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    pub message_id: MessageId,
    /// When the step was taken; kept to the microsecond.
    pub time: SystemTime,
    /// The name of the server that took it.
    pub server: String,
    /// A short word: `stored`, `routed`, `leased`, `pushed`, `acknowledged`, ….
    pub step: String,
    /// Free text: which contact, which service and digest, which error.
    pub detail: String,
}

/// The message trace: steps are written in batches and read per message. Kept apart from the
/// other traits: nothing of Fleetspeak's depends on it, and losing a batch loses no message.
#[async_trait]
pub trait TraceStore: Send + Sync {
    /// Records the steps in one transaction.
    async fn record_trace(&self, steps: &[TraceRecord]) -> Result<()>;
    /// Every recorded step of `id`, oldest first (steps of one time in the order written).
    async fn message_trace(&self, id: MessageId) -> Result<Vec<TraceRecord>>;
    /// Deletes at most `limit` steps taken before `before`; returns how many (as the prunes of
    /// [`MaintenanceStore`]: repeat until that is less than `limit`).
    async fn prune_trace(&self, before: SystemTime, limit: usize) -> Result<u64>;
}

/// Everything a server needs from persistent state.
#[async_trait]
pub trait Store:
    MessageStore
    + ClientStore
    + BroadcastStore
    + FileStore
    + MaintenanceStore
    + LifecycleStore
    + TraceStore
    + DeploymentStore
    + Send
    + Sync
    + 'static
{
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;
    /// Releases connections.
    async fn close(&self) -> Result<()>;
}
