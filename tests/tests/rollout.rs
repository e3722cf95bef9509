//! Plugin rollout with the real binary, the real Go client and the `tag-a` / `tag-b` test
//! components on the single node (SQLite): a canary at 50 % splits the clients by the stable
//! hash of their ID (each client's messages all processed by one version, the one the hash
//! picks), promotion moves everyone to the candidate, and every message is processed exactly
//! once; a candidate that traps, deployed with `--auto-rollback`, is rolled back by itself and
//! the stable version processes every message once; bad deploys are refused and change nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use fleetgate_tests::env::fleetgate_bin;
use fleetgate_tests::tag_plugins::{TagPlugins, build, digest};
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually, grr};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The client-side daemon service that sends the messages.
const SENDER: &str = "Sender";

fn admin(server: &Server, args: &[&str]) -> Output {
    std::process::Command::new(fleetgate_bin())
        .args(["admin", "--admin_addr", &server.admin_addr().to_string()])
        .args(args)
        .env_remove("FLEETGATE_ADMIN")
        .output()
        .expect("running fleetgate admin")
}

fn ok_text(out: Output, what: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn refused(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} was accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn status(server: &Server) -> Value {
    let text = ok_text(
        admin(server, &["plugins", "status", "Tag", "--json"]),
        "status",
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v[0].clone()
}

/// Waits until every server record of `Tag` serves `stable` with `candidate` (empty: none).
async fn wait_serving(server: &Server, stable: &str, candidate: &str) -> Duration {
    let start = Instant::now();
    eventually(
        Duration::from_secs(20),
        "the servers to converge",
        || async {
            let s = status(server);
            let servers = s["servers"].as_array().cloned().unwrap_or_default();
            ensure!(!servers.is_empty(), "no server reports: {s}");
            for v in &servers {
                ensure!(
                    v["stable_digest"] == stable && v["candidate_digest"] == candidate,
                    "{v}"
                );
            }
            Ok(())
        },
    )
    .await;
    start.elapsed()
}

/// `Tag` as `plugins list --json` shows it.
fn tag_listed(server: &Server) -> Value {
    let text = ok_text(admin(server, &["--json", "plugins", "list"]), "list");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v.as_array()
        .and_then(|a| a.iter().find(|p| p["service"] == "Tag"))
        .cloned()
        .unwrap_or_else(|| panic!("no Tag in {text}"))
}

/// Tag files by name: `<id>` holds the tag of the build that processed message `<id>`.
fn tag_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("tags dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).unwrap_or_default())
        })
        .collect()
}

/// The services config: `Tag` running `wasm` from `p`, retried after 1 s when it fails
/// temporarily.
fn write_config(p: &TagPlugins) {
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
  retry_policy {{ initial_backoff {{ seconds: 1 }} backoff_multiplier: 1 }}
}}
"#,
            p.live().display(),
            p.tags().display()
        ),
    )
    .expect("services config");
}

async fn start(p: &TagPlugins) -> Server {
    write_config(p);
    Server::start(ServerOptions {
        extra_args: vec![
            "--services_config".into(),
            p.config().display().to_string(),
            "--stats_listen".into(),
            "127.0.0.1:0".into(),
        ],
        ..Default::default()
    })
    .await
}

/// A Go client whose daemon sends `count` messages of `message_type` to `Tag` at start.
async fn sender(server: &Server, message_type: &str, count: usize) -> GoClient {
    GoClient::start(
        server,
        ClientOptions {
            services: vec![SENDER.into()],
            program: grr::sender(&[("Tag", message_type, count)]),
            ..Default::default()
        },
    )
    .await
}

/// The server-side IDs (hex) of what `client` sent, once it sent `count`.
async fn sent_ids(client: &GoClient, count: usize) -> (Vec<u8>, Vec<String>) {
    let id = client.client_id().await;
    let sent = eventually(Duration::from_secs(60), "the daemon to send", || async {
        client.check_running()?;
        let s = grr::sent(client, SENDER);
        ensure!(s.len() == count, "{} of {count} sent", s.len());
        Ok(s)
    })
    .await;
    let ids = sent
        .iter()
        .map(|s| hex::encode(checks::client_message_id(&id, SENDER, &s.source_message_id)))
        .collect();
    (id, ids)
}

/// Whether the canary of deployment `deployment` at `share` % picks `client` (the rule the
/// servers use, restated).
fn picked(client: &[u8], deployment: u64, share: u64) -> bool {
    let mut h = Sha256::new();
    h.update(client);
    h.update(deployment.to_be_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) % 100 < share
}

