//! What the command line accepts: every command, flag, help text and example, in one clap
//! definition. `--help`, the "did you mean" suggestions, the shell completions
//! (`fleetgate completions`) and the man pages (`fleetgate man`) all come from it.
//!
//! Fleetspeak's tools use Go's `flag` package, and installations and GRR pass flags that way:
//! `-flag v`, `-flag=v`, `--flag v`, `--flag=v`, booleans as `-flag` or `-flag=false`, a flag
//! given twice keeping its last value, and glog's switches on every command. [`command`] makes
//! clap accept all of these (booleans take an optional `=VALUE`, repeats override) and
//! [`go_style`] rewrites single-dash long flags to clap's double dash before parsing.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::ArgAction;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// `fleetgate --version`: the crate version and the commit it was built from (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FLEETGATE_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "fleetgate",
    version = VERSION,
    about = "A Fleetspeak-compatible server: the Go fleetspeak-client, GRR and fleetspeak-admin \
             talk to it unchanged.",
    after_help = "Examples:
  fleetgate quickstart                      a working server in ./.fleetgate, nothing prepared
  fleetgate admin listclients               the quickstart's clients (run from the same directory)
  fleetgate server --components_config /etc/fleetspeak-server/server.components.config \\
                   --services_config /etc/fleetspeak-server/server.services.config
  fleetgate help admin                      the admin commands

