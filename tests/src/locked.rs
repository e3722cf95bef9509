//! `fleetgate server` with both admin listeners: the plaintext one (`admin_config`) and the locked
//! one (`-admin_tls_addr`, `-admin_cert`, `-admin_key`, `-admin_client_ca`, `-admin_policy`), with
//! certificates made here: an admin CA, the listener's certificate, and client certificates.

use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::{env, tail};

/// A client certificate and key written to files.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo, hex, as a policy names it.
    pub spki_sha256: String,
}

/// A certificate authority that writes what it signs under `dir`.
pub struct Ca {
    dir: PathBuf,
    name: String,
    key: KeyPair,
    ca: Certificate,
    /// The CA certificate file.
    pub cert: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA cert");
        let path = dir.join(format!("{name}.ca.pem"));
        fs::write(&path, cert.pem()).expect("writing the CA");
        Ca {
            dir: dir.to_path_buf(),
            name: name.into(),
            key,
            ca: cert,
            cert: path,
        }
    }

    fn sign(&self, file: &str, params: CertificateParams) -> ClientCert {
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.key)
            .expect("signing");
        let cert_path = self.dir.join(format!("{}-{file}.crt", self.name));
        let key_path = self.dir.join(format!("{}-{file}.key", self.name));
        fs::write(&cert_path, cert.pem()).expect("writing a certificate");
        fs::write(&key_path, key.serialize_pem()).expect("writing a key");
        ClientCert {
            cert: cert_path,
            key: key_path,
            spki_sha256: hex::encode(Sha256::digest(key.public_key_der())),
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self) -> ClientCert {
        let mut p =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("params");
        p.distinguished_name
            .push(DnType::CommonName, "fleetgate admin");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign("server", p)
    }

    /// A client certificate whose subject is `CN=<cn>`.
    pub fn client(&self, cn: &str) -> ClientCert {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(cn, p)
    }
}

/// The server process and its addresses.
pub struct LockedServer {
    root: Option<TempDir>,
    root_path: PathBuf,
    child: Option<Child>,
    pub admin: SocketAddr,
    pub admin_tls: SocketAddr,
    pub notify: SocketAddr,
    pub stats: SocketAddr,
    /// The CA that signed the locked listener's certificate and the clients'.
    pub ca: PathBuf,
}

impl LockedServer {
    /// A temp dir for certificates and state; [`LockedServer::start`] then runs the server.
    pub fn dir() -> TempDir {
        tempfile::Builder::new()
            .prefix("fleetgate-locked-")
            .tempdir()
            .expect("a temp dir")
    }

    /// Starts `fleetgate server` on 127.0.0.1:0 with `services` (text format), the locked
    /// listener's certificate from `ca`, the policy text, and `extra` flags.
    pub async fn start(
        root: TempDir,
        ca: &Ca,
        services: &str,
        policy: &str,
        extra: &[String],
    ) -> LockedServer {
        // Fail early and clearly without the binary or the peers (python with grpcio).
        env::fleetgate_bin();
        env::peers_venv();
        let dir = root.path().to_path_buf();
        let server = ca.server();
        let components = "admin_config { listen_address: \"127.0.0.1:0\" }\n\
             notification_listen_address: \"127.0.0.1:0\"\n\
             stats_config { address: \"127.0.0.1:0\" }\n";
        fs::write(dir.join("components.config"), components).expect("components");
        fs::write(dir.join("services.config"), services).expect("services");
        fs::write(dir.join("policy.toml"), policy).expect("policy");
        let ready = dir.join("ready");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .expect("log");
        let mut cmd = Command::new(env::fleetgate_bin());
        cmd.arg("server")
            .arg("-components_config")
            .arg(dir.join("components.config"))
            .arg("-services_config")
            .arg(dir.join("services.config"))
            .arg("-state_dir")
            .arg(dir.join("state"))
            .arg("-ready_file")
            .arg(&ready)
            .args(["-admin_tls_addr", "127.0.0.1:0"])
            .arg("-admin_cert")
            .arg(&server.cert)
            .arg("-admin_key")
            .arg(&server.key)
            .arg("-admin_client_ca")
            .arg(&ca.cert)
            .arg("-admin_policy")
            .arg(dir.join("policy.toml"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("starting fleetgate");
        let mut s = LockedServer {
            root: Some(root),
            root_path: dir,
            child: None,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_tls: SocketAddr::from(([127, 0, 0, 1], 0)),
            notify: SocketAddr::from(([127, 0, 0, 1], 0)),
            stats: SocketAddr::from(([127, 0, 0, 1], 0)),
            ca: ca.cert.clone(),
        };
        let start = Instant::now();
        loop {
            if let Ok(text) = fs::read_to_string(&ready) {
                let field = |k: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(k)?.strip_prefix('=')?.trim().parse().ok())
                };
                if let (Some(a), Some(t), Some(n), Some(st)) = (
                    field("admin"),
                    field("admin_tls"),
                    field("notify"),
                    field("stats"),
                ) {
                    (s.admin, s.admin_tls, s.notify, s.stats) = (a, t, n, st);
                    break;
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "fleetgate exited with {st}; log:\n{}",
                    tail(&s.log_text(), 40)
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no ready file within 60 s; log:\n{}",
                tail(&s.log_text(), 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.child = Some(child);
        s
    }

    /// The log so far, without terminal colours.
    pub fn log_text(&self) -> String {
        let raw = fs::read(self.root_path.join("server.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI sequence: ESC [ parameters final-letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// Runs `fleetgate admin` against the locked listener with `tls` (cert, key), or without.
    pub fn admin_cli(&self, tls: Option<&ClientCert>, args: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new("timeout");
        cmd.arg("30")
            .arg(env::fleetgate_bin())
            .arg("admin")
            .arg("--admin_addr")
            .arg(self.admin_tls.to_string());
        if let Some(c) = tls {
            cmd.arg("--cert")
                .arg(&c.cert)
                .arg("--key")
                .arg(&c.key)
                .arg("--ca")
                .arg(&self.ca);
        }
        cmd.args(args).output().expect("running fleetgate admin")
    }

    /// Runs `tests/daemon/admin_tls.py` against the locked listener; one JSON line per call.
    pub fn python_calls(&self, calls: &[String]) -> Vec<String> {
        let out = std::process::Command::new("timeout")
            .arg("120")
            .arg(env::python())
            .arg(crate::grr::daemon_program("admin_tls.py"))
            .arg(self.admin_tls.to_string())
            .arg(&self.ca)
            .args(calls)
            .output()
            .expect("running admin_tls.py");
        assert!(
            out.status.success(),
            "admin_tls.py failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for LockedServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        if std::thread::panicking() {
            if let Some(root) = self.root.take() {
                eprintln!("=== kept {}", root.keep().display());
            }
            eprintln!("=== fleetgate log tail:\n{}", tail(&self.log_text(), 80));
        }
    }
}
