//! Command line: subcommands, Go-style flags, and logging set-up.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use fleetgate_config::flags::{self, FlagKind, FlagSpec, Flags, GLOG_FLAGS, ServerFlags};
use fleetgate_config::settings::Settings;
use tokio_util::sync::CancellationToken;

use crate::quickstart::{self, Options};
use crate::run::{RunSettings, run};

/// Flags every command accepts besides glog's.
const COMMON: &[FlagSpec] = &[
    flag(
        "ready_file",
        FlagKind::String,
        "write the bound addresses to this file once listening",
    ),
    flag("log_format", FlagKind::String, "text (default) or json"),
    flag(
        "watch_plugins",
        FlagKind::Bool,
        "reload plugins when the services config or a component file changes (polled every 100 ms)",
    ),
];

/// The router for `quickstart`, and for `fleetgate server` with text-format files (TOML has a
/// `[router]` table).
const ROUTER: &[FlagSpec] = &[
    flag(
        "router",
        FlagKind::String,
        "a router component (world `router`) that sees every client message before its service",
    ),
    flag(
        "router_config",
        FlagKind::String,
        "the config handed to the router's init",
    ),
];

/// Retention ages for `fleetgate server` (Go durations, e.g. 720h; 0 keeps forever). They
/// override the TOML `[retention]` table and are the only way to set ages with text-format files.
const RETENTION: &[FlagSpec] = &[
    flag(
        "retention_contacts",
        FlagKind::String,
        "delete client contacts older than this (0: keep forever)",
    ),
    flag(
        "retention_messages",
        FlagKind::String,
        "delete finished messages created longer ago than this (0: keep forever)",
    ),
    flag(
        "retention_resource_usage",
        FlagKind::String,
        "delete resource usage records older than this (0: keep forever)",
    ),
];

const QUICKSTART: &[FlagSpec] = &[
    flag(
        "state_dir",
        FlagKind::String,
        "where certificates, the database and the client config live (.fleetgate)",
    ),
    flag(
        "listen",
        FlagKind::String,
        "client frontend address (127.0.0.1:4443)",
    ),
    flag(
        "admin_listen",
        FlagKind::String,
        "admin API address (127.0.0.1:4444)",
    ),
    flag(
        "hostname",
        FlagKind::String,
        "name clients use to reach the server (localhost)",
    ),
    flag(
        "polling",
        FlagKind::Bool,
        "write a client config that polls instead of streaming",
    ),
    flag(
        "database",
        FlagKind::String,
        "database URL instead of SQLite in the state directory",
    ),
    flag(
        "stats_listen",
        FlagKind::String,
        "serve Prometheus /metrics on this address (off)",
    ),
    flag(
        "health_listen",
        FlagKind::String,
        "serve /healthz and /readyz on this address (off)",
    ),
    flag(
        "services_config",
        FlagKind::String,
        "more services (text fleetspeak.server.ServerConfig) besides Echo and MessageSaver",
    ),
];

const fn flag(name: &'static str, kind: FlagKind, usage: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        default: "",
        usage,
    }
}

pub fn usage() -> String {
    let quick: Vec<FlagSpec> = QUICKSTART
        .iter()
        .chain(COMMON)
        .chain(GLOG_FLAGS)
        .copied()
        .collect();
    let server: Vec<FlagSpec> = flags::SERVER_FLAGS
        .iter()
        .chain(COMMON)
        .chain(RETENTION)
        .chain(ROUTER)
        .copied()
        .collect();
    format!(
        "usage:\n  fleetgate quickstart [flags]\n{}\n  fleetgate server [flags]   (bare flags also mean `server`)\n{}\n  fleetgate config -config FILE   (as fleetspeak-config)\n{}\n{}\n{}",
        flags::usage("fleetgate quickstart", &quick),
        flags::usage("fleetgate server", &server),
        flags::usage("fleetgate config", crate::configurator::FLAGS),
        crate::admin_cli::USAGE,
        crate::plugin_cli::USAGE
    )
}

