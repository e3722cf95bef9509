//! A real Go `fleetspeak-client` for a fleet: its config is written here (CA, the address of a
//! proxy), not copied from a quickstart server. Layout and daemon as in [`crate::GoClient`].

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::bail;
use tokio::process::{Child, Command};

use crate::client::{COMMUNICATOR_TXT, TEST_SERVICE};
use crate::daemon::{self, Received, message_ids};
use crate::pki::quote;
use crate::wait::eventually;
use crate::{env, tail};

/// A running streaming client with one echo daemon service ([`TEST_SERVICE`]).
pub struct FleetClient {
    dir: PathBuf,
    child: Option<Child>,
}

impl FleetClient {
    /// Writes the config under `dir` and starts the client against `server` (`host:port`).
    pub fn start(dir: &Path, ca_pem: &str, server: &str) -> FleetClient {
        Self::start_with(dir, ca_pem, server, "")
    }

    /// As [`FleetClient::start`], with `extra` text-format lines in the client config (e.g.
    /// `client_certificate_header`).
    pub fn start_with(dir: &Path, ca_pem: &str, server: &str, extra: &str) -> FleetClient {
        let config_dir = dir.join("config");
        fs::create_dir_all(config_dir.join("textservices")).expect("creating textservices/");
        fs::create_dir_all(config_dir.join("services")).expect("creating services/");
        let state = dir.join("client.state");
        fs::write(&state, "").expect("creating the state file");
        fs::write(config_dir.join("communicator.txt"), COMMUNICATOR_TXT).expect("communicator.txt");
        let received = dir.join(format!("received-{TEST_SERVICE}.jsonl"));
        let service = format!(
            "name: {}\nfactory: \"Daemon\"\nconfig {{\n  [type.googleapis.com/fleetspeak.daemonservice.Config] {{\n    argv: {}\n    argv: {}\n    argv: {}\n  }}\n}}\n",
            quote(TEST_SERVICE),
            quote(&env::python().display().to_string()),
            quote(&env::echo_daemon().display().to_string()),
            quote(&received.display().to_string()),
        );
        fs::write(
            config_dir.join(format!("textservices/{TEST_SERVICE}.txt")),
            service,
        )
        .expect("writing the textservice");
        let config = format!(
            "trusted_certs: {}\nserver: {}\nfilesystem_handler {{\n  configuration_directory: {}\n  state_file: {}\n}}\nstreaming: true\n{extra}",
            quote(ca_pem),
            quote(server),
            quote(&config_dir.display().to_string()),
            quote(&state.display().to_string()),
        );
        fs::write(dir.join("client.config"), config).expect("writing the client config");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("client.log"))
            .expect("client.log");
        let child = Command::new(env::client_bin())
            .arg("-config")
            .arg(dir.join("client.config"))
            .args(["-logtostderr", "-v=1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting fleetspeak-client");
        FleetClient {
            dir: dir.to_path_buf(),
            child: Some(child),
        }
    }

    /// The client's id from its log (waits up to 30 s).
    pub async fn client_id(&self) -> Vec<u8> {
        eventually(
            Duration::from_secs(30),
            "the client to log its id",
            || async { crate::client::client_id_from_log(&self.log_text()) },
        )
        .await
    }

    /// Every record of the daemon so far.
    pub fn received(&self) -> Vec<Received> {
        daemon::read(&self.dir.join(format!("received-{TEST_SERVICE}.jsonl")))
    }

    /// Ids in `ids` the daemon has not received yet.
    pub fn missing(&self, ids: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let have: BTreeSet<Vec<u8>> = message_ids(&self.received()).into_iter().collect();
        ids.iter().filter(|i| !have.contains(*i)).cloned().collect()
    }

    /// Waits until the daemon has every id; fails early if the client died.
    pub async fn wait_delivered(&mut self, ids: &[Vec<u8>], timeout: Duration) {
        let n = ids.len();
        eventually(
            timeout,
            &format!("{n} message(s) to reach {}", self.dir.display()),
            || {
                let missing = self.missing(ids).len();
                let dead = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                async move {
                    if let Some(st) = dead {
                        panic!("the client exited with {st}");
                    }
                    if missing > 0 {
                        bail!("{missing} of {n} not received yet");
                    }
                    Ok(())
                }
            },
        )
        .await;
    }

    /// How often the daemon service has started (the client restarts it on `RestartService`).
    pub fn daemon_starts(&self) -> usize {
        fs::read_to_string(self.dir.join(format!("received-{TEST_SERVICE}.jsonl")))
            .unwrap_or_default()
            .lines()
            .filter_map(daemon::parse_line)
            .filter(|m| m.get("event").map(String::as_str) == Some("start"))
            .count()
    }

    /// The client's exit status, once it has exited (as on `Die`).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_text(&self) -> String {
        fs::read(self.dir.join("client.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for FleetClient {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "=== client log tail ({}):\n{}\n=== end of client log",
                self.dir.display(),
                tail(&self.log_text(), 40)
            );
        }
    }
}