Bare flags mean `server` (`fleetgate -components_config ...`), as do all arguments when the
binary runs as `fleetspeak-server`. Flags follow Go's syntax too: -flag v, -flag=v, --flag=v.",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a single-machine server, nothing prepared (certificates, SQLite, client config)
    Quickstart(QuickstartArgs),
    /// Run from Fleetspeak's configuration files (drop-in for fleetspeak-server)
    Server(Box<ServerArgs>),
    /// Write certificates and the server and client configs (as fleetspeak-config)
    Config(ConfigArgs),
    /// Call the admin API: everything fleetspeak-admin does, and Fleetgate's extensions
    Admin(AdminArgs),
    /// Simulated clients for benchmarks, against Fleetgate or the Go fleetspeak-server
    Loadgen(Box<LoadgenArgs>),
    /// Tools for plugin authors: check a component, start a new plugin
    Plugin(PluginArgs),
    /// Print a shell completion script
    #[command(after_help = "Examples:
  fleetgate completions bash > /etc/bash_completion.d/fleetgate
  fleetgate completions zsh > \"${fpath[1]}/_fleetgate\"
  fleetgate completions fish > ~/.config/fish/completions/fleetgate.fish")]
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page, or write one page per command into a directory
    #[command(after_help = "Examples:
  fleetgate man | man -l -
  fleetgate man --out /usr/local/share/man/man1")]
    Man {
        /// Write fleetgate.1 and a fleetgate-COMMAND.1 page per command into DIR
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// glog's switches, which every Fleetspeak binary accepts (GRR passes `--logtostderr`,
/// systemd units `-v=N`), and Fleetgate's log format. Only `-v` changes anything; glog's file
/// switches are accepted and ignored (Fleetgate always logs to stderr), hidden from help.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Logging")]
pub struct Logging {
    /// Log level: 0 info, 1 debug, 2+ trace (RUST_LOG overrides)
    #[arg(long = "v", value_name = "N", default_value_t = 0)]
    pub v: i32,
    /// Log format
    #[arg(long = "log_format", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log to standard error (accepted; Fleetgate always logs to stderr)
    #[arg(long)]
    pub logtostderr: bool,
    #[arg(long, hide = true)]
    pub alsologtostderr: bool,
    #[arg(long, hide = true)]
    pub stderrthreshold: Option<String>,
    #[arg(long, hide = true)]
    pub vmodule: Option<String>,
    #[arg(long = "log_dir", hide = true)]
    pub log_dir: Option<String>,
    #[arg(long = "log_backtrace_at", hide = true)]
    pub log_backtrace_at: Option<String>,
    #[arg(long = "log_link", hide = true)]
    pub log_link: Option<String>,
    #[arg(long, hide = true, allow_negative_numbers = true)]
    pub logbuflevel: Option<i32>,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Flags `quickstart` and `server` share.
#[derive(Args, Debug, Clone, Default)]
pub struct Running {
    /// Write the bound addresses to FILE once listening
    #[arg(long = "ready_file", value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Reload plugins when the services config or a component file changes (polled every
    /// 100 ms)
    #[arg(long = "watch_plugins")]
    pub watch_plugins: bool,
    /// A router component (world `router`) that sees every client message before its service
    #[arg(long, value_name = "FILE")]
    pub router: Option<String>,
    /// The config handed to the router's init
    #[arg(long = "router_config", value_name = "TEXT", requires = "router")]
    pub router_config: Option<String>,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fleetgate quickstart
  fleetgate quickstart --state_dir /tmp/fg-quick --polling
  fleetgate quickstart --listen 0.0.0.0:4443 --hostname fleet.example.com \\
                       --services_config more.services.config --watch_plugins

Then, from the same directory: fleetspeak-client -config .fleetgate/client/client.config, and
fleetgate admin listclients (it finds the admin API in .fleetgate/admin.addr).")]
pub struct QuickstartArgs {
    /// Where certificates, the database and the client config live
    #[arg(long = "state_dir", value_name = "DIR", default_value = crate::quickstart::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Client frontend address
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:4443")]
    pub listen: String,
    /// Admin API address
    #[arg(
        long = "admin_listen",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:4444"
    )]
    pub admin_listen: String,
    /// Name clients use to reach the server; it goes into the certificate and client config
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub hostname: String,
    /// Write a client config that polls instead of streaming
    #[arg(long)]
    pub polling: bool,
    /// Database URL (mysql://user:pw@host/db) instead of SQLite in the state directory
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Serve Prometheus /metrics on this address [default: off]
    #[arg(long = "stats_listen", value_name = "HOST:PORT")]
    pub stats_listen: Option<String>,
    /// Serve /healthz and /readyz on this address [default: off]
    #[arg(long = "health_listen", value_name = "HOST:PORT")]
    pub health_listen: Option<String>,
    /// More services (text fleetspeak.server.ServerConfig) besides Echo and MessageSaver
    #[arg(long = "services_config", value_name = "FILE")]
    pub services_config: Option<PathBuf>,
    #[command(flatten)]
    pub running: Running,
    #[command(flatten)]
    pub logging: Logging,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fleetgate server --components_config /etc/fleetspeak-server/server.components.config \\
                   --services_config /etc/fleetspeak-server/server.services.config --logtostderr
  fleetgate server --config /etc/fleetgate/fleetgate.toml
  fleetgate -components_config c.config -services_config s.config -v=1   (Go style, bare flags)")]
pub struct ServerArgs {
    /// Text-format fleetspeak.components.Config [default:
    /// /etc/fleetspeak-server/server.components.config]
    #[arg(long = "components_config", value_name = "FILE")]
    pub components_config: Option<PathBuf>,
    /// Text-format fleetspeak.server.ServerConfig [default:
    /// /etc/fleetspeak-server/server.services.config]
    #[arg(long = "services_config", value_name = "FILE")]
    pub services_config: Option<PathBuf>,
    /// Fleetgate TOML settings file, instead of the two text-format files
    #[arg(long, value_name = "FILE", conflicts_with_all = ["components_config", "services_config"])]
    pub config: Option<PathBuf>,
    /// Database URL (sqlite://PATH or mysql://...); overrides the config files
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Directory for Fleetgate's own state (the default SQLite database) [default:
    /// /var/lib/fleetgate]
    #[arg(long = "state_dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Delete client contacts older than this Go duration, e.g. 720h (0: keep forever)
    #[arg(
        long = "retention_contacts",
        value_name = "DURATION",
        help_heading = "Retention"
    )]
    pub retention_contacts: Option<String>,
    /// Delete finished messages created longer ago than this (0: keep forever)
    #[arg(
        long = "retention_messages",
        value_name = "DURATION",
        help_heading = "Retention"
    )]
    pub retention_messages: Option<String>,
    /// Delete resource usage records older than this (0: keep forever)
    #[arg(
        long = "retention_resource_usage",
        value_name = "DURATION",
        help_heading = "Retention"
    )]
    pub retention_resource_usage: Option<String>,
    /// Delete dead letters that died longer ago than this (0: keep forever)
    #[arg(
        long = "retention_dead_letters",
        value_name = "DURATION",
        help_heading = "Retention"
    )]
    pub retention_dead_letters: Option<String>,
    /// Delete message trace steps older than this (0: keep forever)
    #[arg(
        long = "retention_traces",
        value_name = "DURATION",
        help_heading = "Retention"
    )]
    pub retention_traces: Option<String>,
    /// Record each message's steps for `fleetgate admin trace` [default: true]
    #[arg(
        long = "trace_messages",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = go_bool,
        help_heading = "Message trace"
    )]
    pub trace_messages: Option<bool>,
    /// This server's name in message traces [default: the notification public address, else
    /// HOST:PORT of the client (or admin) listener]
    #[arg(
        long = "server_name",
        value_name = "NAME",
        help_heading = "Message trace"
    )]
    pub server_name: Option<String>,
    #[command(flatten)]
    pub admin_lock: AdminLock,
    /// File holding the shared secret every notification between servers must carry (off by
    /// default, so Go servers can notify)
    #[arg(long = "notification_secret_file", value_name = "FILE")]
    pub notification_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub running: Running,
    #[command(flatten)]
    pub logging: Logging,
}

