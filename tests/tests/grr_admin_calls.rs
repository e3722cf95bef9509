//! The admin calls GRR makes besides sending its messages (`fleetspeak_utils.py`), made through
//! GRR's own Python connector against the Go server and against Fleetgate in the same run: each
//! a one-frontend fleet of the scaling guide (admin-only server, frontend behind haproxy, MariaDB)
//! with a real Go client. What each server answers is recorded side by side and must be the same:
//! annotations on GRR's messages, `GetPendingMessages` with and without `want_data`,
//! `GetPendingMessageCount`, `DeletePendingMessages`, `ListClients`' last-seen fields,
//! `RestartService` and `Die` to the client's `system` service, resource usage records.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, ensure};
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::grr::GrrConnector;
use fleetgate_tests::node::Flavor;
use fleetgate_tests::{checks, eventually, ports};
use serde_json::json;

/// What one server answered, reduced to what GRR reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answers {
    /// `ListClients`: last contact time, address and client clock set; the address's host; the
    /// streaming frontend recorded.
    last_seen: (bool, String, bool, bool),
    /// `RestartService` restarted the daemon service.
    restarted: bool,
    /// `Die` ended the client.
    died: bool,
    /// `GetPendingMessages(want_data)`: type, payload size, annotations, with and without data.
    pending_with_data: Vec<(String, usize, String)>,
    pending_without_data: Vec<(String, usize, String)>,
    count: String,
    /// Count after `DeletePendingMessages`, and the deleted message's status.
    count_after_delete: String,
    deleted_status: (bool, String),
    /// The deleted message's row in the shared schema: `failed`, `failed_reason`, processed.
    deleted_row: String,
    /// `RestartService` was acknowledged by the client (its status is processed).
    restart_acked: bool,
    /// `FetchClientResourceUsageRecords` returned records (the restarted daemon's).
    usage_records: bool,
}

fn pending(lines: &[HashMap<String, String>]) -> Vec<(String, usize, String)> {
    lines
        .iter()
        .filter(|l| l.get("event").map(String::as_str) == Some("pending"))
        .map(|l| {
            (
                l["type"].clone(),
                l["data_bytes"].parse().unwrap_or(usize::MAX),
                l["annotations"].clone(),
            )
        })
        .collect()
}

