//! `fleetspeak.server.Admin` over a real socket: the normal path of every RPC and its errors
//! (admin.md §2). Broadcast RPCs are in `broadcasts.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use fleetgate_pb::fleetspeak::monitoring::ResourceUsageData;
use fleetgate_pb::fleetspeak::server::*;
use fleetgate_pb::fleetspeak::{EmptyMessage, Label};
use fleetgate_types::contact::{ContactHandler, StreamSession};
use fleetgate_types::time::to_timestamp;
use fleetgate_types::{ClientId, Clock, MessageId};
use tonic::Code;

fn ids(v: &[ClientId]) -> Vec<Vec<u8>> {
    v.iter().map(|c| c.to_vec()).collect()
}

#[tokio::test]
async fn insert_message_queues_for_the_client() {
    let h = Harness::start().await;
    let c = h.enrol(&[]).await;
    let mut m = to_client(c.id, "svc");
    let id = MessageId::random();
    m.message_id = id.to_vec();
    let created = prost_types::Timestamp {
        seconds: 1_600_000_000,
        nanos: 7,
    };
    m.creation_time = Some(created);
    h.admin.clone().insert_message(m.clone()).await.unwrap();
    // Re-inserting the same ID changes nothing.
    h.admin.clone().insert_message(m).await.unwrap();

    let mut admin = h.admin.clone();
    let count = admin.get_pending_message_count(GetPendingMessageCountRequest {
        client_ids: ids(&[c.id]),
    });
    assert_eq!(count.await.unwrap().into_inner().count, 1);
    let status = admin.get_message_status(GetMessageStatusRequest {
        message_id: id.to_vec(),
    });
    let status = status.await.unwrap().into_inner();
    assert_eq!(
        status.creation_time,
        Some(created),
        "the caller's creation time is kept"
    );
    assert_eq!(status.result, None);

    h.tick();
    let got = h.engine.poll(c.contact()).await.unwrap().messages;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, id.to_vec());
    assert_eq!(got[0].data.as_ref().unwrap().value, b"payload");
}

#[tokio::test]
async fn insert_message_keeps_a_callers_result() {
    let h = Harness::start().await;
    let c = h.enrol(&[]).await;
    let mut admin = h.admin.clone();
    let result = fleetgate_pb::fleetspeak::MessageResult {
        processed_time: Some(prost_types::Timestamp {
            seconds: 1_600_000_100,
            nanos: 0,
        }),
        failed: true,
        failed_reason: "done elsewhere".into(),
    };
    let (to_client_id, to_server_id) = (MessageId::random(), MessageId::random());
    let mut m = to_client(c.id, "svc");
    m.message_id = to_client_id.to_vec();
    m.result = Some(result.clone());
    admin.insert_message(m).await.unwrap();
    let mut m = to_client(c.id, "svc");
    m.destination.as_mut().unwrap().client_id.clear();
    m.message_id = to_server_id.to_vec();
    m.result = Some(result.clone());
    admin.insert_message(m).await.unwrap();

    for id in [to_client_id, to_server_id] {
        let status = admin.get_message_status(GetMessageStatusRequest {
            message_id: id.to_vec(),
        });
        let status = status.await.unwrap().into_inner();
        assert_eq!(
            status.result.as_ref(),
            Some(&result),
            "{id}: stored finished"
        );
    }
    let count = admin.get_pending_message_count(GetPendingMessageCountRequest {
        client_ids: ids(&[c.id]),
    });
    assert_eq!(
        count.await.unwrap().into_inner().count,
        0,
        "nothing to deliver"
    );
    h.tick();
    assert!(
        h.engine
            .poll(c.contact())
            .await
            .unwrap()
            .messages
            .is_empty()
    );
}