/// The locked admin listener: TLS with client certificates and a per-identity policy, beside
/// `admin_config`'s plaintext one. All five go together (or `[admin.tls]` in the TOML file).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Locked admin listener")]
pub struct AdminLock {
    /// Address of the locked (TLS, client certificate) admin listener
    #[arg(long = "admin_tls_addr", value_name = "HOST:PORT")]
    pub listen_address: Option<String>,
    /// Its certificate (PEM)
    #[arg(long = "admin_cert", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM)
    #[arg(long = "admin_key", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// CA (PEM) that signs the admin callers' certificates
    #[arg(long = "admin_client_ca", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Policy (TOML): which identity may call which RPCs and send to which services
    #[arg(long = "admin_policy", value_name = "FILE")]
    pub policy_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fleetgate config -config /etc/fleetspeak-server/configurator.config
  cat configurator.config | fleetgate config          (the input from stdin, as GRR pipes it)")]
pub struct ConfigArgs {
    /// Configurator input, text-format fleetspeak.config.Config (`-` or absent: stdin)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub logging: Logging,
}

/// Where `fleetgate admin` finds the admin API. Every way of reaching it is here, so that
/// `admin_cli::connect` is the only code that turns it into a connection.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Connection")]
pub struct Connection {
    /// Admin API address [default: $FLEETGATE_ADMIN, else the quickstart's
    /// .fleetgate/admin.addr in this directory, else localhost:6061 as fleetspeak-admin]
    #[arg(long = "admin_addr", value_name = "HOST:PORT", global = true)]
    pub admin_addr: Option<String>,
    /// Read the address from DIR/admin.addr, written by `fleetgate quickstart --state_dir DIR`
    #[arg(
        long = "state_dir",
        value_name = "DIR",
        global = true,
        conflicts_with = "admin_addr"
    )]
    pub state_dir: Option<PathBuf>,
    /// Client certificate (PEM) for a locked admin listener (`-admin_tls_addr`); with --key and --ca
    #[arg(long, value_name = "FILE", global = true, requires_all = ["key", "ca"])]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert
    #[arg(long, value_name = "FILE", global = true, requires_all = ["cert", "ca"])]
    pub key: Option<PathBuf>,
    /// CA certificate (PEM) that signed the locked admin listener's certificate
    #[arg(long, value_name = "FILE", global = true, requires_all = ["cert", "key"])]
    pub ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:
  fleetgate admin listclients                          (finds a quickstart in ./.fleetgate)
  fleetgate admin -admin_addr localhost:4444 listclients
  FLEETGATE_ADMIN=localhost:4444 fleetgate admin --json listclients
  fleetgate admin help insert",
    arg_required_else_help = true,
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Commands"
)]
pub struct AdminArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Machine-readable output (JSON)
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
    #[command(flatten)]
    pub logging: Logging,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// List clients: all, or the ones given (as fleetspeak-admin)
    #[command(after_help = "Examples:
  fleetgate admin listclients
  fleetgate admin listclients 0123456789abcdef fedcba9876543210")]
    Listclients {
        /// Client IDs, 16 hex digits each
        client_ids: Vec<String>,
    },
    /// List a client's contacts, newest first (as fleetspeak-admin)
    #[command(after_help = "Examples:
  fleetgate admin listcontacts 0123456789abcdef 10")]
    Listcontacts {
        /// 16 hex digits
        client_id: String,
        /// Show at most this many
        limit: Option<usize>,
    },
    /// Summarise a client's contact history (as fleetspeak-admin)
    #[command(after_help = "Examples:
  fleetgate admin analysehistory 0123456789abcdef")]
    Analysehistory {
        /// 16 hex digits
        client_id: String,
    },
    /// Blacklist clients; each re-keys under a new ID (as fleetspeak-admin)
    #[command(after_help = "Examples:
  fleetgate admin blacklistclients 0123456789abcdef")]
    Blacklistclients {
        /// Client IDs, 16 hex digits each
        #[arg(required = true)]
        client_ids: Vec<String>,
    },
    /// Store a file for clients at /files/SERVICE/NAME (as fleetspeak-admin)
    #[command(after_help = "Examples:
  fleetgate admin storefile system RevokedCertificates revoked.bin")]
    Storefile {
        /// The service the file belongs to
        service: String,
        /// The file name under the service
        file_name: String,
        /// The file's contents
        path: PathBuf,
    },
    /// Delete a stored file (as fleetspeak-admin)
    #[command(after_help = "Examples:
  fleetgate admin deletefile system RevokedCertificates")]
    Deletefile {
        /// The service the file belongs to
        service: String,
        /// The file name under the service
        file_name: String,
    },
    /// List active broadcasts, of all services or one (as fleetspeak-admin)
    #[command(after_help = "Examples:
  fleetgate admin listactivebroadcasts
  fleetgate admin listactivebroadcasts GRR")]
    Listactivebroadcasts {
        /// Only this service's
        service: Option<String>,
    },
    /// Stop broadcasts (as fleetspeak-admin)
    #[command(after_help = "Examples:
  fleetgate admin disablebroadcasts 00112233445566778899aabbccddeeff")]
    Disablebroadcasts {
        /// Broadcast IDs, 32 hex digits each
        #[arg(required = true)]
        broadcast_ids: Vec<String>,
    },
    /// Send a message once to each client with all the labels, up to LIMIT
    #[command(after_help = "Examples:
  fleetgate admin createbroadcast TestService Hunt unlimited hunt.bin --labels=client:eu
  echo -n hello | fleetgate admin createbroadcast TestService Hello 100 - --expires 3600")]
    Createbroadcast(NewBroadcast),
    /// Send a message to a client's service (or, to client `server`, a server's)
    #[command(after_help = "Examples:
  fleetgate admin insert 0123456789abcdef TestService ping payload.bin
  echo -n hi | fleetgate admin insert 0123456789abcdef TestService ping -
  fleetgate admin insert server Echo ping payload.bin")]
    Insert {
        /// 16 hex digits, or `server`
        client_id: String,
        /// The service (at both ends)
        service: String,
        /// The message type
        message_type: String,
        /// The payload: a file, `-` for stdin [default: empty]
        payload: Option<String>,
        /// Type URL of the payload
        #[arg(long = "type_url", value_name = "URL")]
        type_url: Option<String>,
    },
    /// Send the same message to many clients, in batched InsertMessages calls
    ///
    /// BATCH messages go in one call (fewer if they would exceed the server's 4 MiB request
    /// limit); each call is stored all or nothing. Prints each client's message ID.
    #[command(after_help = "Examples:
  fleetgate admin insertbatch TestService ping 0123456789abcdef fedcba9876543210 --payload p.bin
  fleetgate admin --json listclients | jq -r '.[].client_id' |
      fleetgate admin insertbatch TestService ping --clients_from -")]
    Insertbatch {
        /// The service (at both ends)
        service: String,
        /// The message type
        message_type: String,
        /// Destination client IDs
        client_ids: Vec<String>,
        /// Also read client IDs from FILE (`-`: stdin), one per line
        #[arg(long = "clients_from", value_name = "FILE")]
        clients_from: Option<String>,
        /// The payload: a file, `-` for stdin [default: empty]
        #[arg(long, value_name = "FILE")]
        payload: Option<String>,
        /// Type URL of the payload
        #[arg(long = "type_url", value_name = "URL")]
        type_url: Option<String>,
        /// Messages per call
        #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
    },
    /// A message's state: pending, processed or failed (and why)
    #[command(after_help = "Examples:
  fleetgate admin status 5f1d...(64 hex digits)")]
    Status {
        /// 64 hex digits, as `insert` printed it
        message_id: String,
    },
    /// Messages waiting for clients: list them, count them, or delete them
    #[command(after_help = "Examples:
  fleetgate admin pending 0123456789abcdef
  fleetgate admin pending 0123456789abcdef --count
  fleetgate admin pending 0123456789abcdef --delete")]
    Pending {
        /// Client IDs, 16 hex digits each
        #[arg(required = true)]
        client_ids: Vec<String>,
        /// Print the count only
        #[arg(long, conflicts_with_all = ["delete", "data"])]
        count: bool,
        /// Delete them
        #[arg(long, conflicts_with = "data")]
        delete: bool,
        /// Include payload sizes
        #[arg(long)]
        data: bool,
    },
    /// Delete pending messages by client, service, type and age
    #[command(after_help = "Examples:
  fleetgate admin purge 0123456789abcdef --service TestService
  fleetgate admin purge --all_clients --message_type Hunt --older_than 72h")]
    Purge {
        /// Only these clients
        #[arg(required_unless_present = "all_clients")]
        client_ids: Vec<String>,
        /// Every client (instead of client IDs)
        #[arg(long = "all_clients", conflicts_with = "client_ids")]
        all_clients: bool,
        /// Only messages to this service
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// Only messages of this type
        #[arg(long = "message_type", value_name = "TYPE")]
        message_type: Option<String>,
        /// Only messages created longer ago than this Go duration (e.g. 90m, 72h)
        #[arg(long = "older_than", value_name = "DURATION")]
        older_than: Option<String>,
    },
    /// The server's plugins: list, reload, and roll out new versions fleet-wide
    #[command(subcommand, subcommand_value_name = "COMMAND")]
    Plugins(PluginsCommand),
    /// Messages whose life ended without success: list, show, replay, purge
    #[command(name = "deadletters", subcommand, subcommand_value_name = "COMMAND")]
    DeadLetters(DeadLettersCommand),
    /// Every step of a message's life, with its time and the server that took it
    ///
    /// Steps: stored, routed, leased, pushed, acknowledged, processed, failed, retried,
    /// dead_lettered, expired, replayed. The
    /// trace lives in the shared database, so any server of an installation shows every
    /// server's steps.
    #[command(after_help = "Examples:
  fleetgate admin trace 5f1d...(64 hex digits)
  fleetgate admin trace 5f1d... --json")]
    Trace {
        /// 64 hex digits, as `insert` printed it
        message_id: String,
    },
}

