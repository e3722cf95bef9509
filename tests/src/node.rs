//! One server process of a fleet — `fleetgate server` or the Go `fleetspeak-server` — run from
//! components/services config files the test writes. Unlike [`crate::Server`] it can be
//! SIGKILLed and started again on the same ports.

use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::ports::wait_listening;
use crate::{env, tail};

/// Which server binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Fleetgate,
    /// `fleetspeak-server` from the peers venv.
    Go,
}

/// A server process with its config files and log under `dir/<name>.*`.
pub struct Node {
    pub name: String,
    pub flavor: Flavor,
    dir: PathBuf,
    /// Addresses that must accept connections before the node counts as started.
    wait_for: Vec<SocketAddr>,
    /// More arguments for `fleetgate server` (e.g. `--state_dir`).
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// Writes `<name>.components.config` (text format) and an empty services config.
    pub fn new(
        dir: &Path,
        name: &str,
        flavor: Flavor,
        components: &str,
        wait_for: Vec<SocketAddr>,
    ) -> Node {
        Self::with_services(dir, name, flavor, components, "", wait_for)
    }

    /// As [`Node::new`], with `services` as the services config.
    pub fn with_services(
        dir: &Path,
        name: &str,
        flavor: Flavor,
        components: &str,
        services: &str,
        wait_for: Vec<SocketAddr>,
    ) -> Node {
        fs::write(dir.join(format!("{name}.components.config")), components)
            .expect("writing a components config");
        fs::write(dir.join(format!("{name}.services.config")), services)
            .expect("writing a services config");
        Node {
            name: name.into(),
            flavor,
            dir: dir.to_path_buf(),
            wait_for,
            extra_args: vec![],
            child: None,
        }
    }

    /// Passes `args` to `fleetgate server` on every start (not to the Go server).
    pub fn with_args(mut self, args: &[&str]) -> Node {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// The process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    /// Starts the process and waits for its listeners (and Fleetgate's ready file).
    pub async fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening a node log");
        let ready = self.path("ready");
        let _ = fs::remove_file(&ready);
        let mut cmd = match self.flavor {
            Flavor::Fleetgate => {
                let mut c = Command::new(env::fleetgate_bin());
                c.arg("server").arg("--ready_file").arg(&ready).arg("-v=1");
                c.args(&self.extra_args);
                c
            }
            Flavor::Go => {
                let mut c = Command::new(go_server_bin());
                c.args(["-logtostderr", "-v", "1"]);
                c
            }
        };
        cmd.arg("--components_config")
            .arg(self.path("components.config"))
            .arg("--services_config")
            .arg(self.path("services.config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        let start = Instant::now();
        while self.flavor == Flavor::Fleetgate && !ready.exists() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "{} exited with {st} at start; log tail:\n{}",
                    self.name,
                    tail(&self.log_text(), 40)
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} wrote no ready file within 60 s; log tail:\n{}",
                self.name,
                tail(&self.log_text(), 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for a in &self.wait_for {
            wait_listening(*a, Duration::from_secs(60), &self.name).await;
        }
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown of any kind.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Fails if the process exited.
    pub fn check_running(&mut self) {
        if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
            panic!(
                "{} exited with {st}; log tail:\n{}",
                self.name,
                tail(&self.log_text(), 40)
            );
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.path("log")
    }

    pub fn log_text(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "=== {} log tail ({}):\n{}\n=== end of {} log",
                self.name,
                self.log_path().display(),
                tail(&self.log_text(), 80),
                self.name
            );
        }
    }
}

/// The Go `fleetspeak-server` from the peers venv.
pub fn go_server_bin() -> PathBuf {
    let p = env::peers_venv().join("fleetspeak-server-bin/usr/bin/fleetspeak-server");
    assert!(
        p.is_file(),
        "no {}: install fleetspeak-server-bin==0.1.19 into FLEETGATE_PEERS_VENV (.ci/peers.sh does)",
        p.display()
    );
    p
}
