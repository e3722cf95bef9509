//! `fleetgate quickstart`: a working single-machine server with nothing prepared — embedded
//! SQLite, certificates generated on first run, and a client config for the Go client.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fleetgate_pb::fleetgate::plugin::v1::{WasmConfig, WasmPreopen};
use fleetgate_pb::fleetspeak::components::{
    AdminConfig, Config, HealthCheckConfig, HttpsConfig, StatsConfig,
};
use fleetgate_pb::fleetspeak::server::{ServerConfig, ServiceConfig};
use tokio_util::sync::CancellationToken;

use crate::certs::{self, CertFiles};
use crate::clientconf::{self, ClientLayout, ClientSettings};
use crate::run::{RunSettings, run};

/// Where `fleetgate quickstart` keeps its state unless `--state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = ".fleetgate";
/// The file in the state directory naming the admin address, for `fleetgate admin`.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";

#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub listen: String,
    pub admin_listen: String,
    /// The name clients use to reach the server; it goes into the certificate and client config.
    pub hostname: String,
    pub streaming: bool,
    pub ready_file: Option<PathBuf>,
    pub database: Option<String>,
    /// `stats_config.address` (Prometheus `/metrics`); off when `None`.
    pub stats_listen: Option<String>,
    /// `health_check_config.listen_address` (`/healthz`, `/readyz`); off when `None`.
    pub health_listen: Option<String>,
    /// `--services_config`: a text `fleetspeak.server.ServerConfig` whose services are installed
    /// next to the bundled ones (no name may clash with them).
    pub services_config: Option<PathBuf>,
    /// `--watch_plugins`: reload when the services config or a component it names changes.
    pub watch_plugins: bool,
    /// `--router PATH [--router_config TEXT]`: a router component in front of the services.
    pub router: Option<WasmConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            listen: "127.0.0.1:4443".into(),
            admin_listen: "127.0.0.1:4444".into(),
            hostname: "localhost".into(),
            streaming: true,
            ready_file: None,
            database: None,
            stats_listen: None,
            health_listen: None,
            services_config: None,
            watch_plugins: false,
            router: None,
        }
    }
}

pub async fn quickstart(opts: Options, shutdown: CancellationToken) -> Result<()> {
    let dir = absolute(&opts.state_dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let hosts = vec![
        opts.hostname.clone(),
        "localhost".into(),
        "127.0.0.1".into(),
    ];
    let mut services = bundled_services(&dir)?;
    if let Some(file) = &opts.services_config {
        add_services(&mut services, file)?;
    }
    let (certs, generated) =
        certs::load_or_generate(&CertFiles::in_dir(&dir), "quickstart", &hosts)?;
    if generated {
        tracing::info!(dir = %dir.display(), "generated a CA and a server certificate");
    }
    // The client config needs the real port, so bind first when asked for port 0.
    let listen = resolve_port(&opts.listen)?;
    let admin_listen = resolve_port(&opts.admin_listen)?;
    write_admin_addr(&dir, &admin_listen)?;
    let components = Config {
        https_config: Some(HttpsConfig {
            listen_address: listen.clone(),
            certificates: certs.server_cert_pem.clone(),
            key: certs.server_key_pem.clone(),
            ..Default::default()
        }),
        admin_config: Some(AdminConfig {
            listen_address: admin_listen.clone(),
        }),
        stats_config: opts
            .stats_listen
            .clone()
            .map(|address| StatsConfig { address }),
        health_check_config: opts
            .health_listen
            .clone()
            .map(|listen_address| HealthCheckConfig { listen_address }),
        ..Default::default()
    };
    let port = listen.rsplit(':').next().unwrap_or("4443");
    let layout = ClientLayout::in_dir(&dir.join("client"));
    let servers = [format!("{}:{port}", opts.hostname)];
    clientconf::write(
        &layout,
        &ClientSettings {
            ca_pem: &certs.ca_cert_pem,
            servers: &servers,
            labels: &[],
            streaming: opts.streaming,
        },
    )?;
    let database_url = opts
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.join("fleetgate.db").display()));
    println!("Fleetgate quickstart");
    println!("  state directory:  {}", dir.display());
    println!("  database:         {database_url}");
    println!("  client frontend:  {listen}");
    println!("  admin API:        {admin_listen}");
    println!("  client config:    {}", layout.config_file.display());
    println!(
        "  services:         Echo (bundled echo plugin), MessageSaver (to {})",
        dir.join("messages").display()
    );
    for s in services.services.iter().skip(2) {
        println!("                    {} ({})", s.name, s.factory);
    }
    println!(
        "Start a client with: fleetspeak-client -config {}",
        layout.config_file.display()
    );
    let settings = RunSettings {
        components,
        services,
        database_url,
        database_session: Vec::new(),
        ready_file: opts.ready_file,
        retention: Default::default(),
        state_dir: dir.clone(),
        plugins: crate::reload::Options {
            source: services_source(&dir, opts.services_config.clone()),
            watch: opts.watch_plugins,
        },
        router: opts.router,
        origin: fleetgate_config::Origin::Quickstart {
            services: opts.services_config,
        },
        admin_lock: None,
        notification_secret: None,
        trace: Default::default(),
    };
    run(settings, shutdown).await
}

