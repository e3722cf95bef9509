//! [`Settings`]: everything the binary needs, in one shape, whichever files
//! it came from.
//!
//! Two sources:
//! * the Fleetspeak pair `server.components.config` + `server.services.config`
//!   (text format), read in the original's order: services file, components
//!   file, then components validation, then services validation;
//! * one Fleetgate TOML file ([`crate::toml`]).
//!
//! The database is resolved last: `--database` wins, then the file
//! (`mysql_data_source_name` or `[database] url`), then
//! `sqlite://<state_dir>/fleetgate.db`.

use std::path::{Path, PathBuf};

use fleetgate_pb::fleetspeak::components;
use fleetgate_pb::fleetspeak::server::ServerConfig;

use crate::error::ConfigError;
use crate::flags::ServerFlags;
use crate::{dsn, textproto, validate};

/// Fleetspeak's default components config path.
pub const DEFAULT_COMPONENTS_CONFIG: &str = "/etc/fleetspeak-server/server.components.config";
/// Fleetspeak's default services config path.
pub const DEFAULT_SERVICES_CONFIG: &str = "/etc/fleetspeak-server/server.services.config";
/// Default for `--state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/fleetgate";
/// File name of the default SQLite database inside the state directory.
pub const DEFAULT_SQLITE_FILE: &str = "fleetgate.db";

/// The validated configuration of one server process.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Listeners and their options. `mysql_data_source_name` is kept as read
    /// (empty for TOML); use [`Settings::database`] instead.
    pub components: components::Config,
    /// Services in install order, with defaults filled in
    /// (`max_parallelism` ≥ 1, `broadcast_poll_time` always set, ≥ 1 s).
    pub services: ServerConfig,
    /// Where messages and clients are stored.
    pub database: DatabaseSetting,
    /// Directory for Fleetgate's own state (default SQLite database).
    pub state_dir: PathBuf,
    /// Which files these settings came from (for logs).
    pub origin: Origin,
    /// Retention ages from the TOML `[retention]` table (all zero, "keep forever", for the
    /// text-format pair, whose ages come from flags).
    pub retention: crate::toml::Retention,
    /// The TOML `[router]`, if any (`fleetgate server --router` sets it for text-format files).
    pub router: Option<fleetgate_pb::fleetgate::plugin::v1::WasmConfig>,
    /// The locked admin listener, from the `--admin_*` flags over the TOML `[admin.tls]`.
    pub admin_lock: Option<crate::admin_lock::AdminLockSettings>,
    /// The secret notifications between servers carry and must carry, from
    /// `--notification_secret_file` or `[notifications] secret_file`; `None`: off, as in Go.
    pub notification_secret: Option<String>,
    /// The TOML `[trace]` (empty for the text-format pair; flags override it).
    pub trace: crate::toml::Trace,
    /// What the TOML file said about both, until [`Settings::load`] applies the flags over it.
    file_security: FileSecurity,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FileSecurity {
    admin_lock: crate::admin_lock::AdminLockSource,
    notification_secret_file: Option<PathBuf>,
}

/// The files a [`Settings`] was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The Fleetspeak text-format pair.
    TextFormat {
        /// `--components_config`.
        components: PathBuf,
        /// `--services_config`.
        services: PathBuf,
    },
    /// A Fleetgate TOML file.
    Toml(PathBuf),
    /// `fleetgate quickstart`: listeners from its flags, bundled services plus
    /// `--services_config`.
    Quickstart {
        /// `--services_config`, if given.
        services: Option<PathBuf>,
    },
}

/// A components setting the server acts on after loading, for naming it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `https_config.listen_address`.
    HttpsListen,
    /// `https_config.certificates`.
    Certificates,
    /// `https_config.key`.
    Key,
    /// `admin_config.listen_address`.
    AdminListen,
    /// `notification_listen_address`.
    NotificationListen,
    /// `stats_config.address`.
    StatsAddress,
    /// `health_check_config.listen_address`.
    HealthListen,
}

impl Field {
    /// Every listener address, in the order the server binds them.
    pub const LISTENERS: [Field; 5] = [
        Field::HealthListen,
        Field::StatsAddress,
        Field::NotificationListen,
        Field::HttpsListen,
        Field::AdminListen,
    ];

