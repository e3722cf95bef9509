//! Streams: frame 0, pushes woken by inserts and by new tokens, supersession and unregistering
//! (ARCHITECTURE.md "Streams"; server.md §3.2, §7.4; protocol.md §9.2).
#![allow(clippy::unwrap_used)]

mod common;

use std::task::Poll;
use std::time::Duration;

use common::*;
use fleetgate_engine::ServiceEntry;
use fleetgate_pb::fleetspeak::Message;
use fleetgate_types::contact::{ContactError, ContactHandler, StreamSession};
use fleetgate_types::message::destination_client;
use fleetgate_types::time::CLIENT_LEASE;

/// The next push, which must come within the liveness bound.
async fn next(stream: &impl StreamSession) -> Option<Vec<Message>> {
    tokio::time::timeout(LIVENESS, stream.next_messages())
        .await
        .expect("next_messages did not resolve in time")
        .unwrap()
}

/// Asserts that no push is ready within a short while.
async fn nothing_pushed(stream: &impl StreamSession) {
    let r = tokio::time::timeout(Duration::from_millis(200), stream.next_messages()).await;
    match r {
        Err(_) => {}
        Ok(Ok(Some(m))) if m.is_empty() => {}
        other => panic!("unexpected push: {other:?}"),
    }
}

#[tokio::test]
async fn frame_zero_and_pushes() {
    let env = Env::with_config(fleetgate_engine::EngineConfig {
        streaming_to: "local".into(),
        ..Default::default()
    })
    .await;
    let svc = TestService::new(Mode::Ok);
    env.engine
        .set_service("svc", ServiceEntry::new(svc.clone(), 0))
        .unwrap();
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let early = env.insert_for(c.id, "svc").await;
    env.tick();

    let frame0 = cd(vec![from_client("svc", b"f0")]);
    let (stream, reply) = env.engine.open_stream(c.contact(frame0)).await.unwrap();
    assert_eq!(ids_of(&reply.messages), vec![early]);
    assert_ne!(reply.sequencing_nonce, 0);
    assert!(env.engine.notify_client(c.id), "registered");
    assert_eq!(env.engine.stream_count(), 1);
    assert!(
        env.result(client_msg_id(c.id, "svc", b"f0"))
            .await
            .is_some()
    );
    let contacts = env.store.list_client_contacts(c.id).await.unwrap();
    assert_eq!(contacts.len(), 2, "the stream start is a contact");

    // The notify above left a permit: this wake finds nothing new.
    assert_eq!(next(&stream).await, Some(vec![]));

    let pushed = env.insert_for(c.id, "svc").await;
    env.tick();
    let got = next(&stream).await.unwrap();
    assert_eq!(ids_of(&got), vec![pushed]);
    assert_eq!(destination_client(&got[0]).unwrap(), Some(c.id));

    // Later frames are ingested, with the stream's contact, and add no contact row.
    let later = wcd(&cd(vec![from_client("svc", b"f1")]), &c.labels);
    stream.frame(later).await.unwrap();
    assert!(
        env.result(client_msg_id(c.id, "svc", b"f1"))
            .await
            .is_some()
    );
    assert_eq!(env.store.list_client_contacts(c.id).await.unwrap().len(), 2);

    stream.close().await;
    assert!(!env.engine.notify_client(c.id), "close unregisters");
    assert_eq!(env.engine.stream_count(), 0);
}

#[tokio::test]
async fn tokens_from_later_frames_unblock_delivery() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(env.insert_for(c.id, "svc").await);
    }
    env.tick();

    let (stream, reply) = env
        .engine
        .open_stream(c.contact(cd_tokens(vec![], &[("svc", 1), ("system", 100)])))
        .await
        .unwrap();
    assert_eq!(reply.messages.len(), 1);

    // Out of tokens: a new message wakes the stream but is not pushed.
    queued.push(env.insert_for(c.id, "svc").await);
    env.tick();
    nothing_pushed(&stream).await;

    // The client processed one message: one more token.
    let delta = wcd(&cd_tokens(vec![], &[("svc", 1)]), &c.labels);
    stream.frame(delta).await.unwrap();
    let got = next(&stream).await.unwrap();
    assert_eq!(got.len(), 1);

    // Two more tokens: the remaining two.
    let delta = wcd(&cd_tokens(vec![], &[("svc", 2)]), &c.labels);
    stream.frame(delta).await.unwrap();
    let got2 = next(&stream).await.unwrap();
    assert_eq!(got2.len(), 2);

    let mut all = ids_of(&reply.messages);
    all.extend(ids_of(&got));
    all.extend(ids_of(&got2));
    all.sort();
    queued.sort();
    assert_eq!(all, queued);
    stream.close().await;
}