#[tokio::test]
async fn insert_message_wakes_the_stream() {
    let h = Harness::start().await;
    let c = h.enrol(&[]).await;
    let (stream, _) = h.engine.open_stream(c.contact()).await.unwrap();
    h.admin
        .clone()
        .insert_message(to_client(c.id, "svc"))
        .await
        .unwrap();
    h.tick();
    let pushed = tokio::time::timeout(Duration::from_secs(2), stream.next_messages())
        .await
        .expect("the insert wakes the stream")
        .unwrap()
        .unwrap();
    assert_eq!(pushed.len(), 1);
    stream.close().await;
}

#[tokio::test]
async fn insert_message_errors() {
    let h = Harness::start().await;
    let c = h.enrol(&[]).await;
    let mut admin = h.admin.clone();

    let mut m = to_client(c.id, "svc");
    m.destination = None;
    let msg = code(admin.insert_message(m).await, Code::InvalidArgument);
    assert_eq!(msg, "message must have Destination");

    let mut m = to_client(c.id, "svc");
    m.source.as_mut().unwrap().service_name.clear();
    let msg = code(admin.insert_message(m).await, Code::InvalidArgument);
    assert_eq!(msg, "message must have Source");

    let mut m = to_client(c.id, "svc");
    m.destination.as_mut().unwrap().client_id = vec![1, 2, 3];
    let msg = code(admin.insert_message(m).await, Code::InvalidArgument);
    assert!(
        msg.starts_with("error parsing destination.client_id (010203)"),
        "{msg}"
    );

    let unknown = ClientId::new([9; 8]);
    let msg = code(
        admin.insert_message(to_client(unknown, "svc")).await,
        Code::NotFound,
    );
    assert!(
        msg.starts_with("expected 1 destination client result, got 0"),
        "{msg}"
    );

    let mut m = to_client(c.id, "svc");
    m.data.as_mut().unwrap().value = vec![0; 2 * 1024 * 1024];
    let msg = code(admin.insert_message(m).await, Code::InvalidArgument);
    assert!(
        msg.contains("which exceeds the 2097152-byte limit"),
        "{msg}"
    );

    let mut m = to_client(c.id, "svc");
    m.message_id = vec![1; 5];
    code(admin.insert_message(m).await, Code::InvalidArgument);

    let count = admin.get_pending_message_count(GetPendingMessageCountRequest {
        client_ids: ids(&[c.id]),
    });
    assert_eq!(count.await.unwrap().into_inner().count, 0, "nothing stored");
}

#[tokio::test]
async fn pending_messages_views_and_delete() {
    let h = Harness::start().await;
    let c = h.enrol(&[]).await;
    let mut admin = h.admin.clone();
    for _ in 0..3 {
        admin.insert_message(to_client(c.id, "svc")).await.unwrap();
    }
    let req = |offset, limit, want_data| GetPendingMessagesRequest {
        client_ids: ids(&[c.id]),
        offset,
        limit,
        want_data,
    };
    let all = admin.get_pending_messages(req(0, 0, true)).await.unwrap();
    let all = all.into_inner().messages;
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|m| m.data.is_some()));
    assert!(
        all.windows(2).all(|w| w[0].message_id < w[1].message_id),
        "by ID"
    );
    let page = admin.get_pending_messages(req(1, 1, false)).await.unwrap();
    let page = page.into_inner().messages;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].message_id, all[1].message_id);
    assert!(page[0].data.is_none());
    let msg = code(
        admin.get_pending_messages(req(1, 0, false)).await,
        Code::InvalidArgument,
    );
    assert!(msg.contains("if offset is provided, a limit must be provided as well"));

    // Empty ID lists match nothing and are no errors.
    let none = admin.get_pending_messages(GetPendingMessagesRequest::default());
    assert!(none.await.unwrap().into_inner().messages.is_empty());
    let none = admin.get_pending_message_count(GetPendingMessageCountRequest::default());
    assert_eq!(none.await.unwrap().into_inner().count, 0);
    admin
        .delete_pending_messages(DeletePendingMessagesRequest::default())
        .await
        .unwrap();
    let bad = DeletePendingMessagesRequest {
        client_ids: vec![vec![1]],
    };
    code(
        admin.delete_pending_messages(bad).await,
        Code::InvalidArgument,
    );

    admin
        .delete_pending_messages(DeletePendingMessagesRequest {
            client_ids: ids(&[c.id]),
        })
        .await
        .unwrap();
    let count = admin.get_pending_message_count(GetPendingMessageCountRequest {
        client_ids: ids(&[c.id]),
    });
    assert_eq!(count.await.unwrap().into_inner().count, 0);
    let status = admin.get_message_status(GetMessageStatusRequest {
        message_id: all[0].message_id.clone(),
    });
    let result = status.await.unwrap().into_inner().result.unwrap();
    assert!(result.failed);
    assert_eq!(result.failed_reason, "Removed by admin action.");
}

