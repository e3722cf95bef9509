//! The notifier hook: a message for a client whose stream another server holds is announced to
//! that server's recorded address, and only then (notifications.md §2, §5); the insert answers
//! without waiting for the announcement.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fleetgate_engine::{EngineConfig, Notifier};
use fleetgate_pb::fleetspeak::server::Client;
use fleetgate_store::ContactRecord;
use fleetgate_types::time::to_timestamp;
use fleetgate_types::{ClientId, Clock};
use tokio::sync::Semaphore;

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

/// Waits until every notification started so far is done: they run after the insert answered.
async fn settled(env: &Env) {
    tokio::time::timeout(LIVENESS, async {
        while env.engine.notifications_in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("notifications finish");
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
    settled(&env).await;
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
    settled(&env).await;
    assert!(rec.take().is_empty(), "a poll, `local` and our own address");
    contact_elsewhere(&env, c.id, OTHER).await;
    env.clock.advance(Duration::from_secs(601));
    env.insert_for(c.id, "TestService").await;
    settled(&env).await;
    assert!(
        rec.take().is_empty(),
        "a stream started over 10 minutes ago has ended"
    );
}

#[tokio::test]
async fn a_record_the_caller_read_is_used_instead_of_the_store() {
    let (env, rec) = env().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    // The store says the client polls; the caller's fresher record says it streams elsewhere.
    let record = Client {
        client_id: c.id.to_vec(),
        last_contact_streaming_to: OTHER.into(),
        last_contact_time: Some(to_timestamp(env.clock.now())),
        ..Default::default()
    };
    env.engine
        .insert_message_known(to_client(c.id, "TestService", "Test"), &[record])
        .await
        .unwrap();
    settled(&env).await;
    assert_eq!(rec.take(), vec![(OTHER.to_owned(), c.id)]);
}

/// A notifier whose sends wait until the test lets them through.
struct Held {
    gate: Semaphore,
    rec: Recording,
}

#[async_trait::async_trait]
impl Notifier for Held {
    async fn new_message_for_client(&self, target: &str, client: ClientId) {
        let _pass = self.gate.acquire().await.unwrap();
        self.rec.new_message_for_client(target, client).await;
    }
}

/// An engine whose notifier holds every send, and a client last seen streaming elsewhere.
async fn held_elsewhere() -> (Env, Arc<Held>, TestClient) {
    let env = Env::with_config(EngineConfig {
        streaming_to: OWN.into(),
        ..Default::default()
    })
    .await;
    let held = Arc::new(Held {
        gate: Semaphore::new(0),
        rec: Recording::default(),
    });
    env.engine.set_notifier(held.clone());
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    contact_elsewhere(&env, c.id, OTHER).await;
    (env, held, c)
}

#[tokio::test]
async fn the_insert_answers_before_the_notification_is_sent() {
    let (env, held, c) = held_elsewhere().await;
    let id = tokio::time::timeout(LIVENESS, env.insert_for(c.id, "TestService"))
        .await
        .expect("the insert does not wait for the notification");
    // Stored before the answer: nothing depends on the notification.
    let pending = env
        .store
        .get_pending_messages(&[c.id], 0, 0, false)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message_id, id.to_vec());
    assert_eq!(env.engine.notifications_in_flight(), 1);
    held.gate.add_permits(1);
    settled(&env).await;
    assert_eq!(held.rec.take(), vec![(OTHER.to_owned(), c.id)]);
}

/// A stopping server sends what it has answered for, and gives up on a target that never
/// answers instead of hanging its shutdown.
#[tokio::test]
async fn shutdown_finishes_answered_notifications_within_its_bound() {
    let (env, held, c) = held_elsewhere().await;
    env.insert_for(c.id, "TestService").await;
    assert_eq!(env.engine.notifications_in_flight(), 1);
    // The target never answers: the wait ends at its bound and says what is left.
    let left = env
        .engine
        .finish_notifications(Duration::from_millis(50))
        .await;
    assert_eq!(left, 1);
    // It answers: the wait returns once the notification is sent.
    held.gate.add_permits(1);
    let left = env.engine.finish_notifications(LIVENESS).await;
    assert_eq!(left, 0);
    assert_eq!(held.rec.take(), vec![(OTHER.to_owned(), c.id)]);
}
