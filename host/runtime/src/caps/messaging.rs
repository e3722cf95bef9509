//! Capability `messaging`: send messages to clients through the engine.
//!
//! The host, not the plugin, decides the source (this service) and the creation time, so a
//! plugin cannot impersonate another service or a client.

use fleetgate_pb::fleetspeak::Address;

use crate::bindings::WitMessage;
use crate::bindings::messaging::Host;
use crate::convert::from_wit;
use crate::state::HostState;

impl Host for HostState {
    async fn send_to_client(
        &mut self,
        message: WitMessage,
    ) -> wasmtime::Result<Result<(), String>> {
        if message
            .destination
            .client_id
            .as_ref()
            .is_none_or(Vec::is_empty)
        {
            return Ok(Err("send-to-client needs destination.client-id".into()));
        }
        let mut m = from_wit(message);
        m.source = Some(Address {
            client_id: Vec::new(),
            service_name: self.ctx.name.clone(),
        });
        m.creation_time = None;
        if let Some(w) = &self.ctx.host.withheld {
            w.messages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Ok(()));
        }
        let sink = self.ctx.host.sink.clone();
        Ok(self.meter.off_budget(sink.send(m)).await)
    }
}
