//! `fleetgate admin trace ID` as an operator runs it, against the real binary and the real Go
//! client: a message inserted for a client shows stored → leased → pushed → acknowledged, each
//! with the server that took it; a client's message to the bundled `Echo` plugin shows stored and
//! processed with the plugin's digest; unknown and malformed IDs get clear errors; and on a
//! distributed fleet (admin-only server inserting, a frontend holding the stream, shared
//! MariaDB) one trace holds both servers' names.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure};
use fleetgate_tests::env::fleetgate_bin;
use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually, grr};

/// One line of `fleetgate admin trace`: time, server, step, detail.
#[derive(Debug, Clone)]
struct Step {
    server: String,
    step: String,
    detail: String,
}

/// Runs `fleetgate admin --admin_addr ADDR ARGS...`; returns (success, stdout, stderr).
fn admin_cli(addr: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(fleetgate_bin())
        .args(["admin", "--admin_addr", &addr.to_string()])
        .args(args)
        .output()
        .expect("running fleetgate admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The steps of `id` from the `--json` output, after checking the table output agrees.
fn trace(addr: SocketAddr, id: &[u8]) -> anyhow::Result<Vec<Step>> {
    let hex_id = hex::encode(id);
    let (ok, out, err) = admin_cli(addr, &["trace", &hex_id, "--json"]);
    ensure!(ok, "admin trace --json failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    ensure!(v["message_id"] == hex_id.as_str(), "{out}");
    let steps: Vec<Step> = v["steps"]
        .as_array()
        .ok_or_else(|| anyhow!("no steps array: {out}"))?
        .iter()
        .map(|s| Step {
            server: s["server"].as_str().unwrap_or_default().into(),
            step: s["step"].as_str().unwrap_or_default().into(),
            detail: s["detail"].as_str().unwrap_or_default().into(),
        })
        .collect();
    // The table: a header, then one line per step with the same server and step, in order.
    let (ok, table, err) = admin_cli(addr, &["trace", &hex_id]);
    ensure!(ok, "admin trace failed: {err}");
    let lines: Vec<&str> = table.lines().collect();
    ensure!(
        lines.first().is_some_and(|h| h.starts_with("Time:")) && lines.len() == steps.len() + 1,
        "table and JSON disagree:\n{table}\n{out}"
    );
    for (line, s) in lines[1..].iter().zip(&steps) {
        let words: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            words.len() >= 4 && words[2] == s.server && words[3] == s.step,
            "line {line:?} for {s:?}"
        );
    }
    Ok(steps)
}

/// Waits until the trace of `id` holds `want` in this order (other steps may come between).
async fn trace_shows(addr: SocketAddr, id: &[u8], want: &[&str]) -> Vec<Step> {
    let steps = eventually(
        Duration::from_secs(20),
        &format!("the trace of {} to show {want:?}", hex::encode(id)),
        || async {
            let steps = trace(addr, id)?;
            let mut rest = steps.iter();
            for w in want {
                if !rest.any(|s| s.step == *w) {
                    bail!("no {w:?} in order yet: {steps:?}");
                }
            }
            Ok(steps)
        },
    )
    .await;
    // Shown with the test's output, as an operator would see it.
    eprintln!("{}", admin_cli(addr, &["trace", &hex::encode(id)]).1);
    steps
}

fn first<'a>(steps: &'a [Step], word: &str) -> &'a Step {
    steps
        .iter()
        .find(|s| s.step == word)
        .unwrap_or_else(|| panic!("no {word} step in {steps:?}"))
}