    /// The field path in the text-format components config.
    pub fn text_path(self) -> &'static str {
        match self {
            Field::HttpsListen => "https_config.listen_address",
            Field::Certificates => "https_config.certificates",
            Field::Key => "https_config.key",
            Field::AdminListen => "admin_config.listen_address",
            Field::NotificationListen => "notification_listen_address",
            Field::StatsAddress => "stats_config.address",
            Field::HealthListen => "health_check_config.listen_address",
        }
    }

    /// The key in the TOML file.
    pub fn toml_key(self) -> &'static str {
        match self {
            Field::HttpsListen => "https.listen_address",
            Field::Certificates => "https.certificates",
            Field::Key => "https.key",
            Field::AdminListen => "admin.listen_address",
            Field::NotificationListen => "notifications.listen_address",
            Field::StatsAddress => "stats.address",
            Field::HealthListen => "health.listen_address",
        }
    }

    /// The `fleetgate quickstart` flag (or file) that sets it.
    fn quickstart(self) -> &'static str {
        match self {
            Field::HttpsListen => "--listen",
            Field::Certificates => "server.crt in the state directory",
            Field::Key => "server.key in the state directory",
            Field::AdminListen => "--admin_listen",
            Field::NotificationListen => "notification_listen_address",
            Field::StatsAddress => "--stats_listen",
            Field::HealthListen => "--health_listen",
        }
    }

    /// Its value in `c`, if the section holding it is configured (an empty stats address
    /// means no stats listener).
    pub fn value(self, c: &components::Config) -> Option<&str> {
        let https = c.https_config.as_ref();
        let v = match self {
            Field::HttpsListen => https.map(|h| h.listen_address.as_str()),
            Field::Certificates => https.map(|h| h.certificates.as_str()),
            Field::Key => https.map(|h| h.key.as_str()),
            Field::AdminListen => c.admin_config.as_ref().map(|a| a.listen_address.as_str()),
            Field::NotificationListen => Some(c.notification_listen_address.as_str()),
            Field::StatsAddress => c.stats_config.as_ref().map(|s| s.address.as_str()),
            Field::HealthListen => c
                .health_check_config
                .as_ref()
                .map(|h| h.listen_address.as_str()),
        };
        match self {
            Field::NotificationListen | Field::StatsAddress => v.filter(|v| !v.is_empty()),
            _ => v,
        }
    }
}

impl Origin {
    /// `FILE: FIELD`: where an operator finds `field`, e.g.
    /// `server.components.config: https_config.certificates`.
    pub fn place(&self, field: Field) -> String {
        format!("{}: {}", self.components().display(), self.name(field))
    }

    /// `field` as this source spells it (`https_config.key`, `https.key`, `--listen`).
    pub fn name(&self, field: Field) -> &'static str {
        match self {
            Origin::TextFormat { .. } => field.text_path(),
            Origin::Toml(_) => field.toml_key(),
            Origin::Quickstart { .. } => field.quickstart(),
        }
    }

    /// The file the services came from, to prefix their errors.
    pub fn services(&self) -> String {
        match self {
            Origin::TextFormat { services, .. } => services.display().to_string(),
            Origin::Toml(file) => file.display().to_string(),
            Origin::Quickstart { services: None } => "quickstart (bundled services)".into(),
            Origin::Quickstart {
                services: Some(file),
            } => format!(
                "quickstart (bundled services Echo, MessageSaver, then {})",
                file.display()
            ),
        }
    }

    /// The file the components (listeners) came from.
    fn components(&self) -> PathBuf {
        match self {
            Origin::TextFormat { components, .. } => components.clone(),
            Origin::Toml(file) => file.clone(),
            Origin::Quickstart { .. } => PathBuf::from("quickstart"),
        }
    }
}

/// Checks every configured listener address (see [`validate::listen_address`]).
pub fn check_listen_addresses(c: &components::Config, origin: &Origin) -> Result<(), ConfigError> {
    for field in Field::LISTENERS {
        if let Some(address) = field.value(c) {
            validate::listen_address(address).map_err(|message| ConfigError::Invalid {
                place: origin.place(field),
                message,
            })?;
        }
    }
    Ok(())
}

