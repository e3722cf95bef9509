//! One contact end to end: enrolment, contact records, `required_label`, the validation and IDs
//! of client messages, the 100-message limit and shutdown (client-lifecycle.md §1, §2, §5, §7;
//! protocol.md §9.3).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use fleetgate_engine::{EngineConfig, ServiceEntry};
use fleetgate_pb::fleetspeak::Address;
use fleetgate_store::StoreError;
use fleetgate_types::contact::{ContactError, ContactHandler};
use fleetgate_types::message::address;
use fleetgate_types::{ClientId, MessageId};

fn client_labels(labels: &[fleetgate_pb::fleetspeak::Label]) -> BTreeSet<String> {
    labels
        .iter()
        .filter(|l| l.service_name == "client")
        .map(|l| l.label.clone())
        .collect()
}

#[tokio::test]
async fn first_poll_enrols_and_records_the_contact() {
    let env = Env::new().await;
    let c = TestClient::with_labels(&["linux", "amd64", "canary"]);
    assert!(
        env.store
            .get_client_data(c.id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    let mut first = cd(vec![]);
    first.sequencing_nonce = 42;
    let reply = env.poll(&c, first).await;
    assert!(reply.messages.is_empty());

    let data = env.store.get_client_data(c.id).await.unwrap();
    assert_eq!(data.key, c.key, "the presented key is stored");
    assert!(!data.blacklisted);
    assert_eq!(
        client_labels(&data.labels),
        ["amd64", "canary", "linux"].map(String::from).into()
    );
    assert!(data.labels.iter().all(|l| l.service_name == "client"));

    let contacts = env.store.list_client_contacts(c.id).await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].sent_nonce, reply.sequencing_nonce);
    assert_eq!(contacts[0].received_nonce, 42);
    assert_eq!(contacts[0].observed_address, c.address);
    assert_eq!(contacts[0].timestamp.unwrap().seconds, T0 as i64);

    // A later poll with other labels neither enrols again (that would fail on the existing row)
    // nor changes the stored labels: only ClientInfo does (client-lifecycle.md §11).
    env.clock.advance(Duration::from_secs(10));
    let mut again = c.clone();
    again.labels = vec!["windows".into()];
    let mut second = cd(vec![]);
    second.sequencing_nonce = reply.sequencing_nonce;
    let reply2 = env.poll(&again, second).await;
    let data2 = env.store.get_client_data(c.id).await.unwrap();
    assert_eq!(data2.labels.len(), data.labels.len());
    assert_eq!(client_labels(&data2.labels), client_labels(&data.labels));

    let contacts = env.store.list_client_contacts(c.id).await.unwrap();
    assert_eq!(contacts.len(), 2, "every poll records a contact");
    let latest = contacts
        .iter()
        .find(|k| k.sent_nonce == reply2.sequencing_nonce)
        .expect("the second contact is listed");
    assert_eq!(latest.received_nonce, reply.sequencing_nonce);
    assert_eq!(latest.timestamp.unwrap().seconds, T0 as i64 + 10);
    assert_eq!(env.store.list_clients(&[c.id]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_first_contacts_both_succeed() {
    // Fixed defect: the second of two racing first contacts failed on the existing client row.
    let env = Env::new().await;
    let c = TestClient::with_labels(&["a"]);
    let (a, b) = tokio::join!(
        env.engine.poll(c.contact(cd(vec![]))),
        env.engine
            .poll(c.contact(cd(vec![from_client("nowhere", b"x")])))
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(env.store.list_client_contacts(c.id).await.unwrap().len(), 2);
    assert!(
        env.result(client_msg_id(c.id, "nowhere", b"x"))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn required_label_is_checked_before_anything_is_written() {
    let env = Env::with_config(EngineConfig {
        required_label: Some("corp".into()),
        ..Default::default()
    })
    .await;
    let outsider = TestClient::with_labels(&["linux"]);
    let msg = from_client("svc", b"m1");
    let err = env
        .engine
        .poll(outsider.contact(cd(vec![msg])))
        .await
        .unwrap_err();
    assert!(matches!(err, ContactError::NotAuthorized(_)), "{err:?}");
    assert!(
        env.store
            .get_client_data(outsider.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        env.store
            .list_client_contacts(outsider.id)
            .await
            .unwrap()
            .is_empty()
    );
    let id = client_msg_id(outsider.id, "svc", b"m1");
    assert!(env.store.get_message_status(id).await.unwrap().is_none());

    // Streams are refused the same way.
    let err = env.engine.open_stream(outsider.contact(cd(vec![]))).await;
    assert!(matches!(err, Err(ContactError::NotAuthorized(_))));

    let member = TestClient::with_labels(&["linux", "corp"]);
    env.poll(&member, cd(vec![])).await;
    assert!(env.store.get_client_data(member.id).await.is_ok());
}

#[tokio::test]
async fn client_messages_get_server_ids_and_invalid_ones_are_dropped() {
    let env = Env::new().await;
    let svc = TestService::new(Mode::Ok);
    env.engine
        .set_service("svc", ServiceEntry::new(svc.clone(), 0))
        .unwrap();
    let c = TestClient::new();
    let other = ClientId::new([9; 8]);

    let mut good = from_client("svc", b"m1");
    // Whatever the client claims as its source ID is overwritten with the proven one.
    good.source.as_mut().unwrap().client_id = other.to_vec();
    good.message_id = vec![7; 32];
    good.creation_time = Some(prost_types::Timestamp {
        seconds: 5,
        nanos: 0,
    });
    let no_destination = fleetgate_pb::fleetspeak::Message {
        destination: None,
        ..from_client("svc", b"m2")
    };
    let to_other_client = fleetgate_pb::fleetspeak::Message {
        destination: Some(Address {
            client_id: other.to_vec(),
            service_name: "svc".into(),
        }),
        ..from_client("svc", b"m3")
    };
    let empty_source_service = fleetgate_pb::fleetspeak::Message {
        source: Some(address(None, "")),
        ..from_client("svc", b"m4")
    };
    let empty_smid = from_client("svc", b"");
    let msgs = vec![
        good,
        no_destination,
        to_other_client,
        empty_source_service,
        empty_smid,
    ];
    env.poll(&c, cd(msgs)).await;

    let id = client_msg_id(c.id, "svc", b"m1");
    let stored = env.store.get_messages(&[id], true).await.unwrap();
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!(
        m.message_id,
        id.to_vec(),
        "ID = SHA-256(client‖0‖service‖0‖smid)"
    );
    assert_eq!(m.source.as_ref().unwrap().client_id, c.id.to_vec());
    assert_eq!(m.creation_time.unwrap().seconds, T0 as i64);
    assert!(m.result.as_ref().is_some_and(|r| !r.failed));
    assert_eq!(svc.calls(), 1, "only the valid message reaches the service");
    assert_eq!(
        svc.seen.lock().unwrap()[0]
            .source
            .as_ref()
            .unwrap()
            .client_id,
        c.id.to_vec()
    );

    // None of the invalid ones was stored under any ID they could have got.
    for (svc_name, smid) in [("svc", &b"m2"[..]), ("svc", b"m3"), ("", b"m4")] {
        let id = client_msg_id(c.id, svc_name, smid);
        assert!(env.store.get_message_status(id).await.unwrap().is_none());
    }
    assert!(
        env.store
            .get_message_status(MessageId::from_bytes(&[7; 32]).unwrap())
            .await
            .unwrap()
            .is_none(),
        "the client's own message_id is not used"
    );
}

#[tokio::test]
async fn resent_messages_are_deduplicated() {
    let env = Env::new().await;
    let c = TestClient::new();
    // Unknown service: a permanent failure, which a re-send must not rewrite.
    let m = from_client("nowhere", b"again");
    env.poll(&c, cd(vec![m.clone()])).await;
    let id = client_msg_id(c.id, "nowhere", b"again");
    let first = env.store.get_message_status(id).await.unwrap().unwrap();

    env.clock.advance(Duration::from_secs(30));
    env.poll(&c, cd(vec![m.clone(), m])).await;
    let stored = env.store.get_existing_messages(&[id], false).await.unwrap();
    assert_eq!(stored.len(), 1, "one row per message ID");
    let second = env.store.get_message_status(id).await.unwrap().unwrap();
    assert_eq!(
        second, first,
        "creation time and result unchanged by the re-send"
    );
    assert_eq!(second.0.seconds, T0 as i64);
}

#[tokio::test]
async fn more_than_100_messages_is_invalid() {
    let env = Env::new().await;
    let c = TestClient::new();
    let msgs: Vec<_> = (0..101)
        .map(|i| from_client("svc", format!("m{i}").as_bytes()))
        .collect();
    let err = env.engine.poll(c.contact(cd(msgs))).await.unwrap_err();
    assert!(matches!(err, ContactError::Invalid(_)), "{err:?}");
    let id = client_msg_id(c.id, "svc", b"m0");
    assert!(env.store.get_message_status(id).await.unwrap().is_none());
    assert!(
        env.store
            .list_client_contacts(c.id)
            .await
            .unwrap()
            .is_empty()
    );

    // Exactly 100 is fine.
    let msgs: Vec<_> = (0..100)
        .map(|i| from_client("svc", format!("m{i}").as_bytes()))
        .collect();
    env.poll(&c, cd(msgs)).await;
    let ids: Vec<_> = (0..100)
        .map(|i| client_msg_id(c.id, "svc", format!("m{i}").as_bytes()))
        .collect();
    assert_eq!(
        env.store.get_messages(&ids, false).await.unwrap().len(),
        100
    );
}

#[tokio::test]
async fn shutdown_refuses_new_contacts() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let (stream, _) = env.engine.open_stream(c.contact(cd(vec![]))).await.unwrap();

    env.engine.begin_shutdown();
    assert!(env.engine.is_stopping());
    let err = env.engine.poll(c.contact(cd(vec![]))).await.unwrap_err();
    assert_eq!(err, ContactError::NotReady);
    let late = TestClient::new();
    let err = env.engine.poll(late.contact(cd(vec![]))).await.unwrap_err();
    assert_eq!(err, ContactError::NotReady);
    assert!(
        matches!(
            env.store.get_client_data(late.id).await,
            Err(StoreError::NotFound(_))
        ),
        "nobody is enrolled while stopping"
    );
    assert!(matches!(
        env.engine.open_stream(c.contact(cd(vec![]))).await,
        Err(ContactError::NotReady)
    ));
    use fleetgate_types::contact::StreamSession;
    // A stream that is already open keeps storing frames while it drains, so its last acks
    // spare the client a re-send.
    let frame = wcd(&cd(vec![from_client("svc", b"late")]), &[]);
    assert_eq!(stream.frame(frame).await, Ok(()));
}
