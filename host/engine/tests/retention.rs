//! Retention and metrics through the engine: a pass deletes only what is old and finished, and
//! what the engine records shows up in the registry.

mod common;

use std::time::Duration;

use common::{Env, TestClient, cd, from_client};
use fleetgate_engine::retention::RetentionConfig;
use fleetgate_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn retention_prunes_old_contacts_and_finished_messages_only() {
    let env = Env::new().await;
    let metrics = Metrics::new();
    env.engine.set_metrics(metrics.clone());
    let client = TestClient::new();
    // An old contact carrying a message for an unknown service: stored as failed (finished).
    env.poll(&client, cd(vec![from_client("nobody", b"1")]))
        .await;
    let pending = env.insert_for(client.id, "TestService").await;
    env.clock.advance(10 * DAY);
    env.poll(&client, cd(vec![])).await;

    let config = RetentionConfig::from_ages(DAY, DAY, Duration::ZERO);
    let pruned = env
        .engine
        .prune_once(&config, &CancellationToken::new())
        .await
        .expect("prune");
    assert_eq!(
        (pruned.contacts, pruned.messages, pruned.resource_usage),
        (1, 1, 0)
    );
    assert_eq!(
        env.store
            .list_client_contacts(client.id)
            .await
            .expect("contacts")
            .len(),
        1
    );
    // The undelivered message is pending, however old: it stays.
    let status = env.store.get_message_status(pending).await.expect("status");
    assert!(status.is_some_and(|(_, result)| result.is_none()));

    let text = metrics.encode();
    for line in [
        "fleetgate_retention_deleted_total{table=\"client_contacts\"} 1",
        "fleetgate_retention_deleted_total{table=\"messages\"} 1",
        "fleetgate_messages_from_clients_total{service=\"nobody\",type=\"Test\"} 1",
        "fleetgate_messages_processed_total{service=\"nobody\",outcome=\"failed\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn retention_off_by_default() {
    assert!(RetentionConfig::default().is_off());
    assert!(RetentionConfig::from_ages(Duration::ZERO, Duration::ZERO, Duration::ZERO).is_off());
}