#[tokio::test]
async fn a_message_is_traced_from_insert_to_ack_and_a_client_message_to_its_plugin() {
    let server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            services: vec!["Echo".into()],
            program: grr::sender(&[("Echo", "trace-test", 1)]),
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    let addr = server.admin_addr();
    // This server's name: no notification address, so its host and client listener port.
    let port = format!(":{}", server.https_addr().port());

    // Client → server: the daemon's message to `Echo` is processed by the bundled plugin.
    let sent = eventually(Duration::from_secs(30), "the daemon's message", || async {
        client.check_running()?;
        grr::sent(&client, "Echo")
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("nothing sent yet"))
    })
    .await;
    let from_client = checks::client_message_id(&id, "Echo", &sent.source_message_id);
    let steps = trace_shows(addr, &from_client, &["processed", "stored"]).await;
    let processed = first(&steps, "processed");
    assert!(
        processed
            .detail
            .starts_with("by service Echo, plugin digest ")
            && processed.detail.len() >= "by service Echo, plugin digest ".len() + 64,
        "{processed:?}"
    );
    let stored = first(&steps, "stored");
    assert!(
        stored
            .detail
            .starts_with(&format!("from client {}", hex::encode(&id))),
        "{stored:?}"
    );
    assert!(
        steps.iter().all(|s| s.server.ends_with(&port)),
        "every step names this server (…{port}): {steps:?}"
    );

    // Server → client: inserted with `fleetgate admin insert`, pushed on the stream, acked.
    let (ok, out, err) = admin_cli(addr, &["insert", &hex::encode(&id), "Echo", "ping"]);
    assert!(ok, "admin insert: {err}");
    let inserted = out
        .trim()
        .strip_prefix("Inserted message ")
        .and_then(|s| s.strip_suffix('.'))
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_else(|| panic!("unexpected insert output {out:?}"));
    checks::acked(
        &admin,
        std::slice::from_ref(&inserted),
        Duration::from_secs(30),
    )
    .await;
    let steps = trace_shows(
        addr,
        &inserted,
        &["stored", "leased", "pushed", "acknowledged"],
    )
    .await;
    let words: Vec<&str> = steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        words[..4],
        ["stored", "leased", "pushed", "acknowledged"],
        "{steps:?}"
    );
    assert_eq!(
        first(&steps, "stored").detail,
        format!("inserted for client {} from service Echo", hex::encode(&id))
    );
    assert!(first(&steps, "leased").detail.starts_with("to contact "));
    assert!(
        first(&steps, "pushed").detail.contains("stream"),
        "{steps:?}"
    );
    assert_eq!(
        first(&steps, "acknowledged").detail,
        format!("by client {}", hex::encode(&id))
    );
    assert!(steps.iter().all(|s| s.server.ends_with(&port)), "{steps:?}");

    // Bad input: a malformed ID, and a well-formed one nobody stored.
    let (ok, _, err) = admin_cli(addr, &["trace", "abc"]);
    assert!(!ok && err.contains("\"abc\""), "{err}");
    let unknown = "ab".repeat(32);
    let (ok, _, err) = admin_cli(addr, &["trace", &unknown]);
    assert!(
        !ok && err.contains(&unknown) && err.contains("unknown"),
        "{err}"
    );
    // GetMessageStatus keeps Fleetspeak's answer.
    let st = admin.message_status(&inserted).await.expect("status");
    assert!(st.result.as_ref().is_some_and(|r| !r.failed), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_across_two_servers_names_both() {
    let mut fleet = Fleet::start("trace", 1).await;
    fleet.start_client(0);
    let id = fleet.clients[0].client_id().await;
    let admin = fleet.admin().await;
    // The frontend holds the stream: wait until its record says so.
    let frontend = fleet.frontends[0].notify.to_string();
    eventually(Duration::from_secs(60), "the client to stream", || async {
        let c = admin.list_clients(std::slice::from_ref(&id)).await?;
        ensure!(
            c.first()
                .is_some_and(|c| c.last_contact_streaming_to == frontend),
            "not streaming to {frontend} yet: {c:?}"
        );
        Ok(())
    })
    .await;
    let m = admin
        .insert(&id, "TestService", "plain", b"across")
        .await
        .expect("InsertMessage on the admin server");
    fleet.clients[0]
        .wait_delivered(std::slice::from_ref(&m), Duration::from_secs(30))
        .await;
    let steps = trace_shows(
        fleet.admin_addr,
        &m,
        &["stored", "leased", "pushed", "acknowledged"],
    )
    .await;
    let admin_name = format!(":{}", fleet.admin_addr.port());
    let stored = first(&steps, "stored");
    assert!(
        stored.server.ends_with(&admin_name),
        "the admin server (…{admin_name}) stored it: {steps:?}"
    );
    for word in ["leased", "pushed", "acknowledged"] {
        assert_eq!(
            first(&steps, word).server,
            frontend,
            "the frontend took the {word} step: {steps:?}"
        );
    }
    assert_ne!(stored.server, frontend);
}
