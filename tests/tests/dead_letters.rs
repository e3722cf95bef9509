//! Every message has an end, with the real peers: the Go client's daemon sends messages to two
//! `GRPC` services backed by GRR's Python Processor; what the Processor refuses, or cannot take
//! because it is down, ends in the dead letters under the services' retry policies; once the
//! Processor is fixed (or up), `fleetgate admin deadletters replay` delivers each exactly once.
//! A message for a client that never connects expires and is dead-lettered as such. A plugin
//! that traps, replaced by a fixed version through a reload, processes each replayed message once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure};
use fleetgate_tests::env::fleetgate_bin;
use fleetgate_tests::grr::{self, GrrConnector};
use fleetgate_tests::tag_plugins::{self, TagPlugins};
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually, ports};
use serde_json::Value;

const GRR: &str = "GRR";
/// A second `GRPC` service whose Processor is down until the test starts it.
const DOWN: &str = "Down";

fn admin(server: &Server, args: &[&str]) -> Output {
    Command::new(fleetgate_bin())
        .args(["admin", "--admin_addr", &server.admin_addr().to_string()])
        .args(args)
        .env_remove("FLEETGATE_ADMIN")
        .output()
        .expect("running fleetgate admin")
}

fn ok_json(out: Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The dead letters the CLI lists, by message ID (hex).
fn letters(server: &Server, extra: &[&str]) -> HashMap<String, Value> {
    let mut args = vec!["--json", "deadletters", "list"];
    args.extend_from_slice(extra);
    let v = ok_json(admin(server, &args), "deadletters list");
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|l| {
            (
                l["message_id"].as_str().unwrap_or_default().to_owned(),
                l.clone(),
            )
        })
        .collect()
}

/// GRR without a policy (Fleetspeak's: retry temporary failures forever; a permanent failure
/// ends the message at once); `Down` with two attempts one second apart.
fn services_config(grr: SocketAddr, down: SocketAddr) -> String {
    let plain = grr::grpc_services_config(&[(GRR, grr)]);
    let down = grr::grpc_services_config(&[(DOWN, down)]);
    let down = down
        .trim_end()
        .strip_suffix('}')
        .expect("a services block")
        .to_owned()
        + "  retry_policy {\n    max_attempts: 2\n    initial_backoff { seconds: 1 }\n    backoff_multiplier: 1\n  }\n}\n";
    format!("{plain}{down}")
}

