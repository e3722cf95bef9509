//! Raw HTTPS to the client frontend, for requests the Go client would never make.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A response: status, headers and body (lossy UTF-8).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// POSTs `body` to `path` without a client certificate (see [`send_without_client_cert`]).
pub async fn post_without_client_cert(
    addr: SocketAddr,
    ca_pem: &Path,
    path: &str,
    body: Vec<u8>,
) -> Result<Response> {
    let req = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    send_without_client_cert(addr, ca_pem, req).await
}

/// GETs `path` without a client certificate, with `If-Modified-Since` when given.
pub async fn get_without_client_cert(
    addr: SocketAddr,
    ca_pem: &Path,
    path: &str,
    if_modified_since: Option<&str>,
) -> Result<Response> {
    let mut req = http::Request::get(path);
    if let Some(since) = if_modified_since {
        req = req.header(http::header::IF_MODIFIED_SINCE, since);
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .context("building the request")?;
    send_without_client_cert(addr, ca_pem, req).await
}

/// Connects to `addr` trusting only the CA in `ca_pem` (server name `localhost`, ALPN
/// `http/1.1` like the Go client), presents **no** client certificate, and sends `req`.
pub async fn send_without_client_cert(
    addr: SocketAddr,
    ca_pem: &Path,
    mut req: http::Request<Full<Bytes>>,
) -> Result<Response> {
    let pem = std::fs::read(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.context("parsing the CA PEM")?)
            .context("adding the CA")?;
    }
    if roots.is_empty() {
        bail!("no certificate in {}", ca_pem.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let name = ServerName::try_from("localhost").context("server name")?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .context("TLS handshake without a client certificate")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP/1.1 handshake")?;
    let driver = tokio::spawn(conn);
    let host = format!("localhost:{}", addr.port())
        .parse()
        .context("Host header")?;
    req.headers_mut().insert(http::header::HOST, host);
    let resp = sender
        .send_request(req)
        .await
        .context("sending the request")?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the body")?
        .to_bytes();
    driver.abort();
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
