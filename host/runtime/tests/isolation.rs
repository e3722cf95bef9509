//! Nothing one call writes is seen by the next. Pool slots are reused and the pages an instance
//! wrote are restored in place rather than unmapped (see `runtime.rs`), so the `test_leftover`
//! component checks its statics and freshly grown memory on every call and fails if an
//! earlier call's writes are still there.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use fleetgate_engine::Service;
use fleetgate_runtime::Grants;
use support::{client_message, runtime, service, spec};

#[tokio::test]
async fn one_after_another_on_the_same_slot() {
    let rt = runtime();
    let leftover = service(&rt, spec("Leftover", "test_leftover", Grants::basic())).await;
    for i in 0..20 {
        leftover
            .process(&client_message("Leftover", "x", i))
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_at_once_across_threads() {
    let rt = runtime();
    let leftover = Arc::new(service(&rt, spec("Leftover", "test_leftover", Grants::basic())).await);
    let mut calls = tokio::task::JoinSet::new();
    for task in 0..8u8 {
        let leftover = leftover.clone();
        calls.spawn(async move {
            for i in 0..10u8 {
                let id = task * 10 + i;
                leftover
                    .process(&client_message("Leftover", "x", id))
                    .await
                    .unwrap_or_else(|e| panic!("call {id}: {e}"));
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    assert_eq!(leftover.stats().errors, 0);
}
