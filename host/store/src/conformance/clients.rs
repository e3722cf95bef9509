//! Client store checks 22–39.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::pb::fleetspeak::Label;
use fleetgate_types::pb::fleetspeak::server::Client;
use fleetgate_types::{ClientId, Clock, FakeClock};

use super::{Case, client, mid, ok, to_server, ts};
use crate::Store;
use crate::api::{ClientData, ContactRecord};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "add_clients",
            checks: "22-23",
            run: |s, c| Box::pin(add_clients(s, c)),
        },
        Case {
            name: "client_store",
            checks: "24-31",
            run: |s, c| Box::pin(client_store(s, c)),
        },
        Case {
            name: "list_clients",
            checks: "32",
            run: |s, c| Box::pin(list_clients(s, c)),
        },
        Case {
            name: "stream_client_ids",
            checks: "33-35",
            run: |s, c| Box::pin(stream_client_ids(s, c)),
        },
    ]
}

const KEY: &[u8] = b"A binary client key \x00\xff\x01\xfe";

fn label(service: &str, l: &str) -> Label {
    Label {
        service_name: service.into(),
        label: l.into(),
    }
}

fn sorted(mut l: Vec<Label>) -> Vec<Label> {
    l.sort_by(|a, b| (&a.service_name, &a.label).cmp(&(&b.service_name, &b.label)));
    l
}

async fn add_clients(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1_700_000_000);
    // 22
    ok(
        "add_client",
        s.add_client(
            client(1),
            &ClientData {
                key: KEY.to_vec(),
                ..Default::default()
            },
        )
        .await,
    );
    let want = ClientData {
        key: KEY.to_vec(),
        labels: vec![],
        blacklisted: false,
    };
    assert_eq!(
        ok("get_client_data", s.get_client_data(client(1)).await),
        want
    );
    // 23
    let data = ClientData {
        key: KEY.to_vec(),
        labels: vec![],
        blacklisted: true,
    };
    ok("add_client", s.add_client(client(2), &data).await);
    assert_eq!(
        ok("get_client_data", s.get_client_data(client(2)).await),
        data
    );
    // A duplicate id is an error.
    assert!(s.add_client(client(1), &data).await.is_err());
}

/// Client data with labels in a stable order.
async fn data(s: &dyn Store, id: ClientId) -> ClientData {
    let mut d = ok("get_client_data", s.get_client_data(id).await);
    d.labels = sorted(d.labels);
    d
}

async fn client_store(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(84);
    let two = client_labels(&s).await;
    client_contacts(&s, two).await;
}

/// Checks 24–27; returns the labels left.
async fn client_labels(s: &Arc<dyn Store>) -> Vec<Label> {
    let id = client(1);
    // 24
    assert!(s.get_client_data(id).await.is_err_and(|e| e.is_not_found()));
    // 25
    let labels = vec![
        label("system", "Windows"),
        label("system", "client-version-0.01"),
    ];
    ok(
        "add_client",
        s.add_client(
            id,
            &ClientData {
                key: KEY.to_vec(),
                labels: labels.clone(),
                blacklisted: false,
            },
        )
        .await,
    );
    assert_eq!(
        data(&**s, id).await,
        ClientData {
            key: KEY.to_vec(),
            labels: sorted(labels),
            blacklisted: false
        }
    );
    // 26
    ok(
        "add_client_label",
        s.add_client_label(id, &label("system", "new label")).await,
    );
    assert_eq!(data(&**s, id).await.labels.len(), 3);
    assert!(
        s.add_client_label(id, &label("system", "new label"))
            .await
            .is_err()
    );
    // 27
    ok(
        "remove_client_label",
        s.remove_client_label(id, &label("system", "client-version-0.01"))
            .await,
    );
    let two = sorted(vec![
        label("system", "Windows"),
        label("system", "new label"),
    ]);
    assert_eq!(data(&**s, id).await.labels, two);
    ok(
        "remove missing label",
        s.remove_client_label(id, &label("system", "nope")).await,
    );
    two
}

