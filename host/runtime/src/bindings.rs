//! The code `wasmtime::component::bindgen!` generates from `wit/plugin.wit`, fenced here and
//! re-exported under the names the rest of the crate uses.
//!
//! Imports that wait on the network or the store (`grpc.forward`, `messaging.send-to-client`,
//! `clients.info`) are `async` on the host; the others are plain functions.

#[allow(clippy::all, missing_docs)]
mod generated {
    pub mod service {
        wasmtime::component::bindgen!({
            world: "service",
            path: "../../wit",
            imports: {
                "fleetgate:plugin/grpc.forward": async | trappable,
                "fleetgate:plugin/messaging.send-to-client": async | trappable,
                "fleetgate:plugin/clients.info": async | trappable,
                default: trappable,
            },
            exports: { default: async },
            additional_derives: [PartialEq],
        });
    }

    pub mod router {
        wasmtime::component::bindgen!({
            world: "router",
            path: "../../wit",
            imports: { default: trappable },
            exports: { default: async },
            with: {
                "fleetgate:plugin/types": super::service::fleetgate::plugin::types,
                "fleetgate:plugin/log": super::service::fleetgate::plugin::log,
                "fleetgate:plugin/metrics": super::service::fleetgate::plugin::metrics,
                "fleetgate:plugin/clock": super::service::fleetgate::plugin::clock,
                "fleetgate:plugin/clients": super::service::fleetgate::plugin::clients,
            },
        });
    }
}

/// The worlds' pre-instances (linked, type-checked, ready to instantiate).
pub(crate) use generated::router::RouterPre as RouterWorldPre;
pub(crate) use generated::service::ServicePre as ServiceWorldPre;
/// One module per WIT interface, as generated.
pub(crate) use generated::service::fleetgate::plugin::{
    clients, clock, grpc, log, messaging, metrics, types,
};

/// WIT types, by the names the host uses.
pub(crate) use types::{
    Address as WitAddress, ClientInfo as WitClientInfo, Entry as WitEntry, Label as WitLabel,
    Message as WitMessage, Payload as WitPayload, ProcessError as WitProcessError,
    Timestamp as WitTimestamp,
};

/// The WIT package every Fleetgate import belongs to, with its version.
pub(crate) const PACKAGE: &str = "fleetgate:plugin";
pub(crate) const PACKAGE_VERSION: &str = "0.1.0";
