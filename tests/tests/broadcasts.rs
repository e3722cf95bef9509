//! Broadcasts end to end: created with `fleetgate admin createbroadcast`, delivered to the real
//! clients that carry the required label, once each, and not to a client without it.

use std::process::Command;
use std::time::Duration;

use fleetgate_tests::daemon::Received;
use fleetgate_tests::env::fleetgate_bin;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually};

fn broadcasts_of(client: &GoClient) -> Vec<Vec<u8>> {
    client
        .received()
        .into_iter()
        .filter_map(|r| match r {
            Received::Message {
                id,
                message_type,
                payload,
                ..
            } if message_type == "Hunt" => {
                assert_eq!(payload, b"collect everything");
                Some(id)
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn broadcast_reaches_labelled_clients_once() {
    let server = Server::start(ServerOptions::default()).await;
    let eu = GoClient::start(
        &server,
        ClientOptions {
            labels: vec!["eu".into()],
            ..Default::default()
        },
    )
    .await;
    let us = GoClient::start(
        &server,
        ClientOptions {
            labels: vec!["us".into()],
            ..Default::default()
        },
    )
    .await;
    let admin = server.admin().await;
    for c in [&eu, &us] {
        checks::enrolled(&admin, &c.client_id().await, Duration::from_secs(30)).await;
    }
    // Labels come from ClientInfo, which follows enrolment within about a second.
    let eu_id = eu.client_id().await;
    eventually(Duration::from_secs(15), "the eu label", || async {
        let c = admin.list_clients(std::slice::from_ref(&eu_id)).await?;
        anyhow::ensure!(
            c.first()
                .is_some_and(|c| c.labels.iter().any(|l| l.label == "eu")),
            "no eu label yet"
        );
        Ok(())
    })
    .await;

    let payload = server.root().join("hunt.bin");
    std::fs::write(&payload, b"collect everything").expect("payload");
    let out = Command::new(fleetgate_bin())
        .args([
            "admin",
            "--admin_addr",
            &server.admin_addr().to_string(),
            "createbroadcast",
        ])
        .args([
            "TestService",
            "Hunt",
            "unlimited",
            payload.to_str().unwrap_or_default(),
            "--labels=client:eu",
        ])
        .output()
        .expect("fleetgate admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Created broadcast "));

    // Streams check broadcasts after each refresh (every 1–2 s in quickstart).
    let got = eventually(
        Duration::from_secs(30),
        "the broadcast at the eu client",
        || async {
            let got = broadcasts_of(&eu);
            anyhow::ensure!(!got.is_empty(), "nothing yet");
            Ok(got)
        },
    )
    .await;
    checks::acked(&admin, &got, Duration::from_secs(30)).await;
    // A few more refreshes: still exactly one instance, and none for the client without the label.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        broadcasts_of(&eu).len(),
        1,
        "the eu client got the broadcast more than once"
    );
    assert!(
        broadcasts_of(&us).is_empty(),
        "the us client got a broadcast meant for eu"
    );

    let out = Command::new(fleetgate_bin())
        .args([
            "admin",
            "--admin_addr",
            &server.admin_addr().to_string(),
            "listactivebroadcasts",
        ])
        .output()
        .expect("fleetgate admin");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Found 1 active broadcasts.") && text.contains("Hunt"),
        "{text}"
    );
}