/// Checks 28–31 on the client of [`client_labels`].
async fn client_contacts(s: &Arc<dyn Store>, two: Vec<Label>) {
    let id = client(1);
    // 28
    let long_addr = "[ABCD:ABCD:ABCD:ABCD:ABCD:ABCD:192.168.123.123]:65535";
    let rec = ContactRecord {
        client_id: Some(id),
        sent_nonce: 42,
        received_nonce: 54,
        address: long_addr.into(),
        client_clock: ts(21, 0),
        streaming_to: "fs.servers.somewhere.com".into(),
    };
    let contact = ok("record_client_contact", s.record_client_contact(&rec).await);
    let mut m = to_server(
        mid("01234567890123456789012345678901"),
        id,
        "TestServiceName",
        42,
    );
    m.source_message_id = b"01234567".to_vec();
    ok("store_messages", s.store_messages(&[m], None).await);
    let link = [mid("01234567890123456789012345678901")];
    ok(
        "link_messages_to_contact",
        s.link_messages_to_contact(contact, &link).await,
    );
    assert!(
        s.link_messages_to_contact(contact, &link).await.is_err(),
        "a duplicate link is an error"
    );
    // 29 (and labels also when listing by id: the original MySQL store's bug is not copied)
    let want = Client {
        client_id: id.to_vec(),
        labels: two.clone(),
        last_contact_time: ts(84, 0),
        last_contact_address: long_addr.into(),
        last_clock: ts(21, 0),
        blacklisted: false,
        last_contact_streaming_to: "fs.servers.somewhere.com".into(),
    };
    for ids in [vec![], vec![id]] {
        let mut got = ok("list_clients", s.list_clients(&ids).await);
        assert_eq!(got.len(), 1);
        got[0].labels = sorted(std::mem::take(&mut got[0].labels));
        assert_eq!(got[0], want);
    }
    // 30
    let contacts = ok("list_client_contacts", s.list_client_contacts(id).await);
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        (contacts[0].sent_nonce, contacts[0].received_nonce),
        (42, 54)
    );
    assert_eq!(
        (contacts[0].observed_address.as_str(), contacts[0].timestamp),
        (long_addr, ts(84, 0))
    );
    // 31
    ok("blacklist_client", s.blacklist_client(id).await);
    assert_eq!(
        data(&**s, id).await,
        ClientData {
            key: KEY.to_vec(),
            labels: two,
            blacklisted: true
        }
    );
    ok("blacklist unknown", s.blacklist_client(client(9)).await);
    // A poll (no stream, no clock) clears streaming_to and the clock.
    let poll = ContactRecord {
        client_id: Some(id),
        address: "1.2.3.4:5".into(),
        ..Default::default()
    };
    ok(
        "record_client_contact",
        s.record_client_contact(&poll).await,
    );
    let got = ok("list_clients", s.list_clients(&[id]).await);
    assert_eq!(
        (got[0].last_clock, got[0].last_contact_streaming_to.as_str()),
        (None, "")
    );
    let unknown = ContactRecord {
        client_id: Some(client(9)),
        ..Default::default()
    };
    assert!(
        s.record_client_contact(&unknown).await.is_err(),
        "contact of an unknown client"
    );
}

async fn list_clients(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1_700_000_000);
    for n in 1..=3 {
        super::messages::add_client(&*s, n).await;
    }
    ok("blacklist_client", s.blacklist_client(client(3)).await);
    // 32
    for (ids, want, want_black) in [
        (vec![], vec![1, 2, 3], vec![3]),
        (vec![client(1)], vec![1], vec![]),
        (vec![client(1), client(2)], vec![1, 2], vec![]),
    ] {
        let got = ok("list_clients", s.list_clients(&ids).await);
        assert!(got.iter().all(|c| c.last_contact_time.is_some()));
        let set = |f: &dyn Fn(&Client) -> bool| -> BTreeSet<Vec<u8>> {
            got.iter()
                .filter(|c| f(c))
                .map(|c| c.client_id.clone())
                .collect()
        };
        let ids_of = |v: Vec<u8>| -> BTreeSet<Vec<u8>> {
            v.into_iter().map(|n| client(n).to_vec()).collect()
        };
        assert_eq!(set(&|_| true), ids_of(want));
        assert_eq!(set(&|c| c.blacklisted), ids_of(want_black));
    }
}

async fn stream_client_ids(s: Arc<dyn Store>, clock: Arc<FakeClock>) {
    clock.set_seconds(1_700_000_000);
    let mut times = Vec::new();
    for (i, n) in [1u8, 2, 3].into_iter().enumerate() {
        times.push(clock.now());
        // Real time passes between taking the timestamp and the insert.
        clock.advance(Duration::from_micros(1));
        let data = ClientData {
            key: b"test key".to_vec(),
            labels: vec![],
            blacklisted: i % 2 == 1,
        };
        ok("add_client", s.add_client(client(n), &data).await);
        clock.advance(Duration::from_secs(1));
    }
    let ids = |v: Vec<ClientId>| -> BTreeSet<ClientId> { v.into_iter().collect() };
    let all: BTreeSet<ClientId> = [1, 2, 3].map(client).into();
    // 33
    assert_eq!(
        ids(ok("stream all", s.stream_client_ids(true, None).await)),
        all
    );
    // 34
    assert_eq!(
        ids(ok(
            "stream not blacklisted",
            s.stream_client_ids(false, None).await
        )),
        [1, 3].map(client).into()
    );
    // 35
    let after = ok(
        "stream after",
        s.stream_client_ids(true, Some(times[1])).await,
    );
    assert_eq!(ids(after), [2, 3].map(client).into());
}
