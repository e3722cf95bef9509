//! `fleetgate config`: the equivalent of Fleetspeak's `fleetspeak-config` (config.md §5).
//!
//! Reads a text-format `fleetspeak.config.Config` (from a file, or stdin as GRR pipes it),
//! creates the CA and the server certificate when their files are missing, and (re)writes the
//! server components config and the Linux, Darwin and Windows client configs.
//!
//! | module | concern |
//! |---|---|
//! | [`pki`] | CA and server certificates, key-pair checks, `host:port` → SAN |
//! | [`keys`] | SEC1 / PKCS#1 / PKCS#8 PEM keys |
//! | [`text`] | printing prost messages as protobuf text format |
//!
//! Unlike the original every input field is checked before anything is written, so a bad
//! input leaves no partial output.

mod keys;
mod pki;
mod text;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use fleetgate_pb::fleetspeak::client::generic::{self, config::PersistenceHandler};
use fleetgate_pb::fleetspeak::{components, config};

/// Where the input comes from.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `None` reads stdin.
    pub input: Option<PathBuf>,
}

/// The input, checked: every path the run needs is present.
struct Plan {
    name: String,
    components: components::Config,
    ca_cert: PathBuf,
    ca_key: Option<PathBuf>,
    server_cert: PathBuf,
    server_key: PathBuf,
    components_out: PathBuf,
    public_host_ports: Vec<String>,
    clients: Vec<(Os, PathBuf)>,
    server_name: String,
    proxy: String,
}

#[derive(Debug, Clone, Copy)]
enum Os {
    Linux,
    Darwin,
    Windows,
}

/// Runs the configurator and prints what it wrote.
pub fn run(opts: &Options) -> Result<()> {
    let (source, bytes) = read_input(opts)?;
    let input: config::Config =
        fleetgate_config::textproto::parse(Path::new(&source), &bytes, "fleetspeak.config.Config")
            .map_err(|e| anyhow!("{e}"))?;
    let plan = Plan::new(input, &source)?;

    let ca_pem = ensure_ca(&plan)?;
    let (cert_pem, key_pem) = ensure_server_cert(&plan, &ca_pem)?;

    let mut components = plan.components.clone();
    if let Some(https) = components.https_config.as_mut() {
        https.certificates = cert_pem;
        https.key = key_pem;
    }
    let text = text::print(&components, "fleetspeak.components.Config")?;
    write_file(&plan.components_out, &text, 0o600)?;
    report(format_args!(
        "wrote server components config {}",
        plan.components_out.display()
    ));

    for (os, path) in &plan.clients {
        let client = client_config(&plan, *os, &ca_pem);
        write_file(
            path,
            &text::print(&client, "fleetspeak.client.generic.Config")?,
            0o644,
        )?;
        report(format_args!(
            "wrote {os:?} client config {}",
            path.display()
        ));
    }
    Ok(())
}

fn read_input(opts: &Options) -> Result<(String, Vec<u8>)> {
    match &opts.input {
        Some(path) => {
            // fs::read works on pipes too, so `-config /dev/stdin` behaves as in GRR.
            let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Ok((path.display().to_string(), bytes))
        }
        None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the configuration from stdin")?;
            Ok(("<stdin>".to_owned(), bytes))
        }
    }
}

impl Plan {
    fn new(c: config::Config, source: &str) -> Result<Self> {
        let required = |value: &str, field: &str| -> Result<PathBuf> {
            if value.is_empty() {
                bail!("{field} is required, not found in {source}");
            }
            Ok(PathBuf::from(value))
        };
        if c.configuration_name.is_empty() {
            bail!("configuration_name is required, not found in {source}");
        }
        let components = c
            .components_config
            .ok_or_else(|| anyhow!("components_config is required, not found in {source}"))?;
        let https = components.https_config.as_ref().ok_or_else(|| {
            anyhow!("components_config.https_config is required, not found in {source}")
        })?;
        if https.listen_address.is_empty() {
            bail!(
                "components_config.https_config.listen_address is required, not found in {source}"
            );
        }
        if c.public_host_port.is_empty() {
            bail!(
                "public_host_port is required (the host:port clients connect to), not found in {source}"
            );
        }
        for hp in &c.public_host_port {
            pki::split_host(hp).with_context(|| format!("public_host_port {hp:?}"))?;
        }
        let optional = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
        let clients = [
            (Os::Linux, &c.linux_client_configuration_file),
            (Os::Darwin, &c.darwin_client_configuration_file),
            (Os::Windows, &c.windows_client_configuration_file),
        ]
        .into_iter()
        .filter_map(|(os, p)| optional(p).map(|p| (os, p)))
        .collect();
        Ok(Self {
            ca_cert: required(&c.trusted_cert_file, "trusted_cert_file")?,
            ca_key: optional(&c.trusted_cert_key_file),
            server_cert: required(&c.server_cert_file, "server_cert_file")?,
            server_key: required(&c.server_cert_key_file, "server_cert_key_file")?,
            components_out: required(
                &c.server_component_configuration_file,
                "server_component_configuration_file",
            )?,
            name: c.configuration_name,
            components,
            public_host_ports: c.public_host_port,
            clients,
            server_name: c.server_name,
            proxy: c.proxy,
        })
    }
}

