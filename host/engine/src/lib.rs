//! The message engine: everything between "a client proved who it is" and "the message is stored,
//! processed and delivered".
//!
//! * [`contact`]: the frontend contract (`ContactHandler`) — enrolment, contact recording, streams.
//! * [`ingest`]: messages from clients: validation, IDs, services, storage.
//! * [`delivery`]: choosing what a client receives: leases, tokens, Die, RekeyRequest.
//! * [`system`]: the built-in `system` service (acks, errors, labels, resource usage).
//! * [`service`]: the `Service` trait that plugins implement, with per-service parallelism.
//! * [`router`]: the optional `Router` that re-addresses, fans out or drops client messages.
//! * [`backlog`]: retrying server-bound messages whose processing failed temporarily.
//! * [`lifecycle`]: retry policies, dead letters, expiry of client-bound messages, replay.
//! * [`registry`]: the streams this server holds, woken when a client has new messages.
//! * [`notifier`]: asking the server that holds a client's stream to wake it.
//! * [`cache`]: a 45-second cache of client records.
//! * [`metrics`]: the telemetry handle the engine records into; the pending-queue gauge.
//! * [`retention`]: deleting old contacts, finished messages and resource usage records.
//! * [`broadcasts`]: the broadcast working set, its allocations, and instances for contacts.
//! * [`trace`]: the message trace — each step queued without waiting, written in batches.
//!
//! The engine never speaks HTTP, TLS, gRPC or SQL: it talks to the store through
//! `fleetgate_store::Store` and to the outside through the frontend contract and its own methods.
#![forbid(unsafe_code)]

pub mod backlog;
pub mod broadcasts;
pub mod cache;
pub mod contact;
pub mod delivery;
pub mod ingest;
pub mod lifecycle;
pub mod metrics;
pub mod notifier;
pub mod registry;
pub mod retention;
pub mod router;
pub mod service;
pub mod system;
pub mod trace;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use fleetgate_pb::fleetspeak::Message;
use fleetgate_pb::fleetspeak::server::Client;
use fleetgate_store::{Store, StoreError};
use fleetgate_types::message::{destination_client, destination_service};
use fleetgate_types::time::to_timestamp;
use fleetgate_types::{ClientId, Clock, MessageId};

pub use contact::Stream;
pub use lifecycle::{Backoff, Expiry, RetryPolicy};
pub use notifier::{Notifier, StreamedTo};
pub use router::{Routed, Router};
pub use service::{NoopService, Outcome, Service, ServiceEntry, ServiceError, Services};

use broadcasts::Broadcasts;
use cache::ClientCache;
use registry::StreamRegistry;

/// Settings the engine needs, already validated.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Only clients claiming this label are accepted.
    pub required_label: Option<String>,
    /// Stored as `last_contact_streaming_to` for streams held here: `local` on a single server,
    /// else this server's notification address.
    pub streaming_to: String,
    /// How often broadcasts are reloaded: a random wait in [P, 2P), at least 1 s.
    pub broadcast_poll_time: Duration,
    /// How long after a new stream starts the unacknowledged leases of the client's earlier
    /// contacts become due again: time for acks still on their way to arrive first.
    pub redelivery_grace: Duration,
    /// When client-bound messages stop being delivered (off by default, as in Fleetspeak).
    pub expiry: lifecycle::Expiry,
    /// This server's name in the message trace: distinct per server of an installation.
    pub server_name: String,
    /// Whether steps are traced, and the trace queue's bounds.
    pub trace: trace::TraceConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            required_label: None,
            streaming_to: String::new(),
            broadcast_poll_time: broadcasts::DEFAULT_POLL_TIME,
            redelivery_grace: delivery::REDELIVERY_GRACE,
            expiry: lifecycle::Expiry::default(),
            server_name: String::new(),
            trace: trace::TraceConfig::default(),
        }
    }
}

/// Errors of the engine's own API (the admin service maps them to gRPC statuses).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Arc<ClientCache>,
    streams: StreamRegistry,
    broadcasts: Broadcasts,
    /// Tells other servers about messages for streams they hold; unset on a single server.
    notifier: OnceLock<Arc<dyn Notifier>>,
    /// Notifications sent after their insert answered; counted so tests can wait for them.
    notifications: tokio_util::task::TaskTracker,
    /// Where contacts, messages and processing are counted; unset in tests and tools.
    metrics: OnceLock<fleetgate_telemetry::Metrics>,
    /// Swapped whole on reload; readers clone the entry they need and drop the lock at once.
    services: RwLock<Services>,
    /// Sees client messages before their service; swapped whole, like `services`.
    router: RwLock<Option<Arc<dyn Router>>>,
    /// Queues trace steps; its writer task runs beside the engine (`run_trace_writer`).
    tracer: Arc<trace::Tracer>,
    stopping: AtomicBool,
}

