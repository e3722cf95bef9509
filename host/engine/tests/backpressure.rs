//! `max_parallelism` is backpressure, not shedding: a burst from 50 clients at a service that
//! takes two messages at a time is all processed inline (nothing left for the backlog), and a
//! stream frame returns (so the frontend acks it) only once its messages are processed.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use fleetgate_engine::ServiceEntry;
use fleetgate_types::contact::{ContactHandler, StreamSession};
use futures::future::join_all;

const DELAY: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_50_clients_waits_for_slots_and_none_reaches_the_backlog() {
    let env = Env::new().await;
    let svc = TestService::slow(Mode::Ok, DELAY);
    env.engine
        .set_service("slow", ServiceEntry::new(svc.clone(), 2))
        .unwrap();
    let clients: Vec<TestClient> = (0..50).map(|_| TestClient::new()).collect();

    let started = Instant::now();
    let polls = clients.iter().map(|c| {
        let msgs = vec![from_client("slow", b"1"), from_client("slow", b"2")];
        env.engine.poll(c.contact(cd(msgs)))
    });
    for r in join_all(polls).await {
        r.unwrap();
    }
    let took = started.elapsed();

    assert_eq!(svc.calls(), 100, "no message was shed");
    assert_eq!(svc.max_active.load(Ordering::SeqCst), 2, "two at a time");
    // 100 × 20 ms over 2 slots is 1 s of service time; the rest is storage.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for c in &clients {
        for smid in [&b"1"[..], b"2"] {
            let r = env.result(client_msg_id(c.id, "slow", smid)).await;
            assert!(r.is_some_and(|r| !r.failed), "processed inline");
        }
    }
    let pending = env.store.pending_counts().await.unwrap();
    assert_eq!(pending.to_servers, 0, "nothing left for the backlog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_returns_only_after_its_messages_are_processed_while_saturated() {
    let env = Env::new().await;
    let svc = TestService::slow(Mode::Ok, Duration::from_millis(100));
    env.engine
        .set_service("slow", ServiceEntry::new(svc.clone(), 2))
        .unwrap();
    // Saturate the service: 10 clients polling 4 messages each (2 s of work over 2 slots).
    let busy: Vec<TestClient> = (0..10).map(|_| TestClient::new()).collect();
    let saturate = join_all(busy.iter().map(|c| {
        let msgs = (0..4u8).map(|i| from_client("slow", &[i])).collect();
        env.engine.poll(c.contact(cd(msgs)))
    }));

    let streamer = TestClient::new();
    let frame = async {
        // Let the burst take the slots first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (stream, _) = env
            .engine
            .open_stream(streamer.contact(cd(vec![])))
            .await
            .unwrap();
        let id = client_msg_id(streamer.id, "slow", b"s");
        let started = Instant::now();
        stream
            .frame(wcd(&cd(vec![from_client("slow", b"s")]), &streamer.labels))
            .await
            .unwrap();
        // The frontend acks here: by now the message must be processed and stored.
        let waited = started.elapsed();
        let r = env.result(id).await;
        assert!(r.is_some_and(|r| !r.failed), "acked before processed");
        stream.close().await;
        waited
    };
    let (polls, waited) = tokio::join!(saturate, frame);
    for r in polls {
        r.unwrap();
    }
    assert!(
        waited >= Duration::from_millis(100),
        "the frame waited for a slot behind the burst ({waited:?})"
    );
    assert_eq!(svc.calls(), 41);
    assert_eq!(svc.max_active.load(Ordering::SeqCst), 2);
    assert_eq!(env.store.pending_counts().await.unwrap().to_servers, 0);
}
