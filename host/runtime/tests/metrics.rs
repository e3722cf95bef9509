//! Every component call is reported to the server's metrics, by service, generation and
//! outcome, when the host has a metrics handle.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use fleetgate_engine::Service;
use fleetgate_runtime::{Capability, ComponentService, Grants, HostServices};
use fleetgate_telemetry::Metrics;
use support::{RecordingSink, client_message, runtime, spec};

#[tokio::test]
async fn calls_are_counted_by_service_generation_and_outcome() {
    let metrics = Metrics::new();
    let host = HostServices::new(Arc::new(RecordingSink::default())).with_metrics(metrics.clone());
    let grants = Grants::basic().with(Capability::Messaging);
    let echo = ComponentService::load(&runtime(), spec("Echo", "echo", grants), host.clone())
        .await
        .unwrap();
    echo.set_generation(3);
    echo.process(&client_message("Echo", "Ping", 1))
        .await
        .unwrap();
    echo.process(&client_message("Echo", "Ping", 2))
        .await
        .unwrap();
    // A message from a server service: echo refuses it (a guest error, not a trap).
    let mut m = client_message("Echo", "Ping", 3);
    m.source.as_mut().unwrap().client_id.clear();
    echo.process(&m).await.unwrap_err();

    let trap = ComponentService::load(&runtime(), spec("Trap", "test_trap", Grants::basic()), host)
        .await
        .unwrap();
    trap.process(&client_message("Trap", "trap", 4))
        .await
        .unwrap_err();

    let text = metrics.encode();
    for line in [
        r#"fleetgate_plugin_calls_total{service="Echo",generation="3",outcome="ok"} 2"#,
        r#"fleetgate_plugin_calls_total{service="Echo",generation="3",outcome="error"} 1"#,
        r#"fleetgate_plugin_calls_total{service="Trap",generation="1",outcome="trap"} 1"#,
        r#"fleetgate_plugin_call_seconds_count{service="Echo",generation="3"} 3"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}
