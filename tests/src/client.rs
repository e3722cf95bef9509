//! One real Go `fleetspeak-client` process.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::{Child, Command};

use crate::daemon::{self, Received};
use crate::server::{Server, touch};
use crate::wait::eventually;
use crate::{env, tail};

/// The default daemon service name; the admin helpers address messages to it.
pub const TEST_SERVICE: &str = "TestService";

/// The fast client timings every test client gets (`communicator.txt`).
pub const COMMUNICATOR_TXT: &str =
    "min_failure_delay_seconds: 1\nmax_poll_delay_seconds: 2\nmax_buffer_delay_seconds: 1\n";

/// How to configure one client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `streaming:` in the client's copy of the config.
    pub streaming: bool,
    /// Extra `client_label:` lines.
    pub labels: Vec<String>,
    /// Daemon services to install, each running `tests/daemon/echo.py`.
    pub services: Vec<String>,
    /// Another daemon program instead of `echo.py`, and its arguments after the record file
    /// (`python PROGRAM RECORD_FILE ARGS...`).
    pub program: Option<(PathBuf, Vec<String>)>,
    /// Another `host:port` to reach the server at (a relay in front of it).
    pub server: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            streaming: true,
            labels: vec![],
            services: vec![TEST_SERVICE.into()],
            program: None,
            server: None,
        }
    }
}

