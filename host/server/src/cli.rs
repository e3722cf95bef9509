//! Command line: parsing (definitions in `args`), running each command, and logging set-up.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use clap::FromArgMatches;
use fleetgate_config::flags::{LogFlags, ServerFlags};
use fleetgate_config::settings::{self, Settings};
use tokio_util::sync::CancellationToken;

use crate::args::{Cli, Command, LogFormat, Logging, QuickstartArgs, Running, ServerArgs};
use crate::quickstart::{self, Options};
use crate::run::{RunSettings, run};

/// The name under which the compat package installs the binary: everything means `server`.
const FLEETSPEAK_SERVER: &str = "fleetspeak-server";

/// Parses the process arguments (program name first). Help and `--version` come back as the
/// `clap::Error` that prints them (exit 0); usage errors print with a suggestion (exit 2).
pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Command, clap::Error> {
    let mut argv = argv.into_iter();
    let program = argv.next().unwrap_or_else(|| "fleetgate".into());
    let mut args: Vec<OsString> = argv.collect();
    let as_fleetspeak_server = Path::new(&program)
        .file_name()
        .is_some_and(|n| n == FLEETSPEAK_SERVER);
    // The drop-in form `fleetgate --components_config ... --services_config ...`.
    let bare_flags = args.first().and_then(|a| a.to_str()).is_some_and(|a| {
        a.starts_with('-')
            && !matches!(
                a,
                "-h" | "-help" | "--help" | "-V" | "-version" | "--version"
            )
    });
    if as_fleetspeak_server || bare_flags {
        args.insert(0, "server".into());
    }
    let mut cmd = crate::args::command();
    cmd.build();
    let args = crate::args::go_style(&cmd, args);
    let matches =
        cmd.try_get_matches_from(std::iter::once(OsString::from("fleetgate")).chain(args))?;
    Ok(Cli::from_arg_matches(&matches)?.command)
}

impl Command {
    /// Commands that print results log only warnings, so stdout and stderr stay readable.
    pub fn logging(&self) -> Logging {
        match self {
            Command::Quickstart(q) => q.logging.clone(),
            Command::Server(s) => s.logging.clone(),
            Command::Config(c) => c.logging.clone(),
            Command::Admin(_)
            | Command::Loadgen(_)
            | Command::Plugin(_)
            | Command::Completions { .. }
            | Command::Man { .. } => Logging {
                v: -1,
                ..Logging::default()
            },
        }
    }
}

fn quickstart_options(q: QuickstartArgs) -> Options {
    let router = router(&q.running);
    Options {
        state_dir: q.state_dir,
        listen: q.listen,
        admin_listen: q.admin_listen,
        hostname: q.hostname,
        streaming: !q.polling,
        ready_file: q.running.ready_file,
        database: q.database,
        stats_listen: q.stats_listen,
        health_listen: q.health_listen,
        services_config: q.services_config,
        watch_plugins: q.running.watch_plugins,
        router,
    }
}

fn router(r: &Running) -> Option<fleetgate_pb::fleetgate::plugin::v1::WasmConfig> {
    r.router
        .as_deref()
        .map(|p| crate::routing::from_flags(p, r.router_config.as_deref()))
}

/// What `fleetgate_config` loads the server's settings from.
fn server_flags(s: &ServerArgs) -> ServerFlags {
    ServerFlags {
        components_config: s
            .components_config
            .clone()
            .unwrap_or_else(|| settings::DEFAULT_COMPONENTS_CONFIG.into()),
        services_config: s
            .services_config
            .clone()
            .unwrap_or_else(|| settings::DEFAULT_SERVICES_CONFIG.into()),
        text_paths_given: s.components_config.is_some() || s.services_config.is_some(),
        config: s.config.clone(),
        database: s.database.clone(),
        state_dir: s.state_dir.clone(),
        admin_lock: fleetgate_config::admin_lock::AdminLockSource {
            listen_address: s.admin_lock.listen_address.clone(),
            cert_file: s.admin_lock.cert_file.clone(),
            key_file: s.admin_lock.key_file.clone(),
            client_ca_file: s.admin_lock.client_ca_file.clone(),
            policy_file: s.admin_lock.policy_file.clone(),
        },
        notification_secret_file: s.notification_secret_file.clone(),
        log: LogFlags {
            logtostderr: s.logging.logtostderr,
            alsologtostderr: s.logging.alsologtostderr,
            v: s.logging.v,
            vmodule: s.logging.vmodule.clone(),
        },
        args: Vec::new(),
        flags: Default::default(),
    }
}

