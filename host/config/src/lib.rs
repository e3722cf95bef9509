//! Server configuration: Fleetspeak's protobuf text-format files, Fleetgate's
//! TOML file, and Go-style command-line flags, turned into one validated
//! [`Settings`].
//!
//! | module | concern |
//! |---|---|
//! | [`flags`] | Go `flag` syntax and glog switches; [`ServerFlags`] for `fleetgate server` |
//! | [`textproto`] | text format as Go's `prototext` reads it, via prost-reflect, with file:line:column errors |
//! | [`mod@toml`] | the single-file TOML schema, mapped onto the same proto structs |
//! | [`dsn`] | go-sql-driver MySQL DSNs → `mysql://` URLs |
//! | [`validate`] | the original's checks, order and texts; defaults for services |
//! | [`settings`] | choosing the source, database resolution, [`Settings`] |
//! | [`admin_lock`] | the locked admin listener's settings and its policy file |
//! | [`duration`] | Go duration strings (`30s`, `1m30s`) |
//! | [`error`] | [`ConfigError`] and its parts |
//! | [`fuzzing`] | entry points for the fuzz targets |
//!
//! Typical use by the binary:
//!
//! ```no_run
//! use fleetgate_config::{ServerFlags, Settings};
//! let flags = ServerFlags::parse(std::env::args().skip(2)).unwrap_or_else(|e| {
//!     eprintln!("{e}");
//!     std::process::exit(2)
//! });
//! let settings = Settings::load(&flags).unwrap_or_else(|e| {
//!     eprintln!("{e}");
//!     std::process::exit(1)
//! });
//! # let _ = settings;
//! ```
//!
//! No sockets, no database connections: loading only reads files (the two
//! configs and PEM files named by the TOML file).
#![forbid(unsafe_code)]

pub mod admin_lock;
pub mod dsn;
pub mod duration;
pub mod error;
pub mod flags;
pub mod fuzzing;
pub mod settings;
pub mod textproto;
pub mod toml;
pub mod validate;

pub use error::{ConfigError, TextErrorKind, TextFormatError, TomlError, ValidationError};
pub use flags::{FlagError, Flags, LogFlags, ServerFlags, parse_flags};
pub use settings::{DatabaseSetting, Field, Origin, Overrides, Settings};
