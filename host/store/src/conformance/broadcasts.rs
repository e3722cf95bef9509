//! Broadcast store checks 40–52.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::pb::fleetspeak::server::Broadcast;
use fleetgate_types::pb::fleetspeak::{Label, Message};
use fleetgate_types::{BroadcastId, ClientId, Clock, FakeClock, MessageId};

use super::{Case, addr, any, client, ok, ts};
use crate::api::{BROADCAST_UNLIMITED, BroadcastInfo, ClientData};
use crate::{Store, StoreError};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "broadcast_store",
            checks: "40-48",
            run: |s, c| Box::pin(broadcast_store(s, c)),
        },
        Case {
            name: "broadcast_replacement",
            checks: "49-50",
            run: |s, c| Box::pin(replacement(s, c)),
        },
        Case {
            name: "unlimited_broadcast",
            checks: "51-52",
            run: |s, c| Box::pin(unlimited(s, c)),
        },
    ]
}

fn bid(n: u8) -> BroadcastId {
    BroadcastId::new([0, 0, 0, 0, 0, 0, 0, n])
}

fn broadcast(id: BroadcastId) -> Broadcast {
    Broadcast {
        broadcast_id: id.to_vec(),
        source: addr(None, "testService"),
        ..Default::default()
    }
}

fn instance(dest: ClientId, service: &str, clock: &FakeClock) -> Message {
    Message {
        message_id: MessageId::random().to_vec(),
        source: addr(None, "testService"),
        destination: addr(Some(dest), service),
        creation_time: Some(fleetgate_types::time::to_timestamp(clock.now())),
        ..Default::default()
    }
}

fn find(bs: &[BroadcastInfo], id: BroadcastId) -> Option<&BroadcastInfo> {
    bs.iter().find(|b| b.broadcast.broadcast_id == id.to_vec())
}

async fn broadcast_store(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(10000);
    let b0 = Broadcast {
        destination: addr(None, "clientService"),
        message_type: "message type 1".into(),
        data: any("message proto name 1", "message data 1"),
        ..broadcast(bid(0))
    };
    let b1 = Broadcast {
        destination: addr(None, "clientService"),
        expiration_time: ts(200000, 0),
        ..broadcast(bid(1))
    };
    let b3 = Broadcast {
        expiration_time: ts(10000, 0),
        ..broadcast(bid(3))
    };
    let specs = [
        (b0.clone(), 8),
        (b1, 8),
        (broadcast(bid(2)), 0),
        (b3, 100),
        (broadcast(bid(4)), BROADCAST_UNLIMITED),
    ];
    for (b, limit) in &specs {
        ok("create_broadcast", s.create_broadcast(b, *limit).await);
    }
    // 40
    assert_eq!(
        ok("list_active_broadcasts", s.list_active_broadcasts().await).len(),
        3
    );
    // 41
    clock.set_seconds(200001);
    let active = ok("list_active_broadcasts", s.list_active_broadcasts().await);
    assert_eq!(active.len(), 2);
    assert_eq!(find(&active, bid(0)).map(|b| &b.broadcast), Some(&b0));
    // 42
    let expiry = clock.now() + Duration::from_secs(300);
    let mut allocs = Vec::new();
    for (id, frac, want) in [
        (0, 0.5, 4),
        (0, 0.5, 2),
        (0, 0.1, 1),
        (0, 2.0, 1),
        (0, 2.0, 0),
        (4, 0.1, BROADCAST_UNLIMITED),
    ] {
        let a = ok(
            "create_allocation",
            s.create_allocation(bid(id), frac, expiry).await,
        );
        assert_eq!(
            a.as_ref().map(|a| a.limit).unwrap_or(0),
            want,
            "allocation {frac} of broadcast {id}"
        );
        allocs.extend(a.map(|a| (bid(id), a.id)));
    }
    assert!(
        s.create_allocation(bid(9), 0.5, expiry)
            .await
            .is_err_and(|e| e.is_not_found())
    );
    // 43
    let c = client(1);
    ok(
        "add_client",
        s.add_client(
            c,
            &ClientData {
                key: b"a client key".to_vec(),
                ..Default::default()
            },
        )
        .await,
    );
    for (b, a) in [allocs[0], allocs[4]] {
        ok(
            "save_broadcast_message",
            s.save_broadcast_message(&instance(c, "testService", &clock), b, c, Some(a))
                .await,
        );
    }
    // The instance is pending but leased for ClientRetryTime.
    assert_eq!(
        ok(
            "lease",
            s.client_messages_for_processing(c, 10, None, None).await
        )
        .len(),
        0
    );
    assert_eq!(
        ok("pending count", s.get_pending_message_count(&[c]).await),
        2
    );
    // 44
    for (i, (b, a)) in allocs.iter().enumerate() {
        let sent = if i == 0 || i == 4 { 1 } else { 0 };
        ok(
            "cleanup_allocation",
            s.cleanup_allocation(*b, Some(*a), sent).await,
        );
    }
    let active = ok("list_active_broadcasts", s.list_active_broadcasts().await);
    assert_eq!(active.iter().map(|b| b.sent).collect::<Vec<_>>(), [1, 1]);
    // 45
    assert_eq!(
        ok("list_sent_broadcasts", s.list_sent_broadcasts(c).await),
        [bid(0), bid(4)]
    );
    disable(&*s, &clock, c).await;
}

