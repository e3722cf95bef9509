//! Capability `metrics`: counters and histograms kept in the service's statistics.

use crate::bindings::metrics::Host;
use crate::state::HostState;

impl Host for HostState {
    fn counter_add(&mut self, name: String, value: u64) -> wasmtime::Result<()> {
        self.ctx.stats.counter_add(name, value);
        Ok(())
    }

    fn histogram_observe(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.ctx.stats.histogram_observe(name, value);
        Ok(())
    }
}
