//! The connection of `fleetgate admin` to the admin API: plaintext, or TLS with a client
//! certificate for a locked listener (`--cert`, `--key`, `--ca`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tonic::transport::{Channel, Uri};

/// The client identity and the CA that signed the server's certificate.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsIdentity {
    /// All three or none (clap already requires them together).
    pub fn from_paths(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
    ) -> Result<Option<TlsIdentity>> {
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsIdentity {
                cert: cert.into(),
                key: key.into(),
                ca: ca.into(),
            })),
            _ => bail!("--cert, --key and --ca go together (TLS with a client certificate)"),
        }
    }

    fn client_config(&self) -> Result<rustls::ClientConfig> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let certs = rustls_pemfile::certs(&mut read(&self.cert)?.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: not a PEM certificate", self.cert.display()))?;
        let key = rustls_pemfile::private_key(&mut read(&self.key)?.as_slice())
            .with_context(|| format!("{}: not a PEM key", self.key.display()))?
            .ok_or_else(|| anyhow!("{}: no private key in it", self.key.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut read(&self.ca)?.as_slice()) {
            let ca = ca.with_context(|| format!("{}: not a PEM certificate", self.ca.display()))?;
            roots
                .add(ca)
                .with_context(|| format!("{}: unusable CA certificate", self.ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .with_context(|| format!("{} with {}", self.cert.display(), self.key.display()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// A channel to the admin API at `addr` (`host:port`, or a URL), over TLS when `tls` is given.
pub async fn channel(addr: &str, tls: Option<&TlsIdentity>) -> Result<Channel> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Channel::from_shared(uri)
        .with_context(|| format!("bad admin address {addr}"))?
        .connect_timeout(Duration::from_secs(10));
    let connected = match tls {
        None => endpoint.connect().await,
        Some(identity) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(identity.client_config()?));
            endpoint
                .connect_with_connector(tower::service_fn(move |uri: Uri| {
                    let connector = connector.clone();
                    async move {
                        let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']);
                        let port = uri.port_u16().unwrap_or(443);
                        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
                            std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
                        })?;
                        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                        let tls = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(tls))
                    }
                }))
                .await
        }
    };
    // The caller says which address it tried and where the address came from.
    Ok(connected?)
}
