//! The admin API on 127.0.0.1:0 over a real engine and store (in-memory SQLite on a fake clock),
//! with tonic clients for both services, and clients enrolled through the engine's contact path.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use fleetgate_admin::PluginControl;
use fleetgate_engine::{Engine, EngineConfig};
use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_client::FleetgateAdminClient;
use fleetgate_pb::fleetspeak::server::admin_client::AdminClient;
use fleetgate_pb::fleetspeak::{Address, ContactData, Message, WrappedContactData};
use fleetgate_store::{SeaOrmStore, Store};
use fleetgate_types::contact::{Contact, ContactHandler};
use fleetgate_types::{ClientId, FakeClock};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The fake clock starts here (2023-11-14).
pub const T0: u64 = 1_700_000_000;

pub struct Harness {
    pub clock: Arc<FakeClock>,
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    pub admin: AdminClient<Channel>,
    pub ext: FleetgateAdminClient<Channel>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_plugins(None).await
    }

    pub async fn with_plugins(plugins: Option<Arc<dyn PluginControl>>) -> Self {
        let clock = Arc::new(FakeClock::at_seconds(T0));
        let store = SeaOrmStore::open("sqlite::memory:", clock.clone())
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let engine = Engine::new(EngineConfig::default(), store.clone(), clock.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let (engine, token) = (engine.clone(), shutdown.clone());
            async move {
                fleetgate_admin::serve(listener, engine, plugins, token)
                    .await
                    .unwrap();
            }
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        Self {
            clock,
            store,
            engine,
            admin: AdminClient::new(channel.clone()),
            ext: FleetgateAdminClient::new(channel),
            shutdown,
            server: Some(server),
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.server.take() {
            s.await.unwrap();
        }
    }

    /// Enrols a client with these `client` labels through a first contact.
    pub async fn enrol(&self, labels: &[&str]) -> TestClient {
        let c = TestClient::new(labels);
        self.engine.poll(c.contact()).await.unwrap();
        c
    }

    /// The store leases only messages due strictly before now.
    pub fn tick(&self) {
        self.clock.advance(Duration::from_secs(1));
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Clone)]
pub struct TestClient {
    pub id: ClientId,
    pub key: Vec<u8>,
    pub labels: Vec<String>,
}

impl TestClient {
    pub fn new(labels: &[&str]) -> Self {
        let key: Vec<u8> = (0..91).map(|_| rand::random::<u8>()).collect();
        Self {
            id: ClientId::from_public_key(&key),
            key,
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    /// An empty contact (no messages, no token map).
    pub fn contact(&self) -> Contact {
        let cd = ContactData::default();
        Contact {
            client_id: self.id,
            public_key: self.key.clone(),
            observed_address: "192.0.2.9:4242".into(),
            wcd: WrappedContactData {
                contact_data: cd.encode_to_vec(),
                signatures: Vec::new(),
                client_labels: self.labels.clone(),
            },
        }
    }
}

/// A message from server service `svc` to `client`'s `svc`.
pub fn to_client(client: ClientId, svc: &str) -> Message {
    Message {
        source: Some(address(Vec::new(), svc)),
        destination: Some(address(client.to_vec(), svc)),
        message_type: "Test".into(),
        data: Some(prost_types::Any {
            type_url: "type.googleapis.com/test.Payload".into(),
            value: b"payload".to_vec(),
        }),
        ..Default::default()
    }
}

pub fn address(client: Vec<u8>, svc: &str) -> Address {
    Address {
        client_id: client,
        service_name: svc.into(),
    }
}

/// Asserts that `r` failed with `code`, and returns the message.
pub fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: tonic::Code) -> String {
    match r {
        Err(s) if s.code() == code => s.message().to_owned(),
        other => panic!("expected {code:?}, got {other:?}"),
    }
}
