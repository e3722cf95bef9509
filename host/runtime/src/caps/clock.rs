//! Capability `clock`: the server's clock, so tests with a fake clock see the same time as the
//! plugins they drive.

use fleetgate_types::time::to_timestamp;

use crate::bindings::WitTimestamp;
use crate::bindings::clock::Host;
use crate::convert::timestamp_to_wit;
use crate::state::HostState;

impl Host for HostState {
    fn now(&mut self) -> wasmtime::Result<WitTimestamp> {
        Ok(timestamp_to_wit(&to_timestamp(self.ctx.host.clock.now())))
    }
}
