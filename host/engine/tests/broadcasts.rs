//! Broadcasts end to end at the engine level (server.md §9, §10; client-lifecycle.md §6 step 3):
//! created in the store as the admin API does, picked up by a refresh, handed out through
//! `ContactHandler::poll` and streams.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::server::Broadcast;
use fleetgate_pb::fleetspeak::{Address, Label, Message};
use fleetgate_store::BROADCAST_UNLIMITED;
use fleetgate_types::BroadcastId;
use fleetgate_types::contact::{ContactHandler, StreamSession};
use fleetgate_types::message::destination_client;

fn broadcast(label: Option<&str>, expires: Option<u64>) -> (BroadcastId, Broadcast) {
    let id = BroadcastId::random();
    let b = Broadcast {
        broadcast_id: id.to_vec(),
        source: Some(Address {
            client_id: Vec::new(),
            service_name: "src".into(),
        }),
        message_type: "Hello".into(),
        required_labels: label
            .map(|l| Label {
                service_name: "client".into(),
                label: l.into(),
            })
            .into_iter()
            .collect(),
        expiration_time: expires.map(|s| prost_types::Timestamp {
            seconds: s as i64,
            nanos: 0,
        }),
        data: Some(any::pack(&Label {
            service_name: "payload".into(),
            label: "b".into(),
        })),
        destination: None,
        group_name: String::new(),
    };
    (id, b)
}

async fn create(env: &Env, b: &Broadcast, limit: u64) {
    env.store.create_broadcast(b, limit).await.unwrap();
    assert!(
        env.engine.refresh_broadcasts().await.unwrap(),
        "refresh added it"
    );
}

fn hellos(msgs: &[Message]) -> Vec<&Message> {
    msgs.iter().filter(|m| m.message_type == "Hello").collect()
}

async fn poll_hellos(env: &Env, c: &TestClient) -> usize {
    hellos(&env.poll(c, cd(vec![])).await.messages).len()
}

#[tokio::test]
async fn labelled_client_gets_exactly_one_instance() {
    let env = Env::new().await;
    let (_, b) = broadcast(Some("x"), None);
    create(&env, &b, BROADCAST_UNLIMITED).await;
    let yes = TestClient::with_labels(&["x"]);
    let no = TestClient::with_labels(&["y"]);

    let got = env.poll(&yes, cd(vec![])).await.messages;
    let got = hellos(&got);
    assert_eq!(got.len(), 1);
    let m = got[0];
    assert_eq!(destination_client(m).unwrap(), Some(yes.id));
    let dest = m.destination.as_ref().unwrap();
    assert_eq!(
        dest.service_name, "src",
        "destination defaults to the source service"
    );
    assert_eq!(m.source.as_ref().unwrap().service_name, "src");
    assert_eq!(m.data, b.data);
    assert!(m.creation_time.is_some());
    assert_eq!(
        env.store
            .get_pending_message_count(&[yes.id])
            .await
            .unwrap(),
        1
    );

    // Neither the next contact (record read from the store again) nor one past the lease.
    env.tick();
    assert_eq!(poll_hellos(&env, &yes).await, 0);
    assert_eq!(
        poll_hellos(&env, &yes).await,
        0,
        "a cache hit is not checked"
    );
    assert_eq!(poll_hellos(&env, &no).await, 0);
    assert_eq!(poll_hellos(&env, &no).await, 0);
}

#[tokio::test]
async fn limit_one_reaches_one_of_two_clients() {
    let env = Env::new().await;
    let (_, b) = broadcast(Some("x"), None);
    create(&env, &b, 1).await;
    let a = TestClient::with_labels(&["x"]);
    let c = TestClient::with_labels(&["x"]);
    let total = poll_hellos(&env, &a).await + poll_hellos(&env, &c).await;
    assert_eq!(total, 1);
    // The next refresh returns the spent allocation: the broadcast is then complete.
    assert!(!env.engine.refresh_broadcasts().await.unwrap());
    assert!(env.store.list_active_broadcasts().await.unwrap().is_empty());
    // A second server with a fresh cache cannot send it either.
    let other = env.fresh_engine();
    assert!(!other.refresh_broadcasts().await.unwrap());
}

#[tokio::test]
async fn disabling_stops_further_instances() {
    for limit in [10, BROADCAST_UNLIMITED] {
        let env = Env::new().await;
        let (id, b) = broadcast(None, None);
        create(&env, &b, limit).await;
        assert_eq!(
            poll_hellos(&env, &TestClient::new()).await,
            1,
            "limit {limit}"
        );
        env.store.disable_broadcasts(&[id]).await.unwrap();
        // Before the next refresh the store refuses the instance ...
        assert_eq!(
            poll_hellos(&env, &TestClient::new()).await,
            0,
            "limit {limit}"
        );
        // ... and after it the broadcast is gone from the working set.
        assert!(!env.engine.refresh_broadcasts().await.unwrap());
        assert_eq!(
            poll_hellos(&env, &TestClient::new()).await,
            0,
            "limit {limit}"
        );
    }
}

#[tokio::test]
async fn expiry_is_respected() {
    let env = Env::new().await;
    let (_, b) = broadcast(None, Some(T0 + 60));
    create(&env, &b, BROADCAST_UNLIMITED).await;
    assert_eq!(poll_hellos(&env, &TestClient::new()).await, 1);
    env.clock.advance(Duration::from_secs(61));
    assert_eq!(
        poll_hellos(&env, &TestClient::new()).await,
        0,
        "expired before a refresh"
    );
    assert!(!env.engine.refresh_broadcasts().await.unwrap());
    assert!(env.store.list_active_broadcasts().await.unwrap().is_empty());
}

