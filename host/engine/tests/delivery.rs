//! Server → client delivery: leases, `AllowedMessages` tokens, `Die`, acknowledgements, and the
//! blacklist's RekeyRequest (client-lifecycle.md §4, §6, §8.1–8.2; protocol.md §9.2).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use fleetgate_pb::fleetspeak::DieRequest;
use fleetgate_pb::{any, fleetspeak::Message};
use fleetgate_types::contact::ContactHandler;
use fleetgate_types::message::{destination_client, destination_service, source_service};
use fleetgate_types::time::CLIENT_LEASE;

#[tokio::test]
async fn queued_message_is_delivered_and_leased_for_15_minutes() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let id = env.insert_for(c.id, "svc").await;
    env.tick();

    let reply = env.poll(&c, cd(vec![])).await;
    assert_eq!(reply.messages.len(), 1);
    let m = &reply.messages[0];
    assert_eq!(m.message_id, id.to_vec());
    assert_eq!(m.message_id.len(), 32);
    assert_eq!(destination_client(m).unwrap(), Some(c.id));
    assert_eq!(destination_service(m), "svc");
    assert!(m.data.is_some() && m.creation_time.is_some());
    assert!(
        env.result(id).await.is_none(),
        "handing out is not completion"
    );

    // Leased: not handed out again within 15 minutes...
    env.clock.advance(CLIENT_LEASE - Duration::from_secs(2));
    assert!(env.poll(&c, cd(vec![])).await.messages.is_empty());
    // ...but again once the lease has run out.
    env.clock.advance(Duration::from_secs(3));
    let again = env.poll(&c, cd(vec![])).await;
    assert_eq!(ids_of(&again.messages), vec![id]);

    // Acks are applied before selection: a poll acking a message whose lease ran out does not
    // get it back.
    env.clock.advance(CLIENT_LEASE + Duration::from_secs(1));
    let reply = env.poll(&c, cd(vec![ack(&[id])])).await;
    assert!(reply.messages.is_empty());
    assert!(env.result(id).await.is_some_and(|r| !r.failed));
}

#[tokio::test]
async fn tokens_limit_what_is_delivered() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let mut queued = Vec::new();
    for _ in 0..5 {
        queued.push(env.insert_for(c.id, "svc").await);
    }
    env.tick();

    // A service missing from the map gets nothing.
    let reply = env.poll(&c, cd_tokens(vec![], &[("other", 10)])).await;
    assert!(reply.messages.is_empty());
    let reply = env.poll(&c, cd_tokens(vec![], &[("svc", 0)])).await;
    assert!(reply.messages.is_empty());

    let reply = env.poll(&c, cd_tokens(vec![], &[("svc", 2)])).await;
    assert_eq!(reply.messages.len(), 2);
    let reply2 = env
        .poll(&c, cd_tokens(vec![], &[("svc", 100), ("system", 100)]))
        .await;
    assert_eq!(
        reply2.messages.len(),
        3,
        "the rest, the first two being leased"
    );
    let mut all = ids_of(&reply.messages);
    all.extend(ids_of(&reply2.messages));
    all.sort();
    queued.sort();
    assert_eq!(all, queued);
}

#[tokio::test]
async fn die_is_done_when_handed_out() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let die = Message {
        data: Some(any::pack(&DieRequest { force: true })),
        ..to_client(c.id, "system", "Die")
    };
    let die_id = env.engine.insert_message(die).await.unwrap();
    let other_id = env.insert_for(c.id, "system").await;
    env.tick();
    assert!(env.result(die_id).await.is_none());

    // Die still counts against the per-service limit inside the selection (protocol.md §9.2),
    // so two `system` tokens are needed to get both in one poll.
    let reply = env.poll(&c, cd_tokens(vec![], &[("system", 2)])).await;
    let got = ids_of(&reply.messages);
    assert_eq!(got.len(), 2);
    assert!(got.contains(&die_id) && got.contains(&other_id));
    let r = env.result(die_id).await.expect("Die is marked processed");
    assert!(!r.failed);
    assert!(
        env.result(other_id).await.is_none(),
        "other messages wait for an ack"
    );

    // Never handed out again, even after the lease.
    env.clock.advance(CLIENT_LEASE + Duration::from_secs(1));
    let again = env.poll(&c, cd(vec![])).await;
    assert_eq!(ids_of(&again.messages), vec![other_id]);
}

#[tokio::test]
async fn die_does_not_spend_tokens() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let (stream, _) = env
        .engine
        .open_stream(c.contact(cd_tokens(vec![], &[("system", 1)])))
        .await
        .unwrap();
    let die_id = env
        .engine
        .insert_message(to_client(c.id, "system", "Die"))
        .await
        .unwrap();
    env.tick();
    use fleetgate_types::contact::StreamSession;
    let got = tokio::time::timeout(LIVENESS, stream.next_messages())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ids_of(&got), vec![die_id]);
    // The one system token is still there for an ordinary message.
    let other = env.insert_for(c.id, "system").await;
    env.tick();
    let got = tokio::time::timeout(LIVENESS, stream.next_messages())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ids_of(&got), vec![other]);
    stream.close().await;
}

