//! The one error type of this crate, [`ConfigError`], and its parts.
//!
//! Every variant says where the problem is (file, and for syntax problems
//! line, column and field or key) so an operator can fix the file without
//! guessing. Callers branch on the variant, not on the text: the binary maps
//! all of them to "log and exit 1", tests match on the kind.

use std::fmt;
use std::path::PathBuf;

use crate::dsn::DsnError;

/// Anything that prevents building [`crate::Settings`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file (or a certificate file it names) could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A protobuf text-format file is malformed (syntax, unknown field, …).
    #[error(transparent)]
    TextFormat(Box<TextFormatError>),
    /// A TOML file is malformed or holds an unknown key.
    #[error(transparent)]
    Toml(Box<TomlError>),
    /// The configuration parsed but breaks a rule of the original server
    /// (the text is the original's, e.g. `admin_config.listen_address can't be empty`),
    /// prefixed with the file it is in.
    #[error("{}: {source}", file.display())]
    Validation {
        /// The file holding the offending setting.
        file: PathBuf,
        /// The rule broken.
        source: ValidationError,
    },
    /// A setting's value is unusable; `place` is `FILE: FIELD`, as [`crate::Origin::place`]
    /// names it (e.g. `server.components.config: https_config.listen_address`).
    #[error("{place}: {message}")]
    Invalid {
        /// The file and the field.
        place: String,
        /// What is wrong with the value.
        message: String,
    },
    /// The MySQL data source name (`mysql_data_source_name`) is malformed.
    #[error("{origin}: {source}")]
    Dsn {
        /// Where the DSN came from (file name or flag).
        origin: String,
        /// What is wrong with it.
        source: DsnError,
    },
    /// A `--database` or `[database] url` value is not `sqlite://…` or `mysql://…`.
    #[error("{origin}: invalid database URL {url:?}: {reason}")]
    DatabaseUrl {
        /// Where the URL came from (file name or flag).
        origin: String,
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A setting Fleetspeak has but Fleetgate does not implement (Spanner).
    #[error("{0}")]
    Unsupported(String),
    /// Flags that contradict each other (e.g. `--config` with `--components_config`).
    #[error("{0}")]
    Usage(String),
    /// The compiled-in descriptor set is unusable, or a parsed message could
    /// not be converted to its Rust type. Indicates a build problem, not a
    /// problem with the file.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<TextFormatError> for ConfigError {
    fn from(e: TextFormatError) -> Self {
        Self::TextFormat(Box::new(e))
    }
}

impl From<TomlError> for ConfigError {
    fn from(e: TomlError) -> Self {
        Self::Toml(Box::new(e))
    }
}

/// A position-annotated error in a protobuf text-format file.
///
/// Displays as `FILE:LINE:COLUMN: [FIELD: ]MESSAGE`, e.g.
/// `server.components.config:7:3: unknown field "listen_adress" in fleetspeak.components.HttpsConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormatError {
    /// The file as named by the caller.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted path of the field being parsed (`https_config.listen_address`,
    /// `services[0].config`), when known.
    pub field: Option<String>,
    /// What went wrong.
    pub kind: TextErrorKind,
}

/// What went wrong in a text-format file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextErrorKind {
    /// The message type has no field of that name.
    UnknownField {
        /// The name as written.
        name: String,
        /// Full name of the message type.
        message: String,
    },
    /// A non-repeated field appears twice.
    DuplicateField {
        /// The field name.
        name: String,
    },
    /// Two members of one `oneof` are set.
    OneofConflict {
        /// The oneof's name.
        oneof: String,
        /// The member set first.
        first: String,
        /// The member that conflicts.
        second: String,
    },
    /// `[type.googleapis.com/X]` names a type not compiled into the server.
    UnknownAnyType {
        /// The type URL as written.
        type_url: String,
    },
    /// `[...]` expansion used where the field is not a `google.protobuf.Any`,
    /// or an extension name (Fleetspeak's configs have no extensions).
    BadExpansion {
        /// The bracketed name as written.
        name: String,
        /// Full name of the enclosing message type.
        message: String,
    },
    /// The file is not valid UTF-8.
    InvalidUtf8,
    /// A value does not fit its field (bad bool, integer out of range, bad
    /// escape, string not UTF-8, …). The text is the parser's.
    InvalidValue(String),
    /// Any other syntax error. The text is the parser's.
    Syntax(String),
}

impl fmt::Display for TextFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        let field_prefix = |f: &mut fmt::Formatter<'_>| match &self.field {
            Some(field) => write!(f, "{field}: "),
            None => Ok(()),
        };
        match &self.kind {
            TextErrorKind::UnknownField { name, message } => {
                write!(f, "unknown field {name:?} in {message}")
            }
            TextErrorKind::DuplicateField { name } => {
                field_prefix(f)?;
                write!(f, "non-repeated field {name:?} is set twice")
            }
            TextErrorKind::OneofConflict {
                oneof,
                first,
                second,
            } => {
                field_prefix(f)?;
                write!(
                    f,
                    "{second:?} conflicts with {first:?}: both are members of oneof {oneof:?}"
                )
            }
            TextErrorKind::UnknownAnyType { type_url } => {
                field_prefix(f)?;
                write!(f, "unknown message type in Any expansion [{type_url}]")
            }
            TextErrorKind::BadExpansion { name, message } => {
                field_prefix(f)?;
                write!(
                    f,
                    "[{name}] is not allowed here: {message} is not google.protobuf.Any"
                )
            }
            TextErrorKind::InvalidUtf8 => write!(f, "file is not valid UTF-8"),
            TextErrorKind::InvalidValue(msg) | TextErrorKind::Syntax(msg) => {
                field_prefix(f)?;
                write!(f, "{msg}")
            }
        }
    }
}

impl std::error::Error for TextFormatError {}

/// A position-annotated error in a TOML settings file.
///
/// Displays as `FILE:LINE:COLUMN: KEY: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {}{message}", file.display(), key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct TomlError {
    /// The file as named by the caller.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted key path (`https.listen_address`, `services[1].grpc`), when known.
    pub key: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// A configuration that parsed but is not acceptable.
///
/// The texts of the first three variants are the original server's, byte
/// for byte (server.md §1.2): operators and scripts grep for them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// TLS frontend mode without listen address, certificates or key.
    #[error("https_config requires listen_address, certificates and key")]
    HttpsIncomplete,
    /// Cleartext frontend mode without listen address.
    #[error("http_config requires listen_address")]
    HttpIncomplete,
    /// `admin_config {}` with an empty address.
    #[error("admin_config.listen_address can't be empty")]
    AdminAddressEmpty,
    /// Service name `""`, `system` or `client`; `index` is its place in `services`.
    #[error("services[{index}]: illegal service name [{name}]")]
    IllegalServiceName {
        /// 0-based position in the file's `services`.
        index: usize,
        /// The name as written.
        name: String,
    },
    /// Two services with one name (the original silently replaced the first); `index` is the
    /// second one's place in `services`.
    #[error("services[{index}]: duplicate service name [{name}]")]
    DuplicateServiceName {
        /// 0-based position of the repeated entry in `services`.
        index: usize,
        /// The name both entries have.
        name: String,
    },
    /// A retry policy or client message expiry that cannot work.
    #[error("{field}: {reason}")]
    Lifecycle {
        /// Where: `services[2] "Foo": retry_policy.max_attempts` or
        /// `client_message_expiry[1]`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}
