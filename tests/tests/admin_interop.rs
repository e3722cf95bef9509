//! The admin API as the original tools use it: the Go `fleetspeak-admin` CLI lists clients from
//! Fleetgate, and `BlacklistClient` makes a real client re-key and come back under a new ID.

use std::process::Command;
use std::time::Duration;

use fleetgate_tests::env::peers_venv;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually};

#[tokio::test]
async fn fleetspeak_admin_lists_clients_from_fleetgate() {
    let server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            labels: vec!["cli-label".into()],
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;

    let cli = peers_venv().join("fleetspeak-server-bin/usr/bin/fleetspeak-admin");
    let addr = server.admin_addr().to_string();
    let out = eventually(
        Duration::from_secs(20),
        "fleetspeak-admin listclients",
        || async {
            // The original CLI blocks forever on a wrong address; `timeout` bounds it.
            let out = Command::new("timeout")
                .args([
                    "20",
                    cli.to_str().unwrap_or_default(),
                    "-admin_addr",
                    &addr,
                    "listclients",
                ])
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "exit {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            anyhow::ensure!(
                text.contains("client:cli-label"),
                "labels not listed yet:\n{text}"
            );
            Ok(text)
        },
    )
    .await;
    let mut lines = out.lines();
    assert_eq!(
        lines
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec!["Client", "ID:", "Last", "Seen:", "Labels:"])
    );
    let row = lines.next().unwrap_or_default();
    assert!(row.starts_with(&hex::encode(&id)), "row: {row}");
    assert!(
        row.contains("client:amd64") && row.contains("client:linux"),
        "row: {row}"
    );

    // analysehistory: the original CLI and ours summarise the same contacts the same way.
    let hex_id = hex::encode(&id);
    let theirs = Command::new("timeout")
        .args([
            "20",
            cli.to_str().unwrap_or_default(),
            "-admin_addr",
            &addr,
            "analysehistory",
            &hex_id,
        ])
        .output()
        .expect("fleetspeak-admin analysehistory");
    let ours = Command::new(fleetgate_tests::env::fleetgate_bin())
        .args(["admin", "--admin_addr", &addr, "analysehistory", &hex_id])
        .output()
        .expect("fleetgate admin analysehistory");
    let summary = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("Count:") || l.contains("Split") || l.contains("Skips:"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert!(
        theirs.status.success() && ours.status.success(),
        "{theirs:?}\n{ours:?}"
    );
    assert!(
        summary(&ours)
            .iter()
            .any(|l| l.starts_with("Contact Count:")),
        "{ours:?}"
    );
    assert_eq!(
        summary(&ours),
        summary(&theirs),
        "ours:\n{ours:?}\ntheirs:\n{theirs:?}"
    );
}

#[tokio::test]
async fn blacklisted_client_rekeys_and_comes_back_under_a_new_id() {
    let server = Server::start(ServerOptions::default()).await;
    // Polling: a re-keyed polling client uses its new identity from its very next poll.
    let client = GoClient::start(
        &server,
        ClientOptions {
            streaming: false,
            ..Default::default()
        },
    )
    .await;
    let old = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &old, Duration::from_secs(30)).await;

    let mut raw = admin.raw();
    raw.blacklist_client(fleetgate_pb::fleetspeak::server::BlacklistClientRequest {
        client_id: old.clone(),
    })
    .await
    .expect("BlacklistClient");

    let (old_entry, new_entry) = eventually(
        Duration::from_secs(60),
        "the client under a new ID",
        || async {
            let all = admin.list_clients(&[]).await?;
            let old_entry = all.iter().find(|c| c.client_id == old).cloned();
            let new_entry = all.iter().find(|c| c.client_id != old).cloned();
            match (old_entry, new_entry) {
                (Some(o), Some(n)) => Ok((o, n)),
                _ => anyhow::bail!(
                    "clients: {:?}",
                    all.iter()
                        .map(|c| hex::encode(&c.client_id))
                        .collect::<Vec<_>>()
                ),
            }
        },
    )
    .await;
    assert!(old_entry.blacklisted, "the old ID stays blacklisted");
    assert!(!new_entry.blacklisted, "the new ID is a fresh client");
    assert_eq!(new_entry.client_id.len(), 8);

    // The client keeps working under its new ID: a message to it is delivered and acknowledged.
    let new = new_entry.client_id.clone();
    let msg = admin
        .insert(&new, "TestService", "after-rekey", b"hello again")
        .await
        .expect("insert");
    checks::delivered(&client, std::slice::from_ref(&msg), Duration::from_secs(30)).await;
    checks::acked(&admin, &[msg], Duration::from_secs(30)).await;
}
