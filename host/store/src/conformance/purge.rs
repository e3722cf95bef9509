//! `purge_pending_messages` (Fleetgate's extension): every filter alone, the "all clients" form,
//! and that server-bound messages are never touched.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::{FakeClock, MessageId};

use super::messages::add_client;
use super::{Case, client, mid, ok, to_client, to_server, ts};
use crate::Store;

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "purge_pending_messages",
        checks: "ext-purge",
        run: |s, c| Box::pin(purge_pending_messages(s, c)),
    }]
}

async fn purged(s: &dyn Store, id: MessageId) -> bool {
    let r = ok("get_message_result", s.get_message_result(id).await);
    r.is_some_and(|r| r.failed && r.failed_reason == "Removed by admin action.")
}

async fn purge_pending_messages(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1000);
    add_client(&*s, 1).await;
    add_client(&*s, 2).await;
    let ids: Vec<MessageId> = (0..5)
        .map(|i| mid(&format!("p123456789012345678901234567890{i}")))
        .collect();
    let mut a = to_client(ids[0], client(1), "A", 100);
    a.message_type = "T1".into();
    let mut b = to_client(ids[1], client(1), "B", 900);
    b.message_type = "T1".into();
    let mut c = to_client(ids[2], client(2), "A", 100);
    c.message_type = "T2".into();
    let mut d = to_client(ids[3], client(2), "A", 949);
    d.message_type = "T1".into();
    d.creation_time = ts(950, 500);
    let mut e = to_server(ids[4], client(2), "A", 100);
    e.message_type = "T1".into();
    ok(
        "store_messages",
        s.store_messages(&[a, b, c, d, e], None).await,
    );
    let purge = |clients: Vec<_>, svc: Option<&'static str>, ty: Option<&'static str>, age| {
        let s = s.clone();
        async move {
            ok(
                "purge_pending_messages",
                s.purge_pending_messages(&clients, svc, ty, age).await,
            )
        }
    };
    // By client and service: only `a` (client 2's "A" messages stay).
    assert_eq!(purge(vec![client(1)], Some("A"), None, None).await, 1);
    assert!(purged(&*s, ids[0]).await);
    assert!(!purged(&*s, ids[1]).await && !purged(&*s, ids[2]).await);
    // By type over every client.
    assert_eq!(purge(vec![], None, Some("T2"), None).await, 1);
    assert!(purged(&*s, ids[2]).await);
    // By age: created before now − 50 s = 950.0 s; `d` at 950.5 s is younger.
    assert_eq!(
        purge(vec![], None, None, Some(Duration::from_secs(50))).await,
        1
    );
    assert!(purged(&*s, ids[1]).await && !purged(&*s, ids[3]).await);
    // An age older than everything matches nothing.
    assert_eq!(
        purge(vec![], None, None, Some(Duration::from_secs(10_000))).await,
        0
    );
    // No filter: the rest of the client-bound queue; the server-bound message is untouched.
    assert_eq!(purge(vec![], None, None, None).await, 1);
    assert!(purged(&*s, ids[3]).await);
    assert_eq!(purge(vec![], None, None, None).await, 0);
    assert_eq!(
        ok("get_message_result", s.get_message_result(ids[4]).await),
        None
    );
    let count = s.get_pending_message_count(&[client(1), client(2)]).await;
    assert_eq!(ok("get_pending_message_count", count), 0);
}