impl Engine {
    pub fn new(config: EngineConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let cache = Arc::new(ClientCache::new());
        let tracer = Arc::new(trace::Tracer::new(
            config.server_name.clone(),
            &config.trace,
        ));
        let mut services = Services::new();
        let system = system::SystemService::new(store.clone(), cache.clone(), clock.clone())
            .with_tracer(tracer.clone());
        services.insert(system::NAME, ServiceEntry::new(Arc::new(system), 100));
        let broadcasts = Broadcasts::new(config.broadcast_poll_time);
        let inner = Inner {
            config,
            store,
            clock,
            cache,
            streams: StreamRegistry::new(),
            broadcasts,
            notifier: OnceLock::new(),
            notifications: tokio_util::task::TaskTracker::new(),
            metrics: OnceLock::new(),
            services: RwLock::new(services),
            router: RwLock::new(None),
            tracer,
            stopping: AtomicBool::new(false),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Installs or replaces a server service. `system` is built in and cannot be replaced.
    pub fn set_service(&self, name: &str, entry: ServiceEntry) -> Result<(), EngineError> {
        if name.is_empty() || name == system::NAME || name == "client" {
            return Err(EngineError::Invalid(format!(
                "illegal service name [{name}]"
            )));
        }
        self.inner
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, entry);
        if let Some(m) = self.inner.metrics.get() {
            m.known_service(name);
        }
        Ok(())
    }

    /// Removes a server service; returns whether it was installed. Calls in flight keep their
    /// entry and finish; afterwards the name is unknown here: fresh client messages for it fail
    /// with "unknown service" and server-bound backlog messages for it stay pending, as in
    /// Fleetspeak.
    pub fn remove_service(&self, name: &str) -> bool {
        if name == system::NAME {
            return false;
        }
        self.inner
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    pub(crate) fn service(&self, name: &str) -> Option<ServiceEntry> {
        self.inner
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Number of streams held by this server.
    pub fn stream_count(&self) -> usize {
        self.inner.streams.len()
    }

    /// Drops the cached record of a client, so its next contact here reads the store (after an
    /// admin change such as blacklisting). Other servers see the change within the cache's 45 s.
    pub fn forget_client(&self, client: ClientId) {
        self.inner.cache.remove(client);
    }

    /// Wakes the client's stream if this server holds it; returns whether it does.
    pub fn notify_client(&self, client: ClientId) -> bool {
        self.inner.streams.notify(client)
    }

    /// Refuses new contacts and frames, and wakes every stream so it can wind down.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.streams.notify_all();
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// Inserts a message from an admin caller or a service. A message for a client is stored as
    /// pending and the client's stream is woken at once: here if held here, else through the
    /// notifier, after this returns. A message for a service this server runs is processed now
    /// and stored with its outcome; for any other service it is queued for the backlog.
    pub async fn insert_message(&self, m: Message) -> Result<MessageId, EngineError> {
        self.insert_message_known(m, &[]).await
    }

    /// [`Engine::insert_message`] for a caller that has just read the destination client's
    /// record (`known`; other records are ignored): where the client streams is taken from it
    /// instead of being read again.
    pub async fn insert_message_known(
        &self,
        mut m: Message,
        known: &[Client],
    ) -> Result<MessageId, EngineError> {
        let (id, dest) = self.prepare_insert(&mut m)?;
        match dest {
            // A caller-supplied result: stored as already processed or failed, as the original
            // does, so nothing is delivered or processed.
            _ if m.result.is_some() => {
                self.inner
                    .store
                    .store_messages(std::slice::from_ref(&m), None)
                    .await?;
                self.trace_inserted(&m, dest);
            }
            Some(client) => {
                self.inner
                    .store
                    .store_messages(std::slice::from_ref(&m), None)
                    .await?;
                self.trace_inserted(&m, dest);
                let record = known.iter().find(|r| r.client_id == client.as_bytes());
                self.wake([(client, record.map(StreamedTo::from))]);
            }
            // A service this server does not run is left to the backlog of a server that does:
            // failing it here would lose another server's message.
            None if self.service(destination_service(&m)).is_none() => {
                self.inner
                    .store
                    .store_messages(std::slice::from_ref(&m), None)
                    .await?;
                self.trace_inserted(&m, dest);
            }
            None => {
                let settled = self.process_fresh(m).await;
                let traced = self.is_tracing().then(|| settled.message().clone());
                self.store_settled(vec![settled], None).await?;
                if let Some(m) = traced {
                    self.trace_inserted(&m, dest);
                }
            }
        }
        Ok(id)
    }

    /// Inserts a batch in one store transaction: every message is checked first, so either all
    /// are stored or none. Messages for clients are queued and their streams woken; messages for
    /// services are queued for the backlog (not processed inline), as the original's
    /// `InsertMessage` does. `known` are client records the caller has just read, as for
    /// [`Engine::insert_message_known`]. Returns the IDs in order.
    pub async fn insert_messages(
        &self,
        mut msgs: Vec<Message>,
        known: &[Client],
    ) -> Result<Vec<MessageId>, EngineError> {
        let mut ids = Vec::with_capacity(msgs.len());
        let mut clients = std::collections::BTreeSet::new();
        for (i, m) in msgs.iter_mut().enumerate() {
            let (id, dest) = self.prepare_insert(m).map_err(|e| match e {
                EngineError::Invalid(m) => EngineError::Invalid(format!("message {i}: {m}")),
                e => e,
            })?;
            ids.push(id);
            if m.result.is_none() {
                clients.extend(dest);
            }
        }
        if msgs.is_empty() {
            return Ok(ids);
        }
        self.inner.store.store_messages(&msgs, None).await?;
        for m in &msgs {
            self.trace_inserted(m, destination_client(m).ok().flatten());
        }
        let mut known: HashMap<&[u8], StreamedTo> = known
            .iter()
            .map(|r| (r.client_id.as_slice(), StreamedTo::from(r)))
            .collect();
        self.wake(
            clients
                .into_iter()
                .map(|c| (c, known.remove(c.as_bytes().as_slice()))),
        );
        Ok(ids)
    }

    /// The `stored` step of an inserted message.
    fn trace_inserted(&self, m: &Message, dest: Option<ClientId>) {
        self.trace_message(m, || {
            let to = match dest {
                Some(c) => format!("client {c}"),
                None => format!("service {}", destination_service(m)),
            };
            let how = match &m.result {
                Some(r) if r.failed => ", with a failed result: not delivered",
                Some(_) => ", already processed: not delivered",
                None => "",
            };
            let from = match m.source.as_ref().map(|s| s.service_name.as_str()) {
                Some(s) if !s.is_empty() => format!(" from service {s}"),
                _ => String::new(),
            };
            trace::StepKind::Stored(format!("inserted for {to}{from}{how}"))
        });
    }

    /// Wakes the streams of clients that have just had messages stored: those held here at once,
    /// the others through the notifier, without waiting for it.
    pub(crate) fn wake(&self, clients: impl IntoIterator<Item = (ClientId, Option<StreamedTo>)>) {
        let elsewhere = clients
            .into_iter()
            .filter(|(client, _)| !self.notify_client(*client))
            .collect();
        self.notify_elsewhere(elsewhere);
    }

    /// Completes a message to insert: its ID (random if empty) and creation time (now if unset, a
    /// caller's is kept as in the original); a caller's result is kept. Returns the ID and
    /// destination client.
    fn prepare_insert(
        &self,
        m: &mut Message,
    ) -> Result<(MessageId, Option<ClientId>), EngineError> {
        let id = if m.message_id.is_empty() {
            MessageId::random()
        } else {
            MessageId::from_bytes(&m.message_id).map_err(|e| EngineError::Invalid(e.to_string()))?
        };
        m.message_id = id.to_vec();
        if destination_service(m).is_empty() {
            return Err(EngineError::Invalid(
                "destination service is required".into(),
            ));
        }
        let dest = destination_client(m).map_err(|e| EngineError::Invalid(e.to_string()))?;
        if m.creation_time.is_none() {
            m.creation_time = Some(to_timestamp(self.inner.clock.now()));
        }
        Ok((id, dest))
    }
}
