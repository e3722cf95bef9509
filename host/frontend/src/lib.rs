//! Client-facing HTTPS: mTLS identity, `/message`, `/streaming-message`, `/files/`.
//!
//! The wire contract is `shared/spec/protocol.md`; section numbers below refer to it. The frontend
//! owns sockets, TLS, HTTP and framing, proves which key the client holds, and hands the engine a
//! [`Contact`](fleetgate_types::contact::Contact) through the
//! [`ContactHandler`](fleetgate_types::contact::ContactHandler) trait. It never touches storage.
//!
//! Modules, outermost first:
//! * [`server`]: [`serve`], the accept loop, per-connection PROXY/TLS setup, orderly shutdown.
//! * [`proxy`]: PROXY protocol v1/v2 parsing (pure) and the per-connection reader (§5).
//! * [`tls`]: the rustls config with the permissive client-cert verifier and the identity (§2).
//! * [`tls_stream`]: TLS over rustls' unbuffered API, holding no buffer while a connection idles.
//! * [`certsource`]: the frontend modes: certificate from TLS or from proxy headers (§4).
//! * [`routes`]: dispatch, the checks common to both contact endpoints, and `/message` (§6).
//! * [`stream`]: `/streaming-message`: frame 0, in-order acks, pushes, `done_sending` (§7).
//! * [`files`]: `/files/<service>/<name>` with Go's double path decoding (§10).
//! * [`body`]: request bodies decoded per `Content-Encoding` (§8) and the response body type.
//! * [`respond`]: the only place failures become HTTP statuses (§13).
//! * [`wire`]: the pure codec: uvarint, frame decoder, magic, bounded zlib.
//! * [`date`]: HTTP dates for `Last-Modified` / `If-Modified-Since`.
//! * [`fuzzing`]: entry points for the fuzz targets in `fuzz/`.
#![forbid(unsafe_code)]

use std::time::Duration;

pub mod body;
pub mod certsource;
pub mod date;
pub mod files;
pub mod frames;
pub mod fuzzing;
pub mod proxy;
pub mod respond;
pub mod routes;
pub mod server;
pub mod stream;
pub mod tls;
pub mod tls_stream;
pub mod wire;

pub use certsource::CertSource;
pub use server::serve;

/// 20 MiB, the Go server's limit on a contact body (decoded) and on one stream frame.
pub const MAX_BODY: usize = 20 * 1024 * 1024;

/// Settings of the client-facing listener. [`FrontendConfig::new`] and `Default` give Go's defaults.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// PEM server certificate chain, leaf first.
    pub cert_chain_pem: String,
    /// PEM server key: SEC1 (`EC PRIVATE KEY`), PKCS#8 or PKCS#1.
    pub key_pem: String,
    /// `/streaming-message` answers 404.
    pub disable_streaming: bool,
    /// Expect an optional PROXY v1/v2 header on each connection.
    pub proxy_protocol: bool,
    /// Where the client certificate comes from (the frontend mode).
    pub cert_source: CertSource,
    /// `enable_file_server_authorization`: `/files/` answers 401 unless the request carries a
    /// client certificate (by the frontend mode) and, when `required_label` is set, that label
    /// among its `X-Fleetspeak-Labels` headers. Off: anyone reaching the port reads any file.
    pub file_server_authorization: bool,
    /// The components config's `required_label`, applied to `/files/` when
    /// `file_server_authorization` is on (contacts are checked by the engine).
    pub required_label: Option<String>,
    /// Plain HTTP/1.1 without TLS, behind a TLS-terminating proxy (the cleartext modes);
    /// no certificate or key is needed.
    pub cleartext: bool,
    /// Hard end of a stream, counted from request arrival. Keep well below the client's 12 min.
    pub streaming_lifespan: Duration,
    /// A random `U[0, jitter)` added to the lifespan.
    pub streaming_jitter: Duration,
    /// `done_sending` goes out this long before the hard end; also the drain time on shutdown.
    pub streaming_close_time: Duration,
    /// Limit on a decoded `/message` body and on each stream frame.
    pub max_body: usize,
    /// Reading the body of `/message` plus the engine's poll (Go: 5 min).
    pub contact_timeout: Duration,
    /// Reading frame 0 plus `open_stream` (Go: 3 min).
    pub stream_start_timeout: Duration,
    /// HTTP/1 request headers must arrive within this (Go: 10 s).
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub proxy_header_timeout: Duration,
}

/// Go's defaults with no certificate or key (set them before serving).
impl Default for FrontendConfig {
    fn default() -> Self {
        Self::new(String::new(), String::new())
    }
}

impl FrontendConfig {
    pub fn new(cert_chain_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Self {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
            disable_streaming: false,
            proxy_protocol: false,
            cert_source: CertSource::Mtls,
            file_server_authorization: false,
            required_label: None,
            cleartext: false,
            // 9.5 min + U[0, 30 s): never past the 10 minutes the client expects, and streams
            // opened together (after a restart) do not all end together.
            streaming_lifespan: Duration::from_secs(570),
            streaming_jitter: Duration::from_secs(30),
            streaming_close_time: Duration::from_secs(30),
            max_body: MAX_BODY,
            contact_timeout: Duration::from_secs(300),
            stream_start_timeout: Duration::from_secs(180),
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            proxy_header_timeout: Duration::from_secs(5),
        }
    }

    /// Checks the certificate and key without starting anything, e.g. at config load.
    pub fn validate(&self) -> Result<(), FrontendError> {
        if self.cleartext {
            return Ok(());
        }
        tls::server_config(&self.cert_chain_pem, &self.key_pem).map(|_| ())
    }
}

/// Why the frontend could not start. The variants say which setting is at fault, so the binary
/// can name the field.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The server certificate chain (`https_config.certificates`) is unusable.
    #[error("{0}")]
    Certificates(String),
    /// The server key (`https_config.key`) is unusable.
    #[error("{0}")]
    Key(String),
    /// Each parses, but together they do not make a TLS configuration (e.g. the key is not
    /// the certificate's).
    #[error("{0}")]
    Tls(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