pub async fn execute(command: Command, shutdown: CancellationToken) -> Result<()> {
    match command {
        Command::Quickstart(q) => quickstart::quickstart(quickstart_options(q), shutdown).await,
        Command::Config(c) => crate::configurator::run(&crate::configurator::Options {
            input: c.config.filter(|p| p != Path::new("-")),
        }),
        Command::Loadgen(args) => {
            println!("{}", crate::loadgen_cli::run(&args).await?);
            Ok(())
        }
        Command::Plugin(p) => {
            println!("{}", crate::plugin_cli::run(p.command)?);
            Ok(())
        }
        Command::Admin(a) => {
            let out = crate::admin_cli::run(a).await?;
            if !out.is_empty() {
                println!("{out}");
            }
            Ok(())
        }
        Command::Completions { shell } => {
            let shell = match shell {
                crate::args::Shell::Bash => clap_complete::Shell::Bash,
                crate::args::Shell::Zsh => clap_complete::Shell::Zsh,
                crate::args::Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(
                shell,
                &mut crate::args::command(),
                "fleetgate",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { out } => man(out.as_deref()),
        Command::Server(s) => {
            let sf = server_flags(&s);
            // The error names its file (and line or field) itself.
            let loaded = Settings::load(&sf)?;
            let settings = RunSettings {
                components: loaded.components,
                services: loaded.services,
                database_url: loaded.database.url(),
                database_session: loaded.database.session_variables().to_vec(),
                ready_file: s.running.ready_file.clone(),
                retention: retention(&s, loaded.retention)?,
                state_dir: loaded.state_dir.clone(),
                plugins: crate::reload::Options {
                    source: services_source(&sf),
                    watch: s.running.watch_plugins,
                },
                router: router(&s.running).or(loaded.router),
                origin: loaded.origin,
                admin_lock: loaded.admin_lock,
                notification_secret: loaded.notification_secret,
                trace: trace(&s, loaded.trace)?,
            };
            run(settings, shutdown).await
        }
    }
}

/// `fleetgate man`: the main page on stdout, or every page into `dir`.
fn man(dir: Option<&Path>) -> Result<()> {
    let cmd = crate::args::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| anyhow!("creating {}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| anyhow!("writing man pages to {}: {e}", dir.display()))
        }
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .map_err(|e| anyhow!("writing the man page: {e}")),
    }
}

/// `fleetgate server` reloads its services by loading its configuration again, as at start.
fn services_source(sf: &ServerFlags) -> crate::reload::Source {
    let file: PathBuf = sf
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
    s: &ServerArgs,
    file: fleetgate_config::toml::Retention,
) -> Result<fleetgate_engine::retention::RetentionConfig> {
    let age = |name: &str, flag: &Option<String>, from_file| match flag {
        None => Ok(from_file),
        Some(v) => fleetgate_config::duration::parse_go_duration(v)
            .map_err(|e| anyhow!("invalid value {v:?} for flag -{name}: {e}")),
    };
    let traces = age("retention_traces", &s.retention_traces, file.traces)?;
    Ok(fleetgate_engine::retention::RetentionConfig::from_ages(
        age("retention_contacts", &s.retention_contacts, file.contacts)?,
        age("retention_messages", &s.retention_messages, file.messages)?,
        age(
            "retention_resource_usage",
            &s.retention_resource_usage,
            file.resource_usage,
        )?,
    )
    .with_dead_letters(age(
        "retention_dead_letters",
        &s.retention_dead_letters,
        file.dead_letters,
    )?)
    .with_traces(traces))
}

/// The file's `[trace]`, overridden by `--trace_messages` and `--server_name`.
fn trace(s: &ServerArgs, file: fleetgate_config::toml::Trace) -> Result<crate::run::TraceSettings> {
    if let Some(name) = &s.server_name {
        fleetgate_config::toml::check_server_name(name)
            .map_err(|e| anyhow!("invalid value {name:?} for flag -server_name: {e}"))?;
    }
    Ok(crate::run::TraceSettings {
        enabled: s.trace_messages.or(file.enabled).unwrap_or(true),
        server_name: s.server_name.clone().or(file.server_name),
    })
}

/// `-v=N` maps onto tracing levels (0 info, 1 debug, 2+ trace); `RUST_LOG` overrides.
pub fn init_tracing(l: &Logging) {
    use tracing_subscriber::EnvFilter;
    let level = match l.v {
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
    if l.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}