/// Logging switches shared by every command.
#[derive(Debug, Clone, Default)]
pub struct Logging {
    pub verbosity: i32,
    pub json: bool,
}

#[derive(Debug)]
pub enum Command {
    Quickstart(Box<Options>, Logging),
    Server(Box<ServerFlags>, Logging),
    Admin(Vec<String>),
    Loadgen(Vec<String>),
    Plugin(Vec<String>),
    Config(crate::configurator::Options, Logging),
    Help,
}

impl Command {
    pub fn logging(&self) -> Logging {
        match self {
            Command::Quickstart(_, l) | Command::Server(_, l) | Command::Config(_, l) => l.clone(),
            // Admin commands print results; only warnings belong on stderr.
            Command::Help | Command::Admin(_) | Command::Loadgen(_) | Command::Plugin(_) => {
                Logging {
                    verbosity: -1,
                    json: false,
                }
            }
        }
    }
}

fn logging(f: &Flags) -> Logging {
    Logging {
        verbosity: f.log().v,
        json: f.value("log_format") == Some("json"),
    }
}

pub fn parse(args: &[String]) -> Result<Command> {
    let (cmd, rest) = match args.first().map(String::as_str) {
        Some("quickstart") => ("quickstart", &args[1..]),
        Some("server") => ("server", &args[1..]),
        Some("help") => return Ok(Command::Help),
        Some("admin") => return Ok(Command::Admin(args[1..].to_vec())),
        Some("loadgen") => return Ok(Command::Loadgen(args[1..].to_vec())),
        Some("plugin") => return Ok(Command::Plugin(args[1..].to_vec())),
        Some("config") => return parse_config(&args[1..]),
        // The drop-in form: `fleetgate --components_config ... --services_config ...`.
        Some(a) if a.starts_with('-') => ("server", args),
        Some(other) => bail!("unknown command {other:?}"),
        None => bail!("a command is required"),
    };
    let outcome = if cmd == "quickstart" {
        let spec: Vec<FlagSpec> = QUICKSTART
            .iter()
            .chain(COMMON)
            .chain(ROUTER)
            .chain(GLOG_FLAGS)
            .copied()
            .collect();
        flags::parse_flags(rest, &spec).map(|f| quickstart_options(&f))
    } else {
        ServerFlags::parse_with(rest, &[COMMON, RETENTION, ROUTER].concat()).map(|sf| {
            let l = logging(&sf.flags);
            Command::Server(Box::new(sf), l)
        })
    };
    match outcome {
        Err(flags::FlagError::Help) => Ok(Command::Help),
        Err(e) => Err(anyhow!(e)),
        Ok(c) => Ok(c),
    }
}

fn parse_config(args: &[String]) -> Result<Command> {
    match flags::parse_flags(args, crate::configurator::FLAGS) {
        Err(flags::FlagError::Help) => Ok(Command::Help),
        Err(e) => Err(anyhow!(e)),
        Ok(f) => Ok(Command::Config(
            crate::configurator::Options::from_flags(&f)?,
            logging(&f),
        )),
    }
}

fn quickstart_options(f: &Flags) -> Command {
    let mut o = Options::default();
    if let Some(v) = f.value("state_dir") {
        o.state_dir = v.into();
    }
    if let Some(v) = f.value("listen") {
        o.listen = v.into();
    }
    if let Some(v) = f.value("admin_listen") {
        o.admin_listen = v.into();
    }
    if let Some(v) = f.value("hostname") {
        o.hostname = v.into();
    }
    o.streaming = !f.bool("polling");
    o.ready_file = f.value("ready_file").map(PathBuf::from);
    o.watch_plugins = f.bool("watch_plugins");
    o.database = f.value("database").map(str::to_owned);
    o.stats_listen = f.value("stats_listen").map(str::to_owned);
    o.health_listen = f.value("health_listen").map(str::to_owned);
    o.services_config = f.value("services_config").map(PathBuf::from);
    o.router = f
        .value("router")
        .map(|p| crate::routing::from_flags(p, f.value("router_config")));
    Command::Quickstart(Box::new(o), logging(f))
}

