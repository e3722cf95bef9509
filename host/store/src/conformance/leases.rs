//! Leasing checks 17–20, plus `lease_server_messages` in place of check 21 (the backlog
//! processor itself is the engine's).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::pb::fleetspeak::{Message, ValidationInfo};
use fleetgate_types::{FakeClock, MessageId};

use super::messages::{add_client, processed};
use super::{Case, any, client, mid, ok, to_client, to_server};
use crate::{ContactRecord, Store};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "client_messages_for_processing",
            checks: "17",
            run: |s, c| Box::pin(for_processing(s, c)),
        },
        Case {
            name: "client_messages_limit",
            checks: "18-20",
            run: |s, c| Box::pin(for_processing_limit(s, c)),
        },
        Case {
            name: "client_message_due_when_stored",
            checks: "Fleetgate: no strict-before-now gap",
            run: |s, c| Box::pin(due_in_the_microsecond_it_is_stored(s, c)),
        },
        Case {
            name: "client_lease_links_contact",
            checks: "Fleetgate: lease and link in one transaction",
            run: |s, c| Box::pin(lease_links_contact(s, c)),
        },
        Case {
            name: "lease_server_messages",
            checks: "21 (store part)",
            run: |s, c| Box::pin(lease_server(s, c)),
        },
    ]
}

async fn for_processing(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(100000);
    add_client(&*s, 1).await;
    let id = MessageId::for_client_message(client(1), "TestServiceName", b"omid 2");
    let mut stored = to_client(id, client(1), "TestServiceName", 100000);
    stored.message_type = String::new();
    stored.source_message_id = b"omid 2".to_vec();
    stored.validation_info = Some(ValidationInfo {
        tags: HashMap::from([("result".into(), "Valid".into())]),
    });
    ok(
        "store_messages",
        s.store_messages(std::slice::from_ref(&stored), None).await,
    );
    clock.set_seconds(300000);
    // 17
    let got = ok(
        "client_messages_for_processing",
        s.client_messages_for_processing(client(1), 10, None, None)
            .await,
    );
    assert_eq!(got, vec![stored]);
}

async fn due_in_the_microsecond_it_is_stored(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1_700_000_000);
    add_client(&*s, 1).await;
    let id = MessageId::for_client_message(client(1), "Svc", b"now");
    ok(
        "store_messages",
        s.store_messages(&[to_client(id, client(1), "Svc", 1_700_000_000)], None)
            .await,
    );
    let got = ok(
        "lease at store time",
        s.client_messages_for_processing(client(1), 10, None, None)
            .await,
    );
    assert_eq!(
        got.len(),
        1,
        "a stream woken by the insert must get the message at once"
    );
}

async fn for_processing_limit(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1_700_000_000);
    add_client(&*s, 1).await;
    let mut msgs = Vec::new();
    for i in 0..100 {
        for svc in ["TestService1", "TestService2"] {
            let id = MessageId::for_client_message(client(1), svc, format!("omit: {i}").as_bytes());
            msgs.push(to_client(id, client(1), svc, 1_700_000_000));
        }
    }
    ok("store_messages", s.store_messages(&msgs, None).await);
    // Unlike the original (strictly before now), a client-bound message is due in the very
    // microsecond it is stored; `due_in_the_microsecond_it_is_stored` checks that.
    clock.advance(Duration::from_micros(1));
    // 18
    for svc in ["TestService1", "TestService2"] {
        let limits = HashMap::from([(svc.to_owned(), 5u64)]);
        let got = ok(
            "limited lease",
            s.client_messages_for_processing(client(1), 10, Some(&limits), None)
                .await,
        );
        assert_eq!(got.len(), 5, "{svc}");
        assert!(
            got.iter()
                .all(|m| fleetgate_types::message::destination_service(m) == svc)
        );
    }
    // 19
    assert_eq!(
        ok(
            "lease 10",
            s.client_messages_for_processing(client(1), 10, None, None)
                .await
        )
        .len(),
        10
    );
    // 20
    for _ in 0..20 {
        ok(
            "lease 10",
            s.client_messages_for_processing(client(1), 10, None, None)
                .await,
        );
    }
    assert_eq!(
        ok(
            "lease after drain",
            s.client_messages_for_processing(client(1), 10, None, None)
                .await
        )
        .len(),
        0
    );
    // The lease is ClientRetryTime (15 min): everything is due again after it.
    clock.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(
        ok(
            "lease after expiry",
            s.client_messages_for_processing(client(1), 500, None, None)
                .await
        )
        .len(),
        200
    );
}