/// The bundled plugins, ready to use: `Echo` answers each message with the same payload to the
/// sending client's `Echo` service; `MessageSaver` writes each message to `<state>/messages/`.
fn bundled_services(dir: &Path) -> Result<ServerConfig> {
    let saved = dir.join("messages");
    std::fs::create_dir_all(&saved).with_context(|| format!("creating {}", saved.display()))?;
    let wasm = |name: &str, config: WasmConfig| ServiceConfig {
        name: name.into(),
        factory: "WASM".into(),
        max_parallelism: 0,
        config: Some(fleetgate_pb::any::pack(&config)),
        ..Default::default()
    };
    let echo = WasmConfig {
        path: "bundled:echo".into(),
        grants: vec!["messaging".into(), "log".into()],
        ..Default::default()
    };
    let saver = WasmConfig {
        path: "bundled:message-saver".into(),
        config: b"/messages".to_vec(),
        grants: vec!["log".into()],
        preopens: vec![WasmPreopen {
            host_path: saved.display().to_string(),
            guest_path: "/messages".into(),
            read_only: false,
        }],
        ..Default::default()
    };
    Ok(ServerConfig {
        services: vec![wasm("Echo", echo), wasm("MessageSaver", saver)],
        // As GRR configures it: new broadcasts reach connected clients within a second or two.
        broadcast_poll_time: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    })
}

/// Adds the services of the text `ServerConfig` in `file` to the bundled ones. The file is
/// validated as `fleetgate server` validates its own (reserved and repeated names), and a name
/// of a bundled service is refused rather than silently replacing it.
fn add_services(services: &mut ServerConfig, file: &Path) -> Result<()> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut extra = fleetgate_config::textproto::parse_services(file, &text)?;
    fleetgate_config::validate::services(&mut extra)
        .with_context(|| format!("{}: invalid services config", file.display()))?;
    if let Some(s) = extra
        .services
        .iter()
        .find(|s| services.services.iter().any(|b| b.name == s.name))
    {
        anyhow::bail!(
            "{}: service [{}] clashes with a bundled quickstart service (Echo, MessageSaver)",
            file.display(),
            s.name
        );
    }
    services.services.append(&mut extra.services);
    services.broadcast_poll_time = extra.broadcast_poll_time;
    services.client_message_expiry = extra.client_message_expiry;
    Ok(())
}

/// A plugin reload reads the same sources again: the bundled set plus `--services_config`.
fn services_source(dir: &Path, file: Option<PathBuf>) -> crate::reload::Source {
    let dir = dir.to_owned();
    crate::reload::Source::new(file.iter().cloned().collect(), move || {
        let mut services = bundled_services(&dir)?;
        if let Some(file) = &file {
            add_services(&mut services, file)?;
        }
        Ok(services)
    })
}

/// Tells `fleetgate admin` run from the same directory (or with `--state_dir`) where the admin
/// API is. A wildcard listen address is reached on the loopback address of its family.
fn write_admin_addr(dir: &Path, listen: &str) -> Result<()> {
    let addr = match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_owned(),
    };
    let file = dir.join(ADMIN_ADDR_FILE);
    std::fs::write(&file, format!("{addr}\n"))
        .with_context(|| format!("writing {}", file.display()))
}

/// Replaces port 0 with a free port, so the client config can name it.
fn resolve_port(addr: &str) -> Result<String> {
    if !addr.ends_with(":0") {
        return Ok(addr.to_owned());
    }
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    Ok(l.local_addr()?.to_string())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}
