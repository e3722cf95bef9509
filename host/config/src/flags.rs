//! Go `flag`-package command lines (server.md §1.1).
//!
//! `-f v`, `-f=v`, `--f v`, `--f=v`; booleans as `-f` or `-f=true|false`
//! (never `-f false`: as in Go, `false` would end the flags). Parsing stops
//! at the first non-flag argument, at `-` and after `--`; the rest is
//! returned as [`Flags::args`]. A flag given twice keeps its last value.
//! The glog switches Fleetspeak's binaries accept ([`GLOG_FLAGS`]) are always
//! known, so GRR's `--logtostderr` and systemd units' `-v=1` work.
//!
//! Error texts are Go's (`flag provided but not defined: -foo`); on an error
//! the binary prints [`usage`] and exits 2, on [`FlagError::Help`] it prints
//! usage and exits 0.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// What kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `-f` alone means true; a value only with `=`.
    Bool,
    /// Any string.
    String,
    /// A decimal 32-bit signed integer.
    Int,
}

/// One flag a program accepts.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    /// Name without dashes.
    pub name: &'static str,
    /// Value kind.
    pub kind: FlagKind,
    /// Default shown in usage (empty: none shown).
    pub default: &'static str,
    /// One-line help.
    pub usage: &'static str,
}

/// glog's flags, accepted by every Fleetgate command.
pub const GLOG_FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "logtostderr",
        kind: FlagKind::Bool,
        default: "",
        usage: "log to standard error instead of files (Fleetgate always logs to stderr)",
    },
    FlagSpec {
        name: "alsologtostderr",
        kind: FlagKind::Bool,
        default: "",
        usage: "log to standard error as well as files",
    },
    FlagSpec {
        name: "v",
        kind: FlagKind::Int,
        default: "0",
        usage: "log level for V logs (1 = debug, 2+ = trace)",
    },
    FlagSpec {
        name: "stderrthreshold",
        kind: FlagKind::String,
        default: "",
        usage: "logs at or above this threshold go to stderr (accepted, ignored)",
    },
    FlagSpec {
        name: "vmodule",
        kind: FlagKind::String,
        default: "",
        usage: "comma-separated list of pattern=N settings (accepted, ignored)",
    },
    FlagSpec {
        name: "log_dir",
        kind: FlagKind::String,
        default: "",
        usage: "if non-empty, write log files in this directory (accepted, ignored)",
    },
    FlagSpec {
        name: "log_backtrace_at",
        kind: FlagKind::String,
        default: "",
        usage: "when logging hits line file:N, emit a stack trace (accepted, ignored)",
    },
];

/// Flags of `fleetgate server`.
pub const SERVER_FLAGS: &[FlagSpec] = &[
    FlagSpec {
        name: "components_config",
        kind: FlagKind::String,
        default: crate::settings::DEFAULT_COMPONENTS_CONFIG,
        usage: "text-format fleetspeak.components.Config",
    },
    FlagSpec {
        name: "services_config",
        kind: FlagKind::String,
        default: crate::settings::DEFAULT_SERVICES_CONFIG,
        usage: "text-format fleetspeak.server.ServerConfig",
    },
    FlagSpec {
        name: "config",
        kind: FlagKind::String,
        default: "",
        usage: "Fleetgate TOML settings file (instead of the two text-format files)",
    },
    FlagSpec {
        name: "database",
        kind: FlagKind::String,
        default: "",
        usage: "database URL (sqlite://PATH or mysql://...), overrides the config files",
    },
    FlagSpec {
        name: "state_dir",
        kind: FlagKind::String,
        default: crate::settings::DEFAULT_STATE_DIR,
        usage: "directory for Fleetgate's own state (default SQLite database)",
    },
    FlagSpec {
        name: "admin_tls_addr",
        kind: FlagKind::String,
        default: "",
        usage: "serve the admin API over TLS with client certificates here (beside admin_config's plaintext listener)",
    },
    FlagSpec {
        name: "admin_cert",
        kind: FlagKind::String,
        default: "",
        usage: "PEM certificate chain of the locked admin listener",
    },
    FlagSpec {
        name: "admin_key",
        kind: FlagKind::String,
        default: "",
        usage: "PEM private key of the locked admin listener",
    },
    FlagSpec {
        name: "admin_client_ca",
        kind: FlagKind::String,
        default: "",
        usage: "PEM CA certificate(s) that sign admin clients' certificates",
    },
    FlagSpec {
        name: "admin_policy",
        kind: FlagKind::String,
        default: "",
        usage: "TOML policy: which identity may call which admin RPCs and insert to which services",
    },
    FlagSpec {
        name: "notification_secret_file",
        kind: FlagKind::String,
        default: "",
        usage: "file holding a shared secret: notifications between servers must carry it (off by default)",
    },
];