/// A running client: its own config copy, configuration dir, state file and log, under the
/// server's temp dir (`clients/<n>/`). Killed on drop; its log tail is printed when a test
/// fails.
pub struct GoClient {
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl GoClient {
    /// Copies the server's generated client config, adjusts it, and starts the client.
    pub async fn start(server: &Server, opts: ClientOptions) -> GoClient {
        let dir = server.new_client_dir();
        let config_dir = dir.join("config");
        let state_file = dir.join("client.state");
        fs::create_dir_all(config_dir.join("textservices")).expect("creating textservices/");
        fs::create_dir_all(config_dir.join("services")).expect("creating services/");
        touch(&state_file);
        fs::write(config_dir.join("communicator.txt"), COMMUNICATOR_TXT)
            .expect("writing communicator.txt");
        for name in &opts.services {
            let record = dir.join(format!("received-{name}.jsonl"));
            let text = daemon_service_config(name, &record, opts.program.as_ref());
            fs::write(config_dir.join(format!("textservices/{name}.txt")), text)
                .expect("writing a textservice");
        }
        let generated = fs::read_to_string(server.client_config_path()).unwrap_or_else(|e| {
            panic!(
                "reading the server-generated client config {}: {e}",
                server.client_config_path().display()
            )
        });
        let config =
            rewrite_config(&generated, &opts, &config_dir, &state_file).unwrap_or_else(|e| {
                panic!(
                    "adapting {}: {e:#}\n{generated}",
                    server.client_config_path().display()
                )
            });
        let config_file = dir.join("client.config");
        fs::write(&config_file, config).expect("writing the client config");
        let client = GoClient {
            dir,
            child: Mutex::new(None),
        };
        client.spawn();
        client
    }

    fn spawn(&self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening client.log");
        let bin = env::client_bin();
        let child = Command::new(&bin)
            .arg("-config")
            .arg(self.dir.join("client.config"))
            .args(["-logtostderr", "-v=1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    }

    /// The client's ID, from its log line `Using new client id: …` (or `Using client id: …`
    /// after a restart with the same state file). Waits up to 30 s.
    pub async fn client_id(&self) -> Vec<u8> {
        eventually(
            Duration::from_secs(30),
            "the client to log its id",
            || async { client_id_from_log(&self.log_text()) },
        )
        .await
    }

    /// Every record the named daemon service wrote so far (all its runs).
    pub fn received_by(&self, service: &str) -> Vec<Received> {
        daemon::read(&self.dir.join(format!("received-{service}.jsonl")))
    }

    /// Every record the default [`TEST_SERVICE`] daemon wrote so far.
    pub fn received(&self) -> Vec<Received> {
        self.received_by(TEST_SERVICE)
    }

    /// Kills the client process (SIGKILL) and waits for it.
    pub async fn kill(&self) {
        let child = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut c) = child {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Fails if the client process has exited.
    pub fn check_running(&self) -> Result<()> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => bail!(
                "the client exited with {status}; log tail:\n{}",
                tail(&self.log_text(), 30)
            ),
            Some(Err(e)) => bail!("cannot check the client process: {e}"),
            None => bail!("the client is not running"),
        }
    }

    /// This client's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Client stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("client.log")
    }

    /// The whole client log so far.
    pub fn log_text(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for GoClient {
    fn drop(&mut self) {
        if let Some(c) = self
            .child
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = c.start_kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "=== fleetspeak-client log tail ({}):\n{}\n=== end of client log",
                self.log_path().display(),
                tail(&self.log_text(), 80)
            );
        }
    }
}

/// A text `fleetspeak.ClientServiceConfig` for a daemon (echo.py unless `program` says
/// otherwise) that records into `received`.
fn daemon_service_config(
    name: &str,
    received: &Path,
    program: Option<&(PathBuf, Vec<String>)>,
) -> String {
    let (path, args) = match program {
        Some((p, a)) => (p.clone(), a.as_slice()),
        None => (env::echo_daemon(), &[][..]),
    };
    let mut argv = format!(
        "    argv: {:?}\n    argv: {:?}\n    argv: {:?}\n",
        env::python().display().to_string(),
        path.display().to_string(),
        received.display().to_string(),
    );
    for a in args {
        argv += &format!("    argv: {a:?}\n");
    }
    format!(
        "name: {name:?}\nfactory: \"Daemon\"\nconfig {{\n  [type.googleapis.com/fleetspeak.daemonservice.Config] {{\n{argv}  }}\n}}\n"
    )
}

/// Adapts the server-generated config: our own configuration dir and state file, the requested
/// `streaming:` value, and extra `client_label:` lines.
fn rewrite_config(
    generated: &str,
    opts: &ClientOptions,
    config_dir: &Path,
    state_file: &Path,
) -> Result<String> {
    let mut out = String::new();
    for label in &opts.labels {
        out += &format!("client_label: {label:?}\n");
    }
    let (mut saw_dir, mut saw_state, mut saw_streaming) = (false, false, false);
    for line in generated.lines() {
        let t = line.trim_start();
        if t.starts_with("configuration_directory:") {
            out += &format!(
                "  configuration_directory: {:?}\n",
                config_dir.display().to_string()
            );
            saw_dir = true;
        } else if t.starts_with("state_file:") {
            out += &format!("  state_file: {:?}\n", state_file.display().to_string());
            saw_state = true;
        } else if let (Some(addr), true) = (&opts.server, t.starts_with("server:")) {
            out += &format!("server: {addr:?}\n");
        } else if t.starts_with("streaming:") {
            out += &format!("streaming: {}\n", opts.streaming);
            saw_streaming = true;
        } else {
            out += line;
            out.push('\n');
        }
    }
    if !saw_dir || !saw_state {
        bail!("the generated config has no configuration_directory/state_file line");
    }
    if !saw_streaming {
        out += &format!("streaming: {}\n", opts.streaming);
    }
    Ok(out)
}

/// The newest client ID a Go client logged: `Using new client id: …`, or `Using client id: …`
/// after a restart with the same state file.
pub(crate) fn client_id_from_log(log: &str) -> Result<Vec<u8>> {
    let id = log
        .lines()
        .rev()
        .find_map(|l| {
            l.split_once("Using new client id: ")
                .or_else(|| l.split_once("Using client id: "))
        })
        .map(|(_, id)| id.trim().to_owned())
        .ok_or_else(|| anyhow!("no `Using new client id` line yet"))?;
    let bytes = hex::decode(&id).with_context(|| format!("client id {id:?} is not hex"))?;
    if bytes.len() != 8 {
        bail!("client id {id:?} is not 8 bytes");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_keeps_certs_and_replaces_paths() {
        let generated = "trusted_certs: \"PEM\\n\"\nserver: \"localhost:1\"\nfilesystem_handler {\n  configuration_directory: \"/s/config\"\n  state_file: \"/s/client.state\"\n}\nstreaming: true\n";
        let opts = ClientOptions {
            streaming: false,
            labels: vec!["x".into()],
            services: vec![],
            program: None,
            server: Some("127.0.0.1:2".into()),
        };
        let out = rewrite_config(
            generated,
            &opts,
            Path::new("/c/config"),
            Path::new("/c/state"),
        )
        .expect("rewrite");
        assert!(out.starts_with("client_label: \"x\"\n"));
        assert!(out.contains("trusted_certs: \"PEM\\n\""));
        assert!(out.contains("configuration_directory: \"/c/config\""));
        assert!(out.contains("state_file: \"/c/state\""));
        assert!(out.contains("streaming: false") && !out.contains("streaming: true"));
        assert!(out.contains("server: \"127.0.0.1:2\"") && !out.contains("localhost:1"));
    }
}