#[derive(Subcommand, Debug)]
#[command(after_help = "Examples:
  fleetgate admin deadletters list --service GRR --since 24h
  fleetgate admin deadletters show 5f3c…(64 hex digits)
  fleetgate admin deadletters replay --service GRR --since 24h
  fleetgate admin deadletters purge --service GRR")]
pub enum DeadLettersCommand {
    /// Dead letters, newest first: ID, service, reason, attempts, when it died, last error
    #[command(after_help = "Examples:
  fleetgate admin deadletters list
  fleetgate admin deadletters list --service GRR --since 24h --json")]
    List {
        /// Only messages to this service
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// Only letters that died within this Go duration (e.g. 90m, 24h)
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Also letters replayed since they died
        #[arg(long)]
        replayed: bool,
        /// At most this many
        #[arg(long, value_name = "N", default_value_t = 1000)]
        limit: u32,
    },
    /// One dead letter in full, with its message
    #[command(after_help = "Examples:
  fleetgate admin deadletters show 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0")]
    Show {
        /// Message ID, 64 hex digits
        message_id: String,
    },
    /// Queue dead messages again under the same IDs, through the service's current version
    #[command(after_help = "Examples:
  fleetgate admin deadletters replay 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0
  fleetgate admin deadletters replay --service GRR --since 2h

A message replayed once is no longer dead: replaying it again is refused, so each replayed
message is processed once. If one named message is not dead, nothing is replayed.")]
    Replay {
        /// Message IDs, 64 hex digits each
        #[arg(required_unless_present = "service", conflicts_with_all = ["service", "since"])]
        message_ids: Vec<String>,
        /// Every dead letter of this service (instead of IDs)
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// With --service: only letters that died within this Go duration
        #[arg(long, value_name = "DURATION", requires = "service")]
        since: Option<String>,
    },
    /// Delete dead letters (the messages keep their failed status)
    #[command(after_help = "Examples:
  fleetgate admin deadletters purge --service GRR --since 24h
  fleetgate admin deadletters purge --all")]
    Purge {
        /// Letters of this service
        #[arg(
            long,
            value_name = "SERVICE",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        service: Option<String>,
        /// Only letters that died within this Go duration
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// Every letter
        #[arg(long)]
        all: bool,
    },
}

