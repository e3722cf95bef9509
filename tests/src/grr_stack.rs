//! GRR itself over a Fleetspeak server (Fleetgate or Go): GRR 4.0.0.post0 from the virtualenv
//! `.ci/grr.sh` makes, configured by its own installer step (`grr_config_updater initialize
//! --noprompt --use_fleetspeak`, through `grr/configure.py`), its three servers (Fleetspeak
//! frontend, admin UI serving the HTTP API, worker), the GRR client as the Go client's daemon
//! service, and flows run through GRR's API (`grr/flows.py`).

use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::client::client_id_from_log;
use crate::daemon::parse_line;
use crate::mariadb::TestDatabase;
use crate::node::Flavor;
use crate::pki::quote;
use crate::ports::free_addr;
use crate::wait::eventually;
use crate::{env, tail};

/// GRR's admin user, as `initialize --admin_password` creates it; the API logs in as it.
pub const API_USER: &str = "admin";
const API_PASSWORD: &str = "admin";
/// How long GRR's installer step and each process start may take on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(240);
/// How long all flows together may take (each step has its own 300 s limit in `flows.py`).
const FLOWS_TIMEOUT: Duration = Duration::from_secs(900);

fn grr_program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grr").join(name)
}

/// A background process with its stdout and stderr in `log`; killed on drop, its log tail
/// printed when a test fails.
pub struct Proc {
    name: String,
    log: PathBuf,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, log: PathBuf, cmd: &mut Command) -> Proc {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log fd"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.into(),
            log,
            child,
        }
    }

    /// Fails if the process exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => bail!(
                "{} exited with {st}; log tail ({}):\n{}",
                self.name,
                self.log.display(),
                tail(&self.log_text(), 40)
            ),
            Err(e) => bail!("cannot check {}: {e}", self.name),
        }
    }

    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "=== {} log tail ({}):\n{}\n=== end of {} log",
                self.name,
                self.log.display(),
                tail(&self.log_text(), 40),
                self.name
            );
        }
    }
}

/// The ports of one installation, chosen free at run time (GRR's installer has them fixed:
/// 4443, 4444, 11111 and 8000).
#[derive(Debug, Clone, Copy)]
pub struct GrrPorts {
    /// Fleetspeak's client-facing HTTPS listener.
    pub https: SocketAddr,
    /// Fleetspeak's admin API: GRR's `Server.fleetspeak_server`.
    pub admin: SocketAddr,
    /// GRR's Fleetspeak frontend (`Server.fleetspeak_message_listen_address`): the target of
    /// the `GRPC` service `GRR`.
    pub grr: SocketAddr,
    /// GRR's admin UI and HTTP API (`AdminUI.port`).
    pub api: SocketAddr,
}

impl GrrPorts {
    pub fn free() -> GrrPorts {
        GrrPorts {
            https: free_addr(),
            admin: free_addr(),
            grr: free_addr(),
            api: free_addr(),
        }
    }
}

/// A GRR installation in a temp dir (kept when a test fails or with `FLEETGATE_E2E_KEEP=1`):
/// GRR's config and database, and the Fleetspeak files its installer had the configurator write
/// under `fleetspeak/`.
pub struct GrrInstall {
    pub dir: PathBuf,
    pub ports: GrrPorts,
    pub db: TestDatabase,
    server_config: PathBuf,
    root: Option<TempDir>,
}

impl GrrInstall {
    /// Runs GRR's `initialize --noprompt --use_fleetspeak` with `configurator` as
    /// `fleetspeak-config` (Fleetgate's `fleetgate config`, or Go's) and Fleetspeak's database
    /// `fleetspeak_db`: it creates GRR's schema and admin user, and writes GRR's config and
    /// Fleetspeak's components, services and client configs.
    pub async fn initialize(configurator: Flavor, ports: GrrPorts, fleetspeak_db: &str) -> Self {
        let venv = env::grr_venv();
        let root = tempfile::Builder::new()
            .prefix("fleetgate-grr-")
            .tempdir()
            .expect("temp dir");
        let dir = root.path().to_path_buf();
        let db = TestDatabase::create("grr");
        fs::create_dir_all(dir.join("logs")).expect("logs dir");
        fs::create_dir_all(dir.join("fleetspeak")).expect("fleetspeak dir");
        let server_config = dir.join("server.yaml");
        // GRR's packaged defaults, plus what must differ per test: file locations and the port
        // of the admin UI; `initialize` writes everything else into the writeback.
        fs::write(
            &server_config,
            format!(
                "Config.includes:\n  - {}\nConfig.writeback: {}\nAdminUI.port: {}\nAdminUI.headless: true\nLogging.path: {}\n",
                venv.join("install_data/etc/grr-server.yaml").display(),
                dir.join("server.local.yaml").display(),
                ports.api.port(),
                dir.join("logs").display(),
            ),
        )
        .expect("writing server.yaml");
        let configurator = configurator_path(&dir, configurator);
        let port = |a: SocketAddr| a.port().to_string();
        let mut cmd = Command::new(env::grr_python());
        cmd.arg(grr_program("configure.py"))
            .arg("server")
            .arg(&configurator)
            .arg(dir.join("fleetspeak"))
            .args([port(ports.https), port(ports.admin), port(ports.grr)])
            .arg("--")
            .arg("--config")
            .arg(&server_config)
            .args(["initialize", "--noprompt", "--use_fleetspeak"])
            .args(["--external_hostname", "localhost"])
            .args(["--admin_password", API_PASSWORD])
            .args(["--mysql_hostname", "127.0.0.1", "--mysql_port", "3306"])
            .args(["--mysql_username", "root", "--mysql_password", ""])
            .args([
                "--mysql_db",
                &db.name,
                "--mysql_fleetspeak_db",
                fleetspeak_db,
            ])
            .arg("--norepack_templates")
            .current_dir(&dir);
        run_to_end(
            "grr_config_updater initialize",
            &dir.join("initialize.log"),
            cmd,
        )
        .await;
        GrrInstall {
            dir,
            ports,
            db,
            server_config,
            root: Some(root),
        }
    }

