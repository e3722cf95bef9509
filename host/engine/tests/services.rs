//! Client → server messages and the services they reach: unknown services, processed, permanent
//! and temporary outcomes, the backlog retry, and `max_parallelism` as backpressure
//! (server.md §4–6).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use fleetgate_engine::ServiceEntry;
use fleetgate_types::contact::ContactHandler;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn unknown_service_fails_the_message() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![from_client("X", b"1")])).await;
    let id = client_msg_id(c.id, "X", b"1");
    let r = env.result(id).await.expect("a result is stored");
    assert!(r.failed);
    assert_eq!(r.failed_reason, "unknown service \"X\"");
    assert_eq!(r.processed_time.unwrap().seconds, T0 as i64);
    let stored = env.store.get_messages(&[id], true).await.unwrap();
    assert!(stored[0].data.is_none(), "the payload is dropped");
}

#[tokio::test]
async fn service_outcomes_are_stored() {
    let env = Env::new().await;
    let ok = TestService::new(Mode::Ok);
    let broken = TestService::new(Mode::Permanent("bad payload".into()));
    env.engine
        .set_service("ok", ServiceEntry::new(ok.clone(), 10))
        .unwrap();
    env.engine
        .set_service("broken", ServiceEntry::new(broken.clone(), 10))
        .unwrap();
    let c = TestClient::new();
    env.poll(
        &c,
        cd(vec![from_client("ok", b"a"), from_client("broken", b"b")]),
    )
    .await;

    let ok_id = client_msg_id(c.id, "ok", b"a");
    let r = env.result(ok_id).await.unwrap();
    assert!(!r.failed && r.failed_reason.is_empty());
    assert_eq!(r.processed_time.unwrap().seconds, T0 as i64);
    assert_eq!(ok.calls(), 1);
    let seen = ok.seen.lock().unwrap()[0].clone();
    assert!(seen.data.is_some(), "the service gets the payload");
    assert!(!seen.is_blocklisted_source);

    let broken_id = client_msg_id(c.id, "broken", b"b");
    let r = env.result(broken_id).await.unwrap();
    assert!(r.failed);
    assert_eq!(r.failed_reason, "bad payload");
    assert_eq!(broken.calls(), 1);
}

#[tokio::test]
async fn reserved_service_names_are_refused() {
    let env = Env::new().await;
    for name in ["", "system", "client"] {
        let svc = TestService::new(Mode::Ok);
        assert!(
            env.engine
                .set_service(name, ServiceEntry::new(svc, 1))
                .is_err(),
            "{name:?} must be refused"
        );
    }
}

#[tokio::test]
async fn temporary_failures_are_retried_by_the_backlog() {
    let env = Env::new().await;
    let svc = TestService::new(Mode::Temporary("backend down".into()));
    env.engine
        .set_service("flaky", ServiceEntry::new(svc.clone(), 10))
        .unwrap();
    let c = TestClient::new();
    env.poll(&c, cd(vec![from_client("flaky", b"t")])).await;
    let id = client_msg_id(c.id, "flaky", b"t");

    // Pending server-bound: stored without result, payload kept for the retry.
    let (created, result) = env.store.get_message_status(id).await.unwrap().unwrap();
    assert_eq!(created.seconds, T0 as i64);
    assert!(result.is_none());
    let stored = env.store.get_messages(&[id], true).await.unwrap();
    assert!(stored[0].data.is_some());
    assert_eq!(svc.calls(), 1);

    svc.set_mode(Mode::Ok);
    let stop = CancellationToken::new();
    let backlog = tokio::spawn({
        let engine = env.engine.clone();
        let stop = stop.clone();
        async move { engine.run_backlog(stop).await }
    });

    // Not due yet: the first retry is 60–120 s after the store, on the store's clock. A few
    // backlog ticks (300 ms each) pass without touching it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(env.result(id).await.is_none());
    assert_eq!(svc.calls(), 1, "not retried before it is due");

    env.clock.advance(Duration::from_secs(121));
    eventually(
        Duration::from_secs(5),
        "the backlog to process it",
        || async { env.result(id).await.is_some() },
    )
    .await;
    let r = env.result(id).await.unwrap();
    assert!(!r.failed);
    assert_eq!(r.processed_time.unwrap().seconds, T0 as i64 + 121);
    assert_eq!(svc.calls(), 2);
    let retried = svc.seen.lock().unwrap()[1].clone();
    assert_eq!(retried.message_id, id.to_vec());
    assert!(retried.data.is_some(), "the retry gets the kept payload");

    stop.cancel();
    tokio::time::timeout(LIVENESS, backlog)
        .await
        .expect("the backlog stops when cancelled")
        .unwrap();
}

