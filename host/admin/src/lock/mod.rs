//! The locked admin listener: TLS with client certificates, each certificate's identity looked up
//! in a [`Policy`]. It runs beside the plaintext listener (GRR's connector speaks plaintext).
//!
//! * [`policy`]: rules, and the [`Grant`] an admitted call carries to its handler.
//! * `tls`: the rustls config, the handshake loop and the connection type that carries the
//!   caller's [`Identity`] into each request.

pub mod policy;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use policy::{Grant, Matcher, Policy, Rpcs, Rule, Services};
pub(crate) use tls::incoming;

/// What the locked listener needs, as PEM text already read from files.
#[derive(Debug, Clone)]
pub struct LockConfig {
    pub cert_chain_pem: String,
    pub key_pem: String,
    /// The CA that signs admin clients' certificates; a certificate it did not sign ends the
    /// handshake.
    pub client_ca_pem: String,
    pub policy: Policy,
}

/// Why the locked listener cannot start. Checked before the server reports ready.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("admin TLS certificate: {0}")]
    Certificate(String),
    #[error("admin TLS key: {0}")]
    Key(String),
    #[error("admin client CA: {0}")]
    ClientCa(String),
    #[error("admin TLS: {0}")]
    Tls(String),
}

/// A [`LockConfig`] turned into a TLS acceptor; cheap to clone.
#[derive(Clone)]
pub struct Lock {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) policy: Arc<Policy>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Lock {
    /// Parses the certificates and key and builds the TLS config, so a bad file fails the start.
    pub fn new(config: LockConfig) -> Result<Lock, LockError> {
        Ok(Lock {
            acceptor: tls::acceptor(&config)?,
            policy: Arc::new(config.policy),
        })
    }
}

/// What a client certificate proves, as rules match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject distinguished name, RDNs in certificate order (`CN=ops, O=Example`).
    pub subject: String,
    pub spki_sha256: [u8; 32],
}

impl Identity {
    /// From a DER certificate rustls has already verified against the client CA.
    pub fn from_der(der: &[u8]) -> Result<Identity, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let spki = cert.tbs_certificate.subject_pki.raw;
        Ok(Identity {
            subject: cert.subject().to_string(),
            spki_sha256: Sha256::digest(spki).into(),
        })
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "subject={:?} spki_sha256={}",
            self.subject,
            hex::encode(self.spki_sha256)
        )
    }
}

/// The connection a request came over, in its extensions on the locked listener.
#[derive(Debug, Clone)]
pub struct Caller {
    pub peer: Option<SocketAddr>,
    /// `None` when the client sent no certificate.
    pub identity: Option<Identity>,
}
