//! `fleetgate.admin.v1.FleetgateAdmin`: batched inserts, purging, plugin listing and reload.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use fleetgate_admin::{PluginControl, PluginStatus};
use fleetgate_pb::fleetgate::admin::v1::*;
use fleetgate_pb::fleetspeak::server::{GetMessageStatusRequest, GetPendingMessageCountRequest};
use fleetgate_types::contact::{ContactHandler, StreamSession};
use fleetgate_types::{ClientId, MessageId};
use tonic::Code;

async fn pending(h: &Harness, clients: &[ClientId]) -> u64 {
    let req = GetPendingMessageCountRequest {
        client_ids: clients.iter().map(|c| c.to_vec()).collect(),
    };
    let r = h
        .admin
        .clone()
        .get_pending_message_count(req)
        .await
        .unwrap();
    r.into_inner().count
}

#[tokio::test]
async fn insert_messages_stores_a_batch_and_wakes_streams() {
    let h = Harness::start().await;
    let a = h.enrol(&[]).await;
    let b = h.enrol(&[]).await;
    let (stream, _) = h.engine.open_stream(b.contact()).await.unwrap();
    let given = MessageId::random();
    let mut first = to_client(a.id, "svc");
    first.message_id = given.to_vec();
    let mut to_server = to_client(a.id, "backend");
    to_server.destination.as_mut().unwrap().client_id.clear();
    let req = InsertMessagesRequest {
        messages: vec![
            first,
            to_client(a.id, "svc"),
            to_client(b.id, "svc"),
            to_server,
        ],
    };
    let ids = h
        .ext
        .clone()
        .insert_messages(req)
        .await
        .unwrap()
        .into_inner()
        .message_ids;
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], given.to_vec(), "a caller's ID is kept");
    assert!(ids.iter().all(|i| i.len() == 32));
    assert_eq!(pending(&h, &[a.id]).await, 2);
    assert_eq!(pending(&h, &[b.id]).await, 1);
    let mut admin = h.admin.clone();
    let req = GetMessageStatusRequest {
        message_id: ids[3].clone(),
    };
    let status = admin.get_message_status(req).await.unwrap().into_inner();
    assert!(
        status.creation_time.is_some() && status.result.is_none(),
        "queued for the backlog"
    );

    h.tick();
    let pushed = tokio::time::timeout(Duration::from_secs(2), stream.next_messages())
        .await
        .expect("the batch wakes the stream")
        .unwrap()
        .unwrap();
    assert_eq!(pushed.len(), 1);
    stream.close().await;

    let mut ext = h.ext.clone();
    let empty = ext.insert_messages(InsertMessagesRequest::default()).await;
    assert!(empty.unwrap().into_inner().message_ids.is_empty());
}

#[tokio::test]
async fn insert_messages_is_all_or_nothing() {
    let h = Harness::start().await;
    let a = h.enrol(&[]).await;
    let unknown = ClientId::new([3; 8]);
    let req = InsertMessagesRequest {
        messages: vec![to_client(a.id, "svc"), to_client(unknown, "svc")],
    };
    let msg = code(h.ext.clone().insert_messages(req).await, Code::NotFound);
    assert!(msg.contains(&unknown.to_string()), "{msg}");

    let mut sourceless = to_client(a.id, "svc");
    sourceless.source = None;
    let req = InsertMessagesRequest {
        messages: vec![to_client(a.id, "svc"), sourceless],
    };
    let msg = code(
        h.ext.clone().insert_messages(req).await,
        Code::InvalidArgument,
    );
    assert_eq!(msg, "message 1: message must have Source");

    let mut big = to_client(a.id, "svc");
    big.data.as_mut().unwrap().value = vec![0; 2 * 1024 * 1024 + 1];
    let req = InsertMessagesRequest {
        messages: vec![to_client(a.id, "svc"), big],
    };
    code(
        h.ext.clone().insert_messages(req).await,
        Code::InvalidArgument,
    );
    assert_eq!(pending(&h, &[a.id]).await, 0);
}

