//! The admin gRPC API: `fleetspeak.server.Admin`, what GRR and `fleetspeak-admin` speak.
//!
//! * [`service`]: the RPC handlers; they read through the store and insert through the engine.
//! * [`status`]: the single mapping from our errors to gRPC statuses.
//!
//! Plaintext HTTP/2 without authentication, as the original: bind it to a trusted interface.
#![forbid(unsafe_code)]

pub mod service;
pub mod status;

use std::net::SocketAddr;

use fleetgate_engine::Engine;
use fleetgate_pb::fleetspeak::server::admin_server::AdminServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use service::AdminService;

/// The largest request accepted, as gRPC's default in the original.
pub const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// Serves the admin API on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "admin API listening");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let admin = AdminServer::new(AdminService::new(engine))
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}
