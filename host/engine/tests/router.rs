//! A failing router keeps the message pending, and the backlog routes it (never dispatching it
//! unrouted) once the router recovers.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use common::*;
use fleetgate_engine::router::UNROUTED;
use fleetgate_engine::{Routed, Router, ServiceEntry, ServiceError};
use fleetgate_pb::fleetspeak::Message;
use fleetgate_types::message::address;
use tokio_util::sync::CancellationToken;

/// Sends everything to `to`, or fails while `down`.
struct Flaky {
    down: AtomicBool,
    to: &'static str,
}

#[async_trait]
impl Router for Flaky {
    async fn route(&self, _m: &Message) -> Result<Vec<Routed>, ServiceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ServiceError::Permanent("router config broken".into()));
        }
        Ok(vec![Routed {
            destination: address(None, self.to),
            annotations: None,
        }])
    }
}

#[tokio::test]
async fn a_router_failure_is_temporary_and_the_backlog_routes_later() {
    let env = Env::new().await;
    let (orig, target) = (TestService::new(Mode::Ok), TestService::new(Mode::Ok));
    for (n, s) in [("orig", &orig), ("target", &target)] {
        env.engine
            .set_service(n, ServiceEntry::new(s.clone(), 2))
            .unwrap();
    }
    let router = Arc::new(Flaky {
        down: AtomicBool::new(true),
        to: "target",
    });
    env.engine.set_router(Some(router.clone()));
    let c = TestClient::new();
    env.poll(&c, cd(vec![from_client("orig", b"1")])).await;
    let id = client_msg_id(c.id, "orig", b"1");
    assert!(env.result(id).await.is_none(), "kept pending");
    let stored = env.store.get_messages(&[id], true).await.unwrap();
    let notes = &stored[0].annotations.as_ref().unwrap().entries;
    assert!(notes.iter().any(|e| e.key == UNROUTED));
    assert!(stored[0].data.is_some(), "payload kept for the retry");
    assert_eq!(orig.calls() + target.calls(), 0);

    router.down.store(false, Ordering::SeqCst);
    // Due on the back-off (at least 60 s later).
    env.clock.advance(std::time::Duration::from_secs(200));
    let stop = CancellationToken::new();
    let backlog = tokio::spawn({
        let (engine, stop) = (env.engine.clone(), stop.clone());
        async move { engine.run_backlog(stop).await }
    });
    eventually(LIVENESS, "the backlog routes it", || async {
        env.result(id).await.is_some()
    })
    .await;
    stop.cancel();
    backlog.await.unwrap();
    assert_eq!(target.calls(), 1);
    assert_eq!(orig.calls(), 0, "never dispatched unrouted");
    let seen = target.seen.lock().unwrap()[0].clone();
    assert!(
        seen.annotations
            .is_none_or(|a| a.entries.iter().all(|e| e.key != UNROUTED))
    );
}
