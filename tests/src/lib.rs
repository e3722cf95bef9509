//! End-to-end harness: the `fleetgate` binary on port 0 with a temporary state directory and
//! SQLite database, driven by the real Go `fleetspeak-client` and a Python daemon service.
//!
//! * [`env`] finds the binaries (`FLEETGATE_BIN`, `FLEETGATE_PEERS_VENV`) and fails loudly
//!   when they are missing.
//! * [`server::Server`] starts, stops and restarts `fleetgate quickstart`.
//! * [`client::GoClient`] runs one real client with its own config, state and daemon service.
//! * [`daemon`] reads what the daemon service (`tests/daemon/echo.py`) received.
//! * [`admin::Admin`] wraps the admin gRPC API.
//! * [`tls`] speaks raw HTTPS to the client frontend.
//! * [`wait::eventually`] polls until a condition holds.
//! * [`relay::Relay`] stands between client and server and can lose what the server sends.
//! * [`scrape`] reads `/metrics` and the health endpoints.
//! * [`grr`]: the plugin path's peers — `daemon/sender.py` and GRR's Python server connector.
//! * [`grr_stack`]: GRR itself — its installer step, servers, client and flows through its API.
//! * [`fleet::Fleet`]: the distributed deployment — MariaDB ([`mariadb`]), frontends and an
//!   admin-only server ([`node`]), haproxy ([`haproxy`]), clients ([`fleet_client`]), with
//!   certificates from [`pki`] and ports from [`ports`].

pub mod admin;
pub mod checks;
pub mod client;
pub mod daemon;
pub mod env;
pub mod fleet;
pub mod fleet_client;
pub mod grr;
pub mod grr_stack;
pub mod haproxy;
pub mod locked;
pub mod mariadb;
pub mod node;
pub mod pki;
pub mod ports;
pub mod relay;
pub mod scrape;
pub mod server;
pub mod tag_plugins;
pub mod tls;
pub mod wait;

pub use admin::Admin;
pub use client::{ClientOptions, GoClient};
pub use server::{Server, ServerOptions};
pub use wait::eventually;

/// Keeps a test's temp dir (taking it out of `root`) when the test fails or
/// `FLEETGATE_E2E_KEEP=1`, and says where with `what`.
pub fn keep_if_failed(root: &mut Option<tempfile::TempDir>, what: &str) {
    let keep = std::env::var_os("FLEETGATE_E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
    if (keep || std::thread::panicking())
        && let Some(root) = root.take()
    {
        eprintln!("=== {what} kept in {}", root.keep().display());
    }
}

/// Returns the last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
