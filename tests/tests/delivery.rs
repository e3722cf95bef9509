//! Messages inserted through the admin API reach the client's daemon service and are acked.

use std::time::Duration;

use fleetgate_tests::daemon::Received;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks};

async fn delivers(polling: bool) {
    let server = Server::start(ServerOptions {
        polling,
        ..Default::default()
    })
    .await;
    // The quickstart config already says `streaming: false` with --polling; say it again.
    let client = GoClient::start(
        &server,
        ClientOptions {
            streaming: !polling,
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;
    checks::contact_recorded(&admin, &id, !polling, Duration::from_secs(15)).await;

    let mut sent = Vec::new();
    for (i, kind) in ["plain", "echo", "plain"].iter().enumerate() {
        let payload = format!("payload {i} for {kind}").into_bytes();
        let mid = admin
            .insert(&id, "TestService", kind, &payload)
            .await
            .expect("InsertMessage");
        sent.push((mid, kind.to_string(), payload));
    }
    let ids: Vec<Vec<u8>> = sent.iter().map(|s| s.0.clone()).collect();
    // Polling: one poll every 2–3 s (max_poll_delay_seconds: 2). Streaming: pushed at once.
    let got = checks::delivered(&client, &ids, Duration::from_secs(30)).await;
    for (mid, kind, payload) in &sent {
        match checks::find(&got, mid) {
            Some(Received::Message {
                message_type,
                payload: p,
                ..
            }) => {
                assert_eq!(message_type, kind, "message type of {}", hex::encode(mid));
                assert_eq!(p, payload, "payload of {}", hex::encode(mid));
            }
            other => panic!("message {} not received: {other:?}", hex::encode(mid)),
        }
    }
    checks::assert_no_duplicates(&got);
    // The client acks (a MessageAck to `system`): the client → server leg works.
    checks::acked(&admin, &ids, Duration::from_secs(30)).await;

    // The daemon answered the "echo" with a message to server service TestService, whose
    // source_message_id is the echo's id. No server service is configured, so the server stores
    // it as failed "unknown service" — under the id derived from the client id.
    let echo = &sent[1].0;
    let reply = checks::client_message_id(&id, "TestService", echo);
    let status = fleetgate_tests::eventually(
        Duration::from_secs(30),
        "the echo reply to be stored",
        || async {
            let st = admin.message_status(&reply).await?;
            st.result
                .clone()
                .ok_or_else(|| anyhow::anyhow!("GetMessageStatus({}): {st:?}", hex::encode(&reply)))
        },
    )
    .await;
    assert!(
        status.failed && status.failed_reason.contains("unknown service"),
        "the echo reply should fail as unknown service, got {status:?}"
    );
}

#[tokio::test]
async fn streaming_messages_reach_the_daemon() {
    delivers(false).await;
}

#[tokio::test]
async fn polling_messages_reach_the_daemon() {
    delivers(true).await;
}
