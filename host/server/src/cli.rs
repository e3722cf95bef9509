//! Command line: subcommands, Go-style flags, and logging set-up.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::quickstart::{self, Options};
use crate::run::{RunSettings, run};

pub const USAGE: &str = "\
usage:
  fleetgate quickstart [--state_dir DIR] [--listen HOST:PORT] [--admin_listen HOST:PORT]
                       [--hostname NAME] [--polling] [--database URL] [--ready_file FILE]
  fleetgate server --components_config FILE --services_config FILE [--database URL]
                   [--ready_file FILE]
  fleetgate server --config fleetgate.toml [--database URL]
common flags: --logtostderr, -v=N (verbosity), --log_format=json";

/// Logging switches shared by every command.
#[derive(Debug, Clone, Default)]
pub struct Logging {
    pub verbosity: u32,
    pub json: bool,
}

#[derive(Debug)]
pub enum Command {
    Quickstart(Options, Logging),
    Server(ServerArgs, Logging),
}

#[derive(Debug, Default)]
pub struct ServerArgs {
    pub components_config: Option<PathBuf>,
    pub services_config: Option<PathBuf>,
    pub toml_config: Option<PathBuf>,
    pub database: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub ready_file: Option<PathBuf>,
}

impl Command {
    pub fn logging(&self) -> &Logging {
        match self {
            Command::Quickstart(_, l) | Command::Server(_, l) => l,
        }
    }
}

pub fn parse(args: &[String]) -> Result<Command> {
    let (cmd, rest) = match args.first().map(String::as_str) {
        Some("quickstart") => ("quickstart", &args[1..]),
        Some("server") => ("server", &args[1..]),
        // The drop-in form: `fleetgate --components_config ... --services_config ...`.
        Some(a) if a.starts_with('-') => ("server", args),
        Some(other) => bail!("unknown command {other:?}"),
        None => bail!("a command is required"),
    };
    let flags = fleetgate_config::flags::parse_go_flags(rest, &flag_spec(cmd))?;
    let logging = Logging { verbosity: flags.verbosity, json: flags.get("log_format") == Some("json") };
    let path = |k: &str| flags.get(k).map(PathBuf::from);
    if cmd == "quickstart" {
        let mut o = Options::default();
        if let Some(v) = path("state_dir") {
            o.state_dir = v;
        }
        if let Some(v) = flags.get("listen") {
            o.listen = v.into();
        }
        if let Some(v) = flags.get("admin_listen") {
            o.admin_listen = v.into();
        }
        if let Some(v) = flags.get("hostname") {
            o.hostname = v.into();
        }
        o.streaming = !flags.bool("polling");
        o.ready_file = path("ready_file");
        o.database = flags.get("database").map(str::to_owned);
        return Ok(Command::Quickstart(o, logging));
    }
    let args = ServerArgs {
        components_config: path("components_config"),
        services_config: path("services_config"),
        toml_config: path("config"),
        database: flags.get("database").map(str::to_owned),
        state_dir: path("state_dir"),
        ready_file: path("ready_file"),
    };
    Ok(Command::Server(args, logging))
}

fn flag_spec(cmd: &str) -> fleetgate_config::flags::FlagSpec {
    let mut values = vec!["database", "ready_file", "log_format", "state_dir"];
    let mut bools = vec![];
    if cmd == "quickstart" {
        values.extend(["listen", "admin_listen", "hostname"]);
        bools.push("polling");
    } else {
        values.extend(["components_config", "services_config", "config"]);
    }
    fleetgate_config::flags::FlagSpec::new(&values, &bools)
}

pub async fn execute(command: Command, shutdown: CancellationToken) -> Result<()> {
    match command {
        Command::Quickstart(o, _) => quickstart::quickstart(o, shutdown).await,
        Command::Server(a, _) => {
            let settings = load_settings(&a)?;
            run(settings, shutdown).await
        }
    }
}

fn load_settings(a: &ServerArgs) -> Result<RunSettings> {
    let loaded = match &a.toml_config {
        Some(toml) => fleetgate_config::load_toml(toml)?,
        None => {
            let components = a
                .components_config
                .clone()
                .unwrap_or_else(|| PathBuf::from("/etc/fleetspeak-server/server.components.config"));
            let services = a
                .services_config
                .clone()
                .unwrap_or_else(|| PathBuf::from("/etc/fleetspeak-server/server.services.config"));
            fleetgate_config::load_fleetspeak(&services, &components)?
        }
    };
    let state_dir = a.state_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/fleetgate"));
    let database_url = loaded
        .database_url(a.database.as_deref(), &state_dir)
        .context("choosing the database")?;
    Ok(RunSettings {
        components: loaded.components,
        services: loaded.services,
        database_url,
        ready_file: a.ready_file.clone(),
    })
}

/// `-v=N` maps onto tracing levels (0 info, 1 debug, 2+ trace); `RUST_LOG` overrides.
pub fn init_tracing(l: &Logging) {
    use tracing_subscriber::EnvFilter;
    let level = match l.verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if l.json {
        builder.json().init();
    } else {
        builder.init();
    }
}
