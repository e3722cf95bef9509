//! The steps the engine traces, read back from the store the writer task wrote them to: a router
//! fan-out (with the router's version, and a step for each new copy), a router failure retried
//! and routed by the backlog, temporary and permanent service failures, a client's MessageError,
//! and nothing at all with tracing off.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use fleetgate_engine::trace::TraceConfig;
use fleetgate_engine::{EngineConfig, Routed, Router, ServiceEntry, ServiceError};
use fleetgate_pb::fleetspeak::Message;
use fleetgate_store::TraceStore;
use fleetgate_types::MessageId;
use fleetgate_types::message::address;
use tokio_util::sync::CancellationToken;

/// Copies every message to each of `to`, or fails while `down`; version "r1".
struct FanOut {
    down: AtomicBool,
    to: &'static [&'static str],
}

#[async_trait]
impl Router for FanOut {
    async fn route(&self, _m: &Message) -> Result<Vec<Routed>, ServiceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ServiceError::Temporary("router warming up".into()));
        }
        Ok(self
            .to
            .iter()
            .map(|s| Routed {
                destination: address(None, s),
                annotations: None,
            })
            .collect())
    }

    fn version(&self) -> Option<String> {
        Some("r1".into())
    }
}

/// An engine named `srv-a` whose trace writer runs until the returned token is cancelled.
async fn traced_env(enabled: bool) -> (Env, CancellationToken) {
    let env = Env::with_config(EngineConfig {
        server_name: "srv-a".into(),
        trace: TraceConfig {
            enabled,
            flush_every: Duration::from_millis(10),
            ..TraceConfig::default()
        },
        ..EngineConfig::default()
    })
    .await;
    let stop = CancellationToken::new();
    tokio::spawn({
        let (engine, stop) = (env.engine.clone(), stop.clone());
        async move { engine.run_trace_writer(stop).await }
    });
    (env, stop)
}

/// `(step, detail)` of `id`'s steps once there are at least `n`.
async fn steps(env: &Env, id: MessageId, n: usize) -> Vec<(String, String)> {
    let store: &dyn TraceStore = &*env.store;
    eventually(LIVENESS, &format!("{n} steps of {id}"), || async {
        store.message_trace(id).await.unwrap().len() >= n
    })
    .await;
    let got = store.message_trace(id).await.unwrap();
    assert!(got.iter().all(|s| s.server == "srv-a"), "{got:?}");
    got.into_iter().map(|s| (s.step, s.detail)).collect()
}

fn words(steps: &[(String, String)]) -> Vec<&str> {
    steps.iter().map(|(w, _)| w.as_str()).collect()
}

#[tokio::test]
async fn a_fan_out_and_a_router_failure_are_traced() {
    let (env, stop) = traced_env(true).await;
    let (a, b) = (TestService::new(Mode::Ok), TestService::new(Mode::Ok));
    for (n, s) in [("a", &a), ("b", &b)] {
        env.engine
            .set_service(n, ServiceEntry::new(s.clone(), 2))
            .unwrap();
    }
    let router = Arc::new(FanOut {
        down: AtomicBool::new(false),
        to: &["a", "b"],
    });
    env.engine.set_router(Some(router.clone()));
    let c = TestClient::new();
    env.poll(&c, cd(vec![from_client("orig", b"1")])).await;
    let id = client_msg_id(c.id, "orig", b"1");
    let copy = MessageId::for_routed_copy(id, 1);
    let got = steps(&env, id, 3).await;
    assert_eq!(words(&got), ["routed", "processed", "stored"], "{got:?}");
    assert_eq!(
        got[0].1,
        format!("to service a, service b as copy {copy}, by router digest r1")
    );
    assert_eq!(got[1].1, "by service a");
    assert!(
        got[2].1.starts_with(&format!("from client {}", c.id)),
        "{got:?}"
    );
    let got = steps(&env, copy, 3).await;
    assert_eq!(words(&got), ["routed", "processed", "stored"], "{got:?}");
    assert_eq!(
        got[0].1,
        format!("copy 1 of {id} to service b, by router digest r1")
    );

    // The router fails: retried, then the backlog routes and processes it.
    router.down.store(true, Ordering::SeqCst);
    env.poll(&c, cd(vec![from_client("orig", b"2")])).await;
    let id = client_msg_id(c.id, "orig", b"2");
    let got = steps(&env, id, 2).await;
    assert_eq!(words(&got), ["retried", "stored"], "{got:?}");
    assert_eq!(
        got[0].1,
        "service orig: router: temporary: router warming up; pending again after the back-off"
    );
    router.down.store(false, Ordering::SeqCst);
    env.clock.advance(Duration::from_secs(200));
    let backlog_stop = CancellationToken::new();
    let backlog = tokio::spawn({
        let (engine, stop) = (env.engine.clone(), backlog_stop.clone());
        async move { engine.run_backlog(stop).await }
    });
    let got = steps(&env, id, 4).await;
    assert_eq!(words(&got)[2..], ["routed", "processed"], "{got:?}");
    backlog_stop.cancel();
    backlog.await.unwrap();
    stop.cancel();
}