/// Creates the CA if `trusted_cert_file` is missing; returns its PEM.
fn ensure_ca(plan: &Plan) -> Result<String> {
    if !plan.ca_cert.exists() {
        let key_path = plan.ca_key.as_ref().ok_or_else(|| {
            anyhow!(
                "trusted_cert_key_file is required to create the CA certificate {}",
                plan.ca_cert.display()
            )
        })?;
        let ca = pki::create_ca(&plan.name)?;
        write_file(key_path, &ca.key_pem, 0o600)?;
        write_file(&plan.ca_cert, &ca.cert_pem, 0o644)?;
        report(format_args!(
            "created CA certificate {} and key {}",
            plan.ca_cert.display(),
            key_path.display()
        ));
    }
    let pem = read(&plan.ca_cert)?;
    pki::first_certificate(&pem)
        .with_context(|| format!("trusted_cert_file {}", plan.ca_cert.display()))?;
    Ok(pem)
}

/// Creates the server certificate if `server_cert_file` is missing; returns cert and key PEM.
fn ensure_server_cert(plan: &Plan, ca_pem: &str) -> Result<(String, String)> {
    if !plan.server_cert.exists() {
        let key_path = plan.ca_key.as_ref().ok_or_else(|| {
            anyhow!(
                "trusted_cert_key_file is required to create the server certificate {}",
                plan.server_cert.display()
            )
        })?;
        let ca_key =
            read(key_path).context("the CA key is needed to sign the server certificate")?;
        let issued = pki::create_server_cert(&plan.name, ca_pem, &ca_key, &plan.public_host_ports)
            .with_context(|| {
                format!(
                    "creating the server certificate {}",
                    plan.server_cert.display()
                )
            })?;
        write_file(&plan.server_key, &issued.key_pem, 0o600)?;
        write_file(&plan.server_cert, &issued.cert_pem, 0o644)?;
        report(format_args!(
            "created server certificate {} and key {}",
            plan.server_cert.display(),
            plan.server_key.display()
        ));
    }
    let (cert, key) = (read(&plan.server_cert)?, read(&plan.server_key)?);
    pki::check_key_pair(&cert, &key).with_context(|| {
        format!(
            "server_cert_file {} and server_cert_key_file {}",
            plan.server_cert.display(),
            plan.server_key.display()
        )
    })?;
    Ok((cert, key))
}

/// The client config for one OS, with the original's fixed persistence settings.
fn client_config(plan: &Plan, os: Os, ca_pem: &str) -> generic::Config {
    let filesystem = |state_file: &str| {
        PersistenceHandler::FilesystemHandler(generic::FilesystemHandler {
            configuration_directory: "/etc/fleetspeak-client".into(),
            state_file: state_file.into(),
        })
    };
    let persistence = match os {
        Os::Linux => filesystem("/var/lib/misc/fleetspeak-client.state"),
        Os::Darwin => filesystem("/etc/fleetspeak-client/state"),
        Os::Windows => PersistenceHandler::RegistryHandler(generic::RegistryHandler {
            configuration_key: r"HKEY_LOCAL_MACHINE\SOFTWARE\FleetspeakClient".into(),
        }),
    };
    let https = plan.components.https_config.as_ref();
    generic::Config {
        trusted_certs: ca_pem.to_owned(),
        server: plan.public_host_ports.clone(),
        // One entry even when empty, as the original; the client skips blank labels.
        client_label: vec![plan.components.required_label.clone()],
        persistence_handler: Some(persistence),
        streaming: !https.is_some_and(|h| h.disable_streaming),
        proxy: plan.proxy.clone(),
        server_name: plan.server_name.clone(),
        ..Default::default()
    }
}

/// One line on stdout. A closed stdout (`| head`) must not stop the run half-way.
fn report(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes `contents`, creating the file with `mode` (less the umask) and missing parent
/// directories; an existing file keeps its mode, as with Go's `os.WriteFile`.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