#[tokio::test]
async fn allocation_expiry_is_respected_and_renewed() {
    let env = Env::new().await;
    let (_, b) = broadcast(None, None);
    create(&env, &b, 100).await;
    // The allocation lives 10 minutes; past that nothing is sent under it.
    env.clock.advance(Duration::from_secs(601));
    assert_eq!(poll_hellos(&env, &TestClient::new()).await, 0);
    // A refresh replaces it with a fresh one.
    assert!(env.engine.refresh_broadcasts().await.unwrap());
    assert_eq!(poll_hellos(&env, &TestClient::new()).await, 1);
}

#[tokio::test]
async fn refresh_clears_the_cache_so_cached_clients_are_checked() {
    let env = Env::new().await;
    let c = TestClient::new();
    // Enrol, then a store read that fills the cache: the third contact is a cache hit.
    env.poll(&c, cd(vec![])).await;
    env.poll(&c, cd(vec![])).await;
    let (_, b) = broadcast(None, None);
    env.store
        .create_broadcast(&b, BROADCAST_UNLIMITED)
        .await
        .unwrap();
    assert_eq!(poll_hellos(&env, &c).await, 0, "not loaded yet");
    assert!(env.engine.refresh_broadcasts().await.unwrap());
    assert_eq!(poll_hellos(&env, &c).await, 1);
    // Nothing new: the cache stays and the set is unchanged.
    assert!(!env.engine.refresh_broadcasts().await.unwrap());
}

#[tokio::test]
async fn streams_are_woken_by_a_refresh() {
    let env = Env::new().await;
    let c = TestClient::with_labels(&["x"]);
    env.poll(&c, cd(vec![])).await;
    let (stream, reply) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    assert!(hellos(&reply.messages).is_empty());
    let (_, b) = broadcast(Some("x"), None);
    create(&env, &b, BROADCAST_UNLIMITED).await;
    let pushed = tokio::time::timeout(LIVENESS, stream.next_messages())
        .await
        .expect("the refresh wakes the stream")
        .unwrap()
        .unwrap();
    assert_eq!(hellos(&pushed).len(), 1);
    // The next wake-up does not check again.
    env.insert_for(c.id, "svc").await;
    env.tick();
    let pushed = tokio::time::timeout(LIVENESS, stream.next_messages())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pushed.len(), 1);
    assert!(hellos(&pushed).is_empty());
    stream.close().await;
}

#[tokio::test]
async fn stop_writes_unlimited_counts_and_ends_refreshes() {
    let env = Env::new().await;
    let (id, b) = broadcast(None, None);
    create(&env, &b, BROADCAST_UNLIMITED).await;
    assert_eq!(poll_hellos(&env, &TestClient::new()).await, 1);
    assert_eq!(poll_hellos(&env, &TestClient::new()).await, 1);
    env.engine.stop_broadcasts().await;
    let active = env.store.list_active_broadcasts().await.unwrap();
    let info = active
        .iter()
        .find(|i| i.broadcast.broadcast_id == id.to_vec())
        .unwrap();
    assert_eq!(info.sent, 2);
    assert!(!env.engine.refresh_broadcasts().await.unwrap(), "stopped");
    assert_eq!(poll_hellos(&env, &TestClient::new()).await, 0);
    env.engine.stop_broadcasts().await;
    let again = env.store.list_active_broadcasts().await.unwrap();
    assert_eq!(again[0].sent, 2, "stopping twice counts once");
}

#[tokio::test]
async fn a_limit_holds_across_many_allocations() {
    let env = Env::new().await;
    let (_, b) = broadcast(None, None);
    create(&env, &b, 10).await;
    let mut sent = 0;
    for _ in 0..20 {
        sent += poll_hellos(&env, &TestClient::new()).await;
        // Every refresh replaces a spent allocation.
        env.engine.refresh_broadcasts().await.unwrap();
    }
    assert_eq!(sent, 10);
    assert!(env.store.list_active_broadcasts().await.unwrap().is_empty());
}

/// Two servers share one limit through allocations: together they never pass it (the original's
/// `max(allocated, sent)` arithmetic could), and every instance sent is counted exactly once.
#[tokio::test]
async fn two_servers_count_every_instance() {
    let env = Env::new().await;
    let (_, b) = broadcast(None, None);
    create(&env, &b, 10).await;
    let other = env.fresh_engine();
    assert!(other.refresh_broadcasts().await.unwrap());
    let mut sent = 0;
    for i in 0..40 {
        let engine = if i % 2 == 0 { &env.engine } else { &other };
        let c = TestClient::new();
        let got = engine.poll(c.contact(cd(vec![]))).await.unwrap();
        sent += hellos(&got.messages).len();
        if i % 7 == 6 {
            env.engine.refresh_broadcasts().await.unwrap();
            other.refresh_broadcasts().await.unwrap();
        }
    }
    assert!(sent > 0 && sent <= 10, "{sent} instances for a limit of 10");
    for e in [&env.engine, &other] {
        e.stop_broadcasts().await;
    }
    let active = env.store.list_active_broadcasts().await.unwrap();
    match active.first() {
        Some(b) => assert_eq!(b.sent as usize, sent),
        // Only an exhausted broadcast leaves the active set here: all ten were counted.
        None => assert_eq!(sent, 10),
    }
}
