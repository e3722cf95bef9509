//! Beyond the checklist: concurrent callers must not lease one message twice or lose counter
//! updates (datastore.md §3.13 asks a port to lock or update relatively).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::pb::fleetspeak::server::Broadcast;
use fleetgate_types::{BroadcastId, Clock, FakeClock, MessageId};

use super::{Case, addr, client, ok, to_client, to_server};
use crate::Store;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "concurrent_leases",
            checks: "extra",
            run: |s, c| Box::pin(leases(s, c)),
        },
        Case {
            name: "concurrent_allocations",
            checks: "extra",
            run: |s, c| Box::pin(allocations(s, c)),
        },
    ]
}

const TASKS: usize = 4;

async fn leases(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1_700_000_000);
    super::messages::add_client(&*s, 1).await;
    let to_c: Vec<_> = (0..60u8)
        .map(|i| to_client(MessageId::new([i; 32]), client(1), "S", 1))
        .collect();
    let to_s: Vec<_> = (60..120u8)
        .map(|i| to_server(MessageId::new([i; 32]), client(1), "S", 1))
        .collect();
    ok("store_messages", s.store_messages(&to_c, None).await);
    ok("store_messages", s.store_messages(&to_s, None).await);
    clock.advance(Duration::from_secs(121));
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..10 {
                let batch = if t % 2 == 0 {
                    s.client_messages_for_processing(client(1), 5, None, None)
                        .await
                } else {
                    s.lease_server_messages(5)
                        .await
                        .map(|b| b.into_iter().map(|l| l.message).collect())
                };
                got.extend(
                    ok("concurrent lease", batch)
                        .into_iter()
                        .map(|m| m.message_id),
                );
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap_or_else(|e| panic!("lease task: {e}")));
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a message was leased twice");
    assert_eq!(all.len(), 120);
}

async fn allocations(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(10000);
    let id = BroadcastId::random();
    let b = Broadcast {
        broadcast_id: id.to_vec(),
        source: addr(None, "svc"),
        ..Default::default()
    };
    ok("create_broadcast", s.create_broadcast(&b, 100).await);
    let expiry = clock.now() + Duration::from_secs(600);
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut limits = Vec::new();
            for _ in 0..5 {
                let a = ok(
                    "concurrent allocation",
                    s.create_allocation(id, 0.1, expiry).await,
                );
                limits.extend(a.map(|a| a.limit));
            }
            limits
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h
            .await
            .unwrap_or_else(|e| panic!("allocation task: {e}"))
            .iter()
            .sum::<u64>();
    }
    // Twenty shares of 10% of what is left never exceed the limit when no update is lost; with
    // lost updates of `allocated` they would hand out more than 100.
    assert!(total <= 100, "allocated {total} of 100");
    let rest = ok(
        "last allocation",
        s.create_allocation(id, 1.0, expiry).await,
    )
    .map_or(0, |a| a.limit);
    assert_eq!(total + rest, 100);
}
