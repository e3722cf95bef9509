//! Errors. Setup failures stop the run ([`LoadgenError`]); a simulated client's failures
//! ([`ClientError`]) are counted and retried, as the real client retries.

use std::path::PathBuf;

/// Why a load run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("CA file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("generating a client identity: {0}")]
    Identity(String),
    #[error("TLS client configuration: {0}")]
    Tls(String),
    #[error("admin API: {0}")]
    Admin(String),
}

/// Why one contact of a simulated client failed. Every variant is retried: the client
/// reconnects after `retry_delay`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("protocol: {0}")]
    Protocol(String),
}
