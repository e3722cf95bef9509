//! A `fleetgate quickstart` child process on `127.0.0.1:0`, for the integration test and the
//! benchmark example. `FLEETGATE_BIN` overrides the binary (default: the workspace's debug build).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server; killed on drop, its temp dir removed (kept if `keep` is set).
pub struct Quickstart {
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub ca_pem: PathBuf,
    pub dir: TempDir,
    _child: Child,
}

/// The server binary: `$FLEETGATE_BIN`, else `target/debug/fleetgate` of this workspace.
pub fn fleetgate_bin() -> PathBuf {
    match std::env::var_os("FLEETGATE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/fleetgate"),
    }
}

impl Quickstart {
    /// Starts `bin quickstart [extra...]` with a fresh state dir and waits for its ready file.
    pub async fn start(bin: &Path, extra: &[String]) -> Result<Self, String> {
        if !bin.is_file() {
            return Err(format!(
                "fleetgate binary not found at {}: build it with `cargo build -p fleetgate-server` \
                 or point FLEETGATE_BIN at it",
                bin.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("fleetgate-loadgen-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let state = dir.path().join("state");
        let ready = dir.path().join("ready");
        let log = std::fs::File::create(dir.path().join("server.log"))
            .map_err(|e| format!("server.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("server.log: {e}"))?;
        let mut child = Command::new(bin)
            .arg("quickstart")
            .arg("--state_dir")
            .arg(&state)
            .args(["--listen", "127.0.0.1:0", "--admin_listen", "127.0.0.1:0"])
            .arg("--ready_file")
            .arg(&ready)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let (Some(https), Some(admin)) = (field(&text, "https"), field(&text, "admin"))
            {
                return Ok(Self {
                    https,
                    admin,
                    ca_pem: state.join("ca.pem"),
                    dir,
                    _child: child,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "fleetgate exited with {status}; see {}",
                    log_tail(&dir)
                ));
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "no ready file after {READY_TIMEOUT:?}; {}",
                    log_tail(&dir)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the server log, for failure messages.
    #[allow(dead_code)]
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }
}

fn field(text: &str, key: &str) -> Option<SocketAddr> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
}

fn log_tail(dir: &TempDir) -> String {
    let text = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!("server log tail:\n{}", lines[from..].join("\n"))
}
