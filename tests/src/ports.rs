//! Free loopback ports, and waiting for a listener.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::wait::eventually;

/// A port free right now on 127.0.0.1 (bound and released), for configs that must name their
/// ports before the processes start.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
}

/// Waits until `addr` accepts TCP connections.
pub async fn wait_listening(addr: SocketAddr, timeout: Duration, what: &str) {
    eventually(timeout, &format!("{what} to listen on {addr}"), || async {
        tokio::net::TcpStream::connect(addr).await?;
        Ok(())
    })
    .await;
}

/// The local ports of established TCP connections to `remote_port` on 127.0.0.1, from
/// `/proc/net/tcp` (IPv4): the client side of connections to a proxy.
pub fn client_ports_to(remote_port: u16) -> Vec<u16> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, remote, state) = (f.get(1)?, f.get(2)?, f.get(3)?);
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
            // 01 = ESTABLISHED; 0100007F = 127.0.0.1.
            (*state == "01" && remote.starts_with("0100007F:") && port(remote)? == remote_port)
                .then(|| port(local))
                .flatten()
        })
        .collect()
}
