//! The client carries on after the server restarts on the same port and state dir.

use std::time::Duration;

use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks};

#[tokio::test]
async fn client_survives_a_server_restart() {
    let mut server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(&server, ClientOptions::default()).await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;

    let first = admin
        .insert(&id, "TestService", "plain", b"before restart")
        .await
        .expect("InsertMessage");
    checks::delivered(
        &client,
        std::slice::from_ref(&first),
        Duration::from_secs(30),
    )
    .await;
    checks::acked(
        &admin,
        std::slice::from_ref(&first),
        Duration::from_secs(30),
    )
    .await;
    drop(admin);

    let (https, admin_addr) = (server.https_addr(), server.admin_addr());
    let (status, took) = server.stop().await;
    assert!(
        status.success(),
        "fleetgate exited with {status} on SIGTERM"
    );
    eprintln!("graceful stop with a streaming client connected took {took:.1?}");
    server.restart().await;
    assert_eq!(server.https_addr(), https, "restarted on another port");
    assert_eq!(server.admin_addr(), admin_addr);

    // The database survived: the client and the first message's result are still there.
    let admin = server.admin().await;
    let listed = admin
        .list_clients(std::slice::from_ref(&id))
        .await
        .expect("ListClients");
    assert_eq!(
        listed.len(),
        1,
        "the client is not known after the restart: {listed:?}"
    );
    let st = admin
        .message_status(&first)
        .await
        .expect("GetMessageStatus");
    assert!(
        st.result.is_some_and(|r| !r.failed),
        "the first message lost its result across the restart"
    );

    // The client reconnects (min_failure_delay_seconds: 1) and gets the next message.
    let second = admin
        .insert(&id, "TestService", "plain", b"after restart")
        .await
        .expect("InsertMessage");
    let got = checks::delivered(
        &client,
        std::slice::from_ref(&second),
        Duration::from_secs(60),
    )
    .await;
    checks::acked(
        &admin,
        std::slice::from_ref(&second),
        Duration::from_secs(30),
    )
    .await;
    checks::assert_no_duplicates(&got);
    assert!(checks::find(&got, &first).is_some() && checks::find(&got, &second).is_some());
}