/// A command-line error, with Go's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// `-h`, `-help`, `--help`.
    #[error("flag: help requested")]
    Help,
    /// A flag not in the spec.
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    /// A non-boolean flag at the end of the arguments.
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("{} {value:?} for {}-{name}: parse error", if *.boolean { "invalid boolean value" } else { "invalid value" }, if *.boolean { "" } else { "flag " })]
    InvalidValue {
        /// Flag name.
        name: String,
        /// Value as given.
        value: String,
        /// Whether the flag is boolean (changes Go's wording).
        boolean: bool,
    },
    /// `---x`, `-=x`.
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
}

/// Parsed flags: values of the flags that were given, and the arguments
/// after the flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    values: BTreeMap<String, String>,
    /// Arguments after the last flag.
    pub args: Vec<String>,
}

impl Flags {
    /// The value of a flag if it was given (booleans as `"true"`/`"false"`).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// True if the flag was given.
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A boolean flag's value (false if absent).
    pub fn bool(&self, name: &str) -> bool {
        self.value(name) == Some("true")
    }

    /// The glog switches, for configuring tracing.
    pub fn log(&self) -> LogFlags {
        LogFlags {
            logtostderr: self.bool("logtostderr"),
            alsologtostderr: self.bool("alsologtostderr"),
            v: self.value("v").and_then(|v| v.parse().ok()).unwrap_or(0),
            vmodule: self.value("vmodule").map(str::to_owned),
        }
    }
}

/// The glog switches that influence Fleetgate's logging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFlags {
    /// `--logtostderr`.
    pub logtostderr: bool,
    /// `--alsologtostderr`.
    pub alsologtostderr: bool,
    /// `-v=N`: 0 info, 1 debug, 2+ trace.
    pub v: i32,
    /// `--vmodule` as given.
    pub vmodule: Option<String>,
}

/// Parses `args` (without the program name) against `spec` plus
/// [`GLOG_FLAGS`].
pub fn parse_flags<I, S>(args: I, spec: &[FlagSpec]) -> Result<Flags, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut flags = Flags::default();
    while let Some(arg) = args.next() {
        let Some(stripped) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
            flags.args.push(arg);
            break;
        };
        let body = match stripped.strip_prefix('-') {
            Some("") => break, // "--" ends the flags
            Some(b) => b,
            None => stripped,
        };
        if body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::BadSyntax(arg));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        if (name == "h" || name == "help") && spec.iter().chain(GLOG_FLAGS).all(|f| f.name != name)
        {
            return Err(FlagError::Help);
        }
        let Some(flag) = spec.iter().chain(GLOG_FLAGS).find(|f| f.name == name) else {
            return Err(FlagError::Unknown(name.to_owned()));
        };
        let value = match (flag.kind, inline) {
            (FlagKind::Bool, None) => "true".to_owned(),
            (_, Some(v)) => v,
            (_, None) => args
                .next()
                .ok_or_else(|| FlagError::MissingValue(name.to_owned()))?,
        };
        let invalid = |boolean| FlagError::InvalidValue {
            name: name.to_owned(),
            value: value.clone(),
            boolean,
        };
        let value = match flag.kind {
            FlagKind::Bool => go_bool(&value).ok_or_else(|| invalid(true))?.to_string(),
            FlagKind::Int => value
                .parse::<i32>()
                .map_err(|_| invalid(false))?
                .to_string(),
            FlagKind::String => value,
        };
        flags.values.insert(name.to_owned(), value);
    }
    flags.args.extend(args);
    Ok(flags)
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go-style usage text: `Usage of PROGRAM:` then each flag, sorted.
pub fn usage(program: &str, spec: &[FlagSpec]) -> String {
    let mut all: Vec<&FlagSpec> = spec.iter().chain(GLOG_FLAGS).collect();
    all.sort_by_key(|f| f.name);
    let mut out = format!("Usage of {program}:\n");
    for f in all {
        let kind = match f.kind {
            FlagKind::Bool => "",
            FlagKind::String => " string",
            FlagKind::Int => " int",
        };
        out.push_str(&format!("  -{}{kind}\n    \t{}", f.name, f.usage));
        if !f.default.is_empty() && f.default != "0" {
            out.push_str(&format!(" (default {:?})", f.default));
        }
        out.push('\n');
    }
    out
}

