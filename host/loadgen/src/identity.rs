//! Who a simulated client is: a P-256 key, the self-signed certificate it presents, and the
//! client ID the server derives from it (protocol.md §2.1–2.2).

use std::path::Path;
use std::sync::Arc;

use fleetgate_types::ClientId;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::LoadgenError;

/// One simulated client's key and certificate. The ID is what the server will see: SHA-256 of
/// the certificate's SubjectPublicKeyInfo, first 8 bytes.
pub struct Identity {
    pub id: ClientId,
    cert: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish()
    }
}

impl Identity {
    /// A fresh P-256 key and a self-signed certificate with subject and issuer `O=<id hex>`, as
    /// the Go client makes. rcgen's default validity is used: the server does not check dates.
    pub fn generate() -> Result<Self, LoadgenError> {
        let key = KeyPair::generate().map_err(|e| LoadgenError::Identity(e.to_string()))?;
        let id = ClientId::from_public_key(&key.public_key_der());
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, id.to_hex());
        params.distinguished_name = dn;
        let cert = params
            .self_signed(&key)
            .map_err(|e| LoadgenError::Identity(e.to_string()))?;
        Ok(Self {
            id,
            cert: cert.der().clone(),
            key_pkcs8: key.serialize_der(),
        })
    }

    /// A TLS client configuration presenting this identity, trusting `roots`, offering ALPN
    /// `http/1.1` only (like the stock client).
    pub fn tls_config(
        &self,
        provider: &Arc<CryptoProvider>,
        roots: &Arc<RootCertStore>,
        http2: bool,
    ) -> Result<Arc<rustls::ClientConfig>, LoadgenError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()));
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| LoadgenError::Tls(e.to_string()))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(vec![self.cert.clone()], key)
            .map_err(|e| LoadgenError::Tls(e.to_string()))?;
        config.alpn_protocols = crate::sender::alpn(http2);
        Ok(Arc::new(config))
    }
}

/// The trust anchors for the server certificate: every certificate in a PEM file.
pub fn load_roots(ca_pem: &Path) -> Result<RootCertStore, LoadgenError> {
    let pem = std::fs::read(ca_pem).map_err(|e| LoadgenError::Ca {
        path: ca_pem.to_owned(),
        reason: e.to_string(),
    })?;
    roots_from_pem(&pem).map_err(|reason| LoadgenError::Ca {
        path: ca_pem.to_owned(),
        reason,
    })
}

fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("bad certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_the_spki_hash_and_the_subject() {
        let identity = Identity::generate().expect("generate");
        let der: &[u8] = &identity.cert;
        assert_eq!(ClientId::from_public_key(&spki_of(der)), identity.id);
        let hex = identity.id.to_hex();
        // Subject and issuer: the ID appears twice as a PrintableString/UTF8String.
        let hits = der
            .windows(hex.len())
            .filter(|w| *w == hex.as_bytes())
            .count();
        assert_eq!(hits, 2, "O=<id> as subject and issuer");
    }

    #[test]
    fn identities_differ() {
        let a = Identity::generate().expect("generate");
        let b = Identity::generate().expect("generate");
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn roots_need_a_certificate() {
        assert!(roots_from_pem(b"not a pem").is_err());
        let key = KeyPair::generate().expect("key");
        let ca = CertificateParams::new(vec!["ca".into()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        assert_eq!(roots_from_pem(ca.pem().as_bytes()).map(|r| r.len()), Ok(1));
    }

    /// The SubjectPublicKeyInfo of a P-256 certificate: the DER SEQUENCE that starts with the
    /// id-ecPublicKey algorithm identifier, 91 bytes long.
    fn spki_of(der: &[u8]) -> Vec<u8> {
        let marker = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
        ];
        let at = der
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("P-256 SPKI in the certificate");
        der[at..at + 91].to_vec()
    }
}
