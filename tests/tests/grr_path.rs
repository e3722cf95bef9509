//! GRR's path through Fleetgate with the real peers: the Go client's daemon service `GRR` →
//! a `GRPC` server service (the bundled forwarder component) → GRR's Python server connector
//! (`InsecureGRPCServiceClient.Listen`), and back through the same connector's admin side
//! (`Send` = InsertMessage, `ListClients`). Quickstart gets the `GRPC` service from
//! `--services_config`, written as GRR's installer writes it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure};
use fleetgate_tests::admin::PAYLOAD_TYPE_URL;
use fleetgate_tests::grr::{self, GrrConnector, Processed};
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually, ports};

const GRR: &str = "GRR";

/// Starts quickstart with `services` (name, Processor address) as `GRPC` services, and GRR's
/// connector (service `GRR`) listening on `listen`.
async fn start(services: &[(&str, SocketAddr)], listen: SocketAddr) -> (Server, GrrConnector) {
    let config_dir = tempfile::Builder::new()
        .prefix("fleetgate-grr-config-")
        .tempdir()
        .expect("temp dir");
    let config: PathBuf = config_dir.path().join("server.services.config");
    std::fs::write(&config, grr::grpc_services_config(services)).expect("writing the config");
    let server = Server::start(ServerOptions {
        extra_args: vec!["--services_config".into(), config.display().to_string()],
        ..Default::default()
    })
    .await;
    let connector =
        GrrConnector::start(&server.root().join("grr"), GRR, listen, server.admin_addr()).await;
    (server, connector)
}

/// Waits until the Processor has received `n` messages matching `pred`.
async fn processed(
    connector: &GrrConnector,
    client: &GoClient,
    n: usize,
    what: &str,
    pred: impl Fn(&Processed) -> bool,
) -> Vec<Processed> {
    eventually(Duration::from_secs(45), what, || async {
        if let Err(e) = client.check_running() {
            panic!("{e:#}");
        }
        if let Err(e) = connector.check_running() {
            panic!("{e:#}");
        }
        let got: Vec<Processed> = connector
            .received()
            .into_iter()
            .filter(|m| pred(m))
            .collect();
        if got.len() < n {
            bail!("{} of {n} received by the Processor", got.len());
        }
        Ok(got)
    })
    .await
}

#[tokio::test]
async fn grr_connector_exchanges_messages_with_a_client() {
    const M: usize = 5;
    let listen = ports::free_addr();
    let (server, connector) = start(&[(GRR, listen)], listen).await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            services: vec![GRR.into()],
            labels: vec!["grr-e2e".into()],
            program: grr::sender(&[(GRR, "GrrMessage", M)]),
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;

    // Client → server service GRR → GRPC forwarder → Processor.Process → the callback.
    let got = processed(
        &connector,
        &client,
        M,
        &format!("{M} GrrMessages at GRR's Processor"),
        |_| true,
    )
    .await;
    let sent = grr::sent(&client, GRR);
    assert_eq!(sent.len(), M, "the daemon sent {sent:?}");
    assert_eq!(
        grr::starts(&client, GRR),
        1,
        "the client restarted the daemon"
    );
    assert_eq!(got.len(), M, "the Processor got duplicates: {got:?}");
    let mut ids = Vec::new();
    for s in &sent {
        let mid = checks::client_message_id(&id, GRR, &s.source_message_id);
        let m = got
            .iter()
            .find(|m| m.id == mid)
            .unwrap_or_else(|| panic!("message {} not processed: {got:?}", hex::encode(&mid)));
        assert_eq!(m.client_id, id, "source.client_id");
        assert_eq!(m.source_service, GRR, "source.service_name");
        assert!(m.dest_client_id.is_empty(), "destination.client_id set");
        assert_eq!(m.dest_service, GRR, "destination.service_name");
        assert_eq!(m.message_type, "GrrMessage");
        assert_eq!(m.payload, s.payload, "data.value of {}", hex::encode(&mid));
        assert_eq!(m.type_url, PAYLOAD_TYPE_URL, "data.type_url");
        ids.push(mid);
    }
    // The Processor answered OK, so the server stores them processed (not failed).
    checks::acked(&admin, &ids, Duration::from_secs(30)).await;

    // GRR → client: the connector's Send (InsertMessage, source unset, random 32-byte id).
    let payload = b"serialized GrrMessage \x00\x01\xff".to_vec();
    let (mid, source) = connector
        .send(&id, GRR, "GrrMessage", &payload)
        .await
        .expect("the connector's Send");
    assert_eq!(mid.len(), 32, "the connector's message id");
    assert_eq!(source, GRR, "the connector fills in source.service_name");
    let delivered = eventually(
        Duration::from_secs(30),
        "the connector's message to reach the daemon",
        || async {
            client.check_running()?;
            grr::got(&client, GRR)
                .into_iter()
                .find(|g| g.id == mid)
                .ok_or_else(|| anyhow!("not received yet"))
        },
    )
    .await;
    assert_eq!(delivered.message_type, "GrrMessage");
    assert_eq!(delivered.payload, payload);
    assert_eq!(delivered.source, GRR);
    checks::acked(&admin, std::slice::from_ref(&mid), Duration::from_secs(30)).await;

    // GetLabelsFromFleetspeak: ListClients with the one id, through the connector.
    let want = ["client:amd64", "client:grr-e2e", "client:linux"];
    let listed = eventually(
        Duration::from_secs(15),
        "ListClients through the connector",
        || async {
            let l = connector.list_clients(&id).await?;
            ensure!(l.len() == 1, "ListClients([id]) gave {l:?}");
            ensure!(l[0].0 == id, "ListClients([id]) gave another client: {l:?}");
            ensure!(l[0].1 == want, "labels {:?}", l[0].1);
            Ok(l)
        },
    )
    .await;
    assert_eq!(listed[0].1, want);

    // GRR's KeepAlive thread calls the admin API every 5 s with a 1 s deadline and logs a
    // warning when a call fails. Let it run at least twice more, then check it never failed.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let log = connector.log_text();
    assert!(
        !log.contains("KeepAlive rpc failed") && !log.contains("Exception in KeepAlive"),
        "the connector's KeepAlive loop failed against Fleetgate:\n{log}"
    );
}

