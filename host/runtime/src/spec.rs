//! What one plugin is: its component, its plugin config, the capabilities it is granted and
//! its limits. The factory builds these from the services configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use fleetgate_pb::fleetspeak::grpcservice;

use crate::caps::Capability;

/// A directory of the host made visible to the guest through WASI (`std::fs` in the plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host_path: PathBuf,
    /// Where the guest sees it, e.g. `/out`.
    pub guest_path: String,
    pub read_only: bool,
}

/// What a plugin may reach outside its own memory. Anything not listed is not linked: a
/// component importing it fails to instantiate. WASI itself is always linked, with no
/// environment, arguments, network or files beyond `preopens`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// `messaging`, `log`, `metrics`, `clock`, `clients`. `grpc` is granted by `upstreams`.
    pub capabilities: BTreeSet<Capability>,
    /// gRPC `Processor` upstreams by the name the plugin passes to `grpc.forward`.
    pub upstreams: BTreeMap<String, grpcservice::Config>,
    pub preopens: Vec<Preopen>,
}

impl Grants {
    /// `log`, `metrics` and `clock`: harmless, granted unless a configuration says otherwise.
    pub fn basic() -> Self {
        let capabilities = [Capability::Log, Capability::Metrics, Capability::Clock]
            .into_iter()
            .collect();
        Self {
            capabilities,
            ..Self::default()
        }
    }

    pub fn with(mut self, capability: Capability) -> Self {
        self.capabilities.insert(capability);
        self
    }

    pub fn with_upstream(mut self, name: impl Into<String>, config: grpcservice::Config) -> Self {
        self.upstreams.insert(name.into(), config);
        self
    }

    pub fn with_preopen(mut self, preopen: Preopen) -> Self {
        self.preopens.push(preopen);
        self
    }

    pub fn grants(&self, capability: Capability) -> bool {
        match capability {
            Capability::Grpc => !self.upstreams.is_empty(),
            other => self.capabilities.contains(&other),
        }
    }
}

/// Per-call limits. A call that exceeds one traps and is retried later as a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time the guest may run in one call (instantiation, `init` and `process`), not counting
    /// time spent waiting in host calls such as `grpc.forward`.
    pub cpu_budget: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_budget: Duration::from_secs(5),
            memory_bytes: 64 << 20,
        }
    }
}

/// Everything needed to run one service or router.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The service name (for logs, errors, and the source of messages it sends).
    pub name: String,
    /// Where the component came from: a path, or `bundled:<name>`.
    pub origin: String,
    /// The component binary.
    pub wasm: Vec<u8>,
    /// Handed to the component's `init`.
    pub config: Vec<u8>,
    pub grants: Grants,
    pub limits: Limits,
}