/// The datastore to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSetting {
    /// Embedded SQLite database file (created if missing).
    Sqlite(PathBuf),
    /// A MySQL/MariaDB server.
    Mysql {
        /// `mysql://…` URL for sqlx / sea-orm.
        url: String,
        /// `SET key=value` statements to run on every new connection (from
        /// unrecognised DSN parameters), in order.
        session_variables: Vec<(String, String)>,
    },
}

impl DatabaseSetting {
    /// Parses `sqlite://PATH`, `sqlite:PATH`, `mysql://…` or `mariadb://…`.
    /// `origin` names the source in errors.
    ///
    /// `sqlite:///abs/path.db` is absolute, `sqlite://rel.db` relative to the
    /// working directory; query parameters of SQLite URLs are dropped
    /// ([`DatabaseSetting::url`] adds `mode=rwc`). MySQL URLs are kept
    /// verbatim after a check that they name a host or a `socket`.
    pub fn from_url(url: &str, origin: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::DatabaseUrl {
            origin: origin.to_owned(),
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            if path.is_empty() {
                return Err(invalid("no file name"));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
        {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if host.is_empty() && !rest.contains("socket=") {
                return Err(invalid("no host"));
            }
            return Ok(Self::Mysql {
                url: url.to_owned(),
                session_variables: Vec::new(),
            });
        }
        Err(invalid(
            "expected sqlite://PATH or mysql://USER:PASSWORD@HOST:PORT/DATABASE",
        ))
    }

    /// From a Fleetspeak `mysql_data_source_name`.
    pub fn from_dsn(dsn: &str, origin: &str) -> Result<Self, ConfigError> {
        let parsed = dsn::parse(dsn).map_err(|source| ConfigError::Dsn {
            origin: origin.to_owned(),
            source,
        })?;
        Ok(Self::Mysql {
            url: parsed.to_url(),
            session_variables: parsed.params.session_variables,
        })
    }

    /// `SET name=value` to run on every new connection (MySQL DSN parameters; none for SQLite).
    pub fn session_variables(&self) -> &[(String, String)] {
        match self {
            Self::Sqlite(_) => &[],
            Self::Mysql {
                session_variables, ..
            } => session_variables,
        }
    }

    /// The URL to hand to sea-orm (`?mode=rwc` makes SQLite create the file).
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            Self::Mysql { url, .. } => url.clone(),
        }
    }
}

/// Values from the command line that override the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--database`.
    pub database: Option<String>,
    /// `--state_dir`.
    pub state_dir: Option<PathBuf>,
}

impl Settings {
    /// Loads what the flags of `fleetgate server` point at: the TOML file of
    /// `--config`, otherwise the text-format pair.
    pub fn load(flags: &ServerFlags) -> Result<Self, ConfigError> {
        let overrides = Overrides {
            database: flags.database.clone(),
            state_dir: flags.state_dir.clone(),
        };
        let mut s = match &flags.config {
            Some(_) if flags.text_paths_given => Err(ConfigError::Usage(
                "--config cannot be combined with --components_config or --services_config".into(),
            )),
            Some(path) => Self::from_toml_file(path, &overrides),
            None => {
                Self::from_text_files(&flags.components_config, &flags.services_config, &overrides)
            }
        }?;
        s.secure(flags)?;
        Ok(s)
    }

    /// Applies the locked admin listener's and the notification secret's flags over what the
    /// file said, and reads the files they name.
    fn secure(&mut self, flags: &ServerFlags) -> Result<(), ConfigError> {
        let file = std::mem::take(&mut self.file_security);
        self.admin_lock = crate::admin_lock::resolve(flags.admin_lock.clone(), file.admin_lock)?;
        if let Some(path) = flags
            .notification_secret_file
            .clone()
            .or(file.notification_secret_file)
        {
            self.notification_secret = Some(crate::admin_lock::read_secret(&path)?);
        }
        Ok(())
    }

    /// Reads and validates the Fleetspeak text-format pair.
    pub fn from_text_files(
        components: &Path,
        services: &Path,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let services_text = read(services)?;
        let components_text = read(components)?;
        Self::from_text(
            components,
            &components_text,
            services,
            &services_text,
            overrides,
        )
    }

