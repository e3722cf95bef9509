//! A new stream supersedes the client's earlier contacts: what they were handed and never
//! acknowledged is pushed again after a short grace, not when the 15-minute lease ends
//! (ARCHITECTURE.md "Redelivery after a lost stream"). Acks that arrive first, on the new stream
//! or on a superseded one, prevent the duplicate; polls never supersede.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use fleetgate_engine::EngineConfig;
use fleetgate_engine::Stream;
use fleetgate_pb::fleetspeak::{ContactData, Message};
use fleetgate_types::MessageId;
use fleetgate_types::contact::{ContactHandler, StreamSession};

/// Short, so the tests wait little on the real timer the stream arms.
const GRACE: Duration = Duration::from_millis(300);

async fn env(grace: Duration) -> Env {
    Env::with_config(EngineConfig {
        streaming_to: "local".into(),
        redelivery_grace: grace,
        ..Default::default()
    })
    .await
}

/// The next non-empty push within the liveness bound (inserts leave wake-ups that find nothing).
async fn next_batch(stream: &Stream) -> Vec<Message> {
    tokio::time::timeout(LIVENESS, async {
        loop {
            match stream.next_messages().await.unwrap() {
                Some(m) if m.is_empty() => continue,
                Some(m) => return m,
                None => panic!("the stream was superseded"),
            }
        }
    })
    .await
    .expect("no push within the liveness bound")
}

/// Nothing but empty batches for longer than the grace and the stream's margin.
async fn nothing_within_grace(stream: &Stream) {
    let r = tokio::time::timeout(GRACE * 3, async {
        loop {
            match stream.next_messages().await.unwrap() {
                Some(m) if m.is_empty() => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(r.is_err(), "unexpected push: {r:?}");
}

/// Opens a stream whose frame 0 carries `messages`, and returns it with frame 0's messages.
async fn open(env: &Env, c: &TestClient, messages: Vec<Message>) -> (Stream, Vec<MessageId>) {
    let (s, reply) = env
        .engine
        .open_stream(c.contact(cd(messages)))
        .await
        .unwrap();
    (s, ids_of(&reply.messages))
}

/// A stream that has been handed `n` fresh messages and acked none of them.
async fn lost_stream(env: &Env, c: &TestClient, n: usize) -> (Stream, Vec<MessageId>) {
    let (a, _) = open(env, c, vec![]).await;
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(env.insert_for(c.id, "svc").await);
    }
    env.tick();
    let mut got = ids_of(&next_batch(&a).await);
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    (a, ids)
}

/// A client whose first stream was handed `n` messages and ended without acking them.
async fn after_lost_stream(grace: Duration, n: usize) -> (Env, TestClient, Vec<MessageId>) {
    let env = env(grace).await;
    let c = TestClient::new();
    let (a, lost) = lost_stream(&env, &c, n).await;
    a.close().await;
    (env, c, lost)
}

#[tokio::test]
async fn a_new_stream_gets_what_the_old_one_never_acked() {
    let (env, c, lost) = after_lost_stream(GRACE, 1).await;
    let (b, first) = open(&env, &c, vec![]).await;
    assert!(first.is_empty(), "not during the grace: {first:?}");
    env.tick();
    assert_eq!(ids_of(&next_batch(&b).await), lost);
    assert!(
        env.result(lost[0]).await.is_none(),
        "still waiting for its ack"
    );
    b.close().await;
}

#[tokio::test]
async fn without_a_grace_the_first_frame_carries_them() {
    let (env, c, lost) = after_lost_stream(Duration::ZERO, 2).await;
    env.tick();
    let (b, mut first) = open(&env, &c, vec![]).await;
    first.sort();
    assert_eq!(first, lost);
    b.close().await;
}

#[tokio::test]
async fn acks_carried_over_in_the_first_frame_prevent_the_duplicate() {
    let (env, c, lost) = after_lost_stream(GRACE, 2).await;
    let (b, _) = open(&env, &c, vec![ack(&lost[..1])]).await;
    env.tick();
    assert_eq!(ids_of(&next_batch(&b).await), lost[1..].to_vec());
    assert!(env.result(lost[0]).await.is_some());
    b.close().await;
}

#[tokio::test]
async fn acks_within_the_grace_prevent_the_duplicate() {
    let (env, c, lost) = after_lost_stream(GRACE, 1).await;
    let (b, _) = open(&env, &c, vec![]).await;
    b.frame(wcd(&cd(vec![ack(&lost)]), &c.labels))
        .await
        .unwrap();
    env.tick();
    nothing_within_grace(&b).await;
    b.close().await;
}

/// The older stream is still open on this server (it reads and acks after being superseded):
/// its late ack counts like any other.
#[tokio::test]
async fn a_superseded_stream_may_still_ack() {
    let env = env(GRACE).await;
    let c = TestClient::new();
    let (a, lost) = lost_stream(&env, &c, 1).await;
    let (b, _) = open(&env, &c, vec![]).await;
    assert_eq!(a.next_messages().await.unwrap(), None, "a is superseded");
    a.frame(wcd(&cd(vec![ack(&lost)]), &c.labels))
        .await
        .unwrap();
    env.tick();
    nothing_within_grace(&b).await;
    assert!(env.result(lost[0]).await.is_some());
    a.close().await;
    b.close().await;
}

/// A polling client acks in its next poll: its open leases are normal, and a poll between them
/// must not hand the message out again.
#[tokio::test]
async fn polls_never_supersede() {
    let env = env(Duration::ZERO).await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let m = env.insert_for(c.id, "svc").await;
    env.tick();
    assert_eq!(ids_of(&env.poll(&c, cd(vec![])).await.messages), vec![m]);
    env.tick();
    let second = env.poll(&c, cd(vec![])).await;
    assert!(second.messages.is_empty(), "handed out twice");
    env.poll(&c, cd(vec![ack(&[m])])).await;
    assert!(env.result(m).await.is_some());
}

/// Leases of a stream that has itself been superseded since are no longer its to take back
/// once a newer stream re-leased them.
#[tokio::test]
async fn a_redelivered_message_is_the_new_streams() {
    let (env, c, lost) = after_lost_stream(Duration::ZERO, 1).await;
    env.tick();
    let (b, first) = open(&env, &c, vec![]).await;
    assert_eq!(first, lost);
    // B is still the latest stream: another wake-up finds nothing, the lease is B's.
    env.engine.notify_client(c.id);
    env.tick();
    let r = tokio::time::timeout(Duration::from_millis(300), b.next_messages()).await;
    let found = match &r {
        Err(_) => Vec::new(),
        Ok(got) => ids_of(got.as_ref().unwrap().as_ref().unwrap()),
    };
    assert!(found.is_empty(), "pushed again: {found:?}");
    b.close().await;
    let _: ContactData = env.poll(&c, cd(vec![ack(&lost)])).await;
}