#[tokio::test]
async fn message_status_edge_cases() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let unknown = admin.get_message_status(GetMessageStatusRequest {
        message_id: MessageId::random().to_vec(),
    });
    assert_eq!(
        unknown.await.unwrap().into_inner(),
        GetMessageStatusResponse::default()
    );
    let empty = admin.get_message_status(GetMessageStatusRequest::default());
    assert_eq!(
        empty.await.unwrap().into_inner(),
        GetMessageStatusResponse::default()
    );
    let bad = admin.get_message_status(GetMessageStatusRequest {
        message_id: vec![1; 8],
    });
    code(bad.await, Code::InvalidArgument);
}

#[tokio::test]
async fn clients_contacts_and_blacklisting() {
    let h = Harness::start().await;
    let a = h.enrol(&["alpha"]).await;
    let b = h.enrol(&[]).await;
    let mut admin = h.admin.clone();

    let one = admin.list_clients(ListClientsRequest {
        client_ids: ids(&[a.id, ClientId::new([7; 8])]),
    });
    let one = one.await.unwrap().into_inner().clients;
    assert_eq!(one.len(), 1, "unknown IDs are omitted");
    assert_eq!(
        one[0].labels,
        vec![Label {
            service_name: "client".into(),
            label: "alpha".into()
        }],
        "labels come with listed IDs"
    );
    let all = admin.list_clients(ListClientsRequest::default());
    assert_eq!(all.await.unwrap().into_inner().clients.len(), 2);
    let nil = admin.list_clients(ListClientsRequest {
        client_ids: vec![Vec::new()],
    });
    assert!(
        nil.await.unwrap().into_inner().clients.is_empty(),
        "the nil ID matches nothing"
    );
    let bad = admin.list_clients(ListClientsRequest {
        client_ids: vec![vec![1; 9]],
    });
    let msg = code(bad.await, Code::InvalidArgument);
    assert!(msg.starts_with("unable to parse id [0]"), "{msg}");

    let mut stream = admin
        .stream_client_ids(StreamClientIdsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        seen.push(r.client_id);
    }
    seen.sort();
    let mut want = ids(&[a.id, b.id]);
    want.sort();
    assert_eq!(seen, want);

    let contacts = admin.list_client_contacts(ListClientContactsRequest {
        client_id: a.id.to_vec(),
    });
    let contacts = contacts.await.unwrap().into_inner().contacts;
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].observed_address, "192.0.2.9:4242");
    let mut s = admin
        .stream_client_contacts(StreamClientContactsRequest {
            client_id: a.id.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(s.message().await.unwrap().is_some());
    assert!(s.message().await.unwrap().is_none());
    let nil = admin.list_client_contacts(ListClientContactsRequest::default());
    assert!(nil.await.unwrap().into_inner().contacts.is_empty());
    let bad = admin.list_client_contacts(ListClientContactsRequest { client_id: vec![1] });
    code(bad.await, Code::InvalidArgument);
    let bad = admin.stream_client_contacts(StreamClientContactsRequest { client_id: vec![1] });
    code(bad.await, Code::InvalidArgument);

    admin
        .blacklist_client(BlacklistClientRequest {
            client_id: b.id.to_vec(),
        })
        .await
        .unwrap();
    admin
        .blacklist_client(BlacklistClientRequest::default())
        .await
        .unwrap();
    let bad = admin.blacklist_client(BlacklistClientRequest {
        client_id: vec![1, 2],
    });
    code(bad.await, Code::InvalidArgument);
    let listed = admin.list_clients(ListClientsRequest {
        client_ids: ids(&[b.id]),
    });
    assert!(listed.await.unwrap().into_inner().clients[0].blacklisted);
    let mut s = admin
        .stream_client_ids(StreamClientIdsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while s.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 1, "blacklisted clients are left out unless asked for");
}

#[tokio::test]
async fn files_and_keep_alive() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    admin.keep_alive(EmptyMessage {}).await.unwrap();
    let file = StoreFileRequest {
        service_name: "svc".into(),
        file_name: "f.bin".into(),
        data: b"contents".to_vec(),
    };
    admin.store_file(file.clone()).await.unwrap();
    let read = h.engine.read_file("svc", "f.bin").await.unwrap().unwrap();
    assert_eq!(read.data, b"contents");
    for (svc, name) in [("", "f"), ("svc", "")] {
        let bad = StoreFileRequest {
            service_name: svc.into(),
            file_name: name.into(),
            data: Vec::new(),
        };
        let msg = code(admin.store_file(bad).await, Code::InvalidArgument);
        assert_eq!(msg, "file must have service_name and file_name");
        let bad = DeleteFileRequest {
            service_name: svc.into(),
            file_name: name.into(),
        };
        code(admin.delete_file(bad).await, Code::InvalidArgument);
    }
    let del = DeleteFileRequest {
        service_name: "svc".into(),
        file_name: "f.bin".into(),
    };
    admin.delete_file(del.clone()).await.unwrap();
    admin.delete_file(del).await.unwrap();
    assert!(h.engine.read_file("svc", "f.bin").await.unwrap().is_none());
}