#[tokio::test]
async fn refused_and_undeliverable_messages_end_in_dead_letters_and_replay_once() {
    let grr_addr = ports::free_addr();
    let down_addr = ports::free_addr();
    let config_dir = tempfile::Builder::new()
        .prefix("fleetgate-dead-letters-")
        .tempdir()
        .expect("temp dir");
    let config: PathBuf = config_dir.path().join("server.services.config");
    std::fs::write(&config, services_config(grr_addr, down_addr)).expect("writing the config");
    let server = Server::start(ServerOptions {
        extra_args: vec!["--services_config".into(), config.display().to_string()],
        ..Default::default()
    })
    .await;
    let connector = GrrConnector::start(
        &server.root().join("grr"),
        GRR,
        grr_addr,
        server.admin_addr(),
    )
    .await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            services: vec![GRR.into()],
            program: grr::sender(&[
                (GRR, "Raise", 2),
                (GRR, "GrrMessage", 1),
                (DOWN, "GrrMessage", 2),
            ]),
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let sent = eventually(Duration::from_secs(30), "the daemon to send", || async {
        client.check_running()?;
        let s = grr::sent(&client, GRR);
        ensure!(s.len() == 5, "{} of 5 sent", s.len());
        Ok(s)
    })
    .await;
    let ids_of = |service: &str, message_type: &str| -> Vec<Vec<u8>> {
        sent.iter()
            .filter(|s| s.service == service && s.message_type == message_type)
            .map(|s| checks::client_message_id(&id, GRR, &s.source_message_id))
            .collect()
    };
    let (raise, down) = (ids_of(GRR, "Raise"), ids_of(DOWN, "GrrMessage"));
    let fine = ids_of(GRR, "GrrMessage").remove(0);
    assert_eq!((raise.len(), down.len()), (2, 2), "{sent:?}");
    let down_payload = sent
        .iter()
        .find(|s| s.service == DOWN)
        .map(|s| s.payload.len())
        .unwrap_or_default();
    let hex = |m: &Vec<u8>| hex::encode(m);

    // The Processor raises on `Raise` (UNKNOWN, permanent): dead at once, reason permanent. The
    // `Down` Processor is unreachable (UNAVAILABLE, temporary): dead after its two attempts.
    let dead = eventually(Duration::from_secs(90), "four dead letters", || async {
        client.check_running()?;
        let l = letters(&server, &[]);
        ensure!(l.len() == 4, "{} of 4 dead letters: {l:?}", l.len());
        Ok(l)
    })
    .await;
    for m in &raise {
        let l = &dead[&hex(m)];
        assert_eq!(l["service"], GRR);
        assert_eq!(l["reason"], "permanent", "{l}");
        assert_eq!(l["attempts"], 1, "{l}");
        assert!(
            l["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("Unknown"),
            "{l}"
        );
        assert!(
            l["plugin"]
                .as_str()
                .unwrap_or_default()
                .starts_with("sha256:"),
            "the forwarder component's digest: {l}"
        );
    }
    for m in &down {
        let l = &dead[&hex(m)];
        assert_eq!(l["service"], DOWN);
        assert_eq!(l["reason"], "exhausted", "{l}");
        assert_eq!(l["attempts"], 2, "{l}");
    }
    assert!(!dead.contains_key(&hex(&fine)), "the accepted message died");
    // GetMessageStatus keeps Fleetspeak's answer: failed, with the reason.
    let admin_api = server.admin().await;
    for m in raise.iter().chain(&down) {
        let st = admin_api.message_status(m).await.expect("GetMessageStatus");
        let r = st.result.expect("a result");
        assert!(r.failed, "{}: {r:?}", hex(m));
    }
    // `show` has the message itself, payload included.
    let shown = ok_json(
        admin(&server, &["--json", "deadletters", "show", &hex(&down[0])]),
        "deadletters show",
    );
    assert_eq!(shown["data_bytes"], down_payload, "{shown}");

    // Bad input changes nothing.
    let out = admin(&server, &["deadletters", "replay", &hex(&fine)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a dead letter"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin(&server, &["deadletters", "replay", &hex(&raise[0]), "00ff"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a message ID"));
    assert_eq!(
        letters(&server, &[]).len(),
        4,
        "a refused replay changed the dead letters"
    );

    // Fix the Processor, bring the other one up, replay: by service, and by IDs.
    connector.fix().await.expect("fixing the Processor");
    let down_connector = GrrConnector::start(
        &server.root().join("grr-down"),
        DOWN,
        down_addr,
        server.admin_addr(),
    )
    .await;
    let replayed = ok_json(
        admin(
            &server,
            &["--json", "deadletters", "replay", "--service", GRR],
        ),
        "deadletters replay --service",
    );
    assert_eq!(
        replayed["replayed"].as_array().map(Vec::len),
        Some(2),
        "{replayed}"
    );
    ok_json(
        admin(
            &server,
            &[
                "--json",
                "deadletters",
                "replay",
                &hex(&down[0]),
                &hex(&down[1]),
            ],
        ),
        "deadletters replay IDs",
    );
    // Each replayed message reaches its Processor, and finishes processed.
    eventually(
        Duration::from_secs(60),
        "the replayed messages processed",
        || async {
            for m in raise.iter().chain(&down) {
                let st = admin_api.message_status(m).await?;
                match st.result {
                    Some(r) if !r.failed => {}
                    other => bail!("{} not processed yet: {other:?}", hex(m)),
                }
            }
            Ok(())
        },
    )
    .await;
    // Replaying again is refused: the message is processed once.
    let out = admin(&server, &["deadletters", "replay", &hex(&raise[0])]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was replayed already"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Give a duplicate the time it would need to show up, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for m in &raise {
        let ok = connector
            .received()
            .iter()
            .filter(|p| &p.id == m && !p.raised)
            .count();
        assert_eq!(ok, 1, "{} processed {ok} times after the fix", hex(m));
    }
    for m in &down {
        let n = down_connector
            .received()
            .iter()
            .filter(|p| &p.id == m)
            .count();
        assert_eq!(n, 1, "{} reached the Down Processor {n} times", hex(m));
    }
    assert_eq!(
        letters(&server, &[]).len(),
        0,
        "dead letters left after the replay"
    );
    let all = letters(&server, &["--replayed"]);
    assert_eq!(all.len(), 4);
    assert!(all.values().all(|l| l["replays"] == 1), "{all:?}");
    let purged = ok_json(
        admin(&server, &["--json", "deadletters", "purge", "--all"]),
        "deadletters purge",
    );
    assert_eq!(purged["purged"], 4);
}

/// A message for a client that never connects expires: it is dead-lettered as expired (by the
/// sweep; the client is never there to lease it), and its status is failed.
#[tokio::test]
async fn a_message_for_a_client_that_never_connects_expires() {
    let config_dir = tempfile::Builder::new()
        .prefix("fleetgate-expiry-")
        .tempdir()
        .expect("temp dir");
    let config = config_dir.path().join("server.services.config");
    std::fs::write(
        &config,
        "client_message_expiry {\n  service: \"GRR\"\n  max_age { seconds: 2 }\n}\n",
    )
    .expect("writing the config");
    let server = Server::start(ServerOptions {
        extra_args: vec!["--services_config".into(), config.display().to_string()],
        ..Default::default()
    })
    .await;
    // Enrol a client, then stop it for good.
    let client = GoClient::start(
        &server,
        ClientOptions {
            services: vec![GRR.into()],
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin_api = server.admin().await;
    checks::enrolled(&admin_api, &id, Duration::from_secs(30)).await;
    client.kill().await;
    drop(client);
    // Let the server see the connection go, so nothing streams the message away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mid = admin_api
        .insert(&id, GRR, "Expiring", b"never delivered")
        .await
        .expect("InsertMessage");
    let l = eventually(Duration::from_secs(30), "the message to expire", || async {
        let l = letters(&server, &[]);
        l.get(&hex::encode(&mid))
            .cloned()
            .ok_or_else(|| anyhow!("not dead yet: {l:?}"))
    })
    .await;
    assert_eq!(l["reason"], "expired", "{l}");
    assert_eq!(l["client_id"], hex::encode(&id), "{l}");
    let st = admin_api
        .message_status(&mid)
        .await
        .expect("GetMessageStatus");
    assert!(st.result.is_some_and(|r| r.failed));
}

/// A plugin that traps on some messages, a reload with a fixed version, then replay: the dead
/// letters name the trapping component's digest, and the fixed one processes each message once.
#[tokio::test]
async fn a_trapping_plugin_then_a_fixed_one_and_replay() {
    let trap = std::fs::read(
        fleetgate_tests::env::workspace_root()
            .join("plugins/target/wasm32-wasip2/release/test_trap.wasm"),
    )
    .expect("the trap test plugin (cd plugins && cargo build --release --target wasm32-wasip2)");
    let fixed = tag_plugins::build("a");
    let p = TagPlugins::new(&trap);
    // One attempt: a trap (temporary) dead-letters at once instead of waiting for the backlog.
    std::fs::write(
        p.config(),
        format!(
            r#"services {{
  name: "Tag"
  factory: "WASM"
  config {{
    [type.googleapis.com/fleetgate.plugin.v1.WasmConfig] {{
      path: "{}"
      config: "/tags"
      preopens {{ host_path: "{}" guest_path: "/tags" }}
    }}
  }}
  retry_policy {{ max_attempts: 1 }}
}}
"#,
            p.live().display(),
            p.tags().display()
        ),
    )
    .expect("services config");
    let server = Server::start(ServerOptions {
        extra_args: vec!["--services_config".into(), p.config().display().to_string()],
        ..Default::default()
    })
    .await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            services: vec![GRR.into()],
            program: grr::sender(&[("Tag", "trap", 2), ("Tag", "fine", 1)]),
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let sent = eventually(Duration::from_secs(30), "the daemon to send", || async {
        client.check_running()?;
        let s = grr::sent(&client, GRR);
        ensure!(s.len() == 3, "{} of 3 sent", s.len());
        Ok(s)
    })
    .await;
    let trapped: Vec<String> = sent
        .iter()
        .filter(|s| s.message_type == "trap")
        .map(|s| hex::encode(checks::client_message_id(&id, GRR, &s.source_message_id)))
        .collect();
    let dead = eventually(Duration::from_secs(30), "two dead letters", || async {
        let l = letters(&server, &[]);
        ensure!(l.len() == 2, "{} of 2 dead letters: {l:?}", l.len());
        Ok(l)
    })
    .await;
    for m in &trapped {
        let l = &dead[m];
        assert_eq!(l["reason"], "exhausted", "{l}");
        assert_eq!(
            l["plugin"],
            format!("sha256:{}", tag_plugins::digest(&trap)),
            "{l}"
        );
    }

    // The fixed version, through a reload.
    p.install(&fixed);
    let out = admin(&server, &["plugins", "reload"]);
    assert!(
        out.status.success(),
        "reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok_json(
        admin(
            &server,
            &["--json", "deadletters", "replay", "--service", "Tag"],
        ),
        "deadletters replay",
    );
    eventually(
        Duration::from_secs(30),
        "the fixed plugin to process both",
        || async {
            let tagged: Vec<String> = std::fs::read_dir(p.tags())?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            for m in &trapped {
                ensure!(tagged.contains(m), "{m} not processed yet: {tagged:?}");
            }
            Ok(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dups: Vec<String> = std::fs::read_dir(p.tags())
        .expect("tags dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".dup"))
        .collect();
    assert!(dups.is_empty(), "processed twice: {dups:?}");
    assert!(letters(&server, &[]).is_empty());
}
