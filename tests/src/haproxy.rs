//! An `haproxy` process in TCP mode in front of several client frontends, sending PROXY
//! headers. Missing haproxy is a failure with instructions.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::ports::wait_listening;

/// Which PROXY header haproxy sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// `send-proxy` (text).
    V1,
    /// `send-proxy-v2` (binary).
    V2,
}

/// Where haproxy's own connections to the backends come from: a loopback address other than
/// the clients' 127.0.0.1, so an address recorded without PROXY support would show it.
pub const SOURCE_IP: &str = "127.0.0.2";

/// A running haproxy, killed on drop.
pub struct Haproxy {
    pub listen: SocketAddr,
    pub config: PathBuf,
    child: Child,
}

impl Haproxy {
    /// Starts haproxy on `listen`, balancing over `backends` (least connections, health
    /// checks every 500 ms, failed connects redispatched).
    pub async fn start(
        dir: &Path,
        name: &str,
        listen: SocketAddr,
        backends: &[SocketAddr],
        v: ProxyVersion,
    ) -> Haproxy {
        let send = match v {
            ProxyVersion::V1 => "send-proxy",
            ProxyVersion::V2 => "send-proxy-v2",
        };
        let mut servers = String::new();
        for (i, b) in backends.iter().enumerate() {
            servers += &format!("  server fg{i} {b} {send} check inter 500ms fall 1 rise 1\n");
        }
        let text = format!(
            "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 15m\n  timeout server 15m\n  retries 3\n  option redispatch\nfrontend clients\n  bind {listen}\n  default_backend frontends\nbackend frontends\n  balance leastconn\n  source {SOURCE_IP}\n{servers}"
        );
        Self::start_config(dir, name, listen, &text).await
    }

    /// Starts haproxy with a complete config `text` that listens on `listen`.
    pub async fn start_config(dir: &Path, name: &str, listen: SocketAddr, text: &str) -> Haproxy {
        let bin = which("haproxy").unwrap_or_else(|| {
            panic!(
                "haproxy is not installed: `apt-get install -y haproxy` (scripts/test-all.sh installs it)"
            )
        });
        let config = dir.join(format!("{name}.cfg"));
        fs::write(&config, text).expect("writing the haproxy config");
        let log = fs::File::create(dir.join(format!("{name}.log"))).expect("haproxy log");
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting haproxy");
        wait_listening(listen, Duration::from_secs(20), "haproxy").await;
        Haproxy {
            listen,
            config,
            child,
        }
    }

    /// Fails if haproxy exited.
    pub fn check_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("haproxy ({}) exited: {st}", self.config.display());
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
