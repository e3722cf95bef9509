//! Self-signed certificate material for a server that has none yet: a CA and a server
//! certificate it signs, both ECDSA P-256 as the original configurator makes them.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of one installation.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }

    fn all_exist(&self) -> bool {
        [&self.ca_cert, &self.server_cert, &self.server_key]
            .iter()
            .all(|p| p.exists())
    }
}

/// Loaded PEM contents.
#[derive(Debug, Clone)]
pub struct CertMaterial {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

/// Reads the files, generating all of them first if any is missing. `hosts` become the server
/// certificate's SANs (DNS names or IP addresses).
pub fn load_or_generate(
    files: &CertFiles,
    name: &str,
    hosts: &[String],
) -> Result<(CertMaterial, bool)> {
    let generated = !files.all_exist();
    if generated {
        let m = generate(name, hosts)?;
        write_private(&files.server_key, &m.server_key_pem)?;
        fs::write(&files.server_cert, &m.server_cert_pem)
            .with_context(|| format!("writing {}", files.server_cert.display()))?;
        fs::write(&files.ca_cert, &m.ca_cert_pem)
            .with_context(|| format!("writing {}", files.ca_cert.display()))?;
    }
    let read = |p: &Path| fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let material = CertMaterial {
        ca_cert_pem: read(&files.ca_cert)?,
        server_cert_pem: read(&files.server_cert)?,
        server_key_pem: read(&files.server_key)?,
    };
    Ok((material, generated))
}

/// A fresh CA (10 years) and a server certificate (1 year) signed by it. The CA key is not kept:
/// a new server certificate means a new CA and new client configs.
pub fn generate(name: &str, hosts: &[String]) -> Result<CertMaterial> {
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} Fleetgate CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca.not_after = ca.not_before + time::Duration::days(3650 + 365 * 2);
    let ca_cert = ca.self_signed(&ca_key).context("signing CA certificate")?;

    let server_key = KeyPair::generate().context("generating server key")?;
    let mut server = CertificateParams::new(hosts.to_vec()).context("server certificate names")?;
    server
        .distinguished_name
        .push(DnType::CommonName, format!("{name} Fleetgate Server"));
    server.is_ca = IsCa::ExplicitNoCa;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = time_now();
    server.not_before = now - time::Duration::days(1);
    server.not_after = now + time::Duration::days(365);
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .context("signing server certificate")?;

    Ok(CertMaterial {
        ca_cert_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