/// `admin createbroadcast`'s arguments.
#[derive(Args, Debug)]
pub struct NewBroadcast {
    /// Source and destination service
    pub service: String,
    /// The message type
    pub message_type: String,
    /// How many clients at most, or `unlimited`
    pub limit: String,
    /// The payload: a file, `-` for stdin [default: empty]
    pub payload: Option<String>,
    /// Required labels, SERVICE:LABEL,...
    #[arg(long, value_name = "LABELS")]
    pub labels: Option<String>,
    /// Seconds until the broadcast expires (0: never)
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub expires: u64,
    /// Type URL of the payload
    #[arg(long = "type_url", value_name = "URL")]
    pub type_url: Option<String>,
}

#[derive(Subcommand, Debug)]
#[command(after_help = "Examples:
  fleetgate admin plugins list
  fleetgate admin plugins reload
  fleetgate admin plugins deploy Tag tag-b.wasm --share 10 --auto-rollback
  fleetgate admin plugins status Tag
  fleetgate admin plugins promote Tag")]
pub enum PluginsCommand {
    /// Per service: digest, generation, load time, calls, errors, traps, p50/p99
    #[command(after_help = "Examples:
  fleetgate admin plugins list
  fleetgate admin --json plugins list")]
    List,
    /// Re-read the services config and swap the plugins (all or nothing)
    #[command(after_help = "Examples:
  fleetgate admin plugins reload")]
    Reload,
    /// Deploy a component to every server as a canary next to the stable version
    #[command(after_help = "Examples:
  fleetgate admin plugins deploy Tag tag-b.wasm --share 10
  fleetgate admin plugins deploy Tag tag-b.wasm --labels client:canary --auto-rollback
  fleetgate admin plugins deploy GRR grr-v2.wasm --config grr.wasmconfig --share 50
  fleetgate admin plugins deploy GRR grr-v2.wasm --shadow --share 100

The component is checked before anything is stored: a service this server runs, the `service`
world, every import granted, it compiles and passes `init`. Every server builds it again before
routing to it; one that cannot build it rolls it back for the whole fleet. The same client
always gets the same version. Follow with `plugins status`, then `promote` or `rollback`.")]
    Deploy {
        /// The service to deploy to (one of the services config)
        service: String,
        /// The component file (.wasm)
        component: std::path::PathBuf,
        /// Plugin config as a text-format fleetgate.plugin.v1.WasmConfig without `path`
        /// [default: the services config's entry of SERVICE]
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
        /// Percentage of clients (0-100) that get the candidate, by a stable hash of the client ID
        /// [default: 10]
        #[arg(long, value_name = "PERCENT", conflicts_with = "labels")]
        share: Option<u32>,
        /// Clients having all these labels (SERVICE:LABEL or LABEL, comma-separated) get the
        /// candidate
        #[arg(long, value_name = "LABEL,...", value_delimiter = ',')]
        labels: Vec<String>,
        /// A shadow run: every client keeps the stable version; the candidate gets copies of
        /// the selected clients' messages with its side effects withheld (messages and gRPC calls
        /// counted, not made; no preopened directories), and `status` compares the outcomes
        #[arg(long)]
        shadow: bool,
        /// Roll back by itself when the candidate traps, times out or fails permanently more
        /// often than the stable version (10 points), or its p99 passes 2x the stable version's
        #[arg(long = "auto-rollback")]
        auto_rollback: bool,
        /// Automatic rollback: the window the rates are computed over (Go duration) [default: 30s]
        #[arg(long, value_name = "DURATION")]
        window: Option<String>,
        /// Automatic rollback: at most this many recent calls per version [default: 50]
        #[arg(long = "window-calls", value_name = "N")]
        window_calls: Option<u32>,
        /// Automatic rollback: candidate calls needed before deciding [default: 5]
        #[arg(long = "min-calls", value_name = "N")]
        min_calls: Option<u32>,
        /// Automatic rollback: allowed excess of the candidate's failure rate, in percentage
        /// points [default: 10]
        #[arg(long = "max-error-points", value_name = "POINTS")]
        max_error_points: Option<f64>,
        /// Automatic rollback: allowed ratio of the candidate's p99 to the stable version's
        /// [default: 2]
        #[arg(long = "max-p99-ratio", value_name = "RATIO")]
        max_p99_ratio: Option<f64>,
    },
    /// Make the service's canary the version every client gets, on every server
    #[command(after_help = "Examples:
  fleetgate admin plugins promote Tag")]
    Promote { service: String },
    /// Stop the service's canary on every server: everything goes to the stable version
    #[command(after_help = "Examples:
  fleetgate admin plugins rollback Tag
  fleetgate admin plugins rollback Tag --reason \"p99 too high\"")]
    Rollback {
        service: String,
        /// Recorded with the rollback
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Stable and candidate versions, selection, what each server serves, both versions' stats
    ///
    /// Per service: the stable and the candidate version (digest), the state, the canary's
    /// selection, per server which versions it serves and since when, and both versions' calls,
    /// errors, traps, permanent errors and p50/p99 (over the canary's window).
    #[command(after_help = "Examples:
  fleetgate admin plugins status
  fleetgate admin plugins status Tag --json")]
    Status {
        /// Only this service
        service: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Every deployment of a service, newest first, with who asked and why it ended
    #[command(after_help = "Examples:
  fleetgate admin plugins history Tag")]
    History {
        service: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Streaming,
    Polling,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fleetgate loadgen --server 127.0.0.1:4443 --ca .fleetgate/ca.pem --clients 100 --duration 30
  fleetgate loadgen --server 127.0.0.1:4443 --ca .fleetgate/ca.pem --admin 127.0.0.1:4444 \\
                    --clients 100 --messages 10000 --rate 1000")]
pub struct LoadgenArgs {
    /// Client frontend address
    #[arg(long, value_name = "HOST:PORT")]
    pub server: SocketAddr,
    /// TLS name of the server certificate
    #[arg(long = "server_name", value_name = "NAME", default_value = "localhost")]
    pub server_name: String,
    /// PEM file of the CA that signed the server certificate
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// Admin API address, for inserted messages and the enrolment count
    #[arg(long, value_name = "HOST:PORT")]
    pub admin: Option<SocketAddr>,
    /// Simulated clients
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub clients: usize,
    /// How the clients connect
    #[arg(long, value_enum, default_value = "streaming")]
    pub mode: Mode,
    /// Client service that receives inserted messages
    #[arg(long, value_name = "NAME", default_value = "loadgen")]
    pub service: String,
    /// Messages to insert through the admin API (needs --admin)
    #[arg(long, value_name = "N", default_value_t = 0, requires = "admin")]
    pub messages: usize,
    /// Inserts per second
    #[arg(long, value_name = "N", default_value_t = 100.0)]
    pub rate: f64,
    /// Client → server messages per second per client
    #[arg(long = "outbound_rate", value_name = "N", default_value_t = 0.0)]
    pub outbound_rate: f64,
    /// Payload bytes of each client → server message
    #[arg(long = "outbound_size", value_name = "BYTES", default_value_t = 100)]
    pub outbound_size: usize,
    /// Server service the clients send to
    #[arg(
        long = "outbound_service",
        value_name = "NAME",
        default_value = "loadgen"
    )]
    pub outbound_service: String,
    /// Seconds of measured traffic after every client connected
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub duration: f64,
    /// New client connections per second while ramping up
    #[arg(long = "connect_rate", value_name = "N", default_value_t = 200.0)]
    pub connect_rate: f64,
    /// Seconds to wait for every client to connect (0: clients / connect_rate + 60)
    #[arg(
        long = "connect_timeout",
        value_name = "SECONDS",
        default_value_t = 0.0
    )]
    pub connect_timeout: f64,
    /// Seconds to hold the streams idle after the connect phase, before inserting
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub settle: f64,
    /// Offer HTTP/2, as the Go client does (the Go server streams only over HTTP/2)
    #[arg(long, default_value_t = true)]
    pub http2: bool,
    /// Written with "<connected> <clients>" when the connect phase ends
    #[arg(long = "ready_file", value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    #[command(flatten)]
    pub logging: Logging,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:
  fleetgate plugin new geo-tagger
  fleetgate plugin check geo-tagger/target/wasm32-wasip2/release/geo_tagger.wasm",
    arg_required_else_help = true,
    subcommand_value_name = "COMMAND"
)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Validate a component: its world, imports, exports, capabilities and digest
    #[command(after_help = "Examples:
  fleetgate plugin check target/wasm32-wasip2/release/my_plugin.wasm")]
    Check {
        /// The component (.wasm)
        file: String,
    },
    /// Write a new plugin project in DIR/NAME
    #[command(after_help = "Examples:
  fleetgate plugin new geo-tagger
  fleetgate plugin new geo-tagger --dir ~/src --sdk ~/src/fleetgate/plugins/sdk")]
    New(NewPlugin),
}

