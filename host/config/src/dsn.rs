//! Fleetspeak's `mysql_data_source_name`: go-sql-driver/mysql v1.6 DSN syntax
//! (config.md §4), parsed into [`MysqlDsn`] and rewritten as the
//! `mysql://` URL sqlx/sea-orm understand.
//!
//! ```text
//! [user[:password]@][net[(address)]]/dbname[?param1=value1&...&paramN=valueN]
//! ```
//!
//! The **last** `/` starts the database name (so a `/` in a parameter value
//! must be escaped, as with Go); in front of it the **last** `@` ends the
//! credentials and the **first** `:` splits user from password, so passwords
//! may contain `:` and `@` unescaped.

use std::path::PathBuf;
use std::time::Duration;

use crate::duration::parse_go_duration;

/// A parsed DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlDsn {
    /// User name (may be empty).
    pub user: String,
    /// Password (empty if none; Go does not distinguish).
    pub password: String,
    /// Where the server is.
    pub address: MysqlAddress,
    /// Database name; empty selects none (schema creation will then fail).
    pub database: String,
    /// The `?key=value` parameters.
    pub params: DsnParams,
}

/// The server address of a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MysqlAddress {
    /// `tcp(host:port)`; default `127.0.0.1:3306`, port default 3306.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `unix(/path)`; default `/tmp/mysql.sock`.
    Unix(PathBuf),
}

/// TLS to the database (`tls=` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// `tls=false` or absent: no TLS (the driver's default).
    #[default]
    Disabled,
    /// `tls=true`: TLS with certificate and host verification.
    VerifyIdentity,
    /// `tls=skip-verify`: TLS without verification.
    SkipVerify,
    /// `tls=preferred`: TLS if the server offers it, unverified.
    Preferred,
}

/// DSN parameters that matter to a client other than go-sql-driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DsnParams {
    /// `tls`.
    pub tls: TlsMode,
    /// `charset` (comma list, tried in order).
    pub charsets: Vec<String>,
    /// `collation`.
    pub collation: Option<String>,
    /// `timeout` (connect).
    pub timeout: Option<Duration>,
    /// `readTimeout`.
    pub read_timeout: Option<Duration>,
    /// `writeTimeout`.
    pub write_timeout: Option<Duration>,
    /// `maxAllowedPacket` (0 = ask the server).
    pub max_allowed_packet: Option<u64>,
    /// Unrecognised keys: session variables to `SET key=value` after
    /// connecting (value already unescaped), in file order.
    pub session_variables: Vec<(String, String)>,
    /// Recognised driver options with no equivalent outside Go
    /// (`parseTime`, `loc`, `allowNativePasswords`, …), validated and kept
    /// for logging.
    pub driver_options: Vec<(String, String)>,
}

/// Why a DSN was rejected. The first three texts are go-sql-driver's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// No `/` at all.
    #[error("invalid DSN: missing the slash separating the database name")]
    NoSlash,
    /// `net(address` without `)` right before the `/`.
    #[error("invalid DSN: network address not terminated (missing closing brace)")]
    UnterminatedAddress,
    /// A `)` further on suggests an unescaped `/` in a parameter.
    #[error("invalid DSN: did you forget to escape a param value?")]
    Unescaped,
    /// A network other than `tcp`, `tcp4`, `tcp6`, `unix`.
    #[error("unsupported network {0:?} (use tcp or unix)")]
    UnsupportedNetwork(String),
    /// A TCP address whose port is not a number.
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    /// A parameter value that is not valid for its key.
    #[error("invalid value {value:?} for DSN parameter {key}: {reason}")]
    InvalidParam {
        /// Parameter name.
        key: String,
        /// Value as written.
        value: String,
        /// Why.
        reason: String,
    },
}

const BOOL_PARAMS: &[&str] = &[
    "allowAllFiles",
    "allowCleartextPasswords",
    "allowNativePasswords",
    "allowOldPasswords",
    "checkConnLiveness",
    "clientFoundRows",
    "columnsWithAlias",
    "interpolateParams",
    "multiStatements",
    "parseTime",
    "rejectReadOnly",
];

impl std::str::FromStr for MysqlDsn {
    type Err = DsnError;

    fn from_str(dsn: &str) -> Result<Self, DsnError> {
        parse(dsn)
    }
}

