//! The router in the engine's message path, with the real `router-example` component and a real
//! engine over in-memory SQLite: GRR messages from clients labelled `eu` go to `GRR-eu`, others
//! stay; a `drop` message is stored processed with no service call; a `fanout` message becomes
//! two rows with distinct IDs that a re-send reproduces.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fleetgate_engine::{Engine, EngineConfig, Service, ServiceEntry, ServiceError};
use fleetgate_pb::fleetspeak::{Address, ContactData, Message, WrappedContactData};
use fleetgate_runtime::{ComponentRouter, HostServices, Runtime, RuntimeConfig, WasmConfig};
use fleetgate_store::{SeaOrmStore, Store};
use fleetgate_types::contact::{Contact, ContactHandler};
use fleetgate_types::{ClientId, FakeClock, MessageId};
use prost::Message as _;

/// Records the messages it processes.
#[derive(Default)]
struct Recorder(Mutex<Vec<Message>>);

#[async_trait]
impl Service for Recorder {
    async fn process(&self, message: &Message) -> Result<(), ServiceError> {
        self.0.lock().unwrap().push(message.clone());
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Client {
    key: Vec<u8>,
    id: ClientId,
    labels: Vec<String>,
}

impl Client {
    fn new(seed: u8, label: &str) -> Self {
        // The shape of a P-256 SubjectPublicKeyInfo: fixed header, then an uncompressed point.
        let mut key =
            hex::decode("3059301306072a8648ce3d020106082a8648ce3d03010703420004").unwrap();
        key.extend([seed; 64]);
        Self {
            id: ClientId::from_public_key(&key),
            key,
            labels: vec![label.to_owned()],
        }
    }

    async fn send(&self, engine: &Engine, message_type: &str, smid: &[u8]) -> MessageId {
        let m = Message {
            source: Some(address("GRR")),
            source_message_id: smid.to_vec(),
            destination: Some(address("GRR")),
            message_type: message_type.into(),
            data: Some(prost_types::Any {
                type_url: "type.googleapis.com/grr.Report".into(),
                value: vec![7; 8],
            }),
            ..Default::default()
        };
        let cd = ContactData {
            messages: vec![m],
            ..Default::default()
        };
        let contact = Contact {
            client_id: self.id,
            public_key: self.key.clone(),
            observed_address: "192.0.2.7:4000".into(),
            wcd: WrappedContactData {
                contact_data: cd.encode_to_vec(),
                signatures: Vec::new(),
                client_labels: self.labels.clone(),
            },
        };
        engine.poll(contact).await.unwrap();
        MessageId::for_client_message(self.id, "GRR", smid)
    }
}

fn address(service: &str) -> Address {
    Address {
        client_id: Vec::new(),
        service_name: service.into(),
    }
}

struct Env {
    engine: Engine,
    store: Arc<dyn Store>,
    grr: Arc<Recorder>,
    grr_eu: Arc<Recorder>,
    audit: Arc<Recorder>,
}

async fn env() -> Env {
    let clock = Arc::new(FakeClock::at_seconds(1_700_000_000));
    let store: Arc<dyn Store> = Arc::new(
        SeaOrmStore::open("sqlite::memory:", clock.clone())
            .await
            .unwrap(),
    );
    let engine = Engine::new(EngineConfig::default(), store.clone(), clock.clone());
    let (grr, grr_eu, audit) = Default::default();
    for (name, r) in [("GRR", &grr), ("GRR-eu", &grr_eu), ("GRR-eu-audit", &audit)] {
        let r: &Arc<Recorder> = r;
        engine
            .set_service(name, ServiceEntry::new(r.clone(), 10))
            .unwrap();
    }
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 16,
        cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleetgate-component-cache")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let host = HostServices::new(Arc::new(engine.clone())).with_clients(Arc::new(engine.clone()));
    let path = Path::new(fleetgate_runtime::bundled::PLUGINS_DIR).join("router_example.wasm");
    let config = WasmConfig {
        path: path.display().to_string(),
        config: b"# GRR traffic from the EU stays in the EU\nGRR eu GRR-eu\n".to_vec(),
        grants: vec!["log".into(), "clients".into()],
        ..WasmConfig::default()
    };
    let router = ComponentRouter::from_config(&runtime, config, host).unwrap();
    engine.set_router(Some(Arc::new(router)));
    Env {
        engine,
        store,
        grr,
        grr_eu,
        audit,
    }
}

impl Env {
    async fn stored(&self, id: MessageId) -> Message {
        let mut rows = self.store.get_messages(&[id], true).await.unwrap();
        assert_eq!(rows.len(), 1, "message {id:?} stored once");
        rows.remove(0)
    }
}

fn service(m: &Message) -> &str {
    &m.destination.as_ref().unwrap().service_name
}

#[tokio::test]
async fn eu_clients_grr_messages_are_re_addressed_by_label() {
    let env = env().await;
    let (eu, us) = (Client::new(1, "eu"), Client::new(2, "us"));

    let id = eu.send(&env.engine, "Report", b"1").await;
    let seen = env.grr_eu.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message_id, id.to_vec());
    assert_eq!(seen[0].data.as_ref().unwrap().value, vec![7; 8]);
    let notes = &seen[0].annotations.as_ref().unwrap().entries;
    assert!(notes.iter().any(|e| e.key == "routed-by"), "{notes:?}");
    assert!(env.grr.take().is_empty());
    let row = env.stored(id).await;
    assert_eq!(service(&row), "GRR-eu");
    assert!(!row.result.unwrap().failed);

    // No rule matches a `us` client: the message keeps its destination.
    let id = us.send(&env.engine, "Report", b"2").await;
    assert_eq!(env.grr.take().len(), 1);
    assert!(env.grr_eu.take().is_empty());
    assert_eq!(service(&env.stored(id).await), "GRR");
}

#[tokio::test]
async fn a_dropped_message_is_stored_processed_without_a_service_call() {
    let env = env().await;
    let eu = Client::new(3, "eu");
    let id = eu.send(&env.engine, "drop", b"d").await;
    assert!(env.grr.take().is_empty() && env.grr_eu.take().is_empty());
    let row = env.stored(id).await;
    let result = row.result.expect("processed");
    assert!(!result.failed, "{result:?}");
    assert!(row.data.is_none(), "payload dropped with the message");
}

#[tokio::test]
async fn a_fanned_out_message_gets_distinct_deterministic_ids() {
    let env = env().await;
    let eu = Client::new(4, "eu");
    let id = eu.send(&env.engine, "fanout", b"f").await;
    let copy = MessageId::for_routed_copy(id, 1);
    let (main, audit) = (env.grr_eu.take(), env.audit.take());
    assert_eq!(main.len(), 1);
    assert_eq!(audit.len(), 1);
    assert_eq!(main[0].message_id, id.to_vec());
    assert_eq!(audit[0].message_id, copy.to_vec());
    assert_eq!(audit[0].data, main[0].data, "both copies carry the payload");
    assert_eq!(service(&env.stored(copy).await), "GRR-eu-audit");
    assert!(!env.stored(copy).await.result.unwrap().failed);

    // The client re-sends it (its ack was lost): the same two IDs, merged in the store.
    eu.send(&env.engine, "fanout", b"f").await;
    assert_eq!(env.audit.take()[0].message_id, copy.to_vec());
    env.stored(id).await;
    env.stored(copy).await;
    let counts = env.store.pending_counts().await.unwrap();
    assert_eq!(counts.to_servers, 0);
}
