//! The built-in `system` service: ClientInfo label sync, ResourceUsage records and the
//! preconditions every system message must meet (client-lifecycle.md §8).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use fleetgate_pb::fleetspeak::Label;
use fleetgate_pb::fleetspeak::monitoring::{
    AggregatedResourceUsage, KillNotification, ResourceUsageData,
};
use fleetgate_types::time::to_timestamp;

fn label_set(labels: &[Label]) -> BTreeSet<(String, String)> {
    labels
        .iter()
        .map(|l| (l.service_name.clone(), l.label.clone()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(s, l)| (s.to_string(), l.to_string()))
        .collect()
}

#[tokio::test]
async fn client_info_replaces_the_client_labels_only() {
    let env = Env::new().await;
    let c = TestClient::with_labels(&["linux", "amd64", "old"]);
    env.poll(&c, cd(vec![])).await;
    let grr = Label {
        service_name: "grr".into(),
        label: "important".into(),
    };
    env.store.add_client_label(c.id, &grr).await.unwrap();

    let info = client_info(&[
        ("client", "linux"),
        ("client", "amd64"),
        ("client", "new"),
        // A client cannot set labels of other services.
        ("grr", "forged"),
    ]);
    let smid = info.source_message_id.clone();
    env.poll(&c, cd(vec![info])).await;
    let r = env.result(client_msg_id(c.id, "system", &smid)).await;
    assert!(r.is_some_and(|r| !r.failed));

    let data = env.store.get_client_data(c.id).await.unwrap();
    assert_eq!(
        label_set(&data.labels),
        pairs(&[
            ("client", "linux"),
            ("client", "amd64"),
            ("client", "new"),
            ("grr", "important"),
        ])
    );

    // Sent again (the stock client does after a restart), it is idempotent; an empty set
    // removes every client label.
    env.poll(&c, cd(vec![client_info(&[])])).await;
    let data = env.store.get_client_data(c.id).await.unwrap();
    assert_eq!(label_set(&data.labels), pairs(&[("grr", "important")]));
}

fn usage(start: Option<u64>) -> ResourceUsageData {
    ResourceUsageData {
        scope: "system".into(),
        pid: 4242,
        process_start_time: start.map(|s| to_timestamp(UNIX_EPOCH + Duration::from_secs(s))),
        data_timestamp: Some(to_timestamp(UNIX_EPOCH + Duration::from_secs(T0 - 5))),
        resource_usage: Some(AggregatedResourceUsage {
            mean_user_cpu_rate: 1.5,
            max_user_cpu_rate: 3.0,
            mean_resident_memory: 64.0 * 1024.0 * 1024.0,
            max_resident_memory: 128 * 1024 * 1024,
            max_num_fds: 12,
            ..Default::default()
        }),
        process_terminated: false,
        ..Default::default()
    }
}

#[tokio::test]
async fn resource_usage_is_recorded() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    let good = system_msg("ResourceUsage", &usage(Some(T0 - 3600)));
    let good_smid = good.source_message_id.clone();
    let bad = system_msg("ResourceUsage", &usage(None));
    let bad_smid = bad.source_message_id.clone();
    env.poll(&c, cd(vec![good, bad])).await;

    let r = env.result(client_msg_id(c.id, "system", &good_smid)).await;
    assert!(r.is_some_and(|r| !r.failed));
    let r = env
        .result(client_msg_id(c.id, "system", &bad_smid))
        .await
        .expect("a result for the invalid report");
    assert!(r.failed, "missing process_start_time fails the message");
    assert!(!r.failed_reason.is_empty());

    let now = UNIX_EPOCH + Duration::from_secs(T0);
    let records = env
        .store
        .fetch_resource_usage_records(
            c.id,
            now - Duration::from_secs(60),
            now + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "only the valid report is stored");
    let rec = &records[0];
    assert_eq!(rec.scope, "system");
    assert_eq!(rec.pid, 4242);
    assert_eq!(rec.process_start_time.unwrap().seconds, T0 as i64 - 3600);
    assert_eq!(rec.client_timestamp.unwrap().seconds, T0 as i64 - 5);
    assert_eq!(rec.server_timestamp.unwrap().seconds, T0 as i64);
    assert_eq!(rec.mean_user_cpu_rate, 1.5);
    assert_eq!(rec.max_resident_memory_mib, 128);
    assert_eq!(rec.max_num_fds, 12);
}

#[tokio::test]
async fn malformed_system_messages_fail_permanently() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;

    let unknown_type = system_msg("Frobnicate", &Label::default());
    let no_data = fleetgate_pb::fleetspeak::Message {
        data: None,
        ..system_msg("MessageAck", &Label::default())
    };
    // A ClientInfo payload where a MessageAck is expected.
    let wrong_payload = fleetgate_pb::fleetspeak::Message {
        message_type: "MessageAck".into(),
        ..client_info(&[])
    };
    let bad_ack_id = system_msg(
        "MessageAck",
        &fleetgate_pb::fleetspeak::MessageAckData {
            message_ids: vec![vec![1, 2, 3]],
        },
    );
    let kill = system_msg(
        "KillNotification",
        &KillNotification {
            service: "daemon".into(),
            pid: 7,
            ..Default::default()
        },
    );
    let msgs = vec![unknown_type, no_data, wrong_payload, bad_ack_id, kill];
    let smids: Vec<_> = msgs.iter().map(|m| m.source_message_id.clone()).collect();
    env.poll(&c, cd(msgs)).await;

    let mut results = Vec::new();
    for smid in &smids {
        let r = env
            .result(client_msg_id(c.id, "system", smid))
            .await
            .expect("every system message gets a result");
        results.push(r);
    }
    assert!(results[0].failed);
    assert_eq!(
        results[0].failed_reason,
        "unknown system message type: Frobnicate"
    );
    for r in &results[1..4] {
        assert!(r.failed, "{r:?}");
    }
    assert!(!results[4].failed, "KillNotification is accepted");
    assert!(env.store.get_pending_message_count(&[c.id]).await.unwrap() == 0);
}

#[tokio::test]
async fn client_info_drops_the_cached_client_record() {
    let env = Env::new().await;
    let c = TestClient::new();
    env.poll(&c, cd(vec![])).await;
    env.poll(&c, cd(vec![])).await; // read from the store and cached
    env.store.blacklist_client(c.id).await.unwrap();
    // This contact may still be served from the cache; its ClientInfo drops the entry...
    env.poll(&c, cd(vec![client_info(&[("client", "x")])]))
        .await;
    // ...so the next contact re-reads the record and sees the blacklist at once.
    let reply = env.poll(&c, cd(vec![])).await;
    assert_eq!(reply.messages.len(), 1);
    assert_eq!(reply.messages[0].message_type, "RekeyRequest");
}