async fn lease_links_contact(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1_700_000_000);
    add_client(&*s, 1).await;
    let rec = ContactRecord {
        client_id: Some(client(1)),
        streaming_to: "local".into(),
        ..Default::default()
    };
    let contact = ok("record_client_contact", s.record_client_contact(&rec).await);
    let id = MessageId::for_client_message(client(1), "Svc", b"linked");
    ok(
        "store_messages",
        s.store_messages(&[to_client(id, client(1), "Svc", 1_700_000_000)], None)
            .await,
    );
    let lease = |s: Arc<dyn Store>| async move {
        s.client_messages_for_processing(client(1), 10, None, Some(contact))
            .await
    };
    assert_eq!(ok("lease with contact", lease(s.clone()).await).len(), 1);
    assert!(
        s.link_messages_to_contact(contact, &[id]).await.is_err(),
        "the lease linked the message: linking it again is a duplicate"
    );
    // A stream outliving the lease gets the message again under the same contact: no error.
    clock.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(ok("lease again", lease(s.clone()).await).len(), 1);
}

async fn lease_server(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(100000);
    add_client(&*s, 1).await;
    let mut msg = to_server(
        mid("01234567890123456789012345678903"),
        client(1),
        "TestServiceName",
        42,
    );
    msg.source_message_id = b"01234567".to_vec();
    msg.message_type = "Test message type 1".into();
    msg.data = any("test data proto urn 1", "Test data proto 1");
    ok(
        "store_messages",
        s.store_messages(std::slice::from_ref(&msg), None).await,
    );
    // Initial schedule is ServerRetryTime(0): 60–120 s.
    clock.advance(Duration::from_secs(59));
    assert_eq!(lease(&*s, "lease before due", 2).await, vec![]);
    clock.advance(Duration::from_secs(62));
    assert_eq!(lease(&*s, "lease when due", 2).await, vec![msg.clone()]);
    assert_eq!(lease(&*s, "lease while leased", 2).await, vec![]);
    // ServerRetryTime(1) is 66–132 s; the second lease shows the retry count went up.
    clock.advance(Duration::from_secs(133));
    assert_eq!(lease(&*s, "second lease", 3).await, vec![msg.clone()]);
    for n in 4..12 {
        clock.advance(Duration::from_secs(86400));
        assert_eq!(lease(&*s, "later lease", n).await, vec![msg.clone()]);
    }
    // Ten leases: the next delay is at least 60 s × 1.1^10 ≈ 155 s.
    clock.advance(Duration::from_secs(150));
    assert_eq!(lease(&*s, "lease within backoff", 0).await, vec![]);
    let id = mid("01234567890123456789012345678903");
    ok(
        "set_message_result",
        s.set_message_result(None, id, &processed(200000, 0)).await,
    );
    clock.advance(Duration::from_secs(100000));
    assert_eq!(lease(&*s, "lease after result", 0).await, vec![]);
    // A batch larger than the limit is leased in parts, each message once.
    let msgs: Vec<_> = (0..25u8)
        .map(|i| to_server(MessageId::new([i.wrapping_mul(37); 32]), client(1), "S", 42))
        .collect();
    ok("store_messages", s.store_messages(&msgs, None).await);
    clock.advance(Duration::from_secs(121));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.extend(
            ok("lease batch", s.lease_server_messages(10).await)
                .into_iter()
                .map(|l| l.message.message_id),
        );
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
}

/// The messages of one `lease_server_messages(10)`, each checked to have had `attempts` attempts
/// (the inline one and one per lease).
async fn lease(s: &dyn Store, step: &str, attempts: u32) -> Vec<Message> {
    ok(step, s.lease_server_messages(10).await)
        .into_iter()
        .map(|l| {
            assert_eq!(l.attempts, attempts, "{step}: attempts");
            l.message
        })
        .collect()
}
