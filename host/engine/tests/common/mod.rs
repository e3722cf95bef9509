//! Shared test helpers: an engine over the real store (in-memory SQLite) on a fake clock, clients
//! with random keys, contacts, and the messages a client sends.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fleetgate_engine::{Engine, EngineConfig, Service, ServiceError};
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::{
    Address, ClientInfoData, ContactData, Label, Message, MessageAckData, MessageErrorData,
    MessageResult, WrappedContactData,
};
use fleetgate_store::{SeaOrmStore, Store};
use fleetgate_types::contact::{Contact, ContactHandler};
use fleetgate_types::message::address;
use fleetgate_types::time::to_timestamp;
use fleetgate_types::{ClientId, Clock, FakeClock, MessageId};
use prost::Message as _;

/// The fake clock starts here (2023-11-14), far from the epoch so nothing underflows.
pub const T0: u64 = 1_700_000_000;

/// The bound on how long a liveness wait may take before the test fails.
pub const LIVENESS: Duration = Duration::from_secs(2);

pub struct Env {
    pub clock: Arc<FakeClock>,
    pub store: Arc<dyn Store>,
    pub engine: Engine,
}

impl Env {
    pub async fn new() -> Self {
        Self::with_config(EngineConfig::default()).await
    }

    pub async fn with_config(config: EngineConfig) -> Self {
        let clock = Arc::new(FakeClock::at_seconds(T0));
        let store = SeaOrmStore::open("sqlite::memory:", clock.clone())
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let engine = Engine::new(config, store.clone(), clock.clone());
        Self {
            clock,
            store,
            engine,
        }
    }

    /// A second engine over the same store and clock, with an empty client cache.
    pub fn fresh_engine(&self) -> Engine {
        Engine::new(
            EngineConfig::default(),
            self.store.clone(),
            self.clock.clone(),
        )
    }

    /// The store leases only messages due strictly before now (as the original does), so a
    /// message stored "due now" on a clock that never moves would never be handed out.
    pub fn tick(&self) {
        self.clock.advance(Duration::from_secs(1));
    }

    pub async fn poll(&self, client: &TestClient, cd: ContactData) -> ContactData {
        self.engine.poll(client.contact(cd)).await.unwrap()
    }

    pub async fn result(&self, id: MessageId) -> Option<MessageResult> {
        self.store.get_message_result(id).await.unwrap()
    }

    /// Queues a server → client message through the engine's admin path.
    pub async fn insert_for(&self, client: ClientId, service: &str) -> MessageId {
        self.engine
            .insert_message(to_client(client, service, "Test"))
            .await
            .unwrap()
    }
}

/// A client with a random key, as the frontend would present it.
#[derive(Clone)]
pub struct TestClient {
    pub key: Vec<u8>,
    pub id: ClientId,
    pub labels: Vec<String>,
    pub address: String,
}

impl TestClient {
    pub fn new() -> Self {
        Self::with_labels(&[])
    }

    pub fn with_labels(labels: &[&str]) -> Self {
        // The shape of a P-256 SubjectPublicKeyInfo: fixed header, then an uncompressed point.
        let mut key =
            hex::decode("3059301306072a8648ce3d020106082a8648ce3d03010703420004").unwrap();
        key.extend(rand::random::<[u8; 32]>());
        key.extend(rand::random::<[u8; 32]>());
        let port: u16 = rand::random_range(1024..65535);
        Self {
            id: ClientId::from_public_key(&key),
            key,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            address: format!("192.0.2.7:{port}"),
        }
    }

    pub fn contact(&self, cd: ContactData) -> Contact {
        Contact {
            client_id: self.id,
            public_key: self.key.clone(),
            observed_address: self.address.clone(),
            wcd: wcd(&cd, &self.labels),
        }
    }
}

pub fn wcd(cd: &ContactData, labels: &[String]) -> WrappedContactData {
    WrappedContactData {
        contact_data: cd.encode_to_vec(),
        signatures: Vec::new(),
        client_labels: labels.to_vec(),
    }
}

/// ContactData carrying `messages`, with no token map (unlimited, as a legacy client).
pub fn cd(messages: Vec<Message>) -> ContactData {
    ContactData {
        sequencing_nonce: 0,
        messages,
        client_clock: Some(to_timestamp(std::time::SystemTime::now())),
        ..Default::default()
    }
}