pub async fn execute(command: Command, shutdown: CancellationToken) -> Result<()> {
    match command {
        Command::Help => {
            println!("{}", usage());
            Ok(())
        }
        Command::Quickstart(o, _) => quickstart::quickstart(*o, shutdown).await,
        Command::Config(o, _) => crate::configurator::run(&o),
        Command::Loadgen(args) => {
            println!("{}", crate::loadgen_cli::run(&args).await?);
            Ok(())
        }
        Command::Plugin(args) => {
            println!("{}", crate::plugin_cli::run(&args)?);
            Ok(())
        }
        Command::Admin(args) => {
            let out = crate::admin_cli::run(&args).await?;
            if !out.is_empty() {
                println!("{out}");
            }
            Ok(())
        }
        Command::Server(sf, _) => {
            let s = Settings::load(&sf).map_err(|e| anyhow!("Failed to load components: {e}"))?;
            let settings = RunSettings {
                components: s.components,
                services: s.services,
                database_url: s.database.url(),
                database_session: s.database.session_variables().to_vec(),
                ready_file: sf.flags.value("ready_file").map(PathBuf::from),
                retention: retention(&sf.flags, s.retention)?,
                state_dir: s.state_dir.clone(),
                plugins: crate::reload::Options {
                    source: services_source(&sf),
                    watch: sf.flags.bool("watch_plugins"),
                },
                router: match sf.flags.value("router") {
                    Some(p) => Some(crate::routing::from_flags(
                        p,
                        sf.flags.value("router_config"),
                    )),
                    None => s.router,
                },
                admin_lock: s.admin_lock,
                notification_secret: s.notification_secret,
            };
            run(settings, shutdown).await
        }
    }
}

/// `fleetgate server` reloads its services by loading its configuration again, as at start.
fn services_source(sf: &ServerFlags) -> crate::reload::Source {
    let file = sf
        .config
        .clone()
        .unwrap_or_else(|| sf.services_config.clone());
    let sf = sf.clone();
    crate::reload::Source::new(vec![file], move || {
        Settings::load(&sf)
            .map(|s| s.services)
            .map_err(|e| anyhow!("reading the services config: {e}"))
    })
}

/// The file's retention ages, overridden by the `--retention_*` flags given.
fn retention(
    f: &Flags,
    file: fleetgate_config::toml::Retention,
) -> Result<fleetgate_engine::retention::RetentionConfig> {
    let age = |name: &str, from_file| match f.value(name) {
        None => Ok(from_file),
        Some(v) => fleetgate_config::duration::parse_go_duration(v)
            .map_err(|e| anyhow!("invalid value {v:?} for flag -{name}: {e}")),
    };
    Ok(fleetgate_engine::retention::RetentionConfig::from_ages(
        age("retention_contacts", file.contacts)?,
        age("retention_messages", file.messages)?,
        age("retention_resource_usage", file.resource_usage)?,
    ))
}

/// `-v=N` maps onto tracing levels (0 info, 1 debug, 2+ trace); `RUST_LOG` overrides.
pub fn init_tracing(l: &Logging) {
    use tracing_subscriber::EnvFilter;
    let level = match l.verbosity {
        ..0 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Migrations and SQL statements are noise at the default level.
    let default = format!(
        "{level},sea_orm_migration=warn,sqlx=warn,h2=warn,hyper=warn,rustls=warn,tonic=warn,\
         tower=warn,cranelift_codegen=warn,cranelift_frontend=warn,wasmtime=warn,\
         wasmtime_cranelift=warn,wasmtime_internal_cranelift=warn"
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if l.json {
        builder.json().init();
    } else {
        builder.init();
    }
}
