//! Message store checks 1–20, plus `lease_server_messages` in place of check 21.

use std::sync::Arc;

use fleetgate_types::pb::fleetspeak::annotations::Entry;
use fleetgate_types::pb::fleetspeak::{Annotations, MessageResult};
use fleetgate_types::{FakeClock, MessageId};

use super::{Case, any, client, mid, ok, to_client, to_server, ts};
use crate::Store;
use crate::api::{ClientData, ContactRecord};
use fleetgate_types::ContactId;

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "store_get_messages",
            checks: "1-5",
            run: |s, c| Box::pin(store_get_messages(s, c)),
        },
        Case {
            name: "store_messages",
            checks: "6-8",
            run: |s, c| Box::pin(store_messages(s, c)),
        },
        Case {
            name: "pending_messages",
            checks: "9-16",
            run: |s, c| Box::pin(pending_messages(s, c)),
        },
    ]
}

pub(super) async fn add_client(s: &dyn Store, n: u8) {
    let data = ClientData {
        key: b"test key".to_vec(),
        ..Default::default()
    };
    ok("add_client", s.add_client(client(n), &data).await);
}

pub(super) async fn contact(s: &dyn Store, n: u8) -> ContactId {
    let rec = ContactRecord {
        client_id: Some(client(n)),
        sent_nonce: 42,
        received_nonce: 43,
        address: "127.0.0.1".into(),
        ..Default::default()
    };
    ok("record_client_contact", s.record_client_contact(&rec).await)
}

pub(super) fn processed(seconds: i64, nanos: i32) -> MessageResult {
    MessageResult {
        processed_time: ts(seconds, nanos),
        ..Default::default()
    }
}

async fn store_get_messages(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(100000);
    add_client(&*s, 1).await;
    let mut m1 = to_client(
        mid("01234567890123456789012345678902"),
        client(1),
        "TestServiceName",
        42,
    );
    m1.message_type = "Test message type 2".into();
    m1.data = any("test data proto urn 2", "Test data proto 2");
    let mut m2 = m1.clone();
    m2.message_id = mid("11234567890123456789012345678903").to_vec();
    m2.annotations = Some(Annotations {
        entries: vec![
            Entry {
                key: "session_id".into(),
                value: "123".into(),
            },
            Entry {
                key: "request_id".into(),
                value: "1".into(),
            },
        ],
    });
    let msgs = vec![m1, m2];
    let ids: Vec<MessageId> = msgs
        .iter()
        .map(|m| MessageId::from_bytes(&m.message_id).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // 1
    ok("store_messages", s.store_messages(&msgs, None).await);
    ok("store_messages again", s.store_messages(&msgs, None).await);
    // 2
    assert_eq!(ok("get_messages", s.get_messages(&ids, true).await), msgs);
    // 3
    assert_eq!(
        ok("get_message_result", s.get_message_result(ids[0]).await),
        None
    );
    // 4
    clock.set_seconds(84);
    for id in &ids {
        ok(
            "set_message_result",
            s.set_message_result(Some(client(1)), *id, &processed(84, 0))
                .await,
        );
    }
    let want: Vec<_> = msgs
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.data = None;
            m.result = Some(processed(84, 0));
            m
        })
        .collect();
    assert_eq!(ok("get_messages", s.get_messages(&ids, true).await), want);
    // 5
    assert_eq!(
        ok("get_message_result", s.get_message_result(ids[0]).await),
        Some(processed(84, 0))
    );
    // Beyond the checklist: a missing id fails get_messages only.
    let missing = mid("x1234567890123456789012345678903");
    assert!(
        s.get_messages(&[ids[0], missing], false)
            .await
            .is_err_and(|e| e.is_not_found())
    );
    assert_eq!(
        ok(
            "get_existing_messages",
            s.get_existing_messages(&[missing, ids[1]], true).await
        ),
        want[1..]
    );
    assert_eq!(
        ok("get_message_status", s.get_message_status(missing).await),
        None
    );
    let status = ok("get_message_status", s.get_message_status(ids[0]).await);
    assert_eq!(
        status,
        Some((
            prost_types::Timestamp {
                seconds: 42,
                nanos: 0
            },
            Some(processed(84, 0))
        ))
    );
}

