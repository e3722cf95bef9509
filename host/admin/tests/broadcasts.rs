//! Broadcast RPCs (admin.md §2.11–2.13) and their effect on clients: created over gRPC, loaded
//! by the engine's refresh, delivered on a poll, stopped by `DisableBroadcasts`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fleetgate_pb::fleetspeak::server::*;
use fleetgate_pb::fleetspeak::{Address, Label};
use fleetgate_store::BROADCAST_UNLIMITED;
use fleetgate_types::BroadcastId;
use fleetgate_types::contact::ContactHandler;
use tonic::Code;

fn broadcast(id: &[u8], source: &str, label: &str) -> Broadcast {
    Broadcast {
        broadcast_id: id.to_vec(),
        source: Some(address(Vec::new(), source)),
        message_type: "Announce".into(),
        required_labels: vec![Label {
            service_name: "client".into(),
            label: label.into(),
        }],
        destination: Some(Address {
            client_id: Vec::new(),
            service_name: "dest".into(),
        }),
        ..Default::default()
    }
}

fn create(b: Broadcast, limit: u64) -> CreateBroadcastRequest {
    CreateBroadcastRequest {
        broadcast: Some(b),
        limit,
    }
}

async fn active(h: &Harness, service: &str) -> Vec<Broadcast> {
    let req = ListActiveBroadcastsRequest {
        service_name: service.into(),
    };
    let r = h.admin.clone().list_active_broadcasts(req).await.unwrap();
    r.into_inner().broadcasts
}

async fn announcements(h: &Harness, c: &TestClient) -> usize {
    let got = h.engine.poll(c.contact()).await.unwrap().messages;
    got.iter().filter(|m| m.message_type == "Announce").count()
}

#[tokio::test]
async fn create_list_disable() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let id = BroadcastId::random();
    admin
        .create_broadcast(create(broadcast(&id.to_vec(), "svc", "x"), 10))
        .await
        .unwrap();
    // An empty ID gets a random one.
    admin
        .create_broadcast(create(broadcast(&[], "other", "x"), 10))
        .await
        .unwrap();
    assert_eq!(active(&h, "").await.len(), 2);
    let mine = active(&h, "svc").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].broadcast_id, id.to_vec());
    assert_eq!(mine[0].destination.as_ref().unwrap().service_name, "dest");
    assert_eq!(mine[0].required_labels.len(), 1);

    // Empty lists and nil IDs change nothing; a bad ID fails before anything changes.
    admin
        .disable_broadcasts(DisableBroadcastsRequest::default())
        .await
        .unwrap();
    admin
        .disable_broadcasts(DisableBroadcastsRequest {
            broadcast_ids: vec![Vec::new()],
        })
        .await
        .unwrap();
    let bad = DisableBroadcastsRequest {
        broadcast_ids: vec![id.to_vec(), vec![1, 2, 3]],
    };
    code(admin.disable_broadcasts(bad).await, Code::InvalidArgument);
    assert_eq!(active(&h, "svc").await.len(), 1);

    admin
        .disable_broadcasts(DisableBroadcastsRequest {
            broadcast_ids: vec![id.to_vec(), BroadcastId::random().to_vec()],
        })
        .await
        .unwrap();
    assert!(active(&h, "svc").await.is_empty());
    assert_eq!(active(&h, "").await.len(), 1);
}

#[tokio::test]
async fn create_errors() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let none = CreateBroadcastRequest {
        broadcast: None,
        limit: 1,
    };
    let msg = code(admin.create_broadcast(none).await, Code::InvalidArgument);
    assert!(msg.contains("requires a broadcast"), "{msg}");

    let mut grouped = broadcast(&[], "svc", "x");
    grouped.group_name = "g".into();
    let msg = code(
        admin.create_broadcast(create(grouped, 1)).await,
        Code::Unimplemented,
    );
    assert!(msg.contains("not supported"), "{msg}");

    let mut sourceless = broadcast(&[], "svc", "x");
    sourceless.source = None;
    let msg = code(
        admin.create_broadcast(create(sourceless, 1)).await,
        Code::InvalidArgument,
    );
    assert!(msg.contains("Broadcast must have Source"), "{msg}");

    let bad_id = broadcast(&[1, 2, 3], "svc", "x");
    code(
        admin.create_broadcast(create(bad_id, 1)).await,
        Code::InvalidArgument,
    );
    assert!(active(&h, "").await.is_empty());
}

#[tokio::test]
async fn created_broadcast_reaches_labelled_clients_once() {
    let h = Harness::start().await;
    let yes = h.enrol(&["x"]).await;
    let no = h.enrol(&["y"]).await;
    let id = BroadcastId::random();
    h.admin
        .clone()
        .create_broadcast(create(
            broadcast(&id.to_vec(), "svc", "x"),
            BROADCAST_UNLIMITED,
        ))
        .await
        .unwrap();
    assert!(h.engine.refresh_broadcasts().await.unwrap());
    let got = h.engine.poll(yes.contact()).await.unwrap().messages;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].destination.as_ref().unwrap().service_name, "dest");
    assert_eq!(
        got[0].destination.as_ref().unwrap().client_id,
        yes.id.to_vec()
    );
    assert_eq!(announcements(&h, &yes).await, 0);
    assert_eq!(announcements(&h, &no).await, 0);

    // Disabled: a labelled newcomer gets nothing, before and after the next refresh.
    h.admin
        .clone()
        .disable_broadcasts(DisableBroadcastsRequest {
            broadcast_ids: vec![id.to_vec()],
        })
        .await
        .unwrap();
    let late = h.enrol(&[]).await;
    let late = TestClient {
        labels: vec!["x".into()],
        ..late
    };
    h.store
        .add_client_label(
            late.id,
            &Label {
                service_name: "client".into(),
                label: "x".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(announcements(&h, &late).await, 0);
    h.engine.refresh_broadcasts().await.unwrap();
    assert_eq!(announcements(&h, &late).await, 0);
}
