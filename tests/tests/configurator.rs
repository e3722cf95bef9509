//! `fleetgate config` (the `fleetspeak-config` equivalent): the files it writes, the errors it
//! gives, the real Go client enrolling with its Linux config against `fleetgate server` run
//! from its components config, and the same fields as the real `fleetspeak-config`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fleetgate_pb::fleetspeak::client::generic::{self, config::PersistenceHandler};
use fleetgate_pb::fleetspeak::components;
use fleetgate_tests::{Admin, checks, env, tail};
use prost_reflect::{DescriptorPool, DynamicMessage};
use tempfile::TempDir;

/// A configurator input writing everything under `dir`; `port` is the client-facing port.
fn input(dir: &Path, port: u16, public: &[&str]) -> String {
    let p = |name: &str| format!("{:?}", dir.join(name).display().to_string());
    let mut text = format!(
        "configuration_name: \"E2E\"\n\
         components_config {{\n  https_config {{ listen_address: \"127.0.0.1:{port}\" }}\n  \
         admin_config {{ listen_address: \"127.0.0.1:0\" }}\n  required_label: \"e2e-install\"\n}}\n\
         trusted_cert_file: {}\ntrusted_cert_key_file: {}\n\
         server_cert_file: {}\nserver_cert_key_file: {}\n\
         server_component_configuration_file: {}\n\
         linux_client_configuration_file: {}\ndarwin_client_configuration_file: {}\n\
         windows_client_configuration_file: {}\n",
        p("ca.pem"),
        p("ca-key.pem"),
        p("server.pem"),
        p("server-key.pem"),
        p("server.components.config"),
        p("linux.client.configuration"),
        p("darwin.client.configuration"),
        p("windows.client.configuration"),
    );
    for hp in public {
        text += &format!("public_host_port: {hp:?}\n");
    }
    text
}

/// Runs `fleetgate config -config -` with `input` on stdin.
fn configure(input: &str) -> Output {
    run_with_stdin(
        Command::new(env::fleetgate_bin()).args(["config", "-config", "-"]),
        input,
    )
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the configurator");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing stdin");
    child
        .wait_with_output()
        .expect("waiting for the configurator")
}

