//! What the extension service needs from the plugin runtime, which lives elsewhere: the binary
//! implements [`PluginControl`] over it and hands it to [`serve`](crate::serve).

use std::time::SystemTime;

use fleetgate_pb::fleetgate::admin::v1 as pb;
use fleetgate_types::time::to_timestamp;

/// State of one loaded plugin, as `ListPlugins` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginStatus {
    /// The service name the plugin runs as.
    pub service: String,
    pub factory: String,
    /// Digest of the loaded component.
    pub digest: String,
    /// Bumped on every (re)load of this service.
    pub generation: u64,
    pub loaded_at: Option<SystemTime>,
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The deployment on top of the services file's entry, 0 when none.
    pub deployment: u64,
    /// The canary's candidate digest, empty when none.
    pub candidate_digest: String,
}

/// Listing and reloading plugins. `reload` re-reads the service configuration and swaps every
/// plugin at once; on failure the running set stays and the error text goes to the caller.
#[tonic::async_trait]
pub trait PluginControl: Send + Sync + 'static {
    async fn list(&self) -> Vec<PluginStatus>;
    async fn reload(&self) -> Result<Vec<PluginStatus>, String>;
    /// Checks a component for a deployment of `service` on this server (a service it runs, the
    /// `service` world, imports granted, compiles and passes `init`), with `config` (a
    /// `fleetgate.plugin.v1.WasmConfig`) or else the services file's config of `service`.
    /// Returns the plugin config the deployment records; the error says what is wrong.
    async fn check_deployment(
        &self,
        service: &str,
        wasm: &[u8],
        config: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, String>;
}

impl From<PluginStatus> for pb::PluginStatus {
    fn from(p: PluginStatus) -> Self {
        pb::PluginStatus {
            service: p.service,
            factory: p.factory,
            digest: p.digest,
            generation: p.generation,
            loaded_at: p.loaded_at.map(to_timestamp),
            calls: p.calls,
            errors: p.errors,
            traps: p.traps,
            p50_ms: p.p50_ms,
            p99_ms: p.p99_ms,
            deployment: p.deployment,
            candidate_digest: p.candidate_digest,
        }
    }
}