#[tokio::test]
async fn grr_connector_rejections_fail_permanently() {
    let listen = ports::free_addr();
    // `NotGRR` points at the same Processor, which serves `GRR` only: the connector answers
    // INVALID_ARGUMENT without calling the callback. A `Raise` message makes the callback raise:
    // UNKNOWN. Both codes are permanent (server.md §11): within one processing attempt the
    // forwarder calls at ≈ 0, 1, 3, 7, 15 s, then the message ends failed and is never retried.
    // (Fleetspeak idles until its 30 s context ends before failing it; Fleetgate answers as soon
    // as no attempt is left, ≈ 15 s.)
    let (server, connector) = start(&[(GRR, listen), ("NotGRR", listen)], listen).await;
    let client = GoClient::start(
        &server,
        ClientOptions {
            services: vec![GRR.into()],
            program: grr::sender(&[("NotGRR", "GrrMessage", 1), (GRR, "Raise", 1)]),
            ..Default::default()
        },
    )
    .await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    let sent = eventually(Duration::from_secs(30), "the daemon to send", || async {
        client.check_running()?;
        let s = grr::sent(&client, GRR);
        ensure!(s.len() == 2, "{} of 2 sent", s.len());
        Ok(s)
    })
    .await;
    let raise = checks::client_message_id(&id, GRR, &sent[1].source_message_id);
    let rejected = checks::client_message_id(&id, GRR, &sent[0].source_message_id);
    assert_eq!(sent[0].service, "NotGRR");

    // The callback sees the raising message (possibly several times: the forwarder retries).
    processed(
        &connector,
        &client,
        1,
        "the Raise message at the callback",
        |m| m.id == raise,
    )
    .await;

    for (mid, what, code) in [
        (&raise, "raising callback", "unknown"),
        (&rejected, "wrong service", "invalidargument"),
    ] {
        let result = eventually(
            Duration::from_secs(50),
            &format!("the {what} message to end failed"),
            || async {
                let st = admin.message_status(mid).await?;
                st.result
                    .ok_or_else(|| anyhow!("no result yet (created {:?})", st.creation_time))
            },
        )
        .await;
        assert!(
            result.failed,
            "the {what} message {} should have failed permanently: {result:?}",
            hex::encode(mid)
        );
        assert!(
            result
                .failed_reason
                .to_lowercase()
                .replace([' ', '_'], "")
                .contains(code),
            "the {what} message failed without naming gRPC code {code}: {result:?}"
        );
    }
    // Never passed to the callback: the connector checks the destination service first.
    assert!(
        connector.received().iter().all(|m| m.id != rejected),
        "the callback saw the message to NotGRR"
    );
    // One processing attempt each, five calls (1, 2, 4, 8 s apart), and no retry afterwards.
    let calls = connector
        .received()
        .iter()
        .filter(|m| m.id == raise)
        .count();
    assert_eq!(calls, 5, "calls of the Processor with the Raise message");
    let refusals = connector
        .log_text()
        .matches("Received message for unknown service: NotGRR")
        .count();
    assert_eq!(
        refusals, 5,
        "calls of the Processor with the NotGRR message"
    );
}

#[test]
fn quickstart_refuses_a_service_clashing_with_a_bundled_one() {
    let dir = tempfile::Builder::new()
        .prefix("fleetgate-grr-clash-")
        .tempdir()
        .expect("temp dir");
    let config = dir.path().join("server.services.config");
    let addr = ports::free_addr();
    std::fs::write(
        &config,
        grr::grpc_services_config(&[(GRR, addr), ("Echo", addr)]),
    )
    .expect("writing the config");
    let log = dir.path().join("quickstart.log");
    let mut child = std::process::Command::new(fleetgate_tests::env::fleetgate_bin())
        .arg("quickstart")
        .arg("--state_dir")
        .arg(dir.path().join("state"))
        .args(["--listen", "127.0.0.1:0", "--admin_listen", "127.0.0.1:0"])
        .arg("--services_config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("creating the log"))
        .spawn()
        .expect("running fleetgate quickstart");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for quickstart") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "quickstart kept running with a service named Echo in --services_config:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !status.success(),
        "quickstart exited with {status}: {stderr}"
    );
    assert!(
        stderr.contains("[Echo]") && stderr.contains("bundled"),
        "the error does not name the clashing service: {stderr}"
    );
}
