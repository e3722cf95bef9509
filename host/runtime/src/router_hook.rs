//! A router component in the engine's message path: [`ComponentRouter`] as the engine's
//! [`Router`], loading one from its configuration, and the engine as the routers' (and
//! services') [`ClientDirectory`].

use async_trait::async_trait;
use fleetgate_engine::{Engine, Routed, Router, ServiceError};
use fleetgate_pb::fleetspeak::Message;
use fleetgate_types::ClientId;

use crate::error::{CallError, RuntimeError};
use crate::factory::{WasmConfig, wasm_spec};
use crate::host::{ClientDirectory, ClientInfo, HostServices};
use crate::router::ComponentRouter;
use crate::runtime::Runtime;

/// The name a router's log lines, statistics and errors carry.
pub const ROUTER_NAME: &str = "router";

impl ComponentRouter {
    /// Loads the router a configuration names: `path` (a file or `bundled:<name>`), `config`
    /// handed to `init`, `grants` (router capabilities: `log`, `metrics`, `clock`, `clients`).
    pub fn from_config(
        runtime: &Runtime,
        config: WasmConfig,
        host: HostServices,
    ) -> Result<Self, RuntimeError> {
        let spec = wasm_spec(ROUTER_NAME, config)?;
        Self::load(runtime, spec, host)
    }
}

#[async_trait]
impl Router for ComponentRouter {
    async fn route(&self, message: &Message) -> Result<Vec<Routed>, ServiceError> {
        let copies = ComponentRouter::route(self, message).await.map_err(|e| {
            if e.is_trap() {
                tracing::warn!(service = ROUTER_NAME, "{e}");
            }
            CallError::into_service_error(e)
        })?;
        Ok(copies
            .into_iter()
            .filter_map(|m| {
                Some(Routed {
                    destination: m.destination?,
                    annotations: m.annotations,
                })
            })
            .collect())
    }

    fn version(&self) -> Option<String> {
        Some(self.digest().to_owned())
    }
}

/// `clients.info` answered from the engine's client cache and store. Last contact is not
/// looked up (it would cost a store read per call); routers decide on labels.
#[async_trait]
impl ClientDirectory for Engine {
    async fn info(&self, client: ClientId) -> Option<ClientInfo> {
        Some(ClientInfo {
            labels: self.client_labels(client).await?,
            last_contact: None,
        })
    }
}
