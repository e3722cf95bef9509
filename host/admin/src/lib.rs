//! The admin gRPC API: `fleetspeak.server.Admin`, what GRR and `fleetspeak-admin` speak, and our
//! extension `fleetgate.admin.v1.FleetgateAdmin`, both on one port.
//!
//! * [`service`]: the `Admin` handlers; they read through the store and insert through the engine.
//! * [`extension`]: batched inserts, purging the pending queue, plugin listing and reload.
//! * [`plugins`]: the [`PluginControl`] trait the binary implements over the plugin runtime.
//! * `parse`: ID, time and message checks shared by both services.
//! * [`status`]: the single mapping from our errors to gRPC statuses.
//!
//! Plaintext HTTP/2 without authentication, as the original: bind it to a trusted interface.
#![forbid(unsafe_code)]

pub mod extension;
mod parse;
pub mod plugins;
pub mod service;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use fleetgate_engine::Engine;
use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_server::FleetgateAdminServer;
use fleetgate_pb::fleetspeak::server::admin_server::AdminServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use extension::ExtensionService;
pub use parse::MAX_CLIENT_MESSAGE;
pub use plugins::{PluginControl, PluginStatus};
pub use service::AdminService;

/// The largest request accepted, as gRPC's default in the original.
pub const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// Serves both admin services on `listener` until `shutdown` fires. Without `plugins` the plugin
/// RPCs answer UNIMPLEMENTED.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    plugins: Option<Arc<dyn PluginControl>>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "admin API listening");
    // TCP_NODELAY: tonic writes a response's headers and message, then its trailers, as two
    // writes. With Nagle's algorithm the trailers wait for the ACK of the first segment, which
    // a gRPC client (GRR's Python connector among them) delays by up to 40 ms: every call
    // took at least that long.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let admin = AdminServer::new(AdminService::new(engine.clone()))
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(usize::MAX);
    let extension = FleetgateAdminServer::new(ExtensionService::new(engine, plugins))
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .add_service(admin)
        .add_service(extension)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}