#[tokio::test]
async fn resource_usage_records() {
    let h = Harness::start().await;
    let c = h.enrol(&[]).await;
    let rud = ResourceUsageData {
        scope: "svc".into(),
        pid: 42,
        process_start_time: Some(to_timestamp(h.clock.now())),
        data_timestamp: Some(to_timestamp(h.clock.now())),
        ..Default::default()
    };
    h.store
        .record_resource_usage_data(c.id, &rud)
        .await
        .unwrap();
    let at = |s: u64| {
        Some(prost_types::Timestamp {
            seconds: s as i64,
            nanos: 0,
        })
    };
    let req = |id: Vec<u8>, start, end| FetchClientResourceUsageRecordsRequest {
        client_id: id,
        start_timestamp: start,
        end_timestamp: end,
    };
    let mut admin = h.admin.clone();
    let got =
        admin.fetch_client_resource_usage_records(req(c.id.to_vec(), at(T0 - 10), at(T0 + 10)));
    let got = got.await.unwrap().into_inner().records;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].pid, 42);
    let later =
        admin.fetch_client_resource_usage_records(req(c.id.to_vec(), at(T0 + 1), at(T0 + 10)));
    assert!(later.await.unwrap().into_inner().records.is_empty());

    let msg = code(
        admin
            .fetch_client_resource_usage_records(req(c.id.to_vec(), at(T0 + 10), at(T0)))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        msg,
        "timerange is invalid: start timestamp is after end timestamp"
    );
    code(
        admin
            .fetch_client_resource_usage_records(req(c.id.to_vec(), None, at(T0)))
            .await,
        Code::InvalidArgument,
    );
    code(
        admin
            .fetch_client_resource_usage_records(req(vec![1; 3], at(T0), at(T0)))
            .await,
        Code::InvalidArgument,
    );
    let nil = admin.fetch_client_resource_usage_records(req(Vec::new(), at(T0 - 10), at(T0 + 10)));
    assert!(nil.await.unwrap().into_inner().records.is_empty());
}
