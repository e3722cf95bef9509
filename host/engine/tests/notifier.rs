//! The notifier hook: a message for a client whose stream another server holds is announced to
//! that server's recorded address, and only then (notifications.md §2, §5).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fleetgate_engine::{EngineConfig, Notifier};
use fleetgate_store::ContactRecord;
use fleetgate_types::ClientId;

const OWN: &str = "10.0.0.1:10000";
const OTHER: &str = "10.0.0.5:10000";

#[derive(Default)]
struct Recording(Mutex<Vec<(String, ClientId)>>);

#[async_trait::async_trait]
impl Notifier for Recording {
    async fn new_message_for_client(&self, target: &str, client: ClientId) {
        self.0.lock().unwrap().push((target.to_owned(), client));
    }
}

impl Recording {
    fn take(&self) -> Vec<(String, ClientId)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

async fn env() -> (Env, Arc<Recording>) {
    let env = Env::with_config(EngineConfig {
        streaming_to: OWN.into(),
        ..Default::default()
    })
    .await;
    let rec = Arc::new(Recording::default());
    env.engine.set_notifier(rec.clone());
    (env, rec)
}

/// Records a contact of `client` as another server would: streaming to `to` ("" = a poll).
async fn contact_elsewhere(env: &Env, client: ClientId, to: &str) {
    env.store
        .record_client_contact(&ContactRecord {
            client_id: Some(client),
            sent_nonce: 1,
            received_nonce: 0,
            address: "192.0.2.1:5000".into(),
            client_clock: None,
            streaming_to: to.into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stream_held_elsewhere_is_notified_at_its_address() {
    let (env, rec) = env().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    contact_elsewhere(&env, c.id, OTHER).await;
    env.insert_for(c.id, "TestService").await;
    assert_eq!(rec.take(), vec![(OTHER.to_owned(), c.id)]);
}

#[tokio::test]
async fn polls_local_own_and_stale_streams_are_not_notified() {
    let (env, rec) = env().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    env.insert_for(c.id, "TestService").await;
    for to in ["local", OWN] {
        contact_elsewhere(&env, c.id, to).await;
        env.insert_for(c.id, "TestService").await;
    }
    assert!(rec.take().is_empty(), "a poll, `local` and our own address");
    contact_elsewhere(&env, c.id, OTHER).await;
    env.clock.advance(Duration::from_secs(601));
    env.insert_for(c.id, "TestService").await;
    assert!(
        rec.take().is_empty(),
        "a stream started over 10 minutes ago has ended"
    );
}