/// Waits until every one of `ids` has a tag file, then checks none is processed twice and
/// returns each one's tag.
async fn processed_once(p: &TagPlugins, ids: &[String]) -> BTreeMap<String, String> {
    eventually(
        Duration::from_secs(60),
        "every message processed",
        || async {
            let files = tag_files(&p.tags());
            let missing: Vec<&String> = ids.iter().filter(|i| !files.contains_key(*i)).collect();
            ensure!(
                missing.is_empty(),
                "{} of {} not processed",
                missing.len(),
                ids.len()
            );
            Ok(())
        },
    )
    .await;
    // Anything processed twice would show within the retry interval.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let files = tag_files(&p.tags());
    let dups: Vec<&String> = files.keys().filter(|f| f.ends_with(".dup")).collect();
    assert!(dups.is_empty(), "processed more than once: {dups:?}");
    ids.iter()
        .map(|i| (i.clone(), files[i].trim().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_splits_clients_by_hash_and_promotion_moves_everyone() {
    let (a, b) = (build("a"), build("b"));
    let p = TagPlugins::new(&a);
    let server = start(&p).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let b_file = dir.path().join("tag-b.wasm");
    std::fs::write(&b_file, &b).expect("writing tag-b");

    let out = ok_text(
        admin(
            &server,
            &[
                "--json",
                "plugins",
                "deploy",
                "Tag",
                &b_file.display().to_string(),
                "--share",
                "50",
            ],
        ),
        "deploy",
    );
    let d: Value = serde_json::from_str(&out).expect("deploy JSON");
    assert_eq!(d["state"], "canary", "{d}");
    assert_eq!(d["digest"], digest(&b), "{d}");
    assert_eq!(d["share"], 50, "{d}");
    let deployment = d["id"].as_u64().expect("deployment id");
    let took = wait_serving(&server, &digest(&a), &digest(&b)).await;
    println!("deploy -> serving the canary: {took:?}");
    let listed = tag_listed(&server);
    assert_eq!(
        (
            listed["digest"].as_str(),
            listed["candidate_digest"].as_str()
        ),
        (Some(digest(&a).as_str()), Some(digest(&b).as_str())),
        "{listed}"
    );
    assert_eq!(listed["deployment"], deployment, "{listed}");

    const CLIENTS: usize = 6;
    const EACH: usize = 4;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(sender(&server, "m", EACH).await);
    }
    let mut all = Vec::new();
    let mut per_client = Vec::new();
    for c in &clients {
        let (id, ids) = sent_ids(c, EACH).await;
        all.extend(ids.clone());
        per_client.push((id, ids));
    }
    let tags = processed_once(&p, &all).await;
    let mut on_b = 0;
    for (id, ids) in &per_client {
        let want = if picked(id, deployment, 50) { "b" } else { "a" };
        on_b += usize::from(want == "b");
        for i in ids {
            assert_eq!(tags[i], want, "client {} message {i}", hex::encode(id));
        }
    }
    println!("{on_b} of {CLIENTS} clients on the candidate");

    // Status shows both versions and the candidate's calls.
    let s = status(&server);
    assert_eq!(s["canary"]["id"], deployment, "{s}");
    assert_eq!(
        s["candidate_stats"]["calls"].as_u64(),
        Some((on_b * EACH) as u64),
        "{s}"
    );
    let text = ok_text(admin(&server, &["plugins", "status"]), "status text");
    assert!(
        text.contains(&format!("sha256:{}", digest(&b))) && text.contains("canary, 50%"),
        "{text}"
    );

    // Promote: every client, old and new, gets tag-b.
    ok_text(admin(&server, &["plugins", "promote", "Tag"]), "promote");
    wait_serving(&server, &digest(&b), "").await;
    let late = sender(&server, "m", EACH).await;
    let (_, late_ids) = sent_ids(&late, EACH).await;
    let tags = processed_once(&p, &late_ids).await;
    assert!(tags.values().all(|t| t == "b"), "{tags:?}");
    let files = tag_files(&p.tags());
    assert_eq!(files.len(), all.len() + late_ids.len(), "{files:?}");

    // A reload of the services file keeps the promoted deployment on top.
    ok_text(admin(&server, &["plugins", "reload"]), "reload");
    let listed = tag_listed(&server);
    assert_eq!(listed["digest"], digest(&b), "{listed}");
    assert_eq!(listed["candidate_digest"], "", "{listed}");
    let text = ok_text(admin(&server, &["plugins", "list"]), "list");
    assert!(
        text.contains(&format!(
            "Tag: deployment {deployment} on top of the services config, promoted"
        )),
        "{text}"
    );
    let again = sender(&server, "m", 2).await;
    let (_, again_ids) = sent_ids(&again, 2).await;
    let tags = processed_once(&p, &again_ids).await;
    assert!(tags.values().all(|t| t == "b"), "after a reload: {tags:?}");

    let history = ok_text(admin(&server, &["plugins", "history", "Tag"]), "history");
    assert!(history.contains("promoted"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_canary_rolls_back_by_itself_and_the_stable_version_processes_everything() {
    let a = build("a");
    let trap = std::fs::read(
        fleetgate_tests::env::workspace_root()
            .join("plugins/target/wasm32-wasip2/release/test_trap.wasm"),
    )
    .expect("the trap test plugin (cd plugins && cargo build --release --target wasm32-wasip2)");
    let p = TagPlugins::new(&a);
    let server = start(&p).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let trap_file = dir.path().join("trap.wasm");
    std::fs::write(&trap_file, &trap).expect("writing trap");
    ok_text(
        admin(
            &server,
            &[
                "plugins",
                "deploy",
                "Tag",
                &trap_file.display().to_string(),
                "--share",
                "50",
                "--auto-rollback",
                "--min-calls",
                "3",
            ],
        ),
        "deploy",
    );
    wait_serving(&server, &digest(&a), &digest(&trap)).await;

    // Every message traps on the candidate, so all must end processed by tag-a.
    // Twelve clients at 50 %: the candidate gets none with probability 1/4096.
    const CLIENTS: usize = 12;
    const EACH: usize = 3;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(sender(&server, "trap", EACH).await);
    }
    let first = Instant::now();
    let mut all = Vec::new();
    for c in &clients {
        all.extend(sent_ids(c, EACH).await.1);
    }
    let rolled = eventually(
        Duration::from_secs(60),
        "the automatic rollback",
        || async {
            let s = status(&server);
            let latest = &s["latest"];
            if latest["state"] != "rolled_back" {
                bail!("still {}: {s}", latest["state"]);
            }
            Ok(latest.clone())
        },
    )
    .await;
    println!("sent -> rolled back: {:?}", first.elapsed());
    let reason = rolled["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("automatic rollback"), "{rolled}");
    wait_serving(&server, &digest(&a), "").await;
    let tags = processed_once(&p, &all).await;
    assert!(
        tags.values().all(|t| t == "a"),
        "a message was processed by something else than the stable version: {tags:?}"
    );
    let text = ok_text(admin(&server, &["plugins", "status", "Tag"]), "status");
    assert!(text.contains("rolled_back: automatic rollback"), "{text}");
    let stats = fleetgate_tests::scrape::ready_addr(&server, "stats");
    let n = fleetgate_tests::scrape::metric(
        stats,
        r#"fleetgate_plugin_rollout_events_total{service="Tag",event="automatic_rollback"}"#,
    )
    .await
    .expect("scrape");
    assert_eq!(n, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_by_labels_takes_only_the_labelled_clients() {
    let (a, b) = (build("a"), build("b"));
    let p = TagPlugins::new(&a);
    let server = start(&p).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let b_file = dir.path().join("tag-b.wasm");
    std::fs::write(&b_file, &b).expect("writing tag-b");
    ok_text(
        admin(
            &server,
            &[
                "plugins",
                "deploy",
                "Tag",
                &b_file.display().to_string(),
                "--labels",
                "client:canary",
            ],
        ),
        "deploy",
    );
    wait_serving(&server, &digest(&a), &digest(&b)).await;
    let labelled = |label: bool| {
        GoClient::start(
            &server,
            ClientOptions {
                services: vec![SENDER.into()],
                program: grr::sender(&[("Tag", "m", 3)]),
                labels: if label { vec!["canary".into()] } else { vec![] },
                ..Default::default()
            },
        )
    };
    let (yes, no) = (labelled(true).await, labelled(false).await);
    let (_, yes_ids) = sent_ids(&yes, 3).await;
    let (_, no_ids) = sent_ids(&no, 3).await;
    let all: Vec<String> = yes_ids.iter().chain(&no_ids).cloned().collect();
    let tags = processed_once(&p, &all).await;
    for i in &yes_ids {
        assert_eq!(tags[i], "b", "a labelled client's message");
    }
    for i in &no_ids {
        assert_eq!(tags[i], "a", "an unlabelled client's message");
    }
}

#[tokio::test]
async fn bad_deploys_are_refused_naming_what_is_wrong_and_change_nothing() {
    let (a, b) = (build("a"), build("b"));
    let p = TagPlugins::new(&a);
    let server = start(&p).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("writing a component");
        path.display().to_string()
    };
    let release =
        fleetgate_tests::env::workspace_root().join("plugins/target/wasm32-wasip2/release");
    let read = |name: &str| std::fs::read(release.join(name)).expect("a built plugin");
    let b_file = file("tag-b.wasm", &b);
    let garbage = file("garbage.wasm", b"this is not a component");
    let router = file("router.wasm", &read("router_example.wasm"));
    let echo = file("echo.wasm", &read("echo.wasm"));

    let deploy = |args: &[&str]| {
        let mut all = vec!["plugins", "deploy"];
        all.extend_from_slice(args);
        admin(&server, &all)
    };
    let e = refused(deploy(&["Tag", &garbage]), "garbage");
    assert!(e.contains("not a usable component"), "{e}");
    let e = refused(deploy(&["Tag", &router]), "a router");
    assert!(e.contains("`router` world, not `service`"), "{e}");
    let e = refused(deploy(&["Tag", &echo]), "echo without messaging");
    assert!(
        e.contains("does not grant") && e.contains("messaging"),
        "{e}"
    );
    let e = refused(deploy(&["Tag", &b_file, "--share", "101"]), "share 101");
    assert!(e.contains("0-100"), "{e}");
    let e = refused(deploy(&["Nope", &b_file]), "unknown service");
    assert!(e.contains("unknown service \"Nope\""), "{e}");
    let e = refused(
        deploy(&["Tag", &b_file, "--share", "5", "--labels", "x"]),
        "share and labels",
    );
    assert!(e.contains("--share") || e.contains("--labels"), "{e}");
    let e = refused(
        admin(&server, &["plugins", "promote", "Tag"]),
        "promote nothing",
    );
    assert!(e.contains("no deployment in canary"), "{e}");
    let history = ok_text(admin(&server, &["plugins", "history", "Tag"]), "history");
    assert!(history.contains("No deployments of Tag."), "{history}");

    ok_text(
        deploy(&["Tag", &b_file, "--labels", "client:canary"]),
        "deploy",
    );
    let e = refused(deploy(&["Tag", &b_file]), "a second canary");
    assert!(e.contains("already has deployment"), "{e}");
    ok_text(admin(&server, &["plugins", "rollback", "Tag"]), "rollback");
    let e = refused(
        admin(&server, &["plugins", "rollback", "Tag"]),
        "rollback twice",
    );
    assert!(e.contains("no deployment in canary"), "{e}");
    let v: Value = serde_json::from_str(&ok_text(
        admin(&server, &["plugins", "history", "Tag", "--json"]),
        "history",
    ))
    .expect("history JSON");
    let v = v.as_array().expect("an array");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["state"], "rolled_back");
    assert_eq!(v[0]["labels"][0], "client:canary");
    assert_eq!(v[0]["reason"], "rolled back by an operator");
}

/// Seconds since midnight (UTC) of a log line's timestamp, e.g. `2026-12-08T04:14:00.441486Z`
/// after any colour codes.
fn log_time(line: &str) -> Option<f64> {
    let t = line.find('T').map(|i| &line[i + 1..])?;
    let end = t.find('Z')?;
    let mut parts = t[..end].split(':');
    let (h, m, s): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The services config of the fleet: `TestService` (what the clients' echo daemons answer to)
/// running `p`'s component, retried after 1 s when it fails temporarily.
fn fleet_services(p: &TagPlugins) -> String {
    format!(
        r#"services {{
  name: "TestService"
  factory: "WASM"
  config {{
    [type.googleapis.com/fleetgate.plugin.v1.WasmConfig] {{
      path: "{}"
      config: "/tags"
      preopens {{ host_path: "{}" guest_path: "/tags" }}
    }}
  }}
  retry_policy {{ initial_backoff {{ seconds: 1 }} backoff_multiplier: 1 }}
}}
"#,
        p.live().display(),
        p.tags().display()
    )
}

fn fleet_admin(addr: std::net::SocketAddr, args: &[&str]) -> Output {
    std::process::Command::new(fleetgate_bin())
        .args(["admin", "--admin_addr", &addr.to_string()])
        .args(args)
        .env_remove("FLEETGATE_ADMIN")
        .output()
        .expect("running fleetgate admin")
}

fn fleet_status(addr: std::net::SocketAddr) -> Value {
    let text = ok_text(
        fleet_admin(addr, &["plugins", "status", "TestService", "--json"]),
        "status",
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v[0].clone()
}

/// Waits until `servers` servers report serving `stable` with `candidate`; returns how long.
async fn fleet_serving(
    addr: std::net::SocketAddr,
    servers: usize,
    stable: &str,
    candidate: &str,
) -> Duration {
    let start = Instant::now();
    eventually(
        Duration::from_secs(30),
        "every server to converge",
        || async {
            let s = fleet_status(addr);
            let v = s["servers"].as_array().cloned().unwrap_or_default();
            ensure!(
                v.len() == servers,
                "{} of {servers} servers report: {s}",
                v.len()
            );
            for r in &v {
                ensure!(
                    r["stable_digest"] == stable && r["candidate_digest"] == candidate,
                    "{r}"
                );
            }
            Ok(())
        },
    )
    .await;
    start.elapsed()
}

/// Echo requests to every client; returns (client, server-side ID of its reply) pairs.
async fn echo_round(
    admin: &fleetgate_tests::Admin,
    clients: &[Vec<u8>],
    each: usize,
) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    for c in clients {
        for _ in 0..each {
            let id = admin
                .insert(c, fleetgate_tests::client::TEST_SERVICE, "echo", b"x")
                .await
                .expect("InsertMessage");
            let reply = checks::client_message_id(c, fleetgate_tests::client::TEST_SERVICE, &id);
            out.push((c.clone(), hex::encode(reply)));
        }
    }
    out
}

/// Two frontends behind haproxy and an admin-only server on MariaDB: a canary deployed through
/// the admin-only server reaches both frontends, splits the clients by hash whichever frontend
/// they stream to, and promotion moves every server; then a candidate that traps on every
/// message, with `--auto-rollback`, is rolled back on every server and the stable version
/// processes every message once; a candidate the servers cannot build is rolled back for the
/// whole fleet with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_frontends_and_an_admin_server_every_server_converges() {
    use fleetgate_tests::fleet::Fleet;
    use fleetgate_tests::node::Flavor;

    let (a, b) = (build("a"), build("b"));
    let p = TagPlugins::new(&a);
    let mut fleet = Fleet::start_with_services(
        "rollout",
        Flavor::Fleetgate,
        &[Flavor::Fleetgate, Flavor::Fleetgate],
        &fleet_services(&p),
    )
    .await;
    let addr = fleet.admin_addr;
    const CLIENTS: usize = 6;
    for i in 0..CLIENTS {
        fleet.start_client(i % 2);
    }
    let mut ids = Vec::new();
    for c in &fleet.clients {
        ids.push(c.client_id().await);
    }
    let admin = fleet.admin().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let b_file = dir.path().join("tag-b.wasm");
    std::fs::write(&b_file, &b).expect("tag-b");

    let started = Instant::now();
    let d: Value = serde_json::from_str(&ok_text(
        fleet_admin(
            addr,
            &[
                "--json",
                "plugins",
                "deploy",
                "TestService",
                &b_file.display().to_string(),
                "--share",
                "50",
            ],
        ),
        "deploy",
    ))
    .expect("deploy JSON");
    let deployment = d["id"].as_u64().expect("id");
    let rpc = started.elapsed();
    let converged = fleet_serving(addr, 3, &digest(&a), &digest(&b)).await;
    println!(
        "deploy: the CLI (check, compile, store) {rpc:?}, then every server serves the canary {converged:?} later"
    );

    // Wait for the clients to stream, then echo: each reply is processed on the frontend its
    // client streams to, by the version the client's hash picks.
    eventually(Duration::from_secs(60), "every client enrolled", || async {
        let listed = admin.list_clients(&[]).await?;
        ensure!(listed.len() >= CLIENTS, "{} of {CLIENTS}", listed.len());
        Ok(())
    })
    .await;
    let sent = echo_round(&admin, &ids, 3).await;
    let all: Vec<String> = sent.iter().map(|(_, r)| r.clone()).collect();
    let tags = processed_once(&p, &all).await;
    for (client, reply) in &sent {
        let want = if picked(client, deployment, 50) {
            "b"
        } else {
            "a"
        };
        assert_eq!(tags[reply], want, "client {}", hex::encode(client));
    }

    let started = Instant::now();
    ok_text(
        fleet_admin(addr, &["plugins", "promote", "TestService"]),
        "promote",
    );
    fleet_serving(addr, 3, &digest(&b), "").await;
    println!("promote -> every server serves it: {:?}", started.elapsed());
    let after = echo_round(&admin, &ids, 2).await;
    let after_ids: Vec<String> = after.iter().map(|(_, r)| r.clone()).collect();
    let tags = processed_once(&p, &after_ids).await;
    assert!(tags.values().all(|t| t == "b"), "{tags:?}");

    // A candidate that traps on every message, over the promoted tag-b.
    let bomb = std::fs::read(
        fleetgate_tests::env::workspace_root()
            .join("plugins/target/wasm32-wasip2/release/test_memory_bomb.wasm"),
    )
    .expect("the memory-bomb test plugin");
    let bomb_file = dir.path().join("bomb.wasm");
    std::fs::write(&bomb_file, &bomb).expect("bomb");
    // At 50 %, redeployed (a new ID, a new split) until the hash picks at least one client.
    for attempt in 0.. {
        let d: Value = serde_json::from_str(&ok_text(
            fleet_admin(
                addr,
                &[
                    "--json",
                    "plugins",
                    "deploy",
                    "TestService",
                    &bomb_file.display().to_string(),
                    "--share",
                    "50",
                    "--auto-rollback",
                    "--min-calls",
                    "2",
                ],
            ),
            "deploy the bomb",
        ))
        .expect("deploy JSON");
        let id = d["id"].as_u64().expect("id");
        if ids.iter().any(|c| picked(c, id, 50)) {
            break;
        }
        assert!(attempt < 5, "no split picks a client");
        ok_text(
            fleet_admin(addr, &["plugins", "rollback", "TestService"]),
            "rollback",
        );
    }
    fleet_serving(addr, 3, &digest(&b), &digest(&bomb)).await;
    let started = Instant::now();
    let bombed = echo_round(&admin, &ids, 3).await;
    let rolled = eventually(
        Duration::from_secs(60),
        "the automatic rollback",
        || async {
            let s = fleet_status(addr);
            if s["latest"]["state"] != "rolled_back" {
                bail!("still {}", s["latest"]["state"]);
            }
            Ok(s["latest"].clone())
        },
    )
    .await;
    assert!(
        rolled["reason"]
            .as_str()
            .is_some_and(|r| r.contains("automatic rollback")),
        "{rolled}"
    );
    fleet_serving(addr, 3, &digest(&b), "").await;
    println!(
        "first echo -> rolled back on every server: {:?}",
        started.elapsed()
    );
    // From the servers' own logs: the first trap anywhere to the last server's switch.
    let nodes: Vec<&fleetgate_tests::node::Node> = std::iter::once(&fleet.admin_node)
        .chain(fleet.frontends.iter().map(|f| &f.node))
        .collect();
    let first_trap = nodes
        .iter()
        .flat_map(|n| n.log_lines("memory limit"))
        .filter_map(|l| log_time(&l))
        .fold(f64::MAX, f64::min);
    let switched = nodes
        .iter()
        .filter_map(|n| {
            n.log_lines("plugin deployments applied")
                .last()
                .and_then(|l| log_time(l))
        })
        .fold(0.0, f64::max);
    println!(
        "first trap -> the last server sends everything to stable (from the logs): {:.0} ms",
        (switched - first_trap) * 1000.0
    );
    let bombed_ids: Vec<String> = bombed.iter().map(|(_, r)| r.clone()).collect();
    let tags = processed_once(&p, &bombed_ids).await;
    assert!(
        tags.values().all(|t| t == "b"),
        "processed by something else than the stable version: {tags:?}"
    );
    let files = tag_files(&p.tags());
    assert_eq!(
        files.len(),
        all.len() + after_ids.len() + bombed_ids.len(),
        "every message once"
    );

    // A canary that no server can build (stored directly, as if the server that checked it
    // could and the others cannot): rolled back for the fleet with the reason, and nothing
    // stops serving the stable version.
    let junk = b"not a component";
    let junk_digest = hex::encode(Sha256::digest(junk));
    fleet
        .db
        .query(&format!(
            "INSERT INTO fleetgate_components(digest, size, wasm, created_time) \
             VALUES ('{junk_digest}', {}, '{}', 0); \
             INSERT INTO fleetgate_deployments(service_name, digest, config, share, labels, shadow, \
             auto_rollback, window_ms, window_calls, min_calls, error_rate_points, p99_ratio, \
             requested_by, created_time, updated_time, state, reason, canary_of) VALUES \
             ('TestService', '{junk_digest}', '', 50, '', 0, 0, 30000, 50, 5, 10, 2, 'test', 0, 0, \
             'canary', '', 'TestService')",
            junk.len(),
            String::from_utf8_lossy(junk)
        ))
        .expect("inserting a deployment");
    let rolled = eventually(
        Duration::from_secs(30),
        "the build failure's rollback",
        || async {
            let s = fleet_status(addr);
            if s["latest"]["state"] != "rolled_back" || s["latest"]["digest"] != junk_digest {
                bail!("latest is {}", s["latest"]);
            }
            Ok(s)
        },
    )
    .await;
    let reason = rolled["latest"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("could not build") && reason.contains(&junk_digest),
        "{rolled}"
    );
    fleet_serving(addr, 3, &digest(&b), "").await;
    let last = echo_round(&admin, &ids, 1).await;
    let last_ids: Vec<String> = last.iter().map(|(_, r)| r.clone()).collect();
    let tags = processed_once(&p, &last_ids).await;
    assert!(tags.values().all(|t| t == "b"), "{tags:?}");
}

/// A shadow run of tag-b over tag-a: every message is processed by tag-a exactly once, tag-b
/// sees copies without its side effects (no preopened directory, so it cannot write its tag
/// files) and `status` reports that its outcomes differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_run_reports_differences_and_changes_nothing_for_clients() {
    let (a, b) = (build("a"), build("b"));
    let p = TagPlugins::new(&a);
    let server = start(&p).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let b_file = dir.path().join("tag-b.wasm");
    std::fs::write(&b_file, &b).expect("writing tag-b");
    ok_text(
        admin(
            &server,
            &[
                "plugins",
                "deploy",
                "Tag",
                &b_file.display().to_string(),
                "--shadow",
                "--share",
                "100",
            ],
        ),
        "deploy",
    );
    wait_serving(&server, &digest(&a), &digest(&b)).await;
    const EACH: usize = 4;
    let (one, two) = (
        sender(&server, "m", EACH).await,
        sender(&server, "m", EACH).await,
    );
    let mut all = sent_ids(&one, EACH).await.1;
    all.extend(sent_ids(&two, EACH).await.1);
    let tags = processed_once(&p, &all).await;
    assert!(tags.values().all(|t| t == "a"), "{tags:?}");
    assert_eq!(
        tag_files(&p.tags()).len(),
        all.len(),
        "nothing but tag-a's files"
    );
    let s = eventually(Duration::from_secs(20), "the shadow's report", || async {
        let s = status(&server);
        let copies = s["shadow"]["copies"].as_u64().unwrap_or(0);
        ensure!(copies == all.len() as u64, "{copies} copies: {s}");
        Ok(s)
    })
    .await;
    assert_eq!(
        s["shadow"]["candidate_failed"].as_u64(),
        Some(all.len() as u64),
        "{s}"
    );
    let diff = s["shadow"]["last_difference"].as_str().unwrap_or_default();
    assert!(diff.starts_with("stable: ok; candidate: "), "{s}");
    let text = ok_text(admin(&server, &["plugins", "status", "Tag"]), "status");
    assert!(
        text.contains("failed only on the candidate") && text.contains("shadow"),
        "{text}"
    );
}

/// Behind a `GRPC` service and GRR's Python Processor: a deployment of the forwarder component
/// takes the service's upstream from the services file; at 100 % every message reaches the
/// Processor through the candidate, once; then a candidate that traps at 50 % with
/// `--auto-rollback` is rolled back and every one of its messages reaches the Processor once,
/// through the stable version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_grrs_processor_every_message_arrives_once() {
    use fleetgate_tests::grr::GrrConnector;
    const GRR: &str = "GRR";
    let grr_addr = fleetgate_tests::ports::free_addr();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("server.services.config");
    let services = grr::grpc_services_config(&[(GRR, grr_addr)]);
    let services = services
        .trim_end()
        .strip_suffix('}')
        .expect("a services block")
        .to_owned()
        + "  retry_policy {\n    initial_backoff { seconds: 1 }\n    backoff_multiplier: 1\n  }\n}\n";
    std::fs::write(&config, services).expect("services config");
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
    let release =
        fleetgate_tests::env::workspace_root().join("plugins/target/wasm32-wasip2/release");
    let forwarder = release.join("grpc_forwarder.wasm");
    let trap = release.join("test_trap.wasm");
    let forwarder_digest = digest(&std::fs::read(&forwarder).expect("the forwarder"));
    let trap_digest = digest(&std::fs::read(&trap).expect("the trap plugin"));
    let deploy = |file: &Path, share: &str, auto: bool| {
        let mut args = vec![
            "plugins".to_owned(),
            "deploy".into(),
            GRR.into(),
            file.display().to_string(),
            "--share".into(),
            share.into(),
        ];
        if auto {
            args.extend(["--auto-rollback".into(), "--min-calls".into(), "2".into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok_text(admin(&server, &args), "deploy")
    };
    let grr_status = || {
        let text = ok_text(
            admin(&server, &["plugins", "status", GRR, "--json"]),
            "status",
        );
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        v[0].clone()
    };
    let serving = |candidate: String| {
        let grr_status = &grr_status;
        async move {
            eventually(
                Duration::from_secs(20),
                "the server to converge",
                || async {
                    let s = grr_status();
                    let v = &s["servers"][0];
                    ensure!(v["candidate_digest"] == candidate.as_str(), "{s}");
                    Ok(())
                },
            )
            .await
        }
    };
    // Clients send `count` messages of `message_type`; returns the server-side IDs.
    let send = |message_type: &'static str, count: usize| {
        let server = &server;
        async move {
            let c = GoClient::start(
                server,
                ClientOptions {
                    services: vec![GRR.into()],
                    program: grr::sender(&[(GRR, message_type, count)]),
                    ..Default::default()
                },
            )
            .await;
            let id = c.client_id().await;
            let sent = eventually(Duration::from_secs(60), "the daemon to send", || async {
                c.check_running()?;
                let s = grr::sent(&c, GRR);
                ensure!(s.len() == count, "{} of {count} sent", s.len());
                Ok(s)
            })
            .await;
            let ids: Vec<Vec<u8>> = sent
                .iter()
                .map(|s| checks::client_message_id(&id, GRR, &s.source_message_id))
                .collect();
            (c, id, ids)
        }
    };
    let arrived_once = |ids: Vec<Vec<u8>>| {
        let connector = &connector;
        async move {
            eventually(
                Duration::from_secs(60),
                "the Processor to get all",
                || async {
                    let got = connector.received();
                    let missing = ids
                        .iter()
                        .filter(|i| !got.iter().any(|g| &g.id == *i))
                        .count();
                    ensure!(missing == 0, "{missing} of {} not received", ids.len());
                    Ok(())
                },
            )
            .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let got = connector.received();
            for i in &ids {
                let n = got.iter().filter(|g| &g.id == i).count();
                assert_eq!(n, 1, "{} received {n} times", hex::encode(i));
            }
        }
    };

    deploy(&forwarder, "100", false);
    serving(forwarder_digest.clone()).await;
    let (_c1, _, ids) = send("GrrMessage", 4).await;
    arrived_once(ids.clone()).await;
    let s = grr_status();
    assert_eq!(s["candidate_stats"]["calls"].as_u64(), Some(4), "{s}");
    ok_text(admin(&server, &["plugins", "promote", GRR]), "promote");
    serving(String::new()).await;

    // A trapping candidate over the promoted forwarder. Clients start until one the split
    // picks has sent; every message, trapped or not, reaches the Processor once.
    deploy(&trap, "50", true);
    serving(trap_digest).await;
    let d = grr_status()["canary"]["id"].as_u64().expect("canary id");
    let mut senders = Vec::new();
    loop {
        let (c, id, ids) = send("trap", 3).await;
        senders.push(c);
        arrived_once(ids).await;
        if picked(&id, d, 50) {
            break;
        }
        assert!(senders.len() < 16, "no client picked by the canary");
    }
    let s = eventually(
        Duration::from_secs(30),
        "the automatic rollback",
        || async {
            let s = grr_status();
            ensure!(s["latest"]["state"] == "rolled_back", "{}", s["latest"]);
            Ok(s)
        },
    )
    .await;
    assert!(
        s["latest"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("automatic rollback")),
        "{s}"
    );
}
