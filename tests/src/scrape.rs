//! The operator endpoints of a running server: the addresses it wrote to its ready file
//! (`stats=`, `health=`), plain HTTP GETs, and samples of the Prometheus text.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Server;

/// An address the server wrote to its ready file (`stats=`, `health=`).
pub fn ready_addr(server: &Server, key: &str) -> SocketAddr {
    let path = server.root().join("ready");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key}= line in the ready file:\n{text}"))
}

/// A plain HTTP/1.1 GET; returns the status code and body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP header in {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The value of the sample whose line starts with `series` (name and labels), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `series` from `/metrics` at `stats`, 0 when absent.
pub async fn metric(stats: SocketAddr, series: &str) -> Result<f64> {
    let (status, text) = get(stats, "/metrics").await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    Ok(sample(&text, series).unwrap_or(0.0))
}
