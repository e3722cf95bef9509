//! The end of a message's life (Fleetgate's extension): dead letters, replay, expiry candidates,
//! per-service back-off and the oldest pending message per service.

use std::sync::Arc;

use fleetgate_types::{FakeClock, MessageId};

use super::messages::add_client;
use super::{Case, any, client, mid, ok, secs, to_client, to_server};
use crate::{DeadLetter, DeadLetterQuery, DeadReason, Store};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "dead_letter_and_replay",
            checks: "ext-dead-letters",
            run: |s, c| Box::pin(dead_letter_and_replay(s, c)),
        },
        Case {
            name: "dead_letter_skips_finished",
            checks: "ext-dead-letters",
            run: |s, c| Box::pin(dead_letter_skips_finished(s, c)),
        },
        Case {
            name: "dead_letter_queries",
            checks: "ext-dead-letters",
            run: |s, c| Box::pin(dead_letter_queries(s, c)),
        },
        Case {
            name: "expiry_backoff_oldest",
            checks: "ext-expiry",
            run: |s, c| Box::pin(expiry_backoff_oldest(s, c)),
        },
    ]
}

fn letter(m: fleetgate_types::pb::fleetspeak::Message, reason: DeadReason) -> DeadLetter {
    DeadLetter {
        message: m,
        reason,
        last_error: "boom".into(),
        plugin: "sha256:abc".into(),
        attempts: 3,
    }
}

fn ids(prefix: &str, n: usize) -> Vec<MessageId> {
    (0..n)
        .map(|i| mid(&format!("{prefix}{i:0>width$}", width = 32 - prefix.len())))
        .collect()
}

/// A server-bound message that is pending, and one never stored, die; the letter keeps the
/// payload; replay queues each again once, with its payload, and the second replay is refused.
async fn dead_letter_and_replay(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1000);
    add_client(&*s, 1).await;
    let ids = ids("dl", 2);
    let mut pending = to_server(ids[0], client(1), "A", 900);
    pending.data = any("type.googleapis.com/x.Y", "payload-0");
    ok(
        "store_messages",
        s.store_messages(std::slice::from_ref(&pending), None).await,
    );
    let mut unstored = to_server(ids[1], client(1), "A", 950);
    unstored.data = any("type.googleapis.com/x.Y", "payload-1");
    clock.set_seconds(1100);
    let moved = ok(
        "dead_letter",
        s.dead_letter(&[
            letter(pending.clone(), DeadReason::Exhausted),
            letter(unstored.clone(), DeadReason::Permanent),
        ])
        .await,
    );
    assert_eq!(moved.len(), 2, "both die: {moved:?}");
    // Neither is pending; both are failed, the reason says why.
    assert_eq!(ok("lease", s.lease_server_messages(10).await), vec![]);
    let r = ok("result", s.get_message_result(ids[0]).await).expect("a result");
    assert!(r.failed && r.failed_reason.contains("exhausted") && r.failed_reason.contains("boom"));
    let r = ok("result", s.get_message_result(ids[1]).await).expect("a result");
    assert!(r.failed && r.failed_reason == "boom", "{r:?}");

    let info = ok("get_dead_letter", s.get_dead_letter(ids[0]).await).expect("a letter");
    assert_eq!(info.service, "A");
    assert_eq!(info.reason, DeadReason::Exhausted);
    assert_eq!((info.attempts, info.plugin.as_str()), (3, "sha256:abc"));
    assert_eq!(info.created, secs(900));
    assert_eq!(info.died, secs(1100));
    assert_eq!(info.replayed, None);
    assert_eq!(info.message.and_then(|m| m.data), pending.data);

    clock.set_seconds(1200);
    // A request naming one message that is not dead replays nothing.
    let unknown = mid("dl-unknown-unknown-unknown-unkno");
    let mixed = ok(
        "replay with an unknown ID",
        s.replay_dead_letters(&[ids[0], unknown]).await,
    );
    assert_eq!((mixed.replayed, mixed.not_dead), (vec![], vec![unknown]));
    assert!(ok("get", s.get_dead_letter(ids[0]).await).is_some_and(|l| l.replayed.is_none()));
    let replayed = ok("replay", s.replay_dead_letters(&ids).await);
    assert_eq!(replayed.not_dead, vec![]);
    assert_eq!(replayed.replayed.len(), 2);
    assert_eq!(ok("result", s.get_message_result(ids[0]).await), None);
    // Due at the replay's time: leasable a moment later.
    clock.set(secs(1200) + std::time::Duration::from_millis(1));
    let leased = ok("lease", s.lease_server_messages(10).await);
    let mut got: Vec<_> = leased
        .iter()
        .map(|l| {
            (
                l.message.message_id.clone(),
                l.message.data.clone(),
                l.attempts,
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (ids[0].to_vec(), pending.data.clone(), 2),
            (ids[1].to_vec(), unstored.data.clone(), 2),
        ],
        "replayed messages are due at once, with their payload, attempts counted afresh"
    );
    // A second replay does nothing: the letters are no longer dead.
    let again = ok("replay again", s.replay_dead_letters(&ids).await);
    assert_eq!(again.replayed, vec![]);
    assert_eq!(again.not_dead, ids.clone());
    let info = ok("get_dead_letter", s.get_dead_letter(ids[0]).await).expect("a letter");
    assert_eq!((info.replays, info.replayed), (1, Some(secs(1200))));
    // Unknown IDs are not dead either.
    let r = ok("replay unknown", s.replay_dead_letters(&[unknown]).await);
    assert_eq!(r.not_dead, vec![unknown]);
    // Dying again makes the letter dead again, with the new details.
    clock.set_seconds(1300);
    let mut second = letter(pending.clone(), DeadReason::MaxAge);
    second.attempts = 7;
    assert_eq!(
        ok("dead_letter again", s.dead_letter(&[second]).await),
        vec![ids[0]]
    );
    let info = ok("get_dead_letter", s.get_dead_letter(ids[0]).await).expect("a letter");
    assert_eq!(
        (info.reason, info.attempts, info.replayed, info.died),
        (DeadReason::MaxAge, 7, None, secs(1300))
    );
}