    /// A file the configurator wrote (`server.components.config`, `server.services.config`,
    /// `linux_client.config`).
    pub fn fleetspeak_file(&self, name: &str) -> String {
        let path = self.dir.join("fleetspeak").join(name);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// The API's base URL.
    pub fn api_url(&self) -> String {
        format!("http://localhost:{}", self.ports.api.port())
    }
}

impl Drop for GrrInstall {
    fn drop(&mut self) {
        crate::keep_if_failed(&mut self.root, "GRR installation");
    }
}

/// `fleetspeak-config` for GRR's installer: Go's from the peers' virtualenv, or a two-line
/// script running `fleetgate config`, as the compat package installs it.
fn configurator_path(dir: &Path, flavor: Flavor) -> PathBuf {
    match flavor {
        Flavor::Go => env::peers_venv().join("fleetspeak-server-bin/usr/bin/fleetspeak-config"),
        Flavor::Fleetgate => {
            let path = dir.join("fleetspeak-config");
            fs::write(
                &path,
                format!(
                    "#!/bin/sh\nexec {} config \"$@\"\n",
                    env::fleetgate_bin().display()
                ),
            )
            .expect("writing fleetspeak-config");
            let st = std::process::Command::new("chmod")
                .arg("+x")
                .arg(&path)
                .status()
                .expect("chmod");
            assert!(st.success(), "chmod +x {}", path.display());
            path
        }
    }
}

/// Runs `cmd` to its end with its output in `log`; panics with the log tail if it fails.
async fn run_to_end(what: &str, log: &Path, mut cmd: Command) {
    let file = fs::File::create(log).expect("creating a log");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let text = || String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned();
    match tokio::time::timeout(START_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => {}
        Ok(Ok(out)) => panic!(
            "{what} failed with {}; log tail ({}):\n{}",
            out.status,
            log.display(),
            tail(&text(), 40)
        ),
        Ok(Err(e)) => panic!("waiting for {what}: {e}"),
        Err(_) => panic!(
            "{what} did not finish within {START_TIMEOUT:?}; log tail ({}):\n{}",
            log.display(),
            tail(&text(), 40)
        ),
    }
}

/// GRR's server processes, as `grr_server --component` runs them.
pub struct GrrServers {
    procs: Vec<Proc>,
}

impl GrrServers {
    /// Starts the Fleetspeak frontend, the admin UI (HTTP API) and the worker, and waits until
    /// the frontend and the API listen.
    pub async fn start(install: &GrrInstall) -> GrrServers {
        let components = [
            (
                "grr-frontend",
                "grr_response_server.bin.fleetspeak_frontend",
            ),
            ("grr-admin-ui", "grr_response_server.gui.admin_ui"),
            ("grr-worker", "grr_response_server.bin.worker"),
        ];
        let procs = components
            .iter()
            .map(|(name, module)| {
                let mut cmd = Command::new(env::grr_python());
                cmd.args(["-u", "-m", module, "--config"])
                    .arg(&install.server_config)
                    .current_dir(&install.dir);
                Proc::spawn(name, install.dir.join(format!("{name}.log")), &mut cmd)
            })
            .collect();
        let mut servers = GrrServers { procs };
        let start = Instant::now();
        for addr in [install.ports.grr, install.ports.api] {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                if let Err(e) = servers.check_running() {
                    panic!("{e:#}");
                }
                assert!(
                    start.elapsed() < START_TIMEOUT,
                    "GRR's servers do not listen on {addr} after {START_TIMEOUT:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        servers
    }

    pub fn check_running(&mut self) -> Result<()> {
        self.procs.iter_mut().try_for_each(Proc::check_running)
    }
}

/// The real Go client with the GRR client as its daemon service `GRR`, under `dir`.
pub struct GrrClient {
    dir: PathBuf,
    proc: Option<Proc>,
}

impl GrrClient {
    /// Writes everything the client needs: `base_config` (a Go client config in text format,
    /// as a configurator writes it) with the configuration directory and state file moved
    /// under `dir`, the GRR client's config derived from the server's, and the `GRR`
    /// textservice as GRR's own end-to-end set-up writes it.
    pub async fn prepare(install: &GrrInstall, dir: &Path, base_config: &str) -> GrrClient {
        fs::create_dir_all(dir.join("textservices")).expect("textservices dir");
        let state = dir.join("client.state");
        fs::write(&state, "").expect("state file");
        // Only the delay after a failed contact differs from the defaults (300 s).
        fs::write(
            dir.join("communicator.txt"),
            "min_failure_delay_seconds: 1\n",
        )
        .expect("communicator.txt");
        let grr_config = dir.join("grr.client.yaml");
        let mut cmd = Command::new(env::grr_python());
        cmd.arg(grr_program("configure.py"))
            .arg("client")
            .arg(&install.server_config)
            .arg(install.dir.join("server.local.yaml"))
            .arg(&grr_config)
            .arg(dir);
        run_to_end("configure.py client", &dir.join("configure.log"), cmd).await;
        let argv: String = [
            env::grr_python().display().to_string(),
            "-u".into(),
            "-m".into(),
            "grr_response_client.grr_fs_client".into(),
            "--config".into(),
            grr_config.display().to_string(),
            "--verbose".into(),
        ]
        .iter()
        .map(|a| format!("    argv: {}\n", quote(a)))
        .collect();
        fs::write(
            dir.join("textservices/GRR.textproto"),
            format!(
                "name: \"GRR\"\nfactory: \"Daemon\"\nconfig {{\n  [type.googleapis.com/fleetspeak.daemonservice.Config] {{\n{argv}    monitor_heartbeats: true\n    heartbeat_unresponsive_grace_period_seconds: 45\n    heartbeat_unresponsive_kill_period_seconds: 120\n  }}\n}}\n"
            ),
        )
        .expect("writing the GRR textservice");
        let config = set_string_field(base_config, "configuration_directory", dir)
            .and_then(|c| set_string_field(&c, "state_file", &state))
            .unwrap_or_else(|e| panic!("adapting the client config: {e:#}\n{base_config}"));
        fs::write(dir.join("client.config"), config).expect("writing client.config");
        GrrClient {
            dir: dir.to_path_buf(),
            proc: None,
        }
    }

    /// Starts `fleetspeak-client`.
    pub fn start(&mut self) {
        let mut cmd = Command::new(env::client_bin());
        cmd.arg("-config")
            .arg(self.dir.join("client.config"))
            .args(["-logtostderr", "-v=1"]);
        self.proc = Some(Proc::spawn(
            "fleetspeak-client",
            self.dir.join("client.log"),
            &mut cmd,
        ));
    }

    /// The client's Fleetspeak id, from its log.
    pub async fn client_id(&self) -> Vec<u8> {
        eventually(
            Duration::from_secs(30),
            "the client to log its id",
            || async {
                let log = fs::read(self.dir.join("client.log")).unwrap_or_default();
                client_id_from_log(&String::from_utf8_lossy(&log))
            },
        )
        .await
    }

    pub fn check_running(&mut self) -> Result<()> {
        self.proc
            .as_mut()
            .ok_or_else(|| anyhow!("the client was not started"))?
            .check_running()
    }
}

/// Replaces the string value of the first `key:` in a text-format proto (one line or many).
fn set_string_field(text: &str, key: &str, value: &Path) -> Result<String> {
    let at = text
        .find(&format!("{key}:"))
        .with_context(|| format!("no {key} field"))?;
    let open = at
        + text[at..]
            .find('"')
            .with_context(|| format!("{key} has no string value"))?;
    let mut close = open + 1;
    let bytes = text.as_bytes();
    while close < bytes.len() && bytes[close] != b'"' {
        close += if bytes[close] == b'\\' { 2 } else { 1 };
    }
    if close >= bytes.len() {
        bail!("{key}'s string does not end");
    }
    Ok(format!(
        "{}{}{}",
        &text[..open],
        quote(&value.display().to_string()),
        &text[close + 1..]
    ))
}

/// One step `flows.py` reported.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub ms: u64,
    pub results: u64,
    pub detail: String,
}

/// The steps, in order, that [`run_flows`] reports.
pub const STEPS: [&str; 5] = [
    "enrolled",
    "Interrogate",
    "ListProcesses",
    "ClientFileFinder",
    "FileFinder",
];

/// Runs `flows.py`: once GRR's API answers, starts `client`, hands its id to the script, and
/// returns the timed steps. Panics with the script's error if a step fails.
pub async fn run_flows(install: &GrrInstall, client: &mut GrrClient) -> Vec<Step> {
    let files = install.dir.join("files");
    fs::create_dir_all(&files).expect("files dir");
    // A small file, and one of several of GRR's 512 KiB transfer chunks.
    let (small, large) = (files.join("small.bin"), files.join("large.bin"));
    fs::write(&small, random_bytes(3000)).expect("small file");
    fs::write(&large, random_bytes(1_300_000)).expect("large file");
    let log = install.dir.join("flows.log");
    let mut child = Command::new(env::grr_python())
        .arg(grr_program("flows.py"))
        .args([&install.api_url(), API_USER, API_PASSWORD])
        .arg(&small)
        .arg(&large)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).expect("flows.log"))
        .kill_on_drop(true)
        .spawn()
        .expect("starting flows.py");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let failed = |why: String| -> ! {
        let text = String::from_utf8_lossy(&fs::read(&log).unwrap_or_default()).into_owned();
        panic!(
            "flows.py: {why}; its stderr ({}):\n{}",
            log.display(),
            tail(&text, 40)
        )
    };
    match next_record(&mut lines, START_TIMEOUT).await {
        Ok(Some(m)) if m.get("event").map(String::as_str) == Some("ready") => {}
        Ok(other) => failed(format!("expected the ready line, got {other:?}")),
        Err(e) => failed(format!("{e:#}")),
    }
    client.start();
    let id = format!("C.{}\n", hex::encode(client.client_id().await));
    stdin
        .write_all(id.as_bytes())
        .await
        .expect("writing the id");
    stdin.flush().await.expect("flushing the id");
    let deadline = Instant::now() + FLOWS_TIMEOUT;
    let mut steps = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_record(&mut lines, left).await {
            Ok(Some(m)) => steps.push(step(&m).unwrap_or_else(|e| failed(format!("{e:#}")))),
            Ok(None) => break,
            Err(e) => failed(format!("{e:#}; steps so far: {steps:?}")),
        }
        if let Err(e) = client.check_running() {
            failed(format!("{e:#}"));
        }
    }
    let status = child.wait().await.expect("waiting for flows.py");
    if !status.success() {
        failed(format!("exited with {status} after {steps:?}"));
    }
    steps
}