#[derive(Args, Debug)]
pub struct NewPlugin {
    /// Lower-case letters, digits, '-' and '_', starting with a letter
    pub name: String,
    /// Where to create the project
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The SDK crate (plugins/sdk of a Fleetgate checkout) [default: the one this binary was
    /// built from, if it still exists]
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

/// The whole command tree, with Go's flag conventions applied to every command.
pub fn command() -> clap::Command {
    go_conventions(Cli::command())
}

/// Booleans become Go booleans (`-f`, `-f=true`, `-f=0`, never a separate value), and a flag
/// given twice keeps its last value instead of being an error.
fn go_conventions(cmd: clap::Command) -> clap::Command {
    cmd.args_override_self(true)
        .mut_args(|a| {
            if !matches!(a.get_action(), ArgAction::SetTrue) {
                return a;
            }
            let default_true = a.get_default_values().iter().any(|v| v == "true");
            let a = a
                .action(ArgAction::Set)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_parser(go_bool)
                .value_name("BOOL");
            if default_true {
                a
            } else {
                a.default_value("false").hide_default_value(true)
            }
        })
        .mut_subcommands(go_conventions)
}

/// Go's `strconv.ParseBool`, for clap.
fn go_bool(s: &str) -> Result<bool, String> {
    fleetgate_config::flags::go_bool(s)
        .ok_or_else(|| format!("{s:?} is not a boolean (true, false, 1, 0, t, f)"))
}

/// Rewrites Go-style single-dash long flags (`-components_config x`, `-v=1`) to clap's
/// `--name`, following the arguments down the subcommands they name. A flag's value is passed
/// on untouched, and so is everything after `--`. Fleetgate defines no short flags besides
/// `-h` and `-V`, so any other single-dash word is a long flag (unknown ones are rewritten too,
/// so clap's suggestion names the long flag closest to it).
pub fn go_style(cmd: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut current = cmd;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(it);
            break;
        }
        if let Some(body) = text.strip_prefix('-').filter(|b| !b.is_empty()) {
            let body = body.strip_prefix('-').unwrap_or(body);
            let name = body.split_once('=').map_or(body, |(n, _)| n);
            let known = current.get_arguments().find(|a| a.get_long() == Some(name));
            if known.is_none() && (name == "h" || name == "V") {
                out.push(arg);
                continue;
            }
            out.push(format!("--{body}").into());
            // A separate value (`-admin_addr HOST`) is the flag's, not a subcommand.
            if let Some(a) = known
                && !body.contains('=')
                && a.get_action().takes_values()
                && !a.is_require_equals_set()
                && let Some(value) = it.next()
            {
                out.push(value);
            }
            continue;
        }
        if let Some(sub) = current.find_subcommand(text) {
            current = sub;
        }
        out.push(arg);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut cmd = command();
        cmd.build();
        let args = go_style(&cmd, args.iter().map(OsString::from).collect());
        let m =
            cmd.try_get_matches_from(std::iter::once(OsString::from("fleetgate")).chain(args))?;
        <Cli as clap::FromArgMatches>::from_arg_matches(&m)
    }

