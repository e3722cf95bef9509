//! Test harness: real components built from `plugins/`, a recording message sink, and
//! messages shaped like the engine's.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fleetgate_pb::fleetspeak::{Address, Message};
use fleetgate_runtime::{
    ComponentService, Grants, HostServices, Limits, MessageSink, PluginSpec, Runtime, RuntimeConfig,
};

/// Records what plugins send.
#[derive(Default)]
pub struct RecordingSink {
    pub sent: Mutex<Vec<Message>>,
}

#[async_trait]
impl MessageSink for RecordingSink {
    async fn send(&self, message: Message) -> Result<(), String> {
        self.sent.lock().unwrap().push(message);
        Ok(())
    }
}

impl RecordingSink {
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

/// A component `plugins/` built, by file stem (`echo`, `test_spin`, ...).
pub fn plugin(stem: &str) -> Vec<u8> {
    let path = Path::new(fleetgate_runtime::bundled::PLUGINS_DIR).join(format!("{stem}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compiled components are cached under cargo's scratch directory for tests, so each component
/// is compiled once per toolchain rather than once per test (and the cache is exercised).
pub fn runtime() -> Runtime {
    runtime_with(config())
}

pub fn config() -> RuntimeConfig {
    RuntimeConfig {
        max_instances: 32,
        cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleetgate-component-cache")),
        ..RuntimeConfig::default()
    }
}

pub fn runtime_with(config: RuntimeConfig) -> Runtime {
    Runtime::new(config).unwrap()
}

pub fn host() -> (HostServices, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    (HostServices::new(sink.clone()), sink)
}

pub fn spec(name: &str, stem: &str, grants: Grants) -> PluginSpec {
    PluginSpec {
        name: name.to_owned(),
        origin: format!("test:{stem}"),
        wasm: plugin(stem),
        config: Vec::new(),
        grants,
        limits: Limits {
            cpu_budget: Duration::from_millis(300),
            memory_bytes: 32 << 20,
        },
    }
}

pub async fn service(runtime: &Runtime, spec: PluginSpec) -> ComponentService {
    let (host, _) = host();
    ComponentService::load(runtime, spec, host).await.unwrap()
}

pub const CLIENT: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// A message from client service `TestService` on [`CLIENT`] to server service `service`, as
/// the engine hands it over after ingestion.
pub fn client_message(service: &str, message_type: &str, id: u8) -> Message {
    Message {
        message_id: vec![id; 32],
        source: Some(Address {
            client_id: CLIENT.to_vec(),
            service_name: "TestService".into(),
        }),
        source_message_id: vec![id],
        destination: Some(Address {
            client_id: Vec::new(),
            service_name: service.into(),
        }),
        message_type: message_type.into(),
        creation_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        data: Some(prost_types::Any {
            type_url: "type.googleapis.com/test.Ping".into(),
            value: vec![42; 16],
        }),
        ..Message::default()
    }
}
