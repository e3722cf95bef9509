//! Certificates for the TLS targets: a CA, a server certificate for `localhost` signed by it, and
//! a self-signed P-256 client certificate like the Go client's, generated once per process.

use std::sync::LazyLock;

use fleetgate_frontend::fuzzing::TlsPeers;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

pub static PEERS: LazyLock<TlsPeers> = LazyLock::new(|| {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let client_key = rcgen::KeyPair::generate().expect("client key");
    let client = rcgen::CertificateParams::default()
        .self_signed(&client_key)
        .expect("client certificate");
    TlsPeers::new(
        &server.pem(),
        &server_key.serialize_pem(),
        ca.der().clone(),
        vec![client.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_key.serialize_der())),
    )
    .expect("TLS configs")
});