    #[test]
    fn definitions_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn grr_and_systemd_command_lines() {
        let Command::Server(s) = parse(&[
            "server",
            "--logtostderr",
            "-services_config",
            "/s",
            "-components_config=/c",
            "-v=2",
            "--alsologtostderr=false",
            "--stderrthreshold=INFO",
            "-vmodule=foo=2",
            "--log_dir",
            "/tmp",
            "-logbuflevel=-1",
        ])
        .unwrap()
        .command
        else {
            panic!("not server")
        };
        assert_eq!(s.components_config, Some(PathBuf::from("/c")));
        assert_eq!(s.services_config, Some(PathBuf::from("/s")));
        assert_eq!(s.logging.v, 2);
        assert!(s.logging.logtostderr && !s.logging.alsologtostderr);
        assert_eq!(s.logging.vmodule.as_deref(), Some("foo=2"));
    }

    #[test]
    fn go_booleans_and_repeats() {
        let Command::Quickstart(q) = parse(&[
            "quickstart",
            "-polling=false",
            "--watch_plugins",
            "-state_dir",
            "a",
            "--state_dir=b",
        ])
        .unwrap()
        .command
        else {
            panic!("not quickstart")
        };
        assert!(!q.polling && q.running.watch_plugins);
        assert_eq!(q.state_dir, PathBuf::from("b"));
        assert!(parse(&["quickstart", "--polling=yes"]).is_err());
    }

