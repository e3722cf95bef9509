//! Nothing acknowledged is lost when the server is killed (SIGKILL) on its embedded SQLite store:
//! every InsertMessage that returned OK is stored after a restart, and every result the client
//! acknowledged before the kill is kept. (A message handed out just before the kill is leased:
//! it is due again when its lease ends, so this test does not wait for it.)

use std::time::Duration;

use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks};

/// Inserts in flight at once, so that the kill lands among concurrent commits.
const CONCURRENT: usize = 8;
const MESSAGES: usize = 200;

#[tokio::test]
async fn sigkill_loses_nothing_acknowledged() {
    let mut server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(&server, ClientOptions::default()).await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;

    // A first batch, delivered and acknowledged by the client before the kill.
    let mut acked = Vec::new();
    for i in 0..10 {
        let payload = format!("acked {i}");
        acked.push(
            admin
                .insert(&id, "TestService", "plain", payload.as_bytes())
                .await
                .expect("InsertMessage"),
        );
    }
    checks::delivered(&client, &acked, Duration::from_secs(30)).await;
    checks::acked(&admin, &acked, Duration::from_secs(30)).await;

    // Then inserts from several tasks at once; the server is killed the moment the last one is
    // answered, while the client is still receiving and acking the others.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..CONCURRENT {
        let (admin, id) = (admin.clone(), id.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in (t..MESSAGES).step_by(CONCURRENT) {
                let payload = format!("inserted {i}");
                let m = admin.insert(&id, "TestService", "plain", payload.as_bytes());
                ids.push(m.await.expect("InsertMessage"));
            }
            ids
        });
    }
    let mut inserted = Vec::new();
    while let Some(ids) = tasks.join_next().await {
        inserted.extend(ids.expect("insert task"));
    }
    server.kill().await;
    drop(admin);

    server.restart().await;
    let admin = server.admin().await;
    for m in &acked {
        let st = admin.message_status(m).await.expect("GetMessageStatus");
        assert!(
            st.result.is_some_and(|r| !r.failed),
            "message {} lost its acknowledged result across SIGKILL",
            hex::encode(m)
        );
    }
    for m in &inserted {
        let st = admin.message_status(m).await.expect("GetMessageStatus");
        assert!(
            st.creation_time.is_some(),
            "message {} was acknowledged by InsertMessage but is gone after SIGKILL",
            hex::encode(m)
        );
    }
}
