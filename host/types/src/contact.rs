//! The contract between the client-facing frontend and the engine.
//!
//! The frontend owns sockets, TLS, HTTP and framing; it proves who the client is and hands the
//! engine a [`Contact`]. The engine owns everything after that: enrolment, ingestion, persistence and
//! the choice of messages to deliver. Keeping the contract here lets the frontend be tested against
//! a small in-memory handler and keeps both crates free of each other's dependencies.

use std::future::Future;
use std::time::SystemTime;

use crate::ClientId;
use crate::pb::fleetspeak::{ContactData, Message, WrappedContactData};

/// One poll, or the first frame of a stream, from a client whose key the frontend has verified.
#[derive(Debug, Clone)]
pub struct Contact {
    pub client_id: ClientId,
    /// DER SubjectPublicKeyInfo of the key the client proved in the TLS handshake (or the header).
    pub public_key: Vec<u8>,
    /// `ip:port` of the client, after PROXY protocol handling; IPv4-mapped addresses in dotted form.
    pub observed_address: String,
    pub wcd: WrappedContactData,
}

/// Why a contact was refused. The frontend turns each kind into one HTTP status (protocol.md §13).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// The authorizer refused the client (e.g. `required_label` missing): 503.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The contact is well-framed but its content is unacceptable (e.g. more than 100 messages): 500
    /// as in the original, because the client cannot tell the difference anyway.
    #[error("invalid contact: {0}")]
    Invalid(String),
    /// The server is starting or stopping: 500 "Server not ready.".
    #[error("server not ready")]
    NotReady,
    /// Storage or another internal failure; a retry may succeed: 500.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A file served under `/files/<service>/<name>`.
#[derive(Debug, Clone)]
pub struct FileContent {
    pub data: Vec<u8>,
    pub modified: SystemTime,
}

/// What the engine offers the frontend.
pub trait ContactHandler: Send + Sync + 'static {
    type Stream: StreamSession;

    /// A `/message` poll: ingest what the client sent, durably, and choose what to send back.
    fn poll(
        &self,
        contact: Contact,
    ) -> impl Future<Output = Result<ContactData, ContactError>> + Send;

    /// The first frame of a `/streaming-message` stream. Returns the session for the rest of the
    /// stream and the reply frame 0.
    fn open_stream(
        &self,
        contact: Contact,
    ) -> impl Future<Output = Result<(Self::Stream, ContactData), ContactError>> + Send;

    /// A file for `/files/`; `None` when there is no such file.
    fn read_file(
        &self,
        service: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<FileContent>, ContactError>> + Send;
}

/// One established stream.
pub trait StreamSession: Send + Sync + 'static {
    /// A later client frame. Returns once its messages are durable, so the caller may ack it.
    fn frame(
        &self,
        wcd: WrappedContactData,
    ) -> impl Future<Output = Result<(), ContactError>> + Send;

    /// Waits until messages may be waiting for this client, then leases and returns them (an empty
    /// batch means "look again"). `Ok(None)`: a newer stream for the same client took over, so this
    /// one must stop pushing (it still reads and acks). Cancel-safe.
    fn next_messages(
        &self,
    ) -> impl Future<Output = Result<Option<Vec<Message>>, ContactError>> + Send;

    /// Called once when the stream ends, for whatever reason.
    fn close(&self) -> impl Future<Output = ()> + Send;
}