/// Checks 46–48.
async fn disable(s: &dyn Store, clock: &FakeClock, c: ClientId) {
    let expiry = clock.now() + Duration::from_secs(300);
    let a = ok(
        "create_allocation",
        s.create_allocation(bid(0), 0.5, expiry).await,
    );
    let a = a.unwrap_or_else(|| panic!("no allocation left on broadcast 0"));
    ok(
        "disable_broadcasts",
        s.disable_broadcasts(&[bid(0), bid(9)]).await,
    );
    // 46
    let r = s
        .save_broadcast_message(&instance(c, "test", clock), bid(0), c, Some(a.id))
        .await;
    assert!(matches!(r, Err(StoreError::BroadcastDisabled(_))), "{r:?}");
    // 47
    let r = s
        .save_broadcast_message(&instance(c, "test", clock), bid(0), c, None)
        .await;
    assert!(matches!(r, Err(StoreError::BroadcastDisabled(_))), "{r:?}");
    // 48
    ok(
        "cleanup deleted allocation",
        s.cleanup_allocation(bid(0), Some(a.id), 0).await,
    );
    let active = ok("list_active_broadcasts", s.list_active_broadcasts().await);
    assert!(find(&active, bid(0)).is_none());
    // A failed save rolls back its message too.
    assert_eq!(
        ok("pending count", s.get_pending_message_count(&[c]).await),
        2
    );
}

async fn replacement(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(10000);
    let b = Broadcast {
        group_name: "g1".into(),
        destination: addr(None, "dst1"),
        required_labels: vec![Label {
            service_name: "client".into(),
            label: "label1".into(),
        }],
        message_type: "Empty".into(),
        ..broadcast(BroadcastId::random())
    };
    // 49–50: groups are not supported, as in every original store; the rest of the checks is skipped.
    let r = s.create_broadcast(&b, 10).await;
    assert!(matches!(r, Err(StoreError::NotSupported(_))), "{r:?}");
    assert!(ok("list_active_broadcasts", s.list_active_broadcasts().await).is_empty());
    // Labels round-trip on broadcasts without a group.
    let b = Broadcast {
        group_name: String::new(),
        ..b
    };
    ok("create_broadcast", s.create_broadcast(&b, 10).await);
    let active = ok("list_active_broadcasts", s.list_active_broadcasts().await);
    assert_eq!(
        active.iter().map(|i| &i.broadcast).collect::<Vec<_>>(),
        [&b]
    );
    assert!(
        s.create_broadcast(&b, 10).await.is_err(),
        "duplicate broadcast id"
    );
}

async fn unlimited(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(10000);
    let id = BroadcastId::random();
    let b = Broadcast {
        message_type: "UnlimitedBroadcastNoAlloc".into(),
        ..broadcast(id)
    };
    ok(
        "create_broadcast",
        s.create_broadcast(&b, BROADCAST_UNLIMITED).await,
    );
    let c = client(9);
    ok(
        "add_client",
        s.add_client(
            c,
            &ClientData {
                key: b"client key".to_vec(),
                ..Default::default()
            },
        )
        .await,
    );
    let sent = |s: Arc<dyn Store>| async move {
        let active = ok("list_active_broadcasts", s.list_active_broadcasts().await);
        find(&active, id).map(|b| (b.sent, b.limit))
    };
    // 51
    ok(
        "save_broadcast_message",
        s.save_broadcast_message(&instance(c, "testService", &clock), id, c, None)
            .await,
    );
    assert_eq!(sent(s.clone()).await, Some((0, BROADCAST_UNLIMITED)));
    // 52
    ok(
        "cleanup_allocation",
        s.cleanup_allocation(id, None, 1).await,
    );
    assert_eq!(sent(s.clone()).await, Some((1, BROADCAST_UNLIMITED)));
    // Sending twice to one client is an error.
    assert!(
        s.save_broadcast_message(&instance(c, "testService", &clock), id, c, None)
            .await
            .is_err()
    );
}