fn parse<T: prost::Message + Default>(path: &Path, full_name: &str) -> T {
    let pool = DescriptorPool::decode(fleetgate_pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let desc = pool.get_message_by_name(full_name).expect(full_name);
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    DynamicMessage::parse_text_format(desc, &text)
        .unwrap_or_else(|e| panic!("{} is not a valid {full_name}: {e}\n{text}", path.display()))
        .transcode_to()
        .expect("transcode")
}

fn client(path: &Path) -> generic::Config {
    parse(path, "fleetspeak.client.generic.Config")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    l.local_addr().expect("local addr").port()
}

#[test]
fn writes_certificates_and_configs_and_keeps_certificates_on_rerun() {
    let dir = TempDir::new().expect("temp dir");
    let d = dir.path();
    let text = input(d, 4443, &["fs.example.com:4443", "10.0.0.5:4443"]);
    let out = configure(&text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for private in ["ca-key.pem", "server-key.pem", "server.components.config"] {
        assert_eq!(
            mode(&d.join(private)) & 0o077,
            0,
            "{private} is readable by others"
        );
    }
    let ca = fs::read_to_string(d.join("ca.pem")).expect("ca.pem");
    let key = fs::read_to_string(d.join("server-key.pem")).expect("server key");
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{key}");

    let comp: components::Config = parse(
        &d.join("server.components.config"),
        "fleetspeak.components.Config",
    );
    let https = comp.https_config.as_ref().expect("https_config");
    assert_eq!(https.listen_address, "127.0.0.1:4443");
    assert_eq!(
        https.certificates,
        fs::read_to_string(d.join("server.pem")).expect("pem")
    );
    assert_eq!(https.key, key);
    assert_eq!(comp.required_label, "e2e-install");
    assert_eq!(
        comp.admin_config.expect("admin").listen_address,
        "127.0.0.1:0"
    );

    let linux = client(&d.join("linux.client.configuration"));
    assert_eq!(linux.trusted_certs, ca);
    assert_eq!(linux.server, ["fs.example.com:4443", "10.0.0.5:4443"]);
    assert_eq!(linux.client_label, ["e2e-install"]);
    assert!(linux.streaming);
    let fs_handler = |c: &generic::Config| match &c.persistence_handler {
        Some(PersistenceHandler::FilesystemHandler(h)) => {
            (h.configuration_directory.clone(), h.state_file.clone())
        }
        other => panic!("not a filesystem handler: {other:?}"),
    };
    assert_eq!(
        fs_handler(&linux),
        (
            "/etc/fleetspeak-client".into(),
            "/var/lib/misc/fleetspeak-client.state".into()
        )
    );
    let darwin = client(&d.join("darwin.client.configuration"));
    assert_eq!(fs_handler(&darwin).1, "/etc/fleetspeak-client/state");
    let windows = client(&d.join("windows.client.configuration"));
    match windows.persistence_handler {
        Some(PersistenceHandler::RegistryHandler(r)) => {
            assert_eq!(
                r.configuration_key,
                r"HKEY_LOCAL_MACHINE\SOFTWARE\FleetspeakClient"
            );
        }
        other => panic!("not a registry handler: {other:?}"),
    }

    // A second run keeps the certificates and rewrites the configs.
    let server_pem = fs::read(d.join("server.pem")).expect("server.pem");
    fs::remove_file(d.join("linux.client.configuration")).expect("rm");
    let out = configure(&text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(d.join("ca.pem")).expect("ca.pem"), ca);
    assert_eq!(
        fs::read(d.join("server.pem")).expect("server.pem"),
        server_pem
    );
    assert!(d.join("linux.client.configuration").is_file());
}

#[test]
fn missing_fields_are_named_and_nothing_is_written() {
    let dir = TempDir::new().expect("temp dir");
    let d = dir.path();
    let good = input(d, 4443, &["localhost:4443"]);
    let cases = [
        (
            "configuration_name: \"E2E\"\n",
            "",
            "configuration_name is required",
        ),
        (
            "https_config { listen_address: \"127.0.0.1:4443\" }",
            "",
            "components_config.https_config is required",
        ),
        (
            "listen_address: \"127.0.0.1:4443\"",
            "",
            "listen_address is required",
        ),
        (
            "public_host_port: \"localhost:4443\"\n",
            "",
            "public_host_port is required",
        ),
        (
            "public_host_port: \"localhost:4443\"\n",
            "public_host_port: \"localhost\"\n",
            "missing port",
        ),
        (
            "server_cert_key_file:",
            "# server_cert_key_file:",
            "server_cert_key_file is required",
        ),
    ];
    for (from, to, want) in cases {
        let text = good.replacen(from, to, 1);
        assert_ne!(text, good, "case {want:?} changed nothing");
        let out = configure(&text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{want}: {stderr}");
        assert!(stderr.contains(want), "expected {want:?} in: {stderr}");
    }
    let left: Vec<_> = fs::read_dir(d).expect("read_dir").collect();
    assert!(left.is_empty(), "files written despite errors: {left:?}");
}

/// `fleetgate server` started from the generated components config, and the real client
/// started from a copy of the generated Linux config with only its local paths changed.
#[tokio::test]
async fn go_client_enrols_with_the_generated_linux_config() {
    let dir = TempDir::new().expect("temp dir");
    let d = dir.path();
    let port = free_port();
    // An IP public address: the Go client must accept the IP SAN.
    let out = configure(&input(d, port, &[&format!("127.0.0.1:{port}")]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(d.join("server.services.config"), "").expect("services config");

    let server = Spawned::server(d);
    let admin_addr = server.wait_ready(d).await;
    let client_dir = d.join("client");
    let client_config = local_client_config(&d.join("linux.client.configuration"), &client_dir);
    let client = Spawned::new(
        Command::new(env::client_bin())
            .arg("-config")
            .arg(&client_config)
            .args(["-logtostderr", "-v=1"]),
        &d.join("client.log"),
    );
    let admin = Admin::connect(admin_addr).await.expect("admin API");
    let id = client_id(&d.join("client.log"), &client).await;
    let listed = checks::enrolled(&admin, &id, Duration::from_secs(45)).await;
    let labels: Vec<&str> = listed.labels.iter().map(|l| l.label.as_str()).collect();
    assert!(labels.contains(&"e2e-install"), "labels {labels:?}");
    drop(server);
}

/// Rewrites the state file and configuration directory to `dir` (the rest stays as generated).
fn local_client_config(generated: &Path, dir: &Path) -> PathBuf {
    let config_dir = dir.join("config");
    fs::create_dir_all(config_dir.join("textservices")).expect("mkdir");
    fs::write(
        config_dir.join("communicator.txt"),
        "min_failure_delay_seconds: 1\n",
    )
    .expect("w");
    let text = fs::read_to_string(generated).expect("generated config");
    let text = text
        .replace(
            "\"/etc/fleetspeak-client\"",
            &format!("{:?}", config_dir.display().to_string()),
        )
        .replace(
            "\"/var/lib/misc/fleetspeak-client.state\"",
            &format!("{:?}", dir.join("client.state").display().to_string()),
        );
    let path = dir.join("client.config");
    fs::write(&path, text).expect("writing the client config");
    path
}

async fn client_id(log: &Path, client: &Spawned) -> Vec<u8> {
    fleetgate_tests::eventually(Duration::from_secs(30), "the client id", || async {
        client.check_running()?;
        let text = fs::read_to_string(log).unwrap_or_default();
        let id = text
            .lines()
            .find_map(|l| {
                l.split_once("Using new client id: ")
                    .map(|(_, id)| id.trim())
            })
            .ok_or_else(|| anyhow::anyhow!("no client id logged yet"))?;
        Ok(hex::decode(id)?)
    })
    .await
}

/// A child process killed on drop, whose log tail is printed if the test fails.
struct Spawned {
    child: Mutex<std::process::Child>,
    log: PathBuf,
}

impl Spawned {
    fn new(cmd: &mut Command, log: &Path) -> Spawned {
        let file = fs::File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("spawning");
        Spawned {
            child: Mutex::new(child),
            log: log.to_owned(),
        }
    }

    fn server(d: &Path) -> Spawned {
        let db = format!("sqlite://{}", d.join("fleetgate.db").display());
        Spawned::new(
            Command::new(env::fleetgate_bin())
                .args(["server", "--components_config"])
                .arg(d.join("server.components.config"))
                .arg("--services_config")
                .arg(d.join("server.services.config"))
                .args(["--database", &db, "-v=1", "--ready_file"])
                .arg(d.join("ready")),
            &d.join("server.log"),
        )
    }

    /// Waits for the ready file and returns the admin address.
    async fn wait_ready(&self, d: &Path) -> std::net::SocketAddr {
        let start = Instant::now();
        loop {
            let text = fs::read_to_string(d.join("ready")).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("admin=")) {
                return addr.trim().parse().expect("admin address");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "fleetgate server not ready; log:\n{}",
                tail(&fs::read_to_string(&self.log).unwrap_or_default(), 40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn check_running(&self) -> anyhow::Result<()> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(Some(status)) = child.try_wait() {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            anyhow::bail!("exited with {status}; log:\n{}", tail(&text, 30));
        }
        Ok(())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("=== {}:\n{}", self.log.display(), tail(&text, 60));
        }
    }
}

/// The same input through the real `fleetspeak-config` and `fleetgate config`: the same
/// fields and values everywhere except the generated certificates and keys.
#[test]
fn same_fields_as_fleetspeak_config() {
    let go_tool = env::peers_venv().join("fleetspeak-server-bin/usr/bin/fleetspeak-config");
    let (go, ours) = (TempDir::new().expect("tmp"), TempDir::new().expect("tmp"));
    let extra = "server_name: \"fs.example.com\"\nproxy: \"http://proxy:3128\"\n";
    let go_input = input(go.path(), 4443, &["fs.example.com:4443", "10.0.0.5:4443"]) + extra;
    let out = run_with_stdin(
        Command::new(&go_tool).args(["-config", "/dev/stdin"]),
        &go_input,
    );
    assert!(
        out.status.success(),
        "fleetspeak-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let our_input = input(ours.path(), 4443, &["fs.example.com:4443", "10.0.0.5:4443"]) + extra;
    let out = configure(&our_input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for name in [
        "linux.client.configuration",
        "darwin.client.configuration",
        "windows.client.configuration",
    ] {
        let (mut g, mut o) = (
            client(&go.path().join(name)),
            client(&ours.path().join(name)),
        );
        assert!(g.trusted_certs.contains("BEGIN CERTIFICATE"));
        assert!(o.trusted_certs.contains("BEGIN CERTIFICATE"));
        (g.trusted_certs, o.trusted_certs) = (String::new(), String::new());
        assert_eq!(o, g, "{name}");
    }
    let comp = |d: &Path| {
        let mut c: components::Config = parse(
            &d.join("server.components.config"),
            "fleetspeak.components.Config",
        );
        let h = c.https_config.as_mut().expect("https_config");
        assert!(h.certificates.contains("BEGIN CERTIFICATE") && h.key.contains("PRIVATE KEY"));
        (h.certificates, h.key) = (String::new(), String::new());
        c
    };
    assert_eq!(comp(ours.path()), comp(go.path()));
    for f in ["ca-key.pem", "server-key.pem", "server.components.config"] {
        assert_eq!(
            mode(&ours.path().join(f)),
            mode(&go.path().join(f)),
            "mode of {f}"
        );
    }
}
