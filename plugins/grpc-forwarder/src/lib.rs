//! `grpc-forwarder`: Fleetspeak's `GRPC` service factory as a component (what GRR uses).
//!
//! Every message is handed to the host's `grpc.forward`, which owns the connection and TLS to
//! the upstream, calls `fleetspeak.grpcservice.Processor/Process`, retries within its deadline and
//! classifies the gRPC status as temporary or permanent. The plugin config is the upstream name
//! (UTF-8); empty means `default`, the name the `GRPC` factory grants.

use fleetgate_sdk::{Message, ProcessError, Service, grpc};

struct Forwarder {
    upstream: String,
}

impl Service for Forwarder {
    fn init(config: &[u8]) -> Result<Self, String> {
        let name = std::str::from_utf8(config).map_err(|e| format!("upstream name: {e}"))?;
        let upstream = if name.is_empty() {
            "default"
        } else {
            name.trim()
        };
        Ok(Forwarder {
            upstream: upstream.to_owned(),
        })
    }

    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        grpc::forward(&self.upstream, &msg)
    }
}

fleetgate_sdk::export_service!(Forwarder);
