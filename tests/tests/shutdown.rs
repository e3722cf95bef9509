//! Graceful shutdown under load (server.md §1.4): SIGTERM while a real client streams and the
//! admin API keeps inserting. The server exits 0, and every insert the admin API acknowledged
//! reaches the client after a restart — nothing acknowledged is lost — and the client reconnects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetgate_tests::{Admin, ClientOptions, GoClient, Server, ServerOptions, checks};

/// Inserts messages one after another until `stop` is set; records the IDs the admin API
/// acknowledged. Failures (the server is stopping or gone) are counted, not fatal.
async fn insert_until(
    admin: Admin,
    client: Vec<u8>,
    acked: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut failures = 0;
    let mut i = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let payload = format!("under load {i}").into_bytes();
        match admin
            .insert(&client, "TestService", "plain", &payload)
            .await
        {
            Ok(id) => acked.lock().unwrap_or_else(|p| p.into_inner()).push(id),
            Err(_) => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    failures
}

#[tokio::test]
async fn sigterm_under_load_loses_nothing() {
    let mut server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(&server, ClientOptions::default()).await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;
    checks::contact_recorded(&admin, &id, true, Duration::from_secs(15)).await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let inserter = tokio::spawn(insert_until(
        admin.clone(),
        id.clone(),
        acked.clone(),
        stop.clone(),
    ));

    // Let deliveries flow for a while, so the stop meets messages in every state: stored but not
    // pushed, pushed but not acked, acked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_stop = acked.lock().unwrap_or_else(|p| p.into_inner()).len();
    assert!(before_stop > 20, "only {before_stop} inserts in 3 s");

    let (status, took) = server.stop().await;
    assert!(
        status.success(),
        "fleetgate exited with {status} on SIGTERM"
    );
    eprintln!("graceful stop under load took {took:.1?}");
    stop.store(true, Ordering::SeqCst);
    let failures = inserter.await.expect("inserter task");
    drop(admin);
    let acked: Vec<Vec<u8>> = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    eprintln!(
        "{} inserts acknowledged ({before_stop} before SIGTERM), {failures} refused",
        acked.len()
    );

    server.restart().await;
    // The client reconnects on its own (min_failure_delay_seconds: 1) and gets everything.
    let got = checks::delivered(&client, &acked, Duration::from_secs(90)).await;
    let admin = server.admin().await;
    checks::acked(&admin, &acked, Duration::from_secs(60)).await;

    // Delivery is at least once: a message pushed but not yet acked when the stream closed may
    // come again. Report it; losing one is what fails the test.
    let ids = fleetgate_tests::daemon::message_ids(&got);
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    eprintln!(
        "{} deliveries of {} distinct messages",
        ids.len(),
        distinct.len()
    );

    let after = admin
        .insert(&id, "TestService", "plain", b"after restart")
        .await
        .expect("InsertMessage after restart");
    checks::delivered(
        &client,
        std::slice::from_ref(&after),
        Duration::from_secs(30),
    )
    .await;
}