async fn answers(flavor: Flavor, name: &str) -> Answers {
    let mut fleet = Fleet::start_mixed(name, flavor, &[flavor]).await;
    let n = fleet.start_client(0);
    let id = fleet.clients[n].client_id().await;
    let hex_id = hex::encode(&id);
    let admin = fleet.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(60)).await;
    let connector = GrrConnector::start(
        &fleet.dir.join("grr"),
        "GRR",
        ports::free_addr(),
        fleet.admin_addr,
    )
    .await;

    // The client streams through the frontend; both servers record where and when.
    let client = eventually(
        Duration::from_secs(30),
        "ListClients' last-seen fields",
        || async {
            let lines = connector
                .request(json!({"cmd": "list_clients", "client_id": hex_id}), "done")
                .await?;
            let c = lines
                .iter()
                .find(|l| l.get("event").map(String::as_str) == Some("client"))
                .cloned();
            match c {
                Some(c) if !c["streaming_to"].is_empty() => Ok(c),
                other => bail!("no stream recorded yet: {other:?}"),
            }
        },
    )
    .await;
    let host = client["last_contact_address"]
        .rsplit_once(':')
        .map(|(h, _)| h.to_owned())
        .unwrap_or_default();
    let last_seen = (
        client["last_contact_time"] != "0",
        host,
        client["last_clock"] != "0",
        !client["streaming_to"].is_empty(),
    );

    // RestartFleetspeakGrrService, for the client's daemon service.
    let service = fleetgate_tests::client::TEST_SERVICE;
    let restart = connector
        .request(
            json!({"cmd": "system", "client_id": hex_id, "type": "RestartService", "name": service}),
            "sent",
        )
        .await
        .expect("RestartService through the connector");
    let restart_id = hex::decode(&restart[0]["id"]).expect("hex id");
    let restarted = eventually(Duration::from_secs(30), "the daemon to restart", || {
        let starts = fleet.clients[n].daemon_starts();
        async move {
            ensure!(starts >= 2, "{starts} start(s)");
            Ok(true)
        }
    })
    .await;

    // Resource usage: the client reports the stopped daemon's usage.
    let usage_records = eventually(
        Duration::from_secs(30),
        "resource usage records",
        || async {
            let lines = connector
                .request(json!({"cmd": "usage", "client_id": hex_id}), "usage")
                .await?;
            let count: usize = lines
                .iter()
                .find_map(|l| l.get("count")?.parse().ok())
                .unwrap_or(0);
            ensure!(count > 0, "no records yet");
            Ok(true)
        },
    )
    .await;

    // The client acknowledges RestartService (it is not pre-acknowledged as Die is).
    let restart_acked = eventually(
        Duration::from_secs(30),
        "RestartService acknowledged",
        || async {
            let st = admin.message_status(&restart_id).await?;
            match st.result {
                Some(r) if !r.failed => Ok(true),
                other => bail!("not acknowledged yet: {other:?}"),
            }
        },
    )
    .await;

    // KillFleetspeak.
    connector
        .request(
            json!({"cmd": "system", "client_id": hex_id, "type": "Die"}),
            "sent",
        )
        .await
        .expect("Die through the connector");
    let died = eventually(Duration::from_secs(30), "the client to die", || {
        let exited = fleet.clients[n].exited();
        async move {
            ensure!(exited.is_some(), "still running");
            Ok(true)
        }
    })
    .await;

    // The client is gone: GRR's messages wait. SendGrrMessageThroughFleetspeak, then the
    // pending-message calls GRR makes.
    let sent = connector
        .request(
            json!({"cmd": "grr_send", "client_id": hex_id, "payload": "0a0b0c", "flow_id": "F:123", "request_id": "7"}),
            "sent",
        )
        .await
        .expect("a GrrMessage through the connector");
    let message_id = hex::decode(&sent[0]["id"]).expect("hex id");
    let with = connector
        .request(
            json!({"cmd": "pending", "client_id": hex_id, "want_data": true}),
            "done",
        )
        .await
        .expect("GetPendingMessages");
    let without = connector
        .request(
            json!({"cmd": "pending", "client_id": hex_id, "want_data": false}),
            "done",
        )
        .await
        .expect("GetPendingMessages without data");
    let count_of = |lines: Vec<HashMap<String, String>>| {
        lines
            .iter()
            .find_map(|l| l.get("count").cloned())
            .unwrap_or_default()
    };
    let count = count_of(
        connector
            .request(json!({"cmd": "count", "client_id": hex_id}), "count")
            .await
            .expect("GetPendingMessageCount"),
    );
    connector
        .request(json!({"cmd": "delete", "client_id": hex_id}), "deleted")
        .await
        .expect("DeletePendingMessages");
    let count_after_delete = count_of(
        connector
            .request(json!({"cmd": "count", "client_id": hex_id}), "count")
            .await
            .expect("GetPendingMessageCount"),
    );
    let st = admin
        .message_status(&message_id)
        .await
        .expect("GetMessageStatus");
    let deleted_status = st
        .result
        .map(|r| (r.failed, r.failed_reason))
        .unwrap_or((false, "no result".into()));
    let deleted_row = fleet
        .db
        .query(&format!(
            "SELECT failed, failed_reason, processed_time_seconds IS NOT NULL FROM messages WHERE message_id = UNHEX('{}')",
            hex::encode(&message_id)
        ))
        .expect("reading the deleted message's row")
        .trim()
        .to_string();
    Answers {
        deleted_row,
        restart_acked,
        last_seen,
        restarted,
        died,
        pending_with_data: pending(&with),
        pending_without_data: pending(&without),
        count,
        count_after_delete,
        deleted_status,
        usage_records,
    }
}

#[tokio::test]
async fn grr_admin_calls_get_the_go_servers_answers() {
    let go = answers(Flavor::Go, "grr_calls_go").await;
    let fleetgate = answers(Flavor::Fleetgate, "grr_calls_fleetgate").await;
    println!("Go:        {go:?}\nFleetgate: {fleetgate:?}");
    // What GRR relies on, on either server.
    let expected_pending = vec![(
        "GrrMessage".to_string(),
        3,
        "flow_id=F:123,request_id=7".to_string(),
    )];
    assert_eq!(
        go.pending_with_data, expected_pending,
        "Go's GetPendingMessages"
    );
    assert_eq!(
        go.pending_without_data,
        vec![(
            "GrrMessage".to_string(),
            0,
            "flow_id=F:123,request_id=7".to_string()
        )],
        "Go's GetPendingMessages without data"
    );
    // The one difference, in a call GRR does not make: Go 0.1.19's GetMessageStatus of a message
    // DeletePendingMessages failed answers `failed: false` and no reason, although its row (the
    // same in both, checked below) says failed, "Removed by admin action.". Fleetgate answers
    // what the row says, as the spec's datastore checks require.
    assert_eq!(
        go.deleted_status,
        (false, String::new()),
        "Go's GetMessageStatus"
    );
    assert_eq!(
        fleetgate.deleted_status,
        (true, "Removed by admin action.".to_string()),
        "Fleetgate's GetMessageStatus"
    );
    assert_eq!(go.deleted_row, "1\tRemoved by admin action.\t1", "Go's row");
    let same = Answers {
        deleted_status: go.deleted_status.clone(),
        ..fleetgate
    };
    assert_eq!(
        same, go,
        "Fleetgate answered GRR's calls differently from Go"
    );
}