/// ContactData with these `AllowedMessages` tokens.
pub fn cd_tokens(messages: Vec<Message>, tokens: &[(&str, u64)]) -> ContactData {
    ContactData {
        allowed_messages: tokens
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect::<HashMap<_, _>>(),
        ..cd(messages)
    }
}

/// A client → server message as a client writes it (no message ID; the server computes it).
pub fn from_client(service: &str, source_message_id: &[u8]) -> Message {
    Message {
        source: Some(address(None, service)),
        source_message_id: source_message_id.to_vec(),
        destination: Some(address(None, service)),
        message_type: "Test".into(),
        data: Some(any::pack(&Label {
            service_name: "payload".into(),
            label: "x".into(),
        })),
        ..Default::default()
    }
}

/// The ID the server must give `from_client(service, smid)` sent by `client`.
pub fn client_msg_id(client: ClientId, service: &str, smid: &[u8]) -> MessageId {
    MessageId::for_client_message(client, service, smid)
}

/// A message from the client's `system` service to the server's, carrying `data`.
pub fn system_msg<M: prost::Name>(message_type: &str, data: &M) -> Message {
    Message {
        source: Some(address(None, "system")),
        source_message_id: rand::random::<[u8; 16]>().to_vec(),
        destination: Some(address(None, "system")),
        message_type: message_type.into(),
        data: Some(any::pack(data)),
        ..Default::default()
    }
}

pub fn ack(ids: &[MessageId]) -> Message {
    system_msg(
        "MessageAck",
        &MessageAckData {
            message_ids: ids.iter().map(|i| i.to_vec()).collect(),
        },
    )
}

pub fn msg_error(id: MessageId, text: &str) -> Message {
    system_msg(
        "MessageError",
        &MessageErrorData {
            message_id: id.to_vec(),
            error: text.into(),
        },
    )
}

pub fn client_info(labels: &[(&str, &str)]) -> Message {
    system_msg(
        "ClientInfo",
        &ClientInfoData {
            labels: labels
                .iter()
                .map(|(s, l)| Label {
                    service_name: s.to_string(),
                    label: l.to_string(),
                })
                .collect(),
            services: Vec::new(),
        },
    )
}

/// A server → client message for `insert_message`.
pub fn to_client(client: ClientId, service: &str, message_type: &str) -> Message {
    Message {
        source: Some(address(None, service)),
        destination: Some(Address {
            client_id: client.to_vec(),
            service_name: service.into(),
        }),
        message_type: message_type.into(),
        data: Some(any::pack(&Label {
            service_name: "for".into(),
            label: "client".into(),
        })),
        ..Default::default()
    }
}

pub fn ids_of(msgs: &[Message]) -> Vec<MessageId> {
    msgs.iter()
        .map(|m| MessageId::from_bytes(&m.message_id).unwrap())
        .collect()
}

/// Polls `check` every 20 ms until it returns true; fails the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(limit, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// What a [`TestService`] answers.
#[derive(Debug, Clone)]
pub enum Mode {
    Ok,
    Permanent(String),
    Temporary(String),
}

/// A configurable service that records what it saw and how many calls overlapped.
pub struct TestService {
    pub mode: Mutex<Mode>,
    pub delay: Duration,
    pub calls: AtomicUsize,
    active: AtomicUsize,
    pub max_active: AtomicUsize,
    pub seen: Mutex<Vec<Message>>,
}

impl TestService {
    pub fn new(mode: Mode) -> Arc<Self> {
        Self::slow(mode, Duration::ZERO)
    }

    pub fn slow(mode: Mode, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            mode: Mutex::new(mode),
            delay,
            calls: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Service for TestService {
    async fn process(&self, message: &Message) -> Result<(), ServiceError> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(message.clone());
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::Ok => Ok(()),
            Mode::Permanent(e) => Err(ServiceError::Permanent(e)),
            Mode::Temporary(e) => Err(ServiceError::Temporary(e)),
        }
    }
}

/// The current time of the fake clock as a protobuf timestamp.
pub fn now_ts(clock: &FakeClock) -> prost_types::Timestamp {
    to_timestamp(clock.now())
}
