//! Capability `log`: guest lines in the server's log, tagged with the service name.

use crate::bindings::log::{Host, Level};
use crate::state::HostState;

/// Longer lines are cut: a plugin must not be able to flood the log with one call.
const MAX_LINE: usize = 4096;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let service = self.ctx.name.as_str();
        let mut line = message;
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        match level {
            Level::Trace => tracing::trace!(target: "plugin", service, "{line}"),
            Level::Debug => tracing::debug!(target: "plugin", service, "{line}"),
            Level::Info => tracing::info!(target: "plugin", service, "{line}"),
            Level::Warn => tracing::warn!(target: "plugin", service, "{line}"),
            Level::Error => tracing::error!(target: "plugin", service, "{line}"),
        }
        Ok(())
    }
}
