//! What the runtime needs from the rest of the server, as small trait objects, so it depends on
//! neither the store nor the engine's internals.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use async_trait::async_trait;
use fleetgate_pb::fleetspeak::{Label, Message};
use fleetgate_types::{ClientId, Clock, SystemClock};

/// Where `messaging.send-to-client` puts messages. The engine implements it
/// ([`fleetgate_engine::Engine::insert_message`]: stored as pending, the client's stream woken).
#[async_trait]
pub trait MessageSink: Send + Sync + 'static {
    /// Queues a client-bound message. The error text is handed to the plugin.
    async fn send(&self, message: Message) -> Result<(), String>;
}

#[async_trait]
impl MessageSink for fleetgate_engine::Engine {
    async fn send(&self, message: Message) -> Result<(), String> {
        self.insert_message(message)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// What `clients.info` returns about a client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientInfo {
    pub labels: Vec<Label>,
    pub last_contact: Option<SystemTime>,
}

/// Answers `clients.info`. The server implements it over the engine's client cache.
#[async_trait]
pub trait ClientDirectory: Send + Sync + 'static {
    async fn info(&self, client: ClientId) -> Option<ClientInfo>;
}

/// A directory that knows no clients.
#[derive(Debug, Default)]
pub struct NoClients;

#[async_trait]
impl ClientDirectory for NoClients {
    async fn info(&self, _client: ClientId) -> Option<ClientInfo> {
        None
    }
}

/// What a shadow run's candidate would have done outside its own memory, counted instead of
/// done: messages it would have sent, gRPC calls it would have made.
#[derive(Debug, Default)]
pub struct Withheld {
    pub messages: AtomicU64,
    pub grpc_calls: AtomicU64,
}

/// The host side of the capabilities, shared by every component of a server.
#[derive(Clone)]
pub struct HostServices {
    pub sink: Arc<dyn MessageSink>,
    pub clients: Arc<dyn ClientDirectory>,
    pub clock: Arc<dyn Clock>,
    /// Where every component call is counted; unset in tests and tools.
    pub metrics: Option<fleetgate_telemetry::Metrics>,
    /// Set for a shadow candidate: its side effects are counted here, not performed.
    pub withheld: Option<Arc<Withheld>>,
}

impl HostServices {
    /// Messages go to `sink`; no client directory; the system clock.
    pub fn new(sink: Arc<dyn MessageSink>) -> Self {
        Self {
            sink,
            clients: Arc::new(NoClients),
            clock: Arc::new(SystemClock),
            metrics: None,
            withheld: None,
        }
    }

    /// The same services with side effects withheld (a shadow run) and counted in `withheld`.
    pub fn withholding(mut self, withheld: Arc<Withheld>) -> Self {
        self.withheld = Some(withheld);
        self
    }

    pub fn with_metrics(mut self, metrics: fleetgate_telemetry::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn with_clients(mut self, clients: Arc<dyn ClientDirectory>) -> Self {
        self.clients = clients;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}