/// Parses a DSN with go-sql-driver v1.6's rules. An empty string is valid
/// (all defaults), as in Go.
pub fn parse(dsn: &str) -> Result<MysqlDsn, DsnError> {
    let (mut user, mut password, mut net, mut addr) = ("", "", "", "");
    let mut rest = "";
    if !dsn.is_empty() {
        let slash = dsn.rfind('/').ok_or(DsnError::NoSlash)?;
        let (head, tail) = (&dsn[..slash], &dsn[slash + 1..]);
        rest = tail;
        let target = match head.rfind('@') {
            Some(at) => {
                let creds = &head[..at];
                (user, password) = creds.split_once(':').unwrap_or((creds, ""));
                &head[at + 1..]
            }
            None => head,
        };
        match target.find('(') {
            Some(open) => {
                let inner = &target[open + 1..];
                let Some(address) = inner.strip_suffix(')') else {
                    return Err(if inner.contains(')') {
                        DsnError::Unescaped
                    } else {
                        DsnError::UnterminatedAddress
                    });
                };
                net = &target[..open];
                addr = address;
            }
            None => net = target,
        }
    }
    let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
    Ok(MysqlDsn {
        user: user.to_owned(),
        password: password.to_owned(),
        address: address(net, addr)?,
        database: database.to_owned(),
        params: params(query)?,
    })
}

