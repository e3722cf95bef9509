//! Host capabilities: one module per imported WIT interface, registered in [`link`].
//!
//! A capability a service is not granted is not added to its linker, so a component that
//! imports it fails at load time ([`check_grants`] names the missing grant) instead of
//! reaching a host function that would refuse at run time.

pub(crate) mod clients;
pub(crate) mod clock;
pub(crate) mod grpc;
pub(crate) mod log;
pub(crate) mod messaging;
pub(crate) mod metrics;
pub(crate) mod wasi;

use std::fmt;
use std::str::FromStr;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::{PACKAGE, PACKAGE_VERSION, types};
use crate::error::RuntimeError;
use crate::spec::Grants;
use crate::state::HostState;

/// One grantable interface of `wit/plugin.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    Messaging,
    Grpc,
    Log,
    Metrics,
    Clock,
    Clients,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::Messaging,
        Capability::Grpc,
        Capability::Log,
        Capability::Metrics,
        Capability::Clock,
        Capability::Clients,
    ];

    /// The WIT interface name, which is also the name used in configurations.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Messaging => "messaging",
            Capability::Grpc => "grpc",
            Capability::Log => "log",
            Capability::Metrics => "metrics",
            Capability::Clock => "clock",
            Capability::Clients => "clients",
        }
    }

    /// The component import name, e.g. `fleetgate:plugin/messaging@0.1.0`.
    pub fn import_name(self) -> String {
        format!("{PACKAGE}/{}@{PACKAGE_VERSION}", self.name())
    }

    /// The capability a component import name refers to, if it is one of ours.
    pub fn from_import(name: &str) -> Option<Capability> {
        let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
        let iface = rest.split('@').next()?;
        iface.parse().ok()
    }

    fn link(self, linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        use crate::bindings as b;
        match self {
            Capability::Messaging => b::messaging::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
            Capability::Grpc => b::grpc::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
            Capability::Log => b::log::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
            Capability::Metrics => b::metrics::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
            Capability::Clock => b::clock::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
            Capability::Clients => b::clients::add_to_linker::<_, HasSelf<_>>(linker, |s| s),
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| s.to_owned())
    }
}

/// The one place capabilities are registered: WASI and the shared types always, then each
/// granted capability.
pub(crate) fn link(
    engine: &wasmtime::Engine,
    grants: &Grants,
) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasi::link(&mut linker)?;
    types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    for capability in Capability::ALL {
        if grants.grants(capability) {
            capability.link(&mut linker)?;
        }
    }
    Ok(linker)
}

/// Refuses a component that imports a capability `grants` withholds, naming it.
pub(crate) fn check_grants(
    service: &str,
    imports: impl IntoIterator<Item = String>,
    grants: &Grants,
) -> Result<(), RuntimeError> {
    for import in imports {
        if let Some(capability) = Capability::from_import(&import)
            && !grants.grants(capability)
        {
            return Err(RuntimeError::NotGranted {
                service: service.to_owned(),
                interface: import,
                capability: capability.name().to_owned(),
            });
        }
    }
    Ok(())
}

impl types::Host for HostState {}