#[tokio::test]
async fn a_newer_stream_supersedes_the_older() {
    let env = Env::new().await;
    let c = TestClient::new();
    let (first, _) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    let (second, _) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    assert_eq!(env.engine.stream_count(), 1);

    assert_eq!(
        tokio::time::timeout(LIVENESS, first.next_messages())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    // A parked `next_messages` of the older stream is released too.
    let second = std::sync::Arc::new(second);
    let parked = tokio::spawn({
        let second = second.clone();
        async move { second.next_messages().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!parked.is_finished(), "nothing to push yet");
    let (third, _) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    let released = tokio::time::timeout(LIVENESS, parked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(released.unwrap(), None);

    // The superseded stream still ingests (it keeps reading and acking).
    first
        .frame(wcd(&cd(vec![from_client("svc", b"old")]), &[]))
        .await
        .unwrap();
    assert!(
        env.store
            .get_message_status(client_msg_id(c.id, "svc", b"old"))
            .await
            .unwrap()
            .is_some()
    );

    // Closing an older stream does not unregister the newest.
    first.close().await;
    second.close().await;
    assert!(env.engine.notify_client(c.id));
    let pushed = env.insert_for(c.id, "svc").await;
    env.tick();
    let mut got = next(&third).await.unwrap();
    if got.is_empty() {
        // The notify_client above left a permit that was consumed first.
        got = next(&third).await.unwrap();
    }
    assert_eq!(ids_of(&got), vec![pushed]);
    third.close().await;
    assert_eq!(env.engine.stream_count(), 0);
}

#[tokio::test]
async fn a_parked_stream_wakes_for_an_insert() {
    let env = Env::new().await;
    let c = TestClient::new();
    let (stream, reply) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    assert!(reply.messages.is_empty());
    let engine = env.engine.clone();
    let clock = env.clock.clone();
    let client = c.id;
    let inserter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = engine
            .insert_message(to_client(client, "svc", "Late"))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(1));
        id
    });
    // Parked before the insert; must be woken by it. The fake clock moves right after the
    // insert, racing with the fetch, so an empty first batch ("look again") is allowed.
    let mut got = next(&stream).await.unwrap();
    let id = inserter.await.unwrap();
    if got.is_empty() {
        env.engine.notify_client(c.id);
        got = next(&stream).await.unwrap();
    }
    assert_eq!(ids_of(&got), vec![id]);
    stream.close().await;
}

#[tokio::test]
async fn blacklisted_stream_gets_the_rekey_request_in_frame_zero_only() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    env.store.blacklist_client(c.id).await.unwrap();
    let queued = env.insert_for(c.id, "svc").await;
    env.tick();
    let engine = env.fresh_engine();
    let (stream, reply) = engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    assert_eq!(reply.messages.len(), 1);
    assert_eq!(reply.messages[0].message_type, "RekeyRequest");
    assert!(engine.notify_client(c.id));
    nothing_pushed(&stream).await;
    assert!(env.result(queued).await.is_none());
    stream.close().await;

    engine.begin_shutdown();
    let err = engine.open_stream(c.contact(cd(vec![]))).await;
    assert!(matches!(err, Err(ContactError::NotReady)));
}

#[tokio::test]
async fn a_full_batch_makes_the_stream_fetch_again() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    for _ in 0..101 {
        env.insert_for(c.id, "svc").await;
    }
    env.tick();
    let (stream, reply) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    assert_eq!(reply.messages.len(), 100, "at most 100 per batch");
    // Exactly 100 means "more": the stream looks again without waiting for an insert.
    assert_eq!(next(&stream).await.unwrap().len(), 1);
    stream.close().await;
}

#[tokio::test]
async fn a_stream_outliving_the_lease_hands_the_message_out_again() {
    // Fixed defect: the re-sent message was already linked to the stream's contact, the store
    // refused the duplicate link, and the push failed after the lease was taken.
    let env = Env::new().await;
    let c = TestClient::new();
    let (stream, _) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    let id = env.insert_for(c.id, "svc").await;
    env.tick();
    assert_eq!(ids_of(&next(&stream).await.unwrap()), vec![id]);

    env.clock.advance(CLIENT_LEASE + Duration::from_secs(1));
    env.engine.notify_client(c.id);
    assert_eq!(ids_of(&next(&stream).await.unwrap()), vec![id]);
    stream.close().await;
}

#[tokio::test]
async fn a_dropped_stream_is_unregistered() {
    // Fixed defect: only `close` unregistered, so a stream dropped without it stayed in the
    // registry (and `notify_client` claimed to hold it).
    let env = Env::new().await;
    let c = TestClient::new();
    let (stream, _) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();
    assert_eq!(env.engine.stream_count(), 1);
    drop(stream);
    assert_eq!(env.engine.stream_count(), 0);
    assert!(!env.engine.notify_client(c.id));
}

#[tokio::test]
async fn a_cancelled_open_stream_is_unregistered() {
    // Fixed defect: cancelling `open_stream` (the frontend bounds it with a timeout) after it had
    // registered but before it returned left the registration behind.
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    for _ in 0..5 {
        env.insert_for(c.id, "svc").await;
    }
    env.tick();
    let mut opening = Box::pin(env.engine.open_stream(c.contact(cd(vec![]))));
    let mut caught = false;
    for _ in 0..100_000 {
        match futures::poll!(opening.as_mut()) {
            Poll::Ready(_) => break,
            Poll::Pending if env.engine.stream_count() == 1 => {
                caught = true;
                break;
            }
            Poll::Pending => tokio::task::yield_now().await,
        }
    }
    assert!(
        caught,
        "open_stream finished before it could be cancelled mid-selection"
    );
    drop(opening);
    assert_eq!(env.engine.stream_count(), 0);
}