#[tokio::test]
async fn acks_and_errors_from_the_client_set_results() {
    let env = Env::new().await;
    let c = TestClient::new();
    let stranger = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    env.poll(&stranger, cd(vec![])).await;
    let acked = env.insert_for(c.id, "svc").await;
    let errored = env.insert_for(c.id, "svc").await;
    let foreign = env.insert_for(c.id, "svc").await;
    env.tick();
    assert_eq!(env.poll(&c, cd(vec![])).await.messages.len(), 3);

    // Another client cannot ack or fail this client's messages.
    env.poll(
        &stranger,
        cd(vec![ack(&[foreign]), msg_error(foreign, "nope")]),
    )
    .await;
    assert!(env.result(foreign).await.is_none());

    env.clock.advance(Duration::from_secs(5));
    let reply = env
        .poll(
            &c,
            cd(vec![ack(&[acked]), msg_error(errored, "service crashed")]),
        )
        .await;
    assert!(reply.messages.is_empty());
    let (_, r) = env.store.get_message_status(acked).await.unwrap().unwrap();
    let r = r.expect("acked");
    assert!(!r.failed);
    assert_eq!(r.processed_time.unwrap().seconds, T0 as i64 + 6);
    let r = env.result(errored).await.expect("failed by the client");
    assert!(r.failed);
    assert_eq!(r.failed_reason, "service crashed");
    assert!(env.result(foreign).await.is_none());

    // Completed messages are never re-sent; the unacked one is.
    env.clock.advance(CLIENT_LEASE);
    let again = env.poll(&c, cd(vec![])).await;
    assert_eq!(ids_of(&again.messages), vec![foreign]);

    // An ack naming an unknown ID does not fail the ack message itself.
    let unknown = fleetgate_types::MessageId::random();
    let a = ack(&[unknown]);
    let smid = a.source_message_id.clone();
    env.poll(&c, cd(vec![a])).await;
    let ack_id = client_msg_id(c.id, "system", &smid);
    assert!(env.result(ack_id).await.is_some_and(|r| !r.failed));
}

#[tokio::test]
async fn blacklisted_client_gets_only_a_rekey_request() {
    let env = Env::new().await;
    let old = TestClient::new();
    env.poll(&old, cd(vec![])).await;
    env.poll(&old, cd(vec![])).await; // now in the engine's client cache
    let queued = env.insert_for(old.id, "svc").await;
    env.store.blacklist_client(old.id).await.unwrap();
    env.tick();

    // The cache may hide the blacklist for up to 45 s (client-lifecycle.md §3); another server
    // (a fresh engine over the same store) sees it at once.
    let engine = env.fresh_engine();
    let reply = engine.poll(old.contact(cd(vec![]))).await.unwrap();
    assert_eq!(reply.messages.len(), 1, "only the RekeyRequest");
    let rekey = &reply.messages[0];
    assert_eq!(rekey.message_type, "RekeyRequest");
    assert_eq!(source_service(rekey), "system");
    assert_eq!(destination_service(rekey), "system");
    assert_eq!(destination_client(rekey).unwrap(), Some(old.id));
    assert_eq!(rekey.message_id.len(), 32);
    assert!(rekey.data.is_none());
    let rekey_id = ids_of(&reply.messages)[0];
    assert!(
        env.store
            .get_message_status(rekey_id)
            .await
            .unwrap()
            .is_some(),
        "stored"
    );
    assert!(
        env.result(queued).await.is_none(),
        "queued message stays pending"
    );

    // Every contact makes a fresh one; the queue stays untouched; messages from the client
    // are still ingested, marked as coming from a blacklisted source.
    let svc = TestService::new(Mode::Ok);
    engine
        .set_service("svc", fleetgate_engine::ServiceEntry::new(svc.clone(), 1))
        .unwrap();
    let reply = engine
        .poll(old.contact(cd(vec![from_client("svc", b"still")])))
        .await
        .unwrap();
    assert_eq!(reply.messages.len(), 1);
    assert_eq!(reply.messages[0].message_type, "RekeyRequest");
    assert_ne!(reply.messages[0].message_id, rekey.message_id);
    assert!(svc.seen.lock().unwrap()[0].is_blocklisted_source);

    // The client re-keys and acks under its new ID: accepted despite the other destination.
    let new = TestClient::new();
    engine
        .poll(new.contact(cd(vec![ack(&[rekey_id])])))
        .await
        .unwrap();
    let r = env.result(rekey_id).await.expect("rekey ack accepted");
    assert!(!r.failed);
    assert!(
        env.store.get_client_data(new.id).await.is_ok(),
        "new ID enrolled"
    );
    assert!(env.result(queued).await.is_none());
}
