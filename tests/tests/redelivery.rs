//! A message pushed on a stream whose connection dies before the client gets it reaches the
//! real Go client within seconds of its reconnect, not when the 15-minute lease runs out: the new
//! stream supersedes the old contact (ARCHITECTURE.md "Redelivery after a lost stream").
//!
//! A relay stands between client and server. It holds back what the server sends, the test
//! inserts a message (the server leases it and writes it into the void), then the relay cuts the
//! connection: the client reconnects at once, as it does after any established stream ends.

use std::time::{Duration, Instant};

use fleetgate_tests::relay::Relay;
use fleetgate_tests::scrape::{metric, ready_addr};
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually};

const TO_CLIENTS: &str =
    "fleetgate_messages_to_clients_total{service=\"TestService\",type=\"plain\"}";
const REDELIVERED: &str = "fleetgate_messages_redelivered_total";
const STREAMS: &str = "fleetgate_client_contacts_total{kind=\"stream\"}";

/// Far below the 15-minute lease the message would otherwise wait for.
const BOUND: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_message_lost_with_its_stream_is_redelivered_on_reconnect() {
    let server = Server::start(ServerOptions {
        extra_args: vec!["--stats_listen".into(), "127.0.0.1:0".into()],
        ..Default::default()
    })
    .await;
    let stats = ready_addr(&server, "stats");
    let relay = Relay::start(server.https_addr()).await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            server: Some(relay.addr().to_string()),
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;

    // The stream works through the relay.
    let first = admin
        .insert(&id, "TestService", "plain", b"before")
        .await
        .expect("InsertMessage");
    checks::delivered(&client, std::slice::from_ref(&first), BOUND).await;
    checks::acked(&admin, std::slice::from_ref(&first), BOUND).await;

    // The path to the client dies silently; the server pushes (and leases) into it.
    relay.hold();
    let lost = admin
        .insert(&id, "TestService", "plain", b"lost with the stream")
        .await
        .expect("InsertMessage");
    eventually(BOUND, "the server to push the message", || async {
        let n = metric(stats, TO_CLIENTS).await?;
        anyhow::ensure!(n >= 2.0, "{TO_CLIENTS} = {n}");
        Ok(())
    })
    .await;
    let streams_before = metric(stats, STREAMS).await.expect("scrape");
    assert!(
        checks::find(&client.received(), &lost).is_none(),
        "the relay let the push through"
    );

    // The connection is cut before the client could ack; it reconnects at once.
    relay.cut();
    let cut = Instant::now();
    eventually(BOUND, "the client to open a new stream", || async {
        let n = metric(stats, STREAMS).await?;
        anyhow::ensure!(n > streams_before, "{STREAMS} = {n}");
        Ok(())
    })
    .await;
    let reconnected = cut.elapsed();
    let got = checks::delivered(&client, std::slice::from_ref(&lost), BOUND).await;
    let delivered = cut.elapsed();
    eprintln!(
        "reconnected {reconnected:.2?} after the cut; the lost message arrived {delivered:.2?} after it ({:.2?} after the reconnect)",
        delivered - reconnected
    );
    // The first copy never reached the client, so the redelivered one is its only copy.
    checks::assert_no_duplicates(&got);
    checks::acked(&admin, std::slice::from_ref(&lost), BOUND).await;
    let redelivered = metric(stats, REDELIVERED).await.expect("scrape");
    assert!(
        redelivered >= 1.0,
        "{REDELIVERED} = {redelivered}: the message came back some other way"
    );
    assert!(
        relay.accepted() >= 2,
        "the client reconnected through the relay"
    );
    client.check_running().expect("the client is still running");
}
