//! The plugin path's peers: the `sender.py` daemon (a client service that talks first) and GRR's
//! Python server connector (`grr_server.py`, `InsecureGRPCServiceClient`) behind a `GRPC`
//! service.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Mutex;

use crate::client::GoClient;
use crate::daemon::parse_line;
use crate::wait::eventually;
use crate::{env, tail};

/// A program under `tests/daemon/`.
pub fn daemon_program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("daemon")
        .join(name)
}

/// [`crate::ClientOptions::program`] for `sender.py`: at start, `count` messages of
/// `message_type` to server service `service`, for each triple.
pub fn sender(sends: &[(&str, &str, usize)]) -> Option<(PathBuf, Vec<String>)> {
    let args = sends
        .iter()
        .map(|(service, message_type, count)| format!("{service}:{message_type}:{count}"))
        .collect();
    Some((daemon_program("sender.py"), args))
}

/// One message `sender.py` sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub service: String,
    pub message_type: String,
    pub source_message_id: Vec<u8>,
    pub payload: Vec<u8>,
}

/// One message `sender.py` received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub id: Vec<u8>,
    pub message_type: String,
    pub payload: Vec<u8>,
    /// The source service name.
    pub source: String,
}

/// The raw records of a client's daemon service `service`.
fn records(client: &GoClient, service: &str) -> Vec<HashMap<String, String>> {
    let path = client.dir().join(format!("received-{service}.jsonl"));
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_line)
        .collect()
}

fn unhex(m: &HashMap<String, String>, key: &str) -> Option<Vec<u8>> {
    hex::decode(m.get(key)?).ok()
}

/// What `sender.py` running as `service` on `client` has sent so far.
pub fn sent(client: &GoClient, service: &str) -> Vec<Sent> {
    records(client, service)
        .iter()
        .filter(|m| m.get("event").map(String::as_str) == Some("sent"))
        .filter_map(|m| {
            Some(Sent {
                service: m.get("service")?.clone(),
                message_type: m.get("type")?.clone(),
                source_message_id: unhex(m, "smid")?,
                payload: unhex(m, "payload")?,
            })
        })
        .collect()
}

/// What `sender.py` running as `service` on `client` has received so far.
pub fn got(client: &GoClient, service: &str) -> Vec<Got> {
    records(client, service)
        .iter()
        .filter(|m| m.get("event").map(String::as_str) == Some("msg"))
        .filter_map(|m| {
            Some(Got {
                id: unhex(m, "id")?,
                message_type: m.get("type")?.clone(),
                payload: unhex(m, "payload")?,
                source: m.get("source")?.clone(),
            })
        })
        .collect()
}

/// How many times `sender.py` started as `service` on `client` (more than once means the client
/// restarted it, and it sent everything again).
pub fn starts(client: &GoClient, service: &str) -> usize {
    records(client, service)
        .iter()
        .filter(|m| m.get("event").map(String::as_str) == Some("start"))
        .count()
}

/// A services config (text `fleetspeak.server.ServerConfig`) of `GRPC` services, each
/// `(name, target)` with `insecure: true`, as GRR's installer writes it.
pub fn grpc_services_config(services: &[(&str, SocketAddr)]) -> String {
    services
        .iter()
        .map(|(name, target)| {
            format!(
                "services {{\n  name: {name:?}\n  factory: \"GRPC\"\n  config {{\n    [type.googleapis.com/fleetspeak.grpcservice.Config] {{\n      target: \"{target}\"\n      insecure: true\n    }}\n  }}\n}}\n"
            )
        })
        .collect()
}

/// A message the Python Processor received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub id: Vec<u8>,
    pub client_id: Vec<u8>,
    pub source_service: String,
    pub dest_client_id: Vec<u8>,
    pub dest_service: String,
    pub message_type: String,
    pub payload: Vec<u8>,
    pub type_url: String,
    /// The callback raised on it (a `Raise` message before [`GrrConnector::fix`]).
    pub raised: bool,
}

/// GRR's server connector in a Python process (`tests/daemon/grr_server.py`): a `Processor`
/// listening on `listen` and an admin client of `admin`. Killed on drop; its log tail is
/// printed when a test fails.
pub struct GrrConnector {
    child: std::sync::Mutex<Child>,
    stdin: Mutex<ChildStdin>,
    record: PathBuf,
    log: PathBuf,
    commands: AtomicUsize,
}