    /// Like [`Settings::from_text_files`] with the contents already in memory
    /// (`/dev/stdin`, tests). The paths only name the sources in errors.
    pub fn from_text(
        components_file: &Path,
        components_text: &[u8],
        services_file: &Path,
        services_text: &[u8],
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let services = textproto::parse_services(services_file, services_text)?;
        let components = textproto::parse_components(components_file, components_text)?;
        let origin = Origin::TextFormat {
            components: components_file.to_path_buf(),
            services: services_file.to_path_buf(),
        };
        // With --database the file's datastore is not even parsed: the
        // override is the way out of a broken DSN.
        let from_file = if overrides.database.is_some() {
            None
        } else if components.mysql_data_source_name.is_empty() {
            if components.spanner_config.is_some() {
                return Err(ConfigError::Unsupported(format!(
                    "{}: spanner_config is not supported by Fleetgate; set mysql_data_source_name, \
                     pass --database, or remove spanner_config to use SQLite",
                    components_file.display()
                )));
            }
            None
        } else {
            let origin = format!("{}: mysql_data_source_name", components_file.display());
            Some(DatabaseSetting::from_dsn(
                &components.mysql_data_source_name,
                &origin,
            )?)
        };
        Self::assemble(components, services, from_file, None, overrides, origin)
    }

    /// Reads and validates a Fleetgate TOML file.
    pub fn from_toml_file(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = read(path)?;
        let text = String::from_utf8(text).map_err(|e| {
            let valid = std::str::from_utf8(
                e.as_bytes()
                    .get(..e.utf8_error().valid_up_to())
                    .unwrap_or_default(),
            )
            .unwrap_or_default();
            let (line, column) = textproto::line_column(valid, valid.len());
            ConfigError::from(crate::error::TomlError {
                file: path.to_path_buf(),
                line,
                column,
                key: None,
                message: "file is not valid UTF-8".into(),
            })
        })?;
        Self::from_toml(path, &text, overrides)
    }

    /// Like [`Settings::from_toml_file`] with the text in memory. Relative
    /// certificate paths are resolved against `path`'s directory.
    pub fn from_toml(path: &Path, text: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = crate::toml::parse(path, text)?;
        let origin = Origin::Toml(path.to_path_buf());
        let from_file = match &file.database_url {
            Some(url) if overrides.database.is_none() => {
                let origin = format!("{}: database.url", path.display());
                Some(DatabaseSetting::from_url(url, &origin)?)
            }
            _ => None,
        };
        let mut settings = Self::assemble(
            file.components,
            file.services,
            from_file,
            file.state_dir,
            overrides,
            origin,
        )?;
        settings.retention = file.retention;
        settings.router = file.router;
        settings.trace = file.trace;
        settings.file_security = FileSecurity {
            admin_lock: file.admin_lock,
            notification_secret_file: file.notification_secret_file,
        };
        Ok(settings)
    }

    fn assemble(
        components: components::Config,
        mut services: ServerConfig,
        from_file: Option<DatabaseSetting>,
        state_dir_from_file: Option<PathBuf>,
        overrides: &Overrides,
        origin: Origin,
    ) -> Result<Self, ConfigError> {
        let in_file = |file: PathBuf| move |source| ConfigError::Validation { file, source };
        validate::components(&components).map_err(in_file(origin.components()))?;
        check_listen_addresses(&components, &origin)?;
        let services_file = match &origin {
            Origin::TextFormat { services, .. } => services.clone(),
            other => other.components(),
        };
        validate::services(&mut services).map_err(in_file(services_file))?;
        let state_dir = overrides
            .state_dir
            .clone()
            .or(state_dir_from_file)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let database = match &overrides.database {
            Some(url) => DatabaseSetting::from_url(url, "--database")?,
            None => from_file
                .unwrap_or_else(|| DatabaseSetting::Sqlite(state_dir.join(DEFAULT_SQLITE_FILE))),
        };
        Ok(Self {
            components,
            services,
            database,
            state_dir,
            origin,
            retention: Default::default(),
            router: None,
            admin_lock: None,
            notification_secret: None,
            trace: Default::default(),
            file_security: FileSecurity::default(),
        })
    }