#[tokio::test]
async fn purge_pending_messages_filters() {
    let h = Harness::start().await;
    let a = h.enrol(&[]).await;
    let b = h.enrol(&[]).await;
    let mut old = to_client(a.id, "svc");
    old.creation_time = Some(prost_types::Timestamp {
        seconds: (T0 - 3600) as i64,
        nanos: 0,
    });
    let mut other_type = to_client(b.id, "svc");
    other_type.message_type = "Other".into();
    let req = InsertMessagesRequest {
        messages: vec![
            old,
            to_client(a.id, "svc"),
            to_client(a.id, "x"),
            other_type,
        ],
    };
    h.ext.clone().insert_messages(req).await.unwrap();
    let mut ext = h.ext.clone();
    let purge =
        |clients: &[ClientId], svc: &str, ty: &str, age: Option<i64>| PurgePendingMessagesRequest {
            client_ids: clients.iter().map(|c| c.to_vec()).collect(),
            service_name: svc.into(),
            message_type: ty.into(),
            older_than: age.map(|s| prost_types::Duration {
                seconds: s,
                nanos: 0,
            }),
        };
    let n = |r: tonic::Response<PurgePendingMessagesResponse>| r.into_inner().purged;

    // Only nil IDs match nothing (not "every client").
    let nil = PurgePendingMessagesRequest {
        client_ids: vec![Vec::new()],
        ..Default::default()
    };
    assert_eq!(n(ext.purge_pending_messages(nil).await.unwrap()), 0);
    assert_eq!(
        n(ext
            .purge_pending_messages(purge(&[a.id], "", "", Some(60)))
            .await
            .unwrap()),
        1
    );
    assert_eq!(
        n(ext
            .purge_pending_messages(purge(&[], "", "Other", None))
            .await
            .unwrap()),
        1
    );
    assert_eq!(pending(&h, &[b.id]).await, 0);
    assert_eq!(
        n(ext
            .purge_pending_messages(purge(&[a.id], "x", "", None))
            .await
            .unwrap()),
        1
    );
    assert_eq!(pending(&h, &[a.id]).await, 1);
    assert_eq!(
        n(ext
            .purge_pending_messages(purge(&[], "", "", None))
            .await
            .unwrap()),
        1
    );

    code(
        ext.purge_pending_messages(purge(&[], "", "", Some(-1)))
            .await,
        Code::InvalidArgument,
    );
    let bad = PurgePendingMessagesRequest {
        client_ids: vec![vec![1; 4]],
        ..Default::default()
    };
    code(ext.purge_pending_messages(bad).await, Code::InvalidArgument);
}

#[tokio::test]
async fn plugin_rpcs_without_a_runtime_are_unimplemented() {
    let h = Harness::start().await;
    code(
        h.ext.clone().list_plugins(ListPluginsRequest {}).await,
        Code::Unimplemented,
    );
    code(
        h.ext.clone().reload_plugins(ReloadPluginsRequest {}).await,
        Code::Unimplemented,
    );
}

/// A plugin runtime stand-in: one plugin, and a reload that fails when told to.
struct FakePlugins {
    fail: Mutex<Option<String>>,
    generation: Mutex<u64>,
}