/// The next JSON line, `None` at the end of the output.
async fn next_record(
    lines: &mut Lines<BufReader<ChildStdout>>,
    timeout: Duration,
) -> Result<Option<std::collections::HashMap<String, String>>> {
    let line = tokio::time::timeout(timeout, lines.next_line())
        .await
        .map_err(|_| anyhow!("no output within {timeout:?}"))?
        .context("reading flows.py's output")?;
    match line {
        None => Ok(None),
        Some(l) => parse_line(&l)
            .map(Some)
            .ok_or_else(|| anyhow!("not a record: {l:?}")),
    }
}

fn step(m: &std::collections::HashMap<String, String>) -> Result<Step> {
    let field = |k: &str| m.get(k).cloned().ok_or_else(|| anyhow!("no {k} in {m:?}"));
    Ok(Step {
        name: field("step")?,
        ms: field("ms")?.parse()?,
        results: field("results")?.parse()?,
        detail: field("detail")?,
    })
}

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// The steps as one line per step, for the test's output and the benchmark page.
pub fn report(label: &str, steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "grr-step {label} {} {:.1} s ({} results: {})\n",
                s.name,
                s.ms as f64 / 1000.0,
                s.results,
                s.detail
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_string_field_on_one_line_and_many() {
        let one = r#"trusted_certs:"A\"B" filesystem_handler:{configuration_directory:"/etc/fleetspeak-client" state_file:"/var/lib/misc/fleetspeak-client.state"} streaming:true"#;
        let out = set_string_field(one, "configuration_directory", Path::new("/c"))
            .and_then(|t| set_string_field(&t, "state_file", Path::new("/c/s")))
            .expect("rewrite");
        assert_eq!(
            out,
            r#"trusted_certs:"A\"B" filesystem_handler:{configuration_directory:"/c" state_file:"/c/s"} streaming:true"#
        );
        let many = "filesystem_handler {\n  configuration_directory: \"/etc/x\"\n  state_file: \"/y\"\n}\n";
        let out = set_string_field(many, "state_file", Path::new("/z")).expect("rewrite");
        assert_eq!(
            out,
            "filesystem_handler {\n  configuration_directory: \"/etc/x\"\n  state_file: \"/z\"\n}\n"
        );
        assert!(set_string_field("x: 1", "state_file", Path::new("/z")).is_err());
    }
}