/// The flags of `fleetgate server`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFlags {
    /// `--components_config`, defaulted.
    pub components_config: PathBuf,
    /// `--services_config`, defaulted.
    pub services_config: PathBuf,
    /// True if either text-format path was given explicitly.
    pub text_paths_given: bool,
    /// `--config` (TOML file).
    pub config: Option<PathBuf>,
    /// `--database` override.
    pub database: Option<String>,
    /// `--state_dir` override.
    pub state_dir: Option<PathBuf>,
    /// `--admin_tls_addr`, `--admin_cert`, `--admin_key`, `--admin_client_ca`, `--admin_policy`.
    pub admin_lock: crate::admin_lock::AdminLockSource,
    /// `--notification_secret_file`.
    pub notification_secret_file: Option<PathBuf>,
    /// glog switches.
    pub log: LogFlags,
    /// Arguments after the flags (the server takes none).
    pub args: Vec<String>,
    /// Every flag as parsed, including the binary's extra ones
    /// ([`ServerFlags::parse_with`]).
    pub flags: Flags,
}

impl ServerFlags {
    /// Parses the arguments of `fleetgate server` (without the program and
    /// subcommand names) against [`SERVER_FLAGS`].
    pub fn parse<I, S>(args: I) -> Result<Self, FlagError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::parse_with(args, &[])
    }

    /// Like [`ServerFlags::parse`], also accepting the binary's own flags
    /// (`--ready_file`, `--log_format`, …); read them from
    /// [`ServerFlags::flags`].
    pub fn parse_with<I, S>(args: I, extra: &[FlagSpec]) -> Result<Self, FlagError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let spec: Vec<FlagSpec> = SERVER_FLAGS.iter().chain(extra).copied().collect();
        let flags = parse_flags(args, &spec)?;
        let path = |name: &str, default: &str| PathBuf::from(flags.value(name).unwrap_or(default));
        Ok(Self {
            components_config: path(
                "components_config",
                crate::settings::DEFAULT_COMPONENTS_CONFIG,
            ),
            services_config: path("services_config", crate::settings::DEFAULT_SERVICES_CONFIG),
            text_paths_given: flags.is_set("components_config") || flags.is_set("services_config"),
            config: flags.value("config").map(PathBuf::from),
            database: flags.value("database").map(str::to_owned),
            state_dir: flags.value("state_dir").map(PathBuf::from),
            admin_lock: crate::admin_lock::AdminLockSource {
                listen_address: flags.value("admin_tls_addr").map(str::to_owned),
                cert_file: flags.value("admin_cert").map(PathBuf::from),
                key_file: flags.value("admin_key").map(PathBuf::from),
                client_ca_file: flags.value("admin_client_ca").map(PathBuf::from),
                policy_file: flags.value("admin_policy").map(PathBuf::from),
            },
            notification_secret_file: flags.value("notification_secret_file").map(PathBuf::from),
            log: flags.log(),
            args: flags.args.clone(),
            flags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, FlagError> {
        parse_flags(args.iter().copied(), SERVER_FLAGS)
    }

    #[test]
    fn all_go_spellings() {
        for args in [
            &["-components_config", "/a"][..],
            &["-components_config=/a"],
            &["--components_config", "/a"],
            &["--components_config=/a"],
        ] {
            let f = parse(args).expect("valid");
            assert_eq!(f.value("components_config"), Some("/a"), "{args:?}");
        }
    }

    #[test]
    fn grr_and_systemd_command_lines() {
        let f = parse(&[
            "--logtostderr",
            "--services_config",
            "/etc/fleetspeak-server/server.services.config",
            "--components_config",
            "/etc/fleetspeak-server/server.components.config",
            "-v=2",
            "--alsologtostderr=false",
            "--stderrthreshold=INFO",
            "--vmodule=foo=2",
            "--log_dir",
            "/tmp",
        ])
        .expect("valid");
        let log = f.log();
        assert!(log.logtostderr && !log.alsologtostderr);
        assert_eq!(log.v, 2);
        assert_eq!(log.vmodule.as_deref(), Some("foo=2"));
        assert_eq!(f.value("log_dir"), Some("/tmp"));
        assert!(f.args.is_empty());
    }

    #[test]
    fn booleans() {
        for (arg, want) in [
            ("-logtostderr", true),
            ("-logtostderr=true", true),
            ("-logtostderr=1", true),
            ("-logtostderr=T", true),
            ("-logtostderr=false", false),
            ("--logtostderr=f", false),
        ] {
            assert_eq!(parse(&[arg]).expect(arg).bool("logtostderr"), want, "{arg}");
        }
        // As in Go, a separate "false" ends the flags.
        let f = parse(&["-logtostderr", "false", "-v=1"]).expect("valid");
        assert!(f.bool("logtostderr"));
        assert_eq!(f.args, ["false", "-v=1"]);
        assert_eq!(
            parse(&["-logtostderr=yes"]).map_err(|e| e.to_string()),
            Err("invalid boolean value \"yes\" for -logtostderr: parse error".into())
        );
    }

    #[test]
    fn errors_have_go_texts() {
        assert_eq!(
            parse(&["--components_confg=/x"]).map_err(|e| e.to_string()),
            Err("flag provided but not defined: -components_confg".into())
        );
        assert_eq!(
            parse(&["--database"]),
            Err(FlagError::MissingValue("database".into()))
        );
        assert_eq!(
            parse(&["-v=x"]).map_err(|e| e.to_string()),
            Err("invalid value \"x\" for flag -v: parse error".into())
        );
        assert_eq!(
            parse(&["---v=1"]),
            Err(FlagError::BadSyntax("---v=1".into()))
        );
        assert_eq!(parse(&["-=1"]), Err(FlagError::BadSyntax("-=1".into())));
        assert_eq!(parse(&["-h"]), Err(FlagError::Help));
        assert_eq!(parse(&["--help"]), Err(FlagError::Help));
    }

    #[test]
    fn positional_and_terminators() {
        let f = parse(&["-v", "1", "extra", "-state_dir=/x"]).expect("valid");
        assert_eq!(f.args, ["extra", "-state_dir=/x"]);
        assert!(!f.is_set("state_dir"));
        let f = parse(&["--", "-v=1"]).expect("valid");
        assert_eq!(f.args, ["-v=1"]);
        let f = parse(&["-", "x"]).expect("valid");
        assert_eq!(f.args, ["-", "x"]);
        // Last value wins.
        let f = parse(&["-database=a", "-database", "b"]).expect("valid");
        assert_eq!(f.value("database"), Some("b"));
    }

    #[test]
    fn server_flags() {
        let s = ServerFlags::parse(["--config", "/etc/fleetgate.toml", "--state_dir=/s"])
            .expect("valid");
        assert_eq!(s.config, Some(PathBuf::from("/etc/fleetgate.toml")));
        assert_eq!(s.state_dir, Some(PathBuf::from("/s")));
        assert!(!s.text_paths_given);
        assert_eq!(
            s.components_config,
            PathBuf::from("/etc/fleetspeak-server/server.components.config")
        );
        const READY: FlagSpec = FlagSpec {
            name: "ready_file",
            kind: FlagKind::String,
            default: "",
            usage: "file written once listening",
        };
        let s = ServerFlags::parse_with(["--ready_file=/r", "--database=sqlite:///x"], &[READY])
            .expect("valid");
        assert_eq!(s.flags.value("ready_file"), Some("/r"));
        assert_eq!(s.database.as_deref(), Some("sqlite:///x"));
        assert!(ServerFlags::parse(["--ready_file=/r"]).is_err());
        let u = usage("fleetgate server", SERVER_FLAGS);
        assert!(u.contains("  -components_config string\n"), "{u}");
        assert!(u.contains("  -logtostderr\n"), "{u}");
    }
}
