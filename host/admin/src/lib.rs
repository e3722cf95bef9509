//! The admin gRPC API: `fleetspeak.server.Admin`, what GRR and `fleetspeak-admin` speak, and our
//! extension `fleetgate.admin.v1.FleetgateAdmin`, both on one port.
//!
//! * [`service`]: the `Admin` handlers; they read through the store and insert through the engine.
//! * [`extension`]: batched inserts, purging the pending queue, plugin listing and reload, the
//!   message trace.
//! * [`plugins`]: the [`PluginControl`] trait the binary implements over the plugin runtime.
//! * `rollout`: plugin deployments — deploy, promote, roll back, status, history.
//! * [`lock`]: the locked listener: TLS with client certificates and a per-identity policy.
//! * `gate`: what every call passes on either listener: the policy check and the audit line.
//! * `parse`: ID, time and message checks shared by both services.
//! * [`status`]: the single mapping from our errors to gRPC statuses.
//!
//! Two listeners can run at once: [`serve`], plaintext HTTP/2 without authentication as the
//! original (bind it to a trusted interface: GRR's connector speaks only plaintext), and
//! [`serve_locked`].
#![forbid(unsafe_code)]

mod dead_letters;
pub mod extension;
mod gate;
pub mod lock;
mod parse;
pub mod plugins;
mod rollout;
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
pub use gate::RPCS;
pub use lock::{Lock, LockConfig, LockError};
pub use parse::MAX_CLIENT_MESSAGE;
pub use plugins::{PluginControl, PluginStatus};
pub use service::AdminService;

/// The largest request accepted, as gRPC's default in the original.
pub const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// The tracing target of audit lines (every mutating call, every refusal), so operators can route
/// them apart: `RUST_LOG=info,fleetgate::audit=info`, or a JSON log filtered on `target`.
pub const AUDIT_TARGET: &str = "fleetgate::audit";

/// Serves both admin services in plaintext on `listener` until `shutdown` fires. Without
/// `plugins` the plugin RPCs answer UNIMPLEMENTED.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    plugins: Option<Arc<dyn PluginControl>>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "admin API listening (plaintext)");
    // TCP_NODELAY: tonic writes a response's headers and message, then its trailers, as two
    // writes. With Nagle's algorithm the trailers wait for the ACK of the first segment, which
    // a gRPC client (GRR's Python connector among them) delays by up to 40 ms: every call
    // took at least that long.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_incoming(incoming, gate::Mode::Open, engine, plugins, shutdown).await
}

/// Serves both admin services over TLS on `listener`, each call checked against `lock`'s policy.
pub async fn serve_locked(
    listener: TcpListener,
    lock: Lock,
    engine: Engine,
    plugins: Option<Arc<dyn PluginControl>>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "admin API listening (TLS, client certificates)");
    let incoming = lock::incoming(listener, lock.acceptor.clone(), shutdown.clone());
    let mode = gate::Mode::Locked(lock.policy.clone());
    serve_incoming(incoming, mode, engine, plugins, shutdown).await
}

async fn serve_incoming<I, IO, IE>(
    incoming: I,
    mode: gate::Mode,
    engine: Engine,
    plugins: Option<Arc<dyn PluginControl>>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error>
where
    I: futures::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let gate = gate::GateLayer::new(mode, engine.clone());
    let admin = AdminServer::new(AdminService::new(engine.clone()))
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(usize::MAX);
    let extension = FleetgateAdminServer::new(ExtensionService::new(engine, plugins))
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .layer(gate)
        .add_service(admin)
        .add_service(extension)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}