#[tokio::test]
async fn failures_retries_and_client_errors_are_traced() {
    let (env, stop) = traced_env(true).await;
    let svc = TestService::new(Mode::Temporary("GRR is down".into()));
    env.engine
        .set_service("GRR", ServiceEntry::new(svc.clone(), 2))
        .unwrap();
    let c = TestClient::new();
    env.poll(&c, cd(vec![from_client("GRR", b"1")])).await;
    let id = client_msg_id(c.id, "GRR", b"1");
    let got = steps(&env, id, 2).await;
    assert_eq!(words(&got), ["retried", "stored"]);
    assert_eq!(
        got[0].1,
        "service GRR: GRR is down; pending again after the back-off"
    );

    svc.set_mode(Mode::Permanent("bad flow".into()));
    env.poll(&c, cd(vec![from_client("GRR", b"2")])).await;
    let id = client_msg_id(c.id, "GRR", b"2");
    // A permanent failure also ends in the dead letters.
    let got = steps(&env, id, 3).await;
    assert_eq!(words(&got), ["failed", "stored", "dead_lettered"]);
    assert_eq!(got[0].1, "by service GRR: bad flow");

    // A message for the client, handed out in a poll, then reported failed by the client.
    let m = env.insert_for(c.id, "TestService").await;
    env.tick();
    let reply = env.poll(&c, cd(vec![])).await;
    assert_eq!(ids_of(&reply.messages), [m]);
    env.poll(&c, cd(vec![msg_error(m, "no such action")])).await;
    let got = steps(&env, m, 4).await;
    assert_eq!(
        words(&got),
        ["stored", "leased", "pushed", "failed"],
        "{got:?}"
    );
    assert!(
        got[2].1.starts_with("in the poll response of contact "),
        "{got:?}"
    );
    assert_eq!(
        got[3].1,
        format!("client {} reported: no such action", c.id)
    );
    stop.cancel();
}

#[tokio::test]
async fn with_tracing_off_nothing_is_recorded() {
    let (env, stop) = traced_env(false).await;
    assert!(!env.engine.is_tracing());
    let c = TestClient::new();
    let m = env.insert_for(c.id, "TestService").await;
    env.tick();
    env.poll(&c, cd(vec![])).await;
    env.poll(&c, cd(vec![ack(&[m])])).await;
    assert!(env.result(m).await.is_some(), "acknowledged");
    // Give a writer time it would have needed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store: &dyn TraceStore = &*env.store;
    assert!(store.message_trace(m).await.unwrap().is_empty());
    assert_eq!(env.engine.tracer().dropped(), 0);
    stop.cancel();
}