    /// The broadcast refresh period (always set after validation).
    pub fn broadcast_poll_time(&self) -> std::time::Duration {
        self.services
            .broadcast_poll_time
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .unwrap_or(validate::DEFAULT_BROADCAST_POLL_TIME)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_OVERRIDES: Overrides = Overrides {
        database: None,
        state_dir: None,
    };

    fn text(components: &str, services: &str, o: &Overrides) -> Result<Settings, ConfigError> {
        Settings::from_text(
            Path::new("c.config"),
            components.as_bytes(),
            Path::new("s.config"),
            services.as_bytes(),
            o,
        )
    }

    #[test]
    fn database_resolution() {
        let s = text("", "", &NO_OVERRIDES).expect("empty configs are valid");
        assert_eq!(
            s.database,
            DatabaseSetting::Sqlite(PathBuf::from("/var/lib/fleetgate/fleetgate.db"))
        );
        assert_eq!(
            s.database.url(),
            "sqlite:///var/lib/fleetgate/fleetgate.db?mode=rwc"
        );
        assert_eq!(s.broadcast_poll_time(), std::time::Duration::from_secs(60));

        let o = Overrides {
            database: None,
            state_dir: Some("/srv/fg".into()),
        };
        let s = text("", "", &o).expect("valid");
        assert_eq!(
            s.database,
            DatabaseSetting::Sqlite("/srv/fg/fleetgate.db".into())
        );

        let dsn = r#"mysql_data_source_name: "fs:p@ss@tcp(db:3306)/fleetspeak?sql_mode=%27TRADITIONAL%27""#;
        let s = text(dsn, "", &NO_OVERRIDES).expect("valid");
        assert_eq!(
            s.database,
            DatabaseSetting::Mysql {
                url: "mysql://fs:p%40ss@db:3306/fleetspeak?ssl-mode=DISABLED".into(),
                session_variables: vec![("sql_mode".into(), "'TRADITIONAL'".into())],
            }
        );

        let o = Overrides {
            database: Some("sqlite:///tmp/x.db".into()),
            state_dir: None,
        };
        let s = text(dsn, "", &o).expect("override wins");
        assert_eq!(s.database, DatabaseSetting::Sqlite("/tmp/x.db".into()));
        // The override also rescues a broken DSN.
        let broken = r#"mysql_data_source_name: "no slash""#;
        let s = text(broken, "", &o).expect("override wins");
        assert_eq!(s.database, DatabaseSetting::Sqlite("/tmp/x.db".into()));
    }

    #[test]
    fn bad_database_values() {
        let err = text(r#"mysql_data_source_name: "u@tcp(h:1)""#, "", &NO_OVERRIDES)
            .expect_err("no slash");
        assert_eq!(
            err.to_string(),
            "c.config: mysql_data_source_name: invalid DSN: missing the slash separating the database name"
        );
        for bad in [
            "postgres://x/y",
            "sqlite://",
            "mysql:///db",
            "/var/lib/x.db",
        ] {
            let o = Overrides {
                database: Some(bad.into()),
                state_dir: None,
            };
            assert!(
                matches!(text("", "", &o), Err(ConfigError::DatabaseUrl { .. })),
                "{bad}"
            );
        }
        let o = Overrides {
            database: Some("mysql://u:p@localhost/db?socket=/run/mysqld.sock".into()),
            state_dir: None,
        };
        assert!(text("", "", &o).is_ok());
    }

    #[test]
    fn spanner_needs_an_alternative() {
        let c = r#"spanner_config { project_id: "p" }"#;
        assert!(matches!(
            text(c, "", &NO_OVERRIDES),
            Err(ConfigError::Unsupported(_))
        ));
        let o = Overrides {
            database: Some("sqlite:///tmp/x.db".into()),
            state_dir: None,
        };
        assert!(text(c, "", &o).is_ok());
        let both = r#"spanner_config { project_id: "p" } mysql_data_source_name: "/db""#;
        assert!(text(both, "", &NO_OVERRIDES).is_ok());
    }

    #[test]
    fn services_file_is_parsed_first_and_validated_last() {
        // Both files broken: the services parse error is reported.
        let err = text("bogus: 1", "bogus: 1", &NO_OVERRIDES).expect_err("invalid");
        assert!(err.to_string().starts_with("s.config:1:1:"), "{err}");
        // Both invalid but parseable: components validation comes first.
        let err = text(
            "admin_config {}",
            r#"services { name: "system" }"#,
            &NO_OVERRIDES,
        )
        .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "c.config: admin_config.listen_address can't be empty"
        );
        // Services are named by their file and place.
        let err = text(
            "",
            "services { name: \"a\" } services { name: \"system\" }",
            &NO_OVERRIDES,
        )
        .expect_err("reserved");
        assert_eq!(
            err.to_string(),
            "s.config: services[1]: illegal service name [system]"
        );
    }

    #[test]
    fn listen_addresses_are_named_by_file_and_field() {
        let c =
            "https_config { listen_address: \"not-an-address\" certificates: \"c\" key: \"k\" }";
        let err = text(c, "", &NO_OVERRIDES).expect_err("no port");
        assert_eq!(
            err.to_string(),
            "c.config: https_config.listen_address: \"not-an-address\" is not HOST:PORT: missing port"
        );
        let err = text("stats_config { address: \"x:y\" }", "", &NO_OVERRIDES).expect_err("port");
        assert!(
            err.to_string()
                .starts_with("c.config: stats_config.address: "),
            "{err}"
        );
        // An empty stats address is "no stats listener", as in the original.
        assert!(text("stats_config { address: \"\" }", "", &NO_OVERRIDES).is_ok());
        let err = Settings::from_toml(
            Path::new("f.toml"),
            "[admin]\nlisten_address = \"localhost\"\n",
            &NO_OVERRIDES,
        )
        .expect_err("no port");
        assert!(
            err.to_string()
                .starts_with("f.toml: admin.listen_address: "),
            "{err}"
        );
    }

    #[test]
    fn config_flag_excludes_text_paths() {
        let flags = ServerFlags::parse(["--config=/x.toml", "--components_config=/c"])
            .expect("flags parse");
        assert!(matches!(Settings::load(&flags), Err(ConfigError::Usage(_))));
        let flags = ServerFlags::parse(["--services_config=/nonexistent/s"]).expect("flags parse");
        match Settings::load(&flags) {
            Err(ConfigError::Read { path, .. }) => assert_eq!(path, Path::new("/nonexistent/s")),
            other => panic!("expected read error, got {other:?}"),
        }
    }

    #[test]
    fn locked_admin_from_toml_with_flags_over_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (f, text) in [
            ("c.pem", "CERT"),
            ("k.pem", "KEY"),
            ("ca.pem", "CA"),
            ("secret", "abc\n"),
            (
                "p.toml",
                "[[identity]]\nname = \"ops\"\nsubject = \"CN=ops\"\nrpcs = [\"ListClients\"]\n",
            ),
        ] {
            std::fs::write(dir.path().join(f), text).expect("write");
        }
        let config = dir.path().join("fleetgate.toml");
        std::fs::write(
            &config,
            "[admin]\nlisten_address = \"127.0.0.1:6061\"\n[admin.tls]\nlisten_address = \"0.0.0.0:6062\"\n\
             cert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\npolicy_file = \"p.toml\"\n\
             [notifications]\nsecret_file = \"secret\"\n",
        )
        .expect("write");
        let flags = ServerFlags::parse([format!("--config={}", config.display())]).expect("flags");
        let s = Settings::load(&flags).expect("valid");
        let lock = s.admin_lock.expect("locked listener");
        assert_eq!(lock.listen_address, "0.0.0.0:6062");
        assert_eq!(
            (lock.cert_pem.as_str(), lock.key_pem.as_str()),
            ("CERT", "KEY")
        );
        assert_eq!(lock.policy.identities[0].name, "ops");
        assert_eq!(s.notification_secret.as_deref(), Some("abc"));
        assert_eq!(
            s.components.admin_config.map(|a| a.listen_address),
            Some("127.0.0.1:6061".into())
        );
        let flags = ServerFlags::parse([
            format!("--config={}", config.display()),
            "-admin_tls_addr=127.0.0.1:7000".into(),
        ])
        .expect("flags");
        let s = Settings::load(&flags).expect("valid");
        assert_eq!(
            s.admin_lock.map(|l| l.listen_address),
            Some("127.0.0.1:7000".into())
        );
        // A policy error names the policy file and the field.
        std::fs::write(
            dir.path().join("p.toml"),
            "[[identity]]\nname = \"ops\"\nsubject = \"CN=ops\"\nrpcs = [\"ListClient\"]\n",
        )
        .expect("write");
        let e = Settings::load(&flags).expect_err("bad policy").to_string();
        assert!(
            e.contains("p.toml:4:") && e.contains("identity[0].rpcs[0]"),
            "{e}"
        );
    }
}
