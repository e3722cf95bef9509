//! The echo plugin, capabilities, `check`, and what a fresh instance per call costs.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;

use fleetgate_engine::{Service, ServiceError};
use fleetgate_runtime::{Capability, ComponentService, Grants, RuntimeError};
use support::{CLIENT, client_message, host, runtime, spec};

#[tokio::test]
async fn echo_replies_to_the_sending_client_service() {
    let rt = runtime();
    let (host, sink) = host();
    let spec = spec("Echo", "echo", Grants::basic().with(Capability::Messaging));
    let echo = ComponentService::load(&rt, spec, host).await.unwrap();

    let m = client_message("Echo", "Ping", 1);
    echo.process(&m).await.unwrap();

    let sent = sink.take();
    assert_eq!(sent.len(), 1);
    let reply = &sent[0];
    let dest = reply.destination.as_ref().unwrap();
    assert_eq!(dest.client_id, CLIENT);
    assert_eq!(dest.service_name, "TestService");
    // The host, not the plugin, sets the source.
    let source = reply.source.as_ref().unwrap();
    assert_eq!(source.service_name, "Echo");
    assert!(source.client_id.is_empty());
    assert_eq!(reply.data, m.data);
    assert_eq!(reply.message_type, "Ping");
    assert!(reply.message_id.is_empty(), "the engine assigns the ID");
}

#[tokio::test]
async fn echo_of_a_server_message_is_a_permanent_guest_error() {
    let rt = runtime();
    let (host, sink) = host();
    let spec = spec("Echo", "echo", Grants::basic().with(Capability::Messaging));
    let echo = ComponentService::load(&rt, spec, host).await.unwrap();
    let mut m = client_message("Echo", "Ping", 2);
    m.source.as_mut().unwrap().client_id.clear();
    let err = echo.process(&m).await.unwrap_err();
    assert!(matches!(err, ServiceError::Permanent(_)), "{err:?}");
    assert!(sink.take().is_empty());
    let stats = echo.stats();
    assert_eq!((stats.calls, stats.errors, stats.traps), (1, 1, 0));
}

#[tokio::test]
async fn a_withheld_capability_fails_at_load_naming_it() {
    let rt = runtime();
    let (host, _) = host();
    let err = ComponentService::load(&rt, spec("Echo", "echo", Grants::basic()), host)
        .await
        .err()
        .unwrap();
    match &err {
        RuntimeError::NotGranted {
            service,
            interface,
            capability,
        } => {
            assert_eq!(service, "Echo");
            assert_eq!(interface, "fleetgate:plugin/messaging@0.1.0");
            assert_eq!(capability, "messaging");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("grant `messaging`"), "{err}");
}

#[test]
fn check_lists_imports_exports_and_capabilities() {
    let report = fleetgate_runtime::check_bytes("echo", &support::plugin("echo")).unwrap();
    assert_eq!(report.world, "service");
    assert_eq!(report.capabilities, vec![Capability::Messaging]);
    assert!(
        report.exports.contains(&"init".to_owned())
            && report.exports.contains(&"process".to_owned())
    );
    assert!(
        report
            .imports
            .iter()
            .any(|i| i.starts_with("fleetgate:plugin/messaging"))
    );

    let router =
        fleetgate_runtime::check_bytes("router", &support::plugin("router_example")).unwrap();
    assert_eq!(router.world, "router");

    let err = fleetgate_runtime::check_bytes("junk", b"\0asm\x01\0\0\0").unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::World { .. } | RuntimeError::Compile { .. }
        ),
        "{err:?}"
    );
}

/// Not a benchmark, a guard: a call (fresh instance from the pool + init + process) must stay
/// cheap enough to run per message. Prints the figure for the record.
#[tokio::test]
async fn fresh_instance_cost() {
    let rt = runtime();
    let (host, _) = host();
    let spec = spec("Echo", "echo", Grants::basic().with(Capability::Messaging));
    let echo = ComponentService::load(&rt, spec, host).await.unwrap();
    let m = client_message("Echo", "Ping", 3);
    echo.process(&m).await.unwrap();
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        echo.process(&m).await.unwrap();
    }
    let per_call = t.elapsed() / n;
    println!("echo call with a fresh instance: {per_call:?}");
    assert!(per_call.as_millis() < 50, "{per_call:?} per call");
}

#[tokio::test]
async fn compiled_components_are_cached_and_a_bad_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let config = || fleetgate_runtime::RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 4,
        ..Default::default()
    };
    let grants = || Grants::basic().with(Capability::Messaging);
    let m = client_message("Echo", "Ping", 5);

    let rt = support::runtime_with(config());
    let (h, _) = host();
    ComponentService::load(&rt, spec("Echo", "echo", grants()), h)
        .await
        .unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.contains("-wasmtime48-") && name.ends_with(".cwasm"),
        "{name}"
    );

    std::fs::write(&entries[0], b"not a compiled component").unwrap();
    let rt = support::runtime_with(config());
    let (h, sink) = host();
    let echo = ComponentService::load(&rt, spec("Echo", "echo", grants()), h)
        .await
        .unwrap();
    echo.process(&m).await.unwrap();
    assert_eq!(sink.take().len(), 1);
    assert!(
        std::fs::metadata(&entries[0]).unwrap().len() > 1000,
        "entry rewritten"
    );
}

#[tokio::test]
async fn calls_beyond_the_pool_size_wait_for_a_slot() {
    let rt = support::runtime_with(fleetgate_runtime::RuntimeConfig {
        max_instances: 1,
        ..support::config()
    });
    let (h, sink) = host();
    let echo = ComponentService::load(
        &rt,
        spec("Echo", "echo", Grants::basic().with(Capability::Messaging)),
        h,
    )
    .await
    .unwrap();
    let (a, b) = (
        client_message("Echo", "Ping", 6),
        client_message("Echo", "Ping", 7),
    );
    let (ra, rb) = tokio::join!(echo.process(&a), echo.process(&b));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(sink.take().len(), 2);
}
