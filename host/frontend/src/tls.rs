//! TLS setup and client identity (protocol.md §2).
//!
//! The client presents a fresh self-signed certificate dated year 0001, so nothing about the
//! certificate itself can be validated. What is proven is possession of the key: rustls still
//! checks the handshake's CertificateVerify signature against the certificate's key, and the
//! client ID is the hash of that key.

use std::sync::Arc;

use fleetgate_types::ClientId;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::FrontendError;

/// The TLS 1.2 suites the Go server allows; every TLS 1.3 suite is kept.
const TLS12_SUITES: [CipherSuite; 4] = [
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

/// Builds the server config: TLS ≥ 1.2, a requested-but-unvalidated client certificate, ALPN
/// `h2` and `http/1.1` (rustls aborts the handshake when ALPN has no overlap, and the Go client
/// offers only `http/1.1` by default).
pub fn server_config(
    cert_chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, FrontendError> {
    let certs = rustls_pemfile::certs(&mut cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FrontendError::Certificates(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(FrontendError::Certificates(
            "no PEM CERTIFICATE block found".into(),
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| FrontendError::Key(format!("not PEM: {e}")))?
        .ok_or_else(|| {
            FrontendError::Key(
                "no PEM private key block found (EC PRIVATE KEY, PRIVATE KEY or RSA PRIVATE KEY)"
                    .into(),
            )
        })?;
    let mut provider = ring::default_provider();
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || TLS12_SUITES.contains(&s.suite()));
    let provider = Arc::new(provider);
    let verifier = Arc::new(AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| FrontendError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            FrontendError::Tls(format!(
                "the certificate and key do not make a usable pair: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Requests a client certificate and accepts any, but verifies the handshake signature.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // A missing certificate is reported per request as 400, as in Go.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The identity a connection proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub client_id: ClientId,
    /// DER SubjectPublicKeyInfo exactly as it appears in the certificate.
    pub public_key: Vec<u8>,
}

/// Derives the identity from the TLS peer certificates; the error text is the 400 body.
pub fn identity(peer_certs: Option<&[CertificateDer<'_>]>) -> Result<Identity, String> {
    let certs = peer_certs.unwrap_or_default();
    let [leaf] = certs else {
        return Err(format!(
            "expected exactly 1 client certificate, got {}",
            certs.len()
        ));
    };
    identity_from_der(leaf)
}

/// SHA-256 of the raw SPKI field, first 8 bytes (§2.1): equal to Go's re-encoding for any
/// DER-canonical key, and the handshake already proved the key is usable.
pub fn identity_from_der(der: &[u8]) -> Result<Identity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparsable client certificate: {e}"))?;
    let spki = cert.public_key();
    if spki.parsed().is_err() {
        return Err("client certificate has no usable public key".into());
    }
    Ok(Identity {
        client_id: ClientId::from_public_key(spki.raw),
        public_key: spki.raw.to_vec(),
    })
}