impl FakePlugins {
    fn status(&self) -> PluginStatus {
        PluginStatus {
            service: "echo".into(),
            factory: "wasm".into(),
            digest: "sha256:00".into(),
            generation: *self.generation.lock().unwrap(),
            loaded_at: Some(UNIX_EPOCH + Duration::from_secs(T0)),
            calls: 3,
            p50_ms: 1.5,
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl PluginControl for FakePlugins {
    async fn list(&self) -> Vec<PluginStatus> {
        vec![self.status()]
    }

    async fn reload(&self) -> Result<Vec<PluginStatus>, String> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        *self.generation.lock().unwrap() += 1;
        Ok(vec![self.status()])
    }

    /// Accepts components starting with the wasm magic for service `echo`.
    async fn check_deployment(
        &self,
        service: &str,
        wasm: &[u8],
        config: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, String> {
        if service != "echo" {
            return Err(format!("unknown service {service:?}"));
        }
        if !wasm.starts_with(b"\0asm") {
            return Err("not a component".into());
        }
        Ok(config.unwrap_or_default())
    }
}

#[tokio::test]
async fn plugin_list_and_reload() {
    let plugins = Arc::new(FakePlugins {
        fail: Mutex::new(None),
        generation: Mutex::new(1),
    });
    let h = Harness::with_plugins(Some(plugins.clone())).await;
    let mut ext = h.ext.clone();
    let listed = ext
        .list_plugins(ListPluginsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.plugins.len(), 1);
    let p = &listed.plugins[0];
    assert_eq!((p.service.as_str(), p.generation, p.calls), ("echo", 1, 3));
    assert_eq!(p.loaded_at.unwrap().seconds, T0 as i64);

    let ok = ext
        .reload_plugins(ReloadPluginsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(ok.ok && ok.error.is_empty());
    assert_eq!(ok.plugins[0].generation, 2);

    *plugins.fail.lock().unwrap() = Some("echo: bad component".into());
    let failed = ext
        .reload_plugins(ReloadPluginsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!failed.ok);
    assert_eq!(failed.error, "echo: bad component");
    assert_eq!(
        failed.plugins[0].generation, 2,
        "the running set is reported"
    );
    h.stop().await;
}

/// `TraceMessage`: a malformed ID is INVALID_ARGUMENT and an unknown one NOT_FOUND, each naming
/// the ID; a stored message answers its steps, oldest first, with the server's name; a stored
/// message without steps answers none.
#[tokio::test]
async fn trace_message_answers_steps_and_names_bad_ids() {
    let h = Harness::start().await;
    let mut ext = h.ext.clone();
    let e = ext
        .trace_message(TraceMessageRequest {
            message_id: vec![0xab; 5],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("(given ababababab)"),
        "{}",
        e.message()
    );
    let unknown = MessageId::random();
    let e = ext
        .trace_message(TraceMessageRequest {
            message_id: unknown.to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains(&unknown.to_hex()), "{}", e.message());

    // Steps written by any server are read back from the shared store.
    let a = h.enrol(&[]).await;
    let ids = ext
        .insert_messages(InsertMessagesRequest {
            messages: vec![to_client(a.id, "svc")],
        })
        .await
        .unwrap()
        .into_inner()
        .message_ids;
    let id = MessageId::from_bytes(&ids[0]).unwrap();
    let at = |s| UNIX_EPOCH + Duration::from_secs(s);
    let step = |t, server: &str, step: &str| fleetgate_store::TraceRecord {
        message_id: id,
        time: at(t),
        server: server.into(),
        step: step.into(),
        detail: format!("{step} on {server}"),
    };
    h.store
        .record_trace(&[step(20, "fe-1", "pushed"), step(10, "admin-1", "stored")])
        .await
        .unwrap();
    let steps = ext
        .trace_message(TraceMessageRequest {
            message_id: id.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .steps;
    let got: Vec<(&str, &str, i64)> = steps
        .iter()
        .map(|s| {
            (
                s.server.as_str(),
                s.step.as_str(),
                s.time.as_ref().unwrap().seconds,
            )
        })
        .collect();
    assert_eq!(got, [("admin-1", "stored", 10), ("fe-1", "pushed", 20)]);
    assert_eq!(steps[1].detail, "pushed on fe-1");

    // A stored message whose steps are gone (pruned, or stored with tracing off): no steps.
    h.store.prune_trace(at(100), 10).await.unwrap();
    let steps = ext
        .trace_message(TraceMessageRequest {
            message_id: id.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .steps;
    assert!(steps.is_empty(), "{steps:?}");
}
