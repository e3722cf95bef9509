//! The `fleetgate quickstart` process under test.

use std::fs::{self, File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::admin::Admin;
use crate::{env, tail};

/// How long the server may take to write its ready file.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd server may take to exit (its drain limit is 35 s) before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(45);

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `--polling`: the generated client config says `streaming: false`.
    pub polling: bool,
    /// `-v=1` (debug logging). On by default: the log is printed when a test fails.
    pub verbose: bool,
    /// More arguments after the quickstart flags.
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            polling: false,
            verbose: true,
            extra_args: vec![],
        }
    }
}

/// A running (or stopped) `fleetgate quickstart`, with everything under one temp dir:
/// `state/` (the `--state_dir`), `server.log` (stdout and stderr of every run), `ready`,
/// and `clients/<n>/` for [`crate::GoClient`]s. On a failing test (or with
/// `FLEETGATE_E2E_KEEP=1`) the dir is kept; on a failing test the log tail is printed.
pub struct Server {
    root: Option<TempDir>,
    root_path: PathBuf,
    opts: ServerOptions,
    child: Option<Child>,
    https: SocketAddr,
    admin: SocketAddr,
    clients: AtomicUsize,
}

impl Server {
    /// Starts a new server on `127.0.0.1:0` (both listeners) with a fresh state dir.
    pub async fn start(opts: ServerOptions) -> Server {
        // The suite needs both the server and the real peers; fail early and clearly without them.
        env::fleetgate_bin();
        env::peers_venv();
        let root = tempfile::Builder::new()
            .prefix("fleetgate-e2e-")
            .tempdir()
            .expect("creating a temp dir");
        let root_path = root.path().to_path_buf();
        let mut server = Server {
            root: Some(root),
            root_path,
            opts,
            child: None,
            https: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            clients: AtomicUsize::new(0),
        };
        server.spawn("127.0.0.1:0", "127.0.0.1:0").await;
        server
    }

    async fn spawn(&mut self, listen: &str, admin_listen: &str) {
        let bin = env::fleetgate_bin();
        let ready = self.ready_file();
        let _ = fs::remove_file(&ready);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening server.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("quickstart")
            .arg("--state_dir")
            .arg(self.state_dir())
            .args(["--listen", listen, "--admin_listen", admin_listen])
            .arg("--ready_file")
            .arg(&ready);
        if self.opts.polling {
            cmd.arg("--polling");
        }
        if self.opts.verbose {
            cmd.arg("-v=1");
        }
        cmd.args(&self.opts.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

        let start = Instant::now();
        loop {
            if let Ok(text) = fs::read_to_string(&ready)
                && let (Some(https), Some(admin)) = (field(&text, "https"), field(&text, "admin"))
            {
                self.https = https;
                self.admin = admin;
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "fleetgate exited with {status} before writing its ready file {}; log tail:\n{}",
                    ready.display(),
                    tail(&self.log_text(), 60)
                );
            }
            if start.elapsed() > READY_TIMEOUT {
                let _ = child.start_kill();
                panic!(
                    "fleetgate did not write its ready file {} within {READY_TIMEOUT:?}; log tail:\n{}",
                    ready.display(),
                    tail(&self.log_text(), 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
    }

    /// Sends SIGTERM and waits for the process to exit (SIGKILL after [`STOP_TIMEOUT`]).
    /// Returns the exit status and how long the graceful stop took; panics if it had to be
    /// killed.
    pub async fn stop(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("the server is not running");
        let pid = child.id().expect("server pid");
        let start = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => (status, start.elapsed()),
            Ok(Err(e)) => panic!("waiting for fleetgate: {e}"),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                panic!(
                    "fleetgate did not exit within {STOP_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                    tail(&self.log_text(), 60)
                );
            }
        }
    }

    /// SIGKILL: the process dies at once, without draining or closing its store, as in a crash.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the server is not running");
        child.start_kill().expect("sending SIGKILL");
        child.wait().await.expect("waiting for the killed server");
    }

    /// Stops the server if it is running, and starts it again on the same ports and state dir.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            let (status, _) = self.stop().await;
            assert!(
                status.success(),
                "fleetgate exited with {status} on SIGTERM"
            );
        }
        let (https, admin) = (self.https.to_string(), self.admin.to_string());
        self.spawn(&https, &admin).await;
    }

    /// The process ID while it runs (for signals such as SIGHUP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The client frontend address (`https=` in the ready file).
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// The admin gRPC address (`admin=` in the ready file).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// A new admin API connection.
    pub async fn admin(&self) -> Admin {
        Admin::connect(self.admin)
            .await
            .unwrap_or_else(|e| panic!("connecting to the admin API at {}: {e:#}", self.admin))
    }

    /// The temp dir holding everything of this test.
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// `--state_dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.root_path.join("state")
    }

    /// The CA certificate the server generated.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.state_dir().join("ca.pem")
    }

    /// The Go client config the server generated.
    pub fn client_config_path(&self) -> PathBuf {
        self.state_dir().join("client/client.config")
    }

    fn ready_file(&self) -> PathBuf {
        self.root_path.join("ready")
    }

    /// Server stdout and stderr, all runs.
    pub fn log_path(&self) -> PathBuf {
        self.root_path.join("server.log")
    }

    /// The whole server log so far.
    pub fn log_text(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// A fresh directory for one client.
    pub(crate) fn new_client_dir(&self) -> PathBuf {
        let n = self.clients.fetch_add(1, Ordering::SeqCst);
        let dir = self.root_path.join(format!("clients/{n}"));
        fs::create_dir_all(&dir).expect("creating a client dir");
        dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let failed = std::thread::panicking();
        let keep =
            std::env::var_os("FLEETGATE_E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        if (failed || keep)
            && let Some(root) = self.root.take()
        {
            // Keep the evidence.
            let kept = root.keep();
            eprintln!(
                "=== fleetgate state, logs and client dirs kept in {}",
                kept.display()
            );
        }
        if failed {
            eprintln!(
                "=== fleetgate log tail ({}):\n{}\n=== end of fleetgate log",
                self.log_path().display(),
                tail(&self.log_text(), 200)
            );
        }
    }
}

fn field(text: &str, key: &str) -> Option<SocketAddr> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
}

/// Creates an empty file (and its parent dir).
pub(crate) fn touch(path: &Path) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("creating a dir");
    }
    File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
}
