//! Errors of loading and running components. Each says which service it concerns and, through
//! its variant, whether a retry can help.

use std::path::PathBuf;

/// Why a component could not be loaded, linked or configured. These are startup (or reload)
/// errors: a retry does not help until the file or the configuration changes.
///
/// The texts name the component file where it matters, not the service: a [`crate::ReloadError`]
/// adds the service and its place in the services config.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("reading component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("compiling component {origin}: {reason}")]
    Compile { origin: String, reason: String },
    #[error("setting up the wasmtime engine: {0}")]
    Engine(String),
    #[error(
        "the component imports {interface}, a capability its configuration does not grant (grant `{capability}`)"
    )]
    NotGranted {
        service: String,
        interface: String,
        capability: String,
    },
    #[error("the component does not fit the `{world}` world: {reason}")]
    World {
        service: String,
        world: &'static str,
        reason: String,
    },
    #[error("init rejected the plugin config: {reason}")]
    Init { service: String, reason: String },
    #[error("{reason}")]
    Config { service: String, reason: String },
    #[error("unknown capability `{name}` (known: messaging, grpc, log, metrics, clock, clients)")]
    UnknownCapability { service: String, name: String },
    #[error("factory {factory:?} is not one of GRPC, WASM, NOOP")]
    UnknownFactory { service: String, factory: String },
}

/// How one call into a component ended when it did not succeed. Only [`CallError::Guest`] with
/// a permanent error fails the message; everything else is retried later.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The component returned an error: normal flow, not the plugin's fault.
    #[error("{0}")]
    Guest(fleetgate_engine::ServiceError),
    /// The component trapped (panic, unreachable, ...). Counted as a trap.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The component used up its CPU budget (epoch interruption). Counted as a trap.
    #[error("plugin exceeded its CPU budget of {0:?}")]
    Timeout(std::time::Duration),
    /// The component tried to grow its memory past its cap. Counted as a trap.
    #[error("plugin exceeded its memory limit of {0} bytes")]
    OutOfMemory(u64),
    /// The host could not instantiate the component (e.g. the instance pool is exhausted).
    #[error("instantiating plugin: {0}")]
    Instantiate(String),
}

impl CallError {
    /// Whether the plugin misbehaved, as opposed to answering.
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            Self::Trap(_) | Self::Timeout(_) | Self::OutOfMemory(_)
        )
    }

    /// What the engine makes of it: only a guest's permanent error is permanent.
    pub fn into_service_error(self) -> fleetgate_engine::ServiceError {
        match self {
            Self::Guest(e) => e,
            other => fleetgate_engine::ServiceError::Temporary(other.to_string()),
        }
    }
}
