//! Capability `clients`: what the server knows about a client (labels, last contact).

use fleetgate_types::ClientId;
use fleetgate_types::time::to_timestamp;

use crate::bindings::clients::Host;
use crate::bindings::{WitClientInfo, WitLabel};
use crate::convert::timestamp_to_wit;
use crate::state::HostState;

impl Host for HostState {
    async fn info(&mut self, client_id: Vec<u8>) -> wasmtime::Result<Option<WitClientInfo>> {
        // A malformed ID names no client; that is an answer, not a trap.
        let Ok(client) = ClientId::from_bytes(&client_id) else {
            return Ok(None);
        };
        let directory = self.ctx.host.clients.clone();
        let info = self.meter.off_budget(directory.info(client)).await;
        Ok(info.map(|i| WitClientInfo {
            labels: i
                .labels
                .into_iter()
                .map(|l| WitLabel {
                    service_name: l.service_name,
                    label: l.label,
                })
                .collect(),
            last_contact: i.last_contact.map(|t| timestamp_to_wit(&to_timestamp(t))),
        }))
    }
}