    #[test]
    fn trace_flags_unset_bare_and_go_style() {
        let server = |args: &[&str]| {
            let mut all = vec!["server"];
            all.extend_from_slice(args);
            match parse(&all).unwrap().command {
                Command::Server(s) => s,
                _ => panic!("not server"),
            }
        };
        assert_eq!(server(&[]).trace_messages, None, "unset: the file decides");
        assert_eq!(server(&["-trace_messages"]).trace_messages, Some(true));
        assert_eq!(
            server(&["-trace_messages=false"]).trace_messages,
            Some(false)
        );
        assert_eq!(server(&["--trace_messages=0"]).trace_messages, Some(false));
        let s = server(&["-server_name", "fe-1", "-retention_traces=720h"]);
        assert_eq!(s.server_name.as_deref(), Some("fe-1"));
        assert_eq!(s.retention_traces.as_deref(), Some("720h"));
        assert!(parse(&["server", "--trace_messages=maybe"]).is_err());
    }

    #[test]
    fn admin_flags_before_and_after_the_command() {
        let Command::Admin(a) = parse(&[
            "admin",
            "-admin_addr",
            "h:1",
            "createbroadcast",
            "S",
            "T",
            "unlimited",
            "--labels=client:eu",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!("not admin")
        };
        assert_eq!(a.connection.admin_addr.as_deref(), Some("h:1"));
        assert!(a.json);
        assert!(matches!(
            a.command,
            AdminCommand::Createbroadcast(ref b) if b.labels.as_deref() == Some("client:eu")
        ));
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let e = parse(&["admin", "listclient"]).unwrap_err().to_string();
        assert!(e.contains("listclients"), "{e}");
        let e = parse(&["server", "-components_confg", "x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--components_config"), "{e}");
    }
}
