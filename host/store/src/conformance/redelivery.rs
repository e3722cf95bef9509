//! `redeliver_superseded`: a client's new stream makes what its earlier contacts were handed and
//! never acknowledged due again, after a grace, and touches nothing else.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::{ClientId, ContactId, FakeClock, MessageId};

use super::messages::{add_client, processed};
use super::{Case, client, ok, to_client};
use crate::{ContactRecord, Store};

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "redeliver_superseded",
        checks: "Fleetgate: a new stream supersedes earlier leases",
        run: |s, c| Box::pin(redeliver_superseded(s, c)),
    }]
}

const GRACE: Duration = Duration::from_secs(3);
const T0: u64 = 1_700_000_000;

async fn stream(s: &dyn Store, c: ClientId) -> ContactId {
    let rec = ContactRecord {
        client_id: Some(c),
        streaming_to: "local".into(),
        ..Default::default()
    };
    ok("record_client_contact", s.record_client_contact(&rec).await)
}

fn msg(c: ClientId, tag: &str) -> (MessageId, fleetgate_types::pb::fleetspeak::Message) {
    let id = MessageId::for_client_message(c, "Svc", tag.as_bytes());
    (id, to_client(id, c, "Svc", T0 as i64))
}

/// Ids of what a lease for `c` under `contact` hands out now.
async fn lease(s: &dyn Store, c: ClientId, contact: Option<ContactId>) -> Vec<MessageId> {
    let got = ok(
        "client_messages_for_processing",
        s.client_messages_for_processing(c, 100, None, contact)
            .await,
    );
    got.iter()
        .map(|m| ok("message id", MessageId::from_bytes(&m.message_id)))
        .collect()
}

async fn redeliver_superseded(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(T0);
    add_client(&*s, 1).await;
    add_client(&*s, 2).await;
    let (lost, lost_msg) = msg(client(1), "lost");
    let (acked, acked_msg) = msg(client(1), "acked");
    let (other, other_msg) = msg(client(2), "other client");
    ok(
        "store_messages",
        s.store_messages(&[lost_msg, acked_msg, other_msg], None)
            .await,
    );
    let a = stream(&*s, client(1)).await;
    let x = stream(&*s, client(2)).await;
    let mut first = lease(&*s, client(1), Some(a)).await;
    first.sort();
    let mut want = vec![lost, acked];
    want.sort();
    assert_eq!(first, want, "stream A leases both messages");
    assert_eq!(lease(&*s, client(2), Some(x)).await, vec![other]);
    ok(
        "ack",
        s.set_message_result(Some(client(1)), acked, &processed(T0 as i64, 0))
            .await,
    );

    // Stream B supersedes A. A message handed to B itself (stored and leased before the release
    // runs) is B's, not a superseded lease.
    clock.advance(Duration::from_secs(60));
    let b = stream(&*s, client(1)).await;
    let (own, own_msg) = msg(client(1), "leased to B");
    ok("store_messages", s.store_messages(&[own_msg], None).await);
    assert_eq!(lease(&*s, client(1), Some(b)).await, vec![own]);
    let n = ok(
        "redeliver_superseded",
        s.redeliver_superseded(client(1), b, GRACE).await,
    );
    assert_eq!(n, 1, "only the unacknowledged lease of A is made due again");
    assert!(
        lease(&*s, client(1), None).await.is_empty(),
        "nothing is due during the grace: an ack on its way may still arrive"
    );
    clock.advance(GRACE);
    assert_eq!(
        lease(&*s, client(1), Some(b)).await,
        vec![lost],
        "after the grace the lost message is due, the acked one is done"
    );
    assert!(
        lease(&*s, client(2), None).await.is_empty(),
        "another client's lease is untouched"
    );
    assert_eq!(
        ok("again", s.redeliver_superseded(client(1), b, GRACE).await),
        0,
        "re-leased to B, the message is B's now: asking again changes nothing"
    );

    // An older contact asking (a late stream start) never takes a newer stream's leases.
    assert_eq!(
        ok(
            "older contact",
            s.redeliver_superseded(client(1), a, Duration::ZERO).await
        ),
        0
    );

    // Stream C supersedes B: both of B's leases come back, at once with no grace.
    let c = stream(&*s, client(1)).await;
    assert_eq!(
        ok(
            "C",
            s.redeliver_superseded(client(1), c, Duration::ZERO).await
        ),
        2
    );
    clock.advance(Duration::from_micros(1));
    let mut again = lease(&*s, client(1), Some(c)).await;
    again.sort();
    let mut want = vec![lost, own];
    want.sort();
    assert_eq!(again, want);

    // A message already due is not a lease: releasing leaves its schedule (and the count) alone.
    let (due, due_msg) = msg(client(1), "due");
    ok("store_messages", s.store_messages(&[due_msg], None).await);
    ok(
        "link",
        s.link_messages_to_contact(a, std::slice::from_ref(&due))
            .await,
    );
    let d = stream(&*s, client(1)).await;
    assert_eq!(
        ok("D", s.redeliver_superseded(client(1), d, GRACE).await),
        2,
        "C's two leases; the due message is not counted"
    );
    assert_eq!(lease(&*s, client(1), Some(d)).await, vec![due]);
}
