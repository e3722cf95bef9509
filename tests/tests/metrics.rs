//! The operator endpoints: `/metrics` counts a real client's contacts and messages, and the
//! health listener answers `/healthz`, `/readyz` and (like the original) any other path.

use std::time::Duration;

use anyhow::bail;
use fleetgate_tests::scrape::{get, ready_addr, sample};
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually};

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let server = Server::start(ServerOptions {
        extra_args: [
            "--stats_listen",
            "127.0.0.1:0",
            "--health_listen",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    let stats = ready_addr(&server, "stats");
    let health = ready_addr(&server, "health");

    assert_eq!(get(health, "/healthz").await.expect("GET /healthz").0, 200);
    let (status, body) = get(health, "/readyz").await.expect("GET /readyz");
    assert_eq!(status, 200, "/readyz: {body}");
    // Existing probes of the original's health check hit other paths and expect 200.
    assert_eq!(get(health, "/").await.expect("GET /"), (200, String::new()));
    assert_eq!(get(stats, "/other").await.expect("GET /other").0, 404);

    let client = GoClient::start(&server, ClientOptions::default()).await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let payload = format!("metrics {i}").into_bytes();
        ids.push(
            admin
                .insert(&id, "TestService", "plain", &payload)
                .await
                .expect("InsertMessage"),
        );
    }
    checks::delivered(&client, &ids, Duration::from_secs(30)).await;
    checks::acked(&admin, &ids, Duration::from_secs(30)).await;

    let text = eventually(Duration::from_secs(30), "counters to move", || async {
        let (status, text) = get(stats, "/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let want = [
            ("fleetgate_client_contacts_total{kind=\"stream\"}", 1.0),
            ("fleetgate_client_streams_active", 1.0),
            (
                "fleetgate_messages_to_clients_total{service=\"TestService\",type=\"plain\"}",
                3.0,
            ),
            (
                "fleetgate_messages_from_clients_total{service=\"system\",type=\"MessageAck\"}",
                1.0,
            ),
            (
                "fleetgate_messages_processed_total{service=\"system\",outcome=\"processed\"}",
                1.0,
            ),
            (
                "fleetgate_store_operation_seconds_count{operation=\"record_client_contact\",errored=\"false\"}",
                1.0,
            ),
        ];
        for (series, min) in want {
            match sample(&text, series) {
                Some(v) if v >= min => {}
                other => bail!("{series} = {other:?}, want ≥ {min}"),
            }
        }
        Ok(text)
    })
    .await;
    assert!(
        text.contains("# TYPE fleetgate_store_operation_seconds histogram"),
        "{text}"
    );
    assert!(sample(&text, "fleetgate_pending_messages{destination=\"client\"}").is_some());
}
