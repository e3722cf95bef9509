//! The message trace (Fleetgate's own, no checklist number): batches written in one call, one
//! message's steps read back in time order with their servers, steps of other messages kept
//! apart, retention in bounded batches by time.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::{FakeClock, MessageId};

use super::{Case, mid, ok, secs};
use crate::{Store, TraceRecord};

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "trace",
        checks: "trace",
        run: |s, c| Box::pin(trace(s, c)),
    }]
}

const T0: u64 = 1_700_000_000;

fn step(
    id: MessageId,
    at: std::time::SystemTime,
    server: &str,
    step: &str,
    detail: &str,
) -> TraceRecord {
    TraceRecord {
        message_id: id,
        time: at,
        server: server.into(),
        step: step.into(),
        detail: detail.into(),
    }
}

async fn trace(s: Arc<dyn Store>, _clock: Arc<FakeClock>) {
    let a = mid("00000000000000000000000000000001");
    let b = mid("00000000000000000000000000000002");
    let unknown = mid("00000000000000000000000000000009");
    let t = |us: u64| secs(T0) + Duration::from_micros(us);
    // Written out of time order, as two servers' batches may arrive; two steps share a time.
    let first = [
        step(a, t(30), "fe-1", "pushed", "on stream, contact 7"),
        step(
            b,
            t(5),
            "admin-1",
            "stored",
            "inserted for client 0000000000000001",
        ),
        step(
            a,
            t(10),
            "admin-1",
            "stored",
            "inserted for client 0000000000000001",
        ),
    ];
    ok("record_trace", s.record_trace(&first).await);
    let second = [
        step(a, t(20), "fe-1", "leased", "to contact 7"),
        step(
            a,
            t(30),
            "fe-1",
            "pushed",
            "written second at the same time",
        ),
        step(
            a,
            t(40),
            "fe-1",
            "acknowledged",
            "by client 0000000000000001",
        ),
    ];
    ok("record_trace", s.record_trace(&second).await);
    ok("record_trace (empty)", s.record_trace(&[]).await);

    let got = ok("message_trace", s.message_trace(a).await);
    let words: Vec<(&str, &str, u64)> = got
        .iter()
        .map(|r| {
            let us = r
                .time
                .duration_since(secs(T0))
                .map_or(0, |d| d.as_micros() as u64);
            (r.server.as_str(), r.step.as_str(), us)
        })
        .collect();
    assert_eq!(
        words,
        [
            ("admin-1", "stored", 10),
            ("fe-1", "leased", 20),
            ("fe-1", "pushed", 30),
            ("fe-1", "pushed", 30),
            ("fe-1", "acknowledged", 40),
        ],
        "one message's steps in time order, ties in write order: {got:?}"
    );
    assert_eq!(got[2].detail, "on stream, contact 7");
    assert_eq!(got[3].detail, "written second at the same time");
    assert!(got.iter().all(|r| r.message_id == a));
    assert_eq!(
        ok("message_trace b", s.message_trace(b).await),
        [first[1].clone()]
    );
    assert!(ok("message_trace unknown", s.message_trace(unknown).await).is_empty());

    // A long detail and a non-ASCII server name survive.
    let long = "x".repeat(4000);
    let c = mid("00000000000000000000000000000003");
    ok(
        "record_trace long",
        s.record_trace(&[step(c, t(50), "fe-ü", "failed", &long)])
            .await,
    );
    let got = ok("message_trace c", s.message_trace(c).await);
    assert_eq!(
        (got[0].server.as_str(), got[0].detail.len()),
        ("fe-ü", 4000)
    );

    // Retention: steps before t(25) go (three of them), at most `limit` per call, by time.
    assert_eq!(ok("prune_trace", s.prune_trace(t(25), 2).await), 2);
    assert_eq!(ok("prune_trace", s.prune_trace(t(25), 2).await), 1);
    assert_eq!(ok("prune_trace", s.prune_trace(t(25), 2).await), 0);
    let left: Vec<String> = ok("message_trace", s.message_trace(a).await)
        .into_iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(left, ["pushed", "pushed", "acknowledged"]);
    assert!(ok("message_trace b", s.message_trace(b).await).is_empty());
    assert_eq!(ok("message_trace c", s.message_trace(c).await).len(), 1);
}
