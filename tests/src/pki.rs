//! A CA and a server certificate for `localhost`/`127.0.0.1`, made fresh for a test fleet
//! (ECDSA P-256, like `fleetgate quickstart` and Fleetspeak's configurator).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// PEM material shared by every server of one fleet.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl Pki {
    pub fn generate() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "fleetgate e2e CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let key = KeyPair::generate().expect("server key");
        let mut server =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("params");
        server
            .distinguished_name
            .push(DnType::CommonName, "fleetgate e2e server");
        let cert = server
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("server cert");
        Pki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
        }
    }
}

/// A protobuf text-format string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