fn address(net: &str, addr: &str) -> Result<MysqlAddress, DsnError> {
    match net {
        "" | "tcp" | "tcp4" | "tcp6" => {
            let addr = if addr.is_empty() {
                "127.0.0.1:3306"
            } else {
                addr
            };
            let (host, port) = split_host_port(addr)
                .unwrap_or_else(|| (addr.trim_start_matches('[').trim_end_matches(']'), "3306"));
            let port = port
                .parse()
                .map_err(|_| DsnError::InvalidAddress(addr.to_owned()))?;
            Ok(MysqlAddress::Tcp {
                host: host.to_owned(),
                port,
            })
        }
        "unix" => Ok(MysqlAddress::Unix(PathBuf::from(if addr.is_empty() {
            "/tmp/mysql.sock"
        } else {
            addr
        }))),
        other => Err(DsnError::UnsupportedNetwork(other.to_owned())),
    }
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; `None` when there
/// is no port (the driver then appends `:3306`).
fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(v6) = addr.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    let (host, port) = addr.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

fn params(query: &str) -> Result<DsnParams, DsnError> {
    let mut out = DsnParams::default();
    for pair in query.split('&') {
        // Go skips entries without '='.
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let invalid = |reason: String| DsnError::InvalidParam {
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        };
        let duration = || parse_go_duration(value).map(Some).map_err(invalid);
        match key {
            "tls" => {
                out.tls = match (read_bool(value), value.to_ascii_lowercase().as_str()) {
                    (Some(true), _) => TlsMode::VerifyIdentity,
                    (Some(false), _) => TlsMode::Disabled,
                    (None, "skip-verify") => TlsMode::SkipVerify,
                    (None, "preferred") => TlsMode::Preferred,
                    _ => return Err(invalid("named TLS configs are not supported".into())),
                }
            }
            "charset" => out.charsets = value.split(',').map(str::to_owned).collect(),
            "collation" => out.collation = Some(value.to_owned()),
            "timeout" => out.timeout = duration()?,
            "readTimeout" => out.read_timeout = duration()?,
            "writeTimeout" => out.write_timeout = duration()?,
            "maxAllowedPacket" => {
                let n = value.parse().map_err(|_| invalid("not a number".into()))?;
                out.max_allowed_packet = Some(n);
            }
            k if BOOL_PARAMS.contains(&k) => {
                read_bool(value).ok_or_else(|| invalid("not a boolean".into()))?;
                out.driver_options.push((key.to_owned(), value.to_owned()));
            }
            "loc" | "serverPubKey" => {
                let v = query_unescape(value).map_err(invalid)?;
                out.driver_options.push((key.to_owned(), v));
            }
            _ => {
                let v = query_unescape(value).map_err(invalid)?;
                out.session_variables.retain(|(k, _)| k != key);
                out.session_variables.push((key.to_owned(), v));
            }
        }
    }
    Ok(out)
}

/// go-sql-driver's `readBool`.
fn read_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "true" | "TRUE" | "True" => Some(true),
        "0" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte.
fn query_unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "invalid %-escape".to_owned())?;
                out.push(hex);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after unescaping".to_owned())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl MysqlDsn {
    /// The equivalent `mysql://` URL for sqlx / sea-orm.
    ///
    /// User, password and database are percent-encoded; a Unix socket
    /// becomes `mysql://user@localhost/db?socket=/path`. TLS is mapped to
    /// `ssl-mode` (`DISABLED` when absent, like the Go driver), the first
    /// charset and the collation are passed on. Timeouts, session variables
    /// and driver options have no URL form: apply them from
    /// [`MysqlDsn::params`].
    pub fn to_url(&self) -> String {
        let mut url = String::from("mysql://");
        if !self.user.is_empty() || !self.password.is_empty() {
            url.push_str(&percent_encode(&self.user));
            if !self.password.is_empty() {
                url.push(':');
                url.push_str(&percent_encode(&self.password));
            }
            url.push('@');
        }
        let mut query = Vec::new();
        match &self.address {
            MysqlAddress::Tcp { host, port } if host.contains(':') => {
                url.push_str(&format!("[{host}]:{port}"));
            }
            MysqlAddress::Tcp { host, port } => url.push_str(&format!("{host}:{port}")),
            MysqlAddress::Unix(path) => {
                url.push_str("localhost");
                let path = path.to_string_lossy();
                query.push(format!("socket={}", percent_encode(&path)));
            }
        }
        url.push('/');
        url.push_str(&percent_encode(&self.database));
        let ssl_mode = match self.params.tls {
            TlsMode::Disabled => "DISABLED",
            TlsMode::VerifyIdentity => "VERIFY_IDENTITY",
            TlsMode::SkipVerify => "REQUIRED",
            TlsMode::Preferred => "PREFERRED",
        };
        query.push(format!("ssl-mode={ssl_mode}"));
        if let Some(charset) = self.params.charsets.first() {
            query.push(format!("charset={}", percent_encode(charset)));
        }
        if let Some(collation) = &self.params.collation {
            query.push(format!("collation={}", percent_encode(collation)));
        }
        url.push('?');
        url.push_str(&query.join("&"));
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> MysqlAddress {
        MysqlAddress::Tcp {
            host: host.into(),
            port,
        }
    }

    fn ok(s: &str) -> MysqlDsn {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn examples_in_the_wild() {
        let d = ok("root:@tcp(127.0.0.1:3306)/db");
        assert_eq!((d.user.as_str(), d.password.as_str()), ("root", ""));
        assert_eq!(d.address, tcp("127.0.0.1", 3306));
        assert_eq!(d.database, "db");
        assert_eq!(
            d.to_url(),
            "mysql://root@127.0.0.1:3306/db?ssl-mode=DISABLED"
        );

        let d = ok("fleetspeak-user:fleetspeak-password@/fleetspeak");
        assert_eq!(d.address, tcp("127.0.0.1", 3306));
        assert_eq!(
            d.to_url(),
            "mysql://fleetspeak-user:fleetspeak-password@127.0.0.1:3306/fleetspeak?ssl-mode=DISABLED"
        );

        let d = ok("u:p@tcp(mysql-server:3306)/fleetspeak");
        assert_eq!(d.address, tcp("mysql-server", 3306));

        let d = ok("user:pw@unix(/var/run/mysqld/mysqld.sock)/fleetspeak");
        assert_eq!(
            d.address,
            MysqlAddress::Unix("/var/run/mysqld/mysqld.sock".into())
        );
        assert_eq!(
            d.to_url(),
            "mysql://user:pw@localhost/fleetspeak?socket=%2Fvar%2Frun%2Fmysqld%2Fmysqld.sock&ssl-mode=DISABLED"
        );
    }

    #[test]
    fn password_with_colon_at_and_slash_in_address() {
        let d = ok("us:er:p@ss:w@rd@tcp(db.example:3307)/fs");
        assert_eq!(d.user, "us");
        assert_eq!(d.password, "er:p@ss:w@rd");
        assert_eq!(d.address, tcp("db.example", 3307));
        assert_eq!(
            d.to_url(),
            "mysql://us:er%3Ap%40ss%3Aw%40rd@db.example:3307/fs?ssl-mode=DISABLED"
        );
        // A '/' in the password works too: only the last '/' counts.
        let d = ok("u:a/b@tcp(h)/x");
        assert_eq!((d.password.as_str(), d.database.as_str()), ("a/b", "x"));
    }

    #[test]
    fn defaults_and_ports() {
        let d = ok("/db");
        assert_eq!((d.user.as_str(), d.password.as_str()), ("", ""));
        assert_eq!(d.address, tcp("127.0.0.1", 3306));
        assert_eq!(d.to_url(), "mysql://127.0.0.1:3306/db?ssl-mode=DISABLED");
        assert_eq!(ok("tcp(db)/x").address, tcp("db", 3306));
        assert_eq!(ok("tcp([::1]:3310)/x").address, tcp("::1", 3310));
        assert_eq!(ok("tcp(::1)/x").address, tcp("::1", 3306));
        assert_eq!(
            ok("tcp(::1)/x").to_url(),
            "mysql://[::1]:3306/x?ssl-mode=DISABLED"
        );
        assert_eq!(
            ok("unix/x").address,
            MysqlAddress::Unix("/tmp/mysql.sock".into())
        );
        assert_eq!(ok("u@tcp(h:1)/").database, "");
        assert_eq!(ok("").address, tcp("127.0.0.1", 3306));
    }

    #[test]
    fn errors() {
        assert_eq!(parse("user:pw@tcp(h:1)"), Err(DsnError::NoSlash));
        assert_eq!(parse("u@tcp(h:1/db"), Err(DsnError::UnterminatedAddress));
        assert_eq!(
            parse("u@tcp(h:1)/db?loc=Europe/Berlin"),
            Err(DsnError::Unescaped)
        );
        assert!(matches!(
            parse("u@udp(h:1)/db"),
            Err(DsnError::UnsupportedNetwork(n)) if n == "udp"
        ));
        assert!(matches!(
            parse("u@tcp(h:mysql)/db"),
            Err(DsnError::InvalidAddress(_))
        ));
        for bad in [
            "/db?parseTime=yes",
            "/db?timeout=5",
            "/db?tls=custom",
            "/db?maxAllowedPacket=x",
            "/db?sql_mode=%zz",
        ] {
            assert!(
                matches!(parse(bad), Err(DsnError::InvalidParam { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn params_map_to_url_and_session_variables() {
        let d = ok(
            "u:p@tcp(h:1)/db?tls=skip-verify&charset=utf8mb4,utf8&collation=utf8mb4_bin\
             &timeout=30s&readTimeout=500ms&parseTime=true&sql_mode=%27TRADITIONAL%27\
             &autocommit=1&noequals&maxAllowedPacket=0",
        );
        assert_eq!(d.params.tls, TlsMode::SkipVerify);
        assert_eq!(d.params.timeout, Some(Duration::from_secs(30)));
        assert_eq!(d.params.read_timeout, Some(Duration::from_millis(500)));
        assert_eq!(d.params.max_allowed_packet, Some(0));
        assert_eq!(
            d.params.session_variables,
            [
                ("sql_mode".to_owned(), "'TRADITIONAL'".to_owned()),
                ("autocommit".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(
            d.params.driver_options,
            [("parseTime".to_owned(), "true".to_owned())]
        );
        assert_eq!(
            d.to_url(),
            "mysql://u:p@h:1/db?ssl-mode=REQUIRED&charset=utf8mb4&collation=utf8mb4_bin"
        );
        assert_eq!(ok("/d?tls=true").params.tls, TlsMode::VerifyIdentity);
        assert_eq!(ok("/d?tls=PREFERRED").params.tls, TlsMode::Preferred);
        assert_eq!(ok("/d?tls=0").params.tls, TlsMode::Disabled);
    }

    #[test]
    fn user_without_password_and_odd_characters() {
        let d = ok("fleet speak@tcp(h:1)/my db");
        assert_eq!(
            d.to_url(),
            "mysql://fleet%20speak@h:1/my%20db?ssl-mode=DISABLED"
        );
        let d = ok(":secret@/db");
        assert_eq!(
            d.to_url(),
            "mysql://:secret@127.0.0.1:3306/db?ssl-mode=DISABLED"
        );
    }
}
