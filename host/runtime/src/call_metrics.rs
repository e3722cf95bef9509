//! Reporting each component call to the server's metrics (`fleetgate_plugin_calls_total` and
//! `fleetgate_plugin_call_seconds`, by service, generation and outcome). The handle comes from
//! `fleetgate-telemetry` without its `serve` feature: recording only, no HTTP.

use std::time::Duration;

use fleetgate_telemetry::PluginOutcome;

use crate::error::CallError;

/// How a call ended, in the metric's words. A host that could not instantiate counts as an
/// error: the guest did not misbehave.
pub(crate) fn outcome(result: &Result<(), CallError>) -> PluginOutcome {
    match result {
        Ok(()) => PluginOutcome::Ok,
        Err(CallError::Timeout(_)) => PluginOutcome::Timeout,
        Err(CallError::Trap(_) | CallError::OutOfMemory(_)) => PluginOutcome::Trap,
        Err(CallError::Guest(_) | CallError::Instantiate(_)) => PluginOutcome::Error,
    }
}

/// Records one call if the host has a metrics handle.
pub(crate) fn record(
    host: &crate::host::HostServices,
    service: &str,
    generation: u64,
    result: &Result<(), CallError>,
    took: Duration,
) {
    if let Some(m) = &host.metrics {
        m.plugin_call(service, generation, outcome(result), took);
    }
}
