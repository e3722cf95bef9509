//! ClientInfo labels, acks and resource usage end up in the server's records.

use std::time::Duration;

use fleetgate_tests::admin::label_strings;
use fleetgate_tests::daemon::Received;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually};

#[tokio::test]
async fn daemon_exit_produces_a_resource_usage_record() {
    let t0 = std::time::Instant::now();
    let server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            labels: vec!["usage-test".into()],
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;

    // Labels from enrolment / ClientInfo.
    eventually(Duration::from_secs(15), "the client's labels", || async {
        let all = admin.list_clients(&[]).await?;
        let c = all
            .iter()
            .find(|c| c.client_id == id)
            .ok_or_else(|| anyhow::anyhow!("client vanished"))?;
        let l = label_strings(c);
        anyhow::ensure!(
            l == ["client:amd64", "client:linux", "client:usage-test"],
            "labels are {l:?}"
        );
        Ok(())
    })
    .await;

    // No record yet: the first periodic report comes ~10 min after start.
    let before = admin
        .resource_usage(&id)
        .await
        .expect("FetchClientResourceUsageRecords");
    assert!(
        before.iter().all(|r| !r.process_terminated),
        "unexpected terminated record before the daemon exits: {before:?}"
    );

    // "die": the daemon records it and exits; the client restarts it and reports the exit.
    let die = admin
        .insert(&id, "TestService", "die", b"bye")
        .await
        .expect("InsertMessage");
    let got = checks::delivered(&client, std::slice::from_ref(&die), Duration::from_secs(30)).await;
    let dead_pid = match checks::find(&got, &die) {
        Some(Received::Message { pid, .. }) => *pid,
        other => panic!("die not received: {other:?}"),
    };
    checks::acked(&admin, std::slice::from_ref(&die), Duration::from_secs(30)).await;
    eprintln!("[{:.1?}] die delivered and acked", t0.elapsed());

    let record = eventually(
        Duration::from_secs(60),
        "a process_terminated ResourceUsage record",
        || async {
            let records = admin.resource_usage(&id).await?;
            records
                .into_iter()
                .find(|r| r.process_terminated)
                .ok_or_else(|| anyhow::anyhow!("no terminated record yet"))
        },
    )
    .await;
    eprintln!("[{:.1?}] terminated record: {record:?}", t0.elapsed());
    assert_eq!(record.scope, "TestService", "record: {record:?}");
    assert_eq!(
        record.pid,
        i64::try_from(dead_pid).expect("pid"),
        "record: {record:?}"
    );
    assert!(
        record.server_timestamp.is_some(),
        "record without server_timestamp: {record:?}"
    );
    assert!(
        record.client_timestamp.is_some(),
        "record without client_timestamp: {record:?}"
    );
    assert!(
        record.process_start_time.is_some(),
        "record without process_start_time: {record:?}"
    );

    // The client restarts the daemon only a minute after its previous start (Go
    // daemonservice.RespawnDelay = 1 min), so delivery to the new process is not waited for.
}