/// A message acknowledged (finished) before it would die stays finished and gets no letter.
async fn dead_letter_skips_finished(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1000);
    add_client(&*s, 1).await;
    let ids = ids("fin", 1);
    let m = to_client(ids[0], client(1), "A", 900);
    ok(
        "store_messages",
        s.store_messages(std::slice::from_ref(&m), None).await,
    );
    let done = fleetgate_types::message::success(secs(1000));
    ok(
        "set_message_result",
        s.set_message_result(Some(client(1)), ids[0], &done).await,
    );
    let moved = ok(
        "dead_letter",
        s.dead_letter(&[letter(m, DeadReason::Expired)]).await,
    );
    assert_eq!(moved, vec![]);
    assert_eq!(ok("get_dead_letter", s.get_dead_letter(ids[0]).await), None);
    let r = ok("result", s.get_message_result(ids[0]).await).expect("a result");
    assert!(!r.failed);
}

/// Listing by service and time, newest first; replayed letters only when asked; purge by the
/// same filters; retention prunes by death time.
async fn dead_letter_queries(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    add_client(&*s, 1).await;
    let ids = ids("q", 4);
    for (i, (id, svc)) in ids.iter().zip(["A", "B", "A", "A"]).enumerate() {
        clock.set_seconds(1000 + 100 * i as u64);
        let m = to_server(*id, client(1), svc, 900);
        ok(
            "dead_letter",
            s.dead_letter(&[letter(m, DeadReason::Permanent)]).await,
        );
    }
    let list = |service: Option<&str>, since: Option<u64>, include_replayed: bool, limit| {
        let s = s.clone();
        let q = DeadLetterQuery {
            service: service.map(str::to_string),
            since: since.map(secs),
            include_replayed,
            limit,
        };
        async move {
            ok("list_dead_letters", s.list_dead_letters(&q).await)
                .into_iter()
                .map(|l| l.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(None, None, false, 0).await,
        vec![ids[3], ids[2], ids[1], ids[0]]
    );
    assert_eq!(
        list(Some("A"), None, false, 0).await,
        vec![ids[3], ids[2], ids[0]]
    );
    assert_eq!(
        list(Some("A"), Some(1200), false, 0).await,
        vec![ids[3], ids[2]]
    );
    assert_eq!(list(None, None, false, 1).await, vec![ids[3]]);
    ok("replay", s.replay_dead_letters(&[ids[2]]).await);
    assert_eq!(list(Some("A"), None, false, 0).await, vec![ids[3], ids[0]]);
    assert_eq!(
        list(Some("A"), None, true, 0).await,
        vec![ids[3], ids[2], ids[0]]
    );
    // Purge: service B only.
    let purged = ok(
        "purge",
        s.purge_dead_letters(&DeadLetterQuery {
            service: Some("B".into()),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(purged, 1);
    assert_eq!(ok("get", s.get_dead_letter(ids[1]).await), None);
    // Retention: letters that died before 1250 s (ids[0] at 1000; ids[2] died at 1200).
    assert_eq!(ok("prune", s.prune_dead_letters(secs(1250), 10).await), 2);
    assert_eq!(list(None, None, true, 0).await, vec![ids[3]]);
}

/// Expiry candidates by service and age; a service's own back-off; the oldest pending message of
/// each service and direction.
async fn expiry_backoff_oldest(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(10_000);
    add_client(&*s, 1).await;
    let ids = ids("ex", 4);
    let mut a_old = to_client(ids[0], client(1), "A", 1000);
    a_old.data = any("type.googleapis.com/x.Y", "old");
    let a_new = to_client(ids[1], client(1), "A", 9000);
    let b_old = to_client(ids[2], client(1), "B", 2000);
    let srv = to_server(ids[3], client(1), "S", 5000);
    ok(
        "store_messages",
        s.store_messages(&[a_old.clone(), a_new, b_old, srv], None)
            .await,
    );
    let expiring = |service: Option<&'static str>, except: Vec<String>, before: u64| {
        let s = s.clone();
        async move {
            ok(
                "expiring_client_messages",
                s.expiring_client_messages(service, &except, secs(before), 10)
                    .await,
            )
        }
    };
    let a = expiring(Some("A"), vec![], 5000).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].message_id, ids[0].to_vec());
    assert_eq!(a[0].data, a_old.data, "candidates carry their payload");
    let others = expiring(None, vec!["A".into()], 5000).await;
    assert_eq!(
        others
            .iter()
            .map(|m| m.message_id.clone())
            .collect::<Vec<_>>(),
        vec![ids[2].to_vec()],
        "server-bound messages never expire"
    );
    assert_eq!(expiring(None, vec![], 500).await, vec![]);

    // The server-bound message is due 60–120 s after storage; the service's back-off says 1 s.
    assert_eq!(ok("lease", s.lease_server_messages(10).await), vec![]);
    ok(
        "reschedule",
        s.reschedule_server_messages(&[(ids[3], secs(10_001))])
            .await,
    );
    clock.set_seconds(10_002);
    let leased = ok("lease", s.lease_server_messages(10).await);
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].attempts, 2);

    let mut oldest = ok("oldest_pending", s.oldest_pending().await);
    oldest.sort_by(|x, y| x.service.cmp(&y.service));
    let got: Vec<_> = oldest
        .iter()
        .map(|o| (o.service.as_str(), o.to_client, o.created))
        .collect();
    assert_eq!(
        got,
        vec![
            ("A", true, secs(1000)),
            ("B", true, secs(2000)),
            ("S", false, secs(5000)),
        ]
    );
}