async fn store_messages(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(43);
    add_client(&*s, 1).await;
    let contact = contact(&*s, 1).await;
    let ids = [
        mid("01234567890123456789012345678906"),
        mid("01234567890123456789012345678907"),
        mid("01234567890123456789012345678908"),
    ];
    let mut msgs: Vec<_> = ids
        .iter()
        .map(|id| to_server(*id, client(1), "TestServiceName", 42))
        .collect();
    msgs[0].data = any("test data proto urn 2", "Test data proto 2");
    msgs[1].result = Some(processed(42, 20000));
    let failed = MessageResult {
        processed_time: ts(42, 0),
        failed: true,
        failed_reason: "broken test message".into(),
    };
    msgs[2].result = Some(failed.clone());
    // 6
    ok(
        "store_messages",
        s.store_messages(&msgs, Some(contact)).await,
    );
    // 7
    let results = |s: Arc<dyn Store>| async move {
        let mut out = Vec::new();
        for id in ids {
            out.push(ok("get_message_result", s.get_message_result(id).await));
        }
        out
    };
    assert_eq!(
        results(s.clone()).await,
        vec![None, Some(processed(42, 20000)), Some(failed)]
    );
    // 8
    for m in &mut msgs {
        m.creation_time = ts(52, 0);
        m.result = Some(processed(52, 0));
        m.data = None;
    }
    ok(
        "store_messages again",
        s.store_messages(&msgs, Some(contact)).await,
    );
    assert_eq!(results(s.clone()).await, vec![Some(processed(52, 0)); 3]);
    // The finished server message left the backlog.
    clock.set_seconds(100000);
    assert_eq!(
        ok("lease_server_messages", s.lease_server_messages(10).await),
        Vec::new()
    );
}

async fn pending_messages(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(43);
    add_client(&*s, 1).await;
    let contact = contact(&*s, 1).await;
    let ids: Vec<MessageId> = (0..5)
        .map(|i| mid(&format!("9123456789012345678901234567890{i}")))
        .collect();
    let msgs: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut m = to_client(
                *id,
                client(1),
                "TestServiceName",
                if i == 0 { 42 } else { i as i64 },
            );
            m.source = super::addr(None, "TestSource");
            m.data = any(
                &format!("test data proto urn {i}"),
                &format!("Test data proto {i}"),
            );
            m
        })
        .collect();
    ok(
        "store_messages",
        s.store_messages(&msgs, Some(contact)).await,
    );
    let c = [client(1)];
    // 9
    assert_eq!(
        ok("get_messages", s.get_messages(&ids, false).await).len(),
        5
    );
    // 10
    assert_eq!(
        ok(
            "get_pending_message_count",
            s.get_pending_message_count(&c).await
        ),
        5
    );
    // 11
    assert_eq!(
        ok(
            "get_pending_messages",
            s.get_pending_messages(&c, 0, 0, true).await
        ),
        msgs
    );
    // 12
    assert_eq!(
        ok(
            "get_pending_messages 1/2",
            s.get_pending_messages(&c, 1, 2, true).await
        ),
        msgs[1..3]
    );
    // 13
    assert_eq!(
        ok(
            "get_pending_messages 0/1",
            s.get_pending_messages(&c, 0, 1, true).await
        ),
        msgs[..1]
    );
    // 14
    assert!(s.get_pending_messages(&c, 1, 0, true).await.is_err());
    // 15
    let no_data: Vec<_> = msgs
        .iter()
        .cloned()
        .map(|mut m| {
            m.data = None;
            m
        })
        .collect();
    assert_eq!(
        ok(
            "get_pending_messages",
            s.get_pending_messages(&c, 0, 0, false).await
        ),
        no_data
    );
    // 16
    ok(
        "delete_pending_messages",
        s.delete_pending_messages(&c).await,
    );
    assert_eq!(
        ok(
            "client_messages_for_processing",
            s.client_messages_for_processing(client(1), 1, None, None)
                .await
        ),
        vec![]
    );
    for id in &ids {
        let r = ok("get_message_result", s.get_message_result(*id).await);
        let r =
            r.unwrap_or_else(|| panic!("message {id} has no result after delete_pending_messages"));
        assert!(
            r.failed && r.failed_reason == "Removed by admin action.",
            "{r:?}"
        );
    }
    assert_eq!(
        ok(
            "get_pending_message_count",
            s.get_pending_message_count(&c).await
        ),
        0
    );
}
