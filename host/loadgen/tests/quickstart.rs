//! The load generator against the real `fleetgate quickstart` binary: 20 streaming clients
//! enrol, 200 inserted messages all arrive exactly once.

mod support;

use std::time::Duration;

use fleetgate_loadgen::{InsertPlan, LoadgenConfig, Mode, Outbound};
use support::{Quickstart, fleetgate_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_streaming_clients_receive_every_message_once() {
    let server = match Quickstart::start(&fleetgate_bin(), &[]).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut config = LoadgenConfig::new(server.https, &server.ca_pem);
    config.clients = 20;
    config.mode = Mode::Streaming;
    config.admin = Some(server.admin);
    config.duration = Duration::from_secs(2);
    config.outbound = Some(Outbound {
        rate: 2.0,
        size: 64,
        service: "loadgen".into(),
    });
    config.insert = Some(InsertPlan {
        messages: 200,
        rate: 200.0,
        receive_timeout: Duration::from_secs(30),
    });
    let report = fleetgate_loadgen::run(config)
        .await
        .unwrap_or_else(|e| panic!("loadgen: {e}\n{}", server.log_tail()));
    println!("{report}");
    let context = || format!("{report}\n{}", server.log_tail());
    assert_eq!(report.connected, 20, "{}", context());
    assert_eq!(
        report.enrolled,
        Some(20),
        "every client enrolled: {}",
        context()
    );
    assert_eq!(report.inserted, 200, "{}", context());
    assert_eq!(report.lost, 0, "{}", context());
    assert_eq!(report.duplicates, 0, "{}", context());
    assert_eq!(
        report.latency.map(|l| l.samples),
        Some(200),
        "{}",
        context()
    );
    assert!(report.sent > 0, "outbound traffic flowed: {}", context());
    assert_eq!(
        report.delivered,
        report.sent,
        "every outbound message acked: {}",
        context()
    );
}