impl GrrConnector {
    /// Starts the connector as `service` and waits until it listens.
    pub async fn start(dir: &Path, service: &str, listen: SocketAddr, admin: SocketAddr) -> Self {
        fs::create_dir_all(dir).expect("creating the connector dir");
        let record = dir.join("grr-received.jsonl");
        let log = dir.join("grr-connector.log");
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("opening the connector log");
        let mut child = Command::new(env::python())
            .arg(daemon_program("grr_server.py"))
            .args([service, &listen.to_string(), &admin.to_string()])
            .arg(&record)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().expect("dup log fd"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting grr_server.py");
        let stdin = child.stdin.take().expect("connector stdin");
        let c = GrrConnector {
            child: std::sync::Mutex::new(child),
            stdin: Mutex::new(stdin),
            record,
            log,
            commands: AtomicUsize::new(0),
        };
        eventually(Duration::from_secs(30), "GRR's connector to listen", || {
            if let Err(e) = c.check_running() {
                panic!("{e:#}");
            }
            let ready = c
                .events("ready")
                .first()
                .map(drop)
                .ok_or_else(|| anyhow!("no ready line yet"));
            std::future::ready(ready)
        })
        .await;
        c
    }

    fn events(&self, event: &str) -> Vec<HashMap<String, String>> {
        fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(parse_line)
            .filter(|m| m.get("event").map(String::as_str) == Some(event))
            .collect()
    }

    /// Every message the Processor received so far.
    pub fn received(&self) -> Vec<Processed> {
        self.events("msg")
            .iter()
            .filter_map(|m| {
                Some(Processed {
                    id: unhex(m, "id")?,
                    client_id: unhex(m, "client_id")?,
                    source_service: m.get("source_service")?.clone(),
                    dest_client_id: unhex(m, "dest_client_id")?,
                    dest_service: m.get("dest_service")?.clone(),
                    message_type: m.get("type")?.clone(),
                    payload: unhex(m, "payload")?,
                    type_url: m.get("type_url")?.clone(),
                    raised: m.get("raised").is_some_and(|r| r == "1"),
                })
            })
            .collect()
    }

    async fn command(&self, json: String) -> usize {
        let mut stdin = self.stdin.lock().await;
        let n = self.commands.fetch_add(1, Ordering::SeqCst);
        stdin
            .write_all(format!("{json}\n").as_bytes())
            .await
            .expect("writing to grr_server.py");
        stdin.flush().await.expect("flushing grr_server.py stdin");
        n
    }

    /// Waits for the answer lines to command `n` (`sent`, or `client`s then `done`).
    async fn answer(&self, n: usize, last: &str) -> Result<Vec<HashMap<String, String>>> {
        let n = n.to_string();
        let mine = |m: &HashMap<String, String>| m.get("n") == Some(&n);
        // The connector retries a failing call for up to 30 s.
        eventually(
            Duration::from_secs(40),
            &format!("grr_server.py to answer command {n}"),
            || async {
                let all: Vec<HashMap<String, String>> = fs::read_to_string(&self.record)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(parse_line)
                    .filter(|m| mine(m))
                    .collect();
                if let Some(e) = all
                    .iter()
                    .find(|m| m.get("event").map(String::as_str) == Some("error"))
                {
                    return Ok(Err(anyhow!(
                        "grr_server.py: {}",
                        e.get("error").cloned().unwrap_or_default()
                    )));
                }
                if all
                    .iter()
                    .any(|m| m.get("event").map(String::as_str) == Some(last))
                {
                    return Ok(Ok(all));
                }
                bail!("no answer yet")
            },
        )
        .await
    }

    /// `Send` (InsertMessage with `source` unset): a message to `service` on `client_id`.
    /// Returns the message id the connector chose and the source service it filled in.
    pub async fn send(
        &self,
        client_id: &[u8],
        service: &str,
        message_type: &str,
        payload: &[u8],
    ) -> Result<(Vec<u8>, String)> {
        let n = self
            .command(format!(
                r#"{{"cmd": "send", "client_id": "{}", "service": {service:?}, "type": {message_type:?}, "payload": "{}"}}"#,
                hex::encode(client_id),
                hex::encode(payload)
            ))
            .await;
        let answer = self.answer(n, "sent").await?;
        let sent = &answer[0];
        Ok((
            unhex(sent, "id").ok_or_else(|| anyhow!("sent without an id: {sent:?}"))?,
            sent.get("source_service").cloned().unwrap_or_default(),
        ))
    }

    /// Any command of `grr_server.py` (its doc lists them): waits for the answer lines, up to
    /// the one whose event is `last`, and returns them.
    pub async fn request(
        &self,
        cmd: serde_json::Value,
        last: &str,
    ) -> Result<Vec<HashMap<String, String>>> {
        let n = self.command(cmd.to_string()).await;
        self.answer(n, last).await
    }

    /// From now on the callback processes `Raise` messages instead of raising: the Processor
    /// is "fixed".
    pub async fn fix(&self) -> Result<()> {
        let n = self.command(r#"{"cmd": "fix"}"#.to_string()).await;
        self.answer(n, "fixed").await.map(drop)
    }

    /// `ListClients` of one client through the connector: `(client id, "svc:label" list)`.
    pub async fn list_clients(&self, client_id: &[u8]) -> Result<Vec<(Vec<u8>, Vec<String>)>> {
        let n = self
            .command(format!(
                r#"{{"cmd": "list_clients", "client_id": "{}"}}"#,
                hex::encode(client_id)
            ))
            .await;
        let answer = self.answer(n, "done").await?;
        answer
            .iter()
            .filter(|m| m.get("event").map(String::as_str) == Some("client"))
            .map(|m| {
                let id = unhex(m, "id").ok_or_else(|| anyhow!("bad client line {m:?}"))?;
                let labels = m
                    .get("labels")
                    .map(|l| {
                        l.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                Ok((id, labels))
            })
            .collect()
    }

    /// Fails if the process has exited.
    pub fn check_running(&self) -> Result<()> {
        let status = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_wait();
        match status {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "grr_server.py exited with {status}; log:\n{}",
                tail(&self.log_text(), 30)
            ),
            Err(e) => bail!("cannot check grr_server.py: {e}"),
        }
    }

    /// The connector's stdout and stderr.
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for GrrConnector {
    fn drop(&mut self) {
        let _ = self
            .child
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .start_kill();
        if std::thread::panicking() {
            eprintln!(
                "=== grr_server.py log tail ({}):\n{}\n=== end of connector log",
                self.log.display(),
                tail(&self.log_text(), 60)
            );
        }
    }
}