#[tokio::test]
async fn a_permanent_failure_in_the_backlog_fails_the_message() {
    let env = Env::new().await;
    let svc = TestService::new(Mode::Temporary("later".into()));
    env.engine
        .set_service("flaky", ServiceEntry::new(svc.clone(), 10))
        .unwrap();
    let c = TestClient::new();
    env.poll(&c, cd(vec![from_client("flaky", b"p")])).await;
    let id = client_msg_id(c.id, "flaky", b"p");
    svc.set_mode(Mode::Permanent("gave up".into()));

    let stop = CancellationToken::new();
    let backlog = tokio::spawn({
        let engine = env.engine.clone();
        let stop = stop.clone();
        async move { engine.run_backlog(stop).await }
    });
    env.clock.advance(Duration::from_secs(121));
    eventually(Duration::from_secs(5), "the backlog to fail it", || async {
        env.result(id).await.is_some()
    })
    .await;
    let r = env.result(id).await.unwrap();
    assert!(r.failed);
    assert_eq!(r.failed_reason, "gave up");
    stop.cancel();
    backlog.await.unwrap();
}

#[tokio::test]
async fn max_parallelism_makes_contacts_wait_instead_of_shedding() {
    let env = Env::new().await;
    let svc = TestService::slow(Mode::Ok, Duration::from_millis(300));
    env.engine
        .set_service("slow", ServiceEntry::new(svc.clone(), 1))
        .unwrap();
    let (a, b) = (TestClient::new(), TestClient::new());
    let (ra, rb) = tokio::join!(
        env.engine
            .poll(a.contact(cd(vec![from_client("slow", b"a")]))),
        env.engine
            .poll(b.contact(cd(vec![from_client("slow", b"b")]))),
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(svc.calls(), 2, "neither message was shed");
    assert_eq!(svc.max_active.load(Ordering::SeqCst), 1, "one at a time");
    for (c, smid) in [(&a, &b"a"[..]), (&b, b"b")] {
        let r = env.result(client_msg_id(c.id, "slow", smid)).await;
        assert!(r.is_some_and(|r| !r.failed), "processed, not left pending");
    }
}

#[tokio::test]
async fn insert_message_routes_by_destination() {
    let env = Env::new().await;
    let svc = TestService::new(Mode::Ok);
    env.engine
        .set_service("here", ServiceEntry::new(svc.clone(), 1))
        .unwrap();
    let to_service = |name: &str| fleetgate_pb::fleetspeak::Message {
        source: Some(fleetgate_types::message::address(None, "admin")),
        destination: Some(fleetgate_types::message::address(None, name)),
        message_type: "Test".into(),
        ..Default::default()
    };

    // A service this server runs: processed now (a documented difference from the original,
    // which leaves it to the backlog).
    let here = env.engine.insert_message(to_service("here")).await.unwrap();
    assert!(env.result(here).await.is_some_and(|r| !r.failed));
    assert_eq!(svc.calls(), 1);
    // Any other service: kept pending for the backlog of a server that runs it, not failed.
    let elsewhere = env
        .engine
        .insert_message(to_service("elsewhere"))
        .await
        .unwrap();
    let (created, result) = env
        .store
        .get_message_status(elsewhere)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.seconds, T0 as i64);
    assert!(result.is_none());

    // Refused: no destination service, a message ID of the wrong length.
    assert!(env.engine.insert_message(to_service("")).await.is_err());
    let bad_id = fleetgate_pb::fleetspeak::Message {
        message_id: vec![1; 5],
        ..to_service("here")
    };
    assert!(env.engine.insert_message(bad_id).await.is_err());
}
