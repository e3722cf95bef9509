//! The `WASM` factory: any component from a path or `bundled:`, with the grants its config
//! lists — here the message saver and its preopened directory.
#![allow(clippy::unwrap_used)]

mod support;

use fleetgate_engine::ServiceError;
use fleetgate_pb::any;
use fleetgate_pb::fleetspeak::Message;
use fleetgate_pb::fleetspeak::server::ServiceConfig;
use fleetgate_runtime::{Factory, RuntimeError, WasmConfig, WasmPreopen};
use prost::Message as _;
use support::{client_message, host, runtime};

fn saver_config(out: &std::path::Path) -> WasmConfig {
    WasmConfig {
        path: "bundled:message-saver".into(),
        config: b"/out".to_vec(),
        preopens: vec![WasmPreopen {
            host_path: out.display().to_string(),
            guest_path: "/out".into(),
            read_only: false,
        }],
        ..WasmConfig::default()
    }
}

fn service_config(name: &str, c: &WasmConfig) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        factory: "WASM".into(),
        max_parallelism: 4,
        config: Some(any::pack(c)),
        ..Default::default()
    }
}

#[tokio::test]
async fn message_saver_writes_one_decodable_file_per_message() {
    let out = tempfile::tempdir().unwrap();
    let factory = Factory::new(runtime(), host().0);
    let built = factory
        .build(&service_config("Saver", &saver_config(out.path())))
        .await
        .unwrap();
    let m = client_message("Saver", "Report", 7);
    built.entry().service.process(&m).await.unwrap();

    let file = out
        .path()
        .join(format!("{}.pb", hex::encode(&m.message_id)));
    let saved = Message::decode(std::fs::read(&file).unwrap().as_slice()).unwrap();
    assert_eq!(saved, m);
}

#[tokio::test]
async fn a_read_only_directory_is_a_temporary_failure() {
    let out = tempfile::tempdir().unwrap();
    let mut c = saver_config(out.path());
    c.preopens[0].read_only = true;
    let built = Factory::new(runtime(), host().0)
        .build(&service_config("Saver", &c))
        .await
        .unwrap();
    let err = built
        .entry()
        .service
        .process(&client_message("Saver", "Report", 8))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Temporary(_)), "{err:?}");
}

#[tokio::test]
async fn grants_are_exactly_what_the_config_lists() {
    let factory = Factory::new(runtime(), host().0);
    let echo = |grants: &[&str]| WasmConfig {
        path: format!("{}/echo.wasm", fleetgate_runtime::bundled::PLUGINS_DIR),
        grants: grants.iter().map(|g| g.to_string()).collect(),
        ..WasmConfig::default()
    };
    let err = factory
        .build(&service_config("Echo", &echo(&[])))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RuntimeError::NotGranted { .. }), "{err:?}");
    factory
        .build(&service_config("Echo", &echo(&["messaging"])))
        .await
        .unwrap();
    let err = factory
        .build(&service_config("Echo", &echo(&["teleport"])))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, RuntimeError::UnknownCapability { .. }),
        "{err:?}"
    );

    let missing = WasmConfig {
        path: "/nonexistent/x.wasm".into(),
        ..WasmConfig::default()
    };
    let err = factory
        .build(&service_config("X", &missing))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RuntimeError::Read { .. }), "{err:?}");
}
