//! The wiring the server binary does: services installed from a services configuration into a
//! real engine (in-memory SQLite), with the engine as the plugins' message sink.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use fleetgate_engine::{Engine, EngineConfig};
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::server::ServiceConfig;
use fleetgate_runtime::{Factory, HostServices, WasmConfig};
use fleetgate_store::{ClientData, SeaOrmStore, Store};
use fleetgate_types::{ClientId, FakeClock, MessageId};
use support::client_message;

#[tokio::test]
async fn echo_installed_from_config_replies_through_the_engine() {
    let clock = Arc::new(FakeClock::at_seconds(1_700_000_000));
    let store: Arc<dyn Store> = Arc::new(
        SeaOrmStore::open("sqlite::memory:", clock.clone())
            .await
            .unwrap(),
    );
    let engine = Engine::new(EngineConfig::default(), store.clone(), clock.clone());
    let key = b"a client key".to_vec();
    let client = ClientId::from_public_key(&key);
    store
        .add_client(
            client,
            &ClientData {
                key,
                labels: Vec::new(),
                blacklisted: false,
            },
        )
        .await
        .unwrap();

    let echo = WasmConfig {
        path: "bundled:echo".into(),
        grants: vec!["messaging".into()],
        ..WasmConfig::default()
    };
    let services = [ServiceConfig {
        name: "Echo".into(),
        factory: "WASM".into(),
        max_parallelism: 2,
        config: Some(any::pack(&echo)),
        ..Default::default()
    }];
    let host = HostServices::new(Arc::new(engine.clone())).with_clock(clock.clone());
    let factory = Factory::new(support::runtime(), host);
    let built = factory.install(&engine, &services).await.unwrap();
    assert_eq!(built.len(), 1);

    let mut m = client_message("Echo", "Ping", 1);
    m.message_id = MessageId::random().to_vec();
    m.source.as_mut().unwrap().client_id = client.to_vec();
    let id = engine.insert_message(m.clone()).await.unwrap();

    let result = store
        .get_message_result(id)
        .await
        .unwrap()
        .expect("processed now");
    assert!(!result.failed, "{result:?}");
    let pending = store
        .get_pending_messages(&[client], 0, 10, true)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let reply = &pending[0];
    assert_eq!(reply.source.as_ref().unwrap().service_name, "Echo");
    assert_eq!(
        reply.destination.as_ref().unwrap().service_name,
        "TestService"
    );
    assert_eq!(reply.data, m.data);
}
