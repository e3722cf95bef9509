//! Fleetgate's own settings file: one TOML file instead of Fleetspeak's two
//! text-format files, mapped onto the same proto structs.
//!
//! ```toml
//! state_dir = "/var/lib/fleetgate"     # default /var/lib/fleetgate
//! broadcast_poll_time = "60s"          # Go duration; default 60s, minimum 1s
//!
//! [database]
//! url = "mysql://fleetspeak:secret@127.0.0.1:3306/fleetspeak"   # or sqlite:///path
//!
//! [https]                              # client-facing listener
//! listen_address = "0.0.0.0:4443"
//! certificates_file = "server.crt"     # or certificates = "-----BEGIN CERTIFICATE-----…"
//! key_file = "server.key"              # or key = "-----BEGIN EC PRIVATE KEY-----…"
//! disable_streaming = false
//! proxy_protocol = false
//! required_label = ""
//! enable_file_server_authorization = false
//! frontend = "mtls"                    # https-header, https-header-checksum, cleartext-header,
//!                                      # cleartext-header-checksum, cleartext-xfcc
//! client_certificate_header = "…"      # header frontends only
//! client_certificate_checksum_header = "…"   # checksum frontends only
//!
//! [admin]
//! listen_address = "localhost:4444"
//! [stats]
//! address = "localhost:2112"
//! [health]
//! listen_address = "localhost:8080"
//! [notifications]
//! listen_address = "10.0.0.5:10000"
//! public_address = "10.0.0.5:10000"
//! use_http_notifier = false
//! [retention]                          # Go durations; absent or "0": keep forever
//! contacts = "720h"                    # client contacts, by contact time
//! messages = "2160h"                   # finished messages, by creation time (never pending ones)
//! resource_usage = "720h"              # resource usage records, by receipt time
//! dead_letters = "720h"                # dead letters, by the time the message died
//! traces = "720h"                      # message trace steps, by the time of the step
//!
//! [trace]                              # the trace of each message (`fleetgate admin trace ID`)
//! enabled = true                       # default true; false records no new steps
//! server_name = "fe-1"                 # this server's name in traces; default: the
//!                                      # notification public address, else host:client port
//!
//! [router]                             # optional: sees every client message first
//! path = "router.wasm"                 # a component of the `router` world, or bundled:<name>
//! config = "GRR eu GRR-eu"             # handed to its `init`
//! grants = ["clients"]                 # log, metrics, clock, clients
//!
//! [expiry]                             # optional: client-bound messages not delivered in time
//! default = "168h"                     # every service not listed; absent: never expire
//! services = { GRR = "24h", Keep = "0" }   # per destination service; "0": never
//!
//! [[services]]
//! name = "GRR"
//! factory = "GRPC"                     # optional when a factory table is given
//! max_parallelism = 100                # 0 or absent: 100
//! [services.retry]                     # optional; absent keys keep Fleetspeak's behaviour
//! max_attempts = 5                     # attempts in all, first included; absent: unlimited
//! max_age = "24h"                      # not retried once older; absent: no limit
//! initial_backoff = "60s"              # wait before the first retry, × U[1,2)
//! backoff_multiplier = 1.1             # growth per retry, at least 1
//! max_backoff = "1h"                   # longest wait; absent: none
//! [services.grpc]                      # or [services.cps] project topic,
//! target = "localhost:11111"           # or [services.wasm] path config
//! insecure = true
//! cert_file = "/etc/fleetgate/grr-ca.pem"
//! ```
//!
//! Unknown keys are errors. Relative file paths (`*_file`, `path`,
//! `state_dir`, a relative `sqlite://` path) are relative to the TOML file's
//! directory, so a configuration directory can be moved as a whole.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::toml::Spanned;
use fleetgate_pb::fleetgate::lifecycle::v1::{ClientMessageExpiry, RetryPolicy};
use fleetgate_pb::fleetgate::plugin::v1::WasmConfig;
use fleetgate_pb::fleetspeak::components::{self, frontend_config::FrontendMode};
use fleetgate_pb::fleetspeak::server::{ServerConfig, ServiceConfig};
use fleetgate_pb::fleetspeak::{cpsservice, grpcservice};

use crate::duration::parse_go_duration;
use crate::error::{ConfigError, TomlError};
use crate::textproto::line_column;

/// A TOML file mapped onto the proto shapes (not yet validated).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TomlSettings {
    /// Listener settings.
    pub components: components::Config,
    /// Services and broadcast poll time.
    pub services: ServerConfig,
    /// `[database] url`, relative SQLite paths already resolved.
    pub database_url: Option<String>,
    /// `state_dir`, resolved.
    pub state_dir: Option<PathBuf>,
    /// `[retention]`.
    pub retention: Retention,
    /// `[router]`: the component that sees every client message before its service (same keys
    /// as `[services.wasm]`; grants are router capabilities: `log`, `metrics`, `clock`, `clients`).
    pub router: Option<WasmConfig>,
    /// `[admin.tls]`, paths resolved.
    pub admin_lock: crate::admin_lock::AdminLockSource,
    /// `[notifications] secret_file`, resolved.
    pub notification_secret_file: Option<PathBuf>,
    /// `[trace]`.
    pub trace: Trace,
}

/// `[trace]`: unset keys leave the choice to flags and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    pub enabled: Option<bool>,
    /// At most [`MAX_SERVER_NAME`] bytes, not empty.
    pub server_name: Option<String>,
}

/// The longest server name the trace table holds.
pub const MAX_SERVER_NAME: usize = 255;

/// Checks a server name given in a file or a flag.
pub fn check_server_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a server name must not be empty".into());
    }
    if name.len() > MAX_SERVER_NAME {
        return Err(format!(
            "a server name is at most {MAX_SERVER_NAME} bytes, this one has {}",
            name.len()
        ));
    }
    Ok(())
}

/// How long to keep old rows; zero keeps them forever (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Client contacts, by contact time.
    pub contacts: Duration,
    /// Finished messages, by creation time.
    pub messages: Duration,
    /// Resource usage records, by the time the server received them.
    pub resource_usage: Duration,
    /// Dead letters, by the time the message died.
    pub dead_letters: Duration,
    /// Message trace steps, by the time of the step.
    pub traces: Duration,
}

mod schema;

use schema::*;

/// Where relative paths are resolved and how errors are located.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    base: PathBuf,
}

impl Ctx<'_> {
    fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::from(TomlError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: Some(key.into()),
            message: message.into(),
        })
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_relative() {
            self.base.join(p)
        } else {
            p.to_path_buf()
        }
    }

    /// Inline PEM or the contents of a file; `None` if neither is given.
    fn pem(
        &self,
        span: &Range<usize>,
        key: &str,
        inline: Option<String>,
        file: Option<&Path>,
    ) -> Result<Option<String>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.error(
                span.clone(),
                format!("https.{key}"),
                format!("set either {key} or {key}_file, not both"),
            )),
            (Some(pem), None) => Ok(Some(pem)),
            (None, Some(path)) => {
                let path = self.resolve(path);
                let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                String::from_utf8(bytes).map(Some).map_err(|_| {
                    self.error(
                        span.clone(),
                        format!("https.{key}_file"),
                        format!("{} is not a PEM text file", path.display()),
                    )
                })
            }
            (None, None) => Ok(None),
        }
    }
}

/// Parses a Fleetgate TOML file. `path` names it in errors and is the base
/// of relative paths.
pub fn parse(path: &Path, text: &str) -> Result<TomlSettings, ConfigError> {
    let file: FileToml = ::toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let (line, column) = line_column(text, span.start);
        ConfigError::from(TomlError {
            file: path.to_path_buf(),
            line,
            column,
            key: key_at(text, span.start),
            message: e.message().to_owned(),
        })
    })?;
    let ctx = Ctx {
        file: path,
        text,
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let (admin_config, admin_lock) = match file.admin {
        None => (None, Default::default()),
        Some(a) => admin(&ctx, a)?,
    };
    let mut notification_secret_file = None;
    let mut components = components::Config {
        admin_config,
        stats_config: file
            .stats
            .map(|s| components::StatsConfig { address: s.address }),
        health_check_config: file.health.map(|h| components::HealthCheckConfig {
            listen_address: h.listen_address,
        }),
        ..Default::default()
    };
    if let Some(n) = file.notifications {
        components.notification_listen_address = n.listen_address;
        components.notification_public_address = n.public_address;
        components.notification_use_http_notifier = n.use_http_notifier;
        notification_secret_file = n.secret_file.map(|p| ctx.resolve(&p));
    }
    if let Some(https) = file.https {
        let span = https.span();
        let https = https.into_inner();
        components.proxy_protocol = https.proxy_protocol;
        components.required_label.clone_from(&https.required_label);
        components.https_config = Some(https_config(&ctx, &span, https)?);
    }
    let broadcast_poll_time = match file.broadcast_poll_time {
        None => None,
        Some(s) => {
            let span = s.span();
            let d = parse_go_duration(s.get_ref())
                .map_err(|e| ctx.error(span, "broadcast_poll_time", e))?;
            prost_types::Duration::try_from(d).ok()
        }
    };
    let services = file
        .services
        .into_iter()
        .enumerate()
        .map(|(i, s)| service(&ctx, i, s))
        .collect::<Result<Vec<_>, _>>()?;
    let database_url = file.database.map(|d| resolve_sqlite(&ctx, d.url));
    let retention = match file.retention {
        None => Retention::default(),
        Some(r) => Retention {
            contacts: age(&ctx, "retention.contacts", r.contacts)?,
            messages: age(&ctx, "retention.messages", r.messages)?,
            resource_usage: age(&ctx, "retention.resource_usage", r.resource_usage)?,
            dead_letters: age(&ctx, "retention.dead_letters", r.dead_letters)?,
            traces: age(&ctx, "retention.traces", r.traces)?,
        },
    };
    let trace = match file.trace {
        None => Trace::default(),
        Some(t) => Trace {
            enabled: t.enabled,
            server_name: t
                .server_name
                .map(|n| {
                    let span = n.span();
                    check_server_name(n.get_ref())
                        .map(|()| n.into_inner())
                        .map_err(|e| ctx.error(span, "trace.server_name", e))
                })
                .transpose()?,
        },
    };
    let client_message_expiry = file
        .expiry
        .map(|e| expiry(&ctx, e))
        .transpose()?
        .unwrap_or_default();
    Ok(TomlSettings {
        components,
        services: ServerConfig {
            services,
            broadcast_poll_time,
            client_message_expiry,
        },
        database_url,
        state_dir: file.state_dir.map(|p| ctx.resolve(&p)),
        retention,
        router: file.router.map(|w| wasm_config(&ctx, w)),
        admin_lock,
        notification_secret_file,
        trace,
    })
}

/// `[admin]`: the plaintext listener, the locked one (`[admin.tls]`), or both.
fn admin(
    ctx: &Ctx<'_>,
    a: Spanned<AdminToml>,
) -> Result<
    (
        Option<components::AdminConfig>,
        crate::admin_lock::AdminLockSource,
    ),
    ConfigError,
> {
    let span = a.span();
    let a = a.into_inner();
    if a.listen_address.is_none() && a.tls.is_none() {
        return Err(ctx.error(
            span,
            "admin",
            "[admin] needs listen_address (plaintext), [admin.tls] (locked), or both",
        ));
    }
    let plaintext = a
        .listen_address
        .map(|listen_address| components::AdminConfig { listen_address });
    let lock = a
        .tls
        .map(|t| crate::admin_lock::AdminLockSource {
            listen_address: Some(t.listen_address),
            cert_file: Some(ctx.resolve(&t.cert_file)),
            key_file: Some(ctx.resolve(&t.key_file)),
            client_ca_file: Some(ctx.resolve(&t.client_ca_file)),
            policy_file: Some(ctx.resolve(&t.policy_file)),
        })
        .unwrap_or_default();
    Ok((plaintext, lock))
}

/// A `[services.wasm]` or `[router]` table; a component path is relative to the file.
fn wasm_config(ctx: &Ctx<'_>, w: WasmToml) -> WasmConfig {
    let path = if w.path.starts_with("bundled:") {
        w.path
    } else {
        ctx.resolve(Path::new(&w.path)).display().to_string()
    };
    WasmConfig {
        path,
        config: w.config.into_bytes(),
        grants: w.grants,
        memory_limit_bytes: w.memory_limit_bytes,
        cpu_budget_ms: w.cpu_budget_ms,
        ..Default::default()
    }
}

fn age(ctx: &Ctx<'_>, key: &str, v: Option<Spanned<String>>) -> Result<Duration, ConfigError> {
    let Some(v) = v else {
        return Ok(Duration::ZERO);
    };
    let span = v.span();
    parse_go_duration(v.get_ref()).map_err(|e| ctx.error(span, key, e))
}

fn resolve_sqlite(ctx: &Ctx<'_>, url: String) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url;
    };
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with(":memory:") {
        return url;
    }
    format!("sqlite://{}", ctx.resolve(Path::new(rest)).display())
}

fn https_config(
    ctx: &Ctx<'_>,
    span: &Range<usize>,
    h: HttpsToml,
) -> Result<components::HttpsConfig, ConfigError> {
    let certificates = ctx.pem(
        span,
        "certificates",
        h.certificates,
        h.certificates_file.as_deref(),
    )?;
    let key = ctx.pem(span, "key", h.key, h.key_file.as_deref())?;
    let header = h.client_certificate_header;
    let checksum = h.client_certificate_checksum_header;
    let frontend = h.frontend;
    let needs_header = !matches!(frontend, None | Some(Frontend::Mtls));
    let needs_checksum = matches!(
        frontend,
        Some(Frontend::HttpsHeaderChecksum | Frontend::CleartextHeaderChecksum)
    );
    let missing = |key: &str| {
        ctx.error(
            span.clone(),
            format!("https.{key}"),
            format!("{key} is required by this frontend"),
        )
    };
    let unused = |key: &str| {
        ctx.error(
            span.clone(),
            format!("https.{key}"),
            format!("{key} is not used by this frontend"),
        )
    };
    let header = match (needs_header, header) {
        (true, Some(v)) if !v.is_empty() => v,
        (true, _) => return Err(missing("client_certificate_header")),
        (false, Some(_)) => return Err(unused("client_certificate_header")),
        (false, None) => String::new(),
    };
    let checksum = match (needs_checksum, checksum) {
        (true, Some(v)) if !v.is_empty() => v,
        (true, _) => return Err(missing("client_certificate_checksum_header")),
        (false, Some(_)) => return Err(unused("client_certificate_checksum_header")),
        (false, None) => String::new(),
    };
    let mode = frontend.map(|frontend| match frontend {
        Frontend::Mtls => FrontendMode::MtlsConfig(components::MTlsConfig {}),
        Frontend::HttpsHeader => FrontendMode::HttpsHeaderConfig(components::HttpsHeaderConfig {
            client_certificate_header: header,
        }),
        Frontend::HttpsHeaderChecksum => {
            FrontendMode::HttpsHeaderChecksumConfig(components::HttpsHeaderChecksumConfig {
                client_certificate_header: header,
                client_certificate_checksum_header: checksum,
            })
        }
        Frontend::CleartextHeader => {
            FrontendMode::CleartextHeaderConfig(components::CleartextHeaderConfig {
                client_certificate_header: header,
            })
        }
        Frontend::CleartextHeaderChecksum => {
            FrontendMode::CleartextHeaderChecksumConfig(components::CleartextHeaderChecksumConfig {
                client_certificate_header: header,
                client_certificate_checksum_header: checksum,
            })
        }
        Frontend::CleartextXfcc => {
            FrontendMode::CleartextXfccConfig(components::CleartextXfccConfig {
                client_certificate_header: header,
            })
        }
    });
    Ok(components::HttpsConfig {
        listen_address: h.listen_address,
        certificates: certificates.unwrap_or_default(),
        key: key.unwrap_or_default(),
        disable_streaming: h.disable_streaming,
        frontend_config: mode.map(|m| components::FrontendConfig {
            frontend_mode: Some(m),
        }),
        enable_file_server_authorization: h.enable_file_server_authorization,
    })
}

fn service(
    ctx: &Ctx<'_>,
    index: usize,
    s: Spanned<ServiceToml>,
) -> Result<ServiceConfig, ConfigError> {
    let span = s.span();
    let s = s.into_inner();
    let key = format!("services[{index}]");
    let mut tables = Vec::new();
    if let Some(g) = s.grpc {
        let config = grpcservice::Config {
            target: g.target,
            insecure: g.insecure,
            cert_file: g
                .cert_file
                .map(|p| ctx.resolve(&p).display().to_string())
                .unwrap_or_default(),
        };
        tables.push(("grpc", "GRPC", fleetgate_pb::any::pack(&config)));
    }
    if let Some(c) = s.cps {
        let config = cpsservice::Config {
            project: c.project,
            topic: c.topic,
        };
        tables.push(("cps", "CPS", fleetgate_pb::any::pack(&config)));
    }
    if let Some(w) = s.wasm {
        let config = wasm_config(ctx, w);
        tables.push(("wasm", "WASM", fleetgate_pb::any::pack(&config)));
    }
    if tables.len() > 1 {
        let names: Vec<String> = tables
            .iter()
            .map(|(t, _, _)| format!("[services.{t}]"))
            .collect();
        return Err(ctx.error(
            span,
            key,
            format!("give only one factory table, found {}", names.join(", ")),
        ));
    }
    let table = tables.pop();
    let factory = match (s.factory, &table) {
        (Some(f), Some((t, expected, _))) if f != *expected => {
            return Err(ctx.error(
                span,
                format!("{key}.factory"),
                format!("factory {f:?} does not match [services.{t}] (factory {expected:?})"),
            ));
        }
        (Some(f), _) => f,
        (None, Some((_, expected, _))) => (*expected).to_owned(),
        (None, None) => {
            return Err(ctx.error(
                span,
                format!("{key}.factory"),
                "factory is required without a [services.grpc], [services.cps] or [services.wasm] table",
            ));
        }
    };
    let retry_policy = s
        .retry
        .map(|r| retry(ctx, &format!("{key}.retry"), r))
        .transpose()?;
    Ok(ServiceConfig {
        name: s.name,
        factory,
        max_parallelism: s.max_parallelism,
        config: table.map(|(_, _, any)| any),
        retry_policy,
    })
}

/// `[services.retry]` as the services config's `retry_policy`.
fn retry(ctx: &Ctx<'_>, key: &str, r: RetryToml) -> Result<RetryPolicy, ConfigError> {
    let max_attempts = match r.max_attempts {
        None => None,
        Some(n) => {
            let span = n.span();
            match u32::try_from(*n.get_ref()) {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(ctx.error(
                        span,
                        format!("{key}.max_attempts"),
                        format!(
                            "{} is not an attempt count: give at least 1 (leave it out to retry without limit)",
                            n.get_ref()
                        ),
                    ));
                }
            }
        }
    };
    let backoff_multiplier = match r.backoff_multiplier {
        None => None,
        Some(m) if m.get_ref().is_finite() && *m.get_ref() >= 1.0 => Some(*m.get_ref()),
        Some(m) => {
            return Err(ctx.error(
                m.span(),
                format!("{key}.backoff_multiplier"),
                format!(
                    "{} is not a multiplier of at least 1 (1 keeps the wait constant)",
                    m.get_ref()
                ),
            ));
        }
    };
    let duration = |field: &str, v: Option<Spanned<String>>| -> Result<_, ConfigError> {
        match v {
            None => Ok(None),
            Some(v) => {
                Ok(
                    prost_types::Duration::try_from(age(ctx, &format!("{key}.{field}"), Some(v))?)
                        .ok(),
                )
            }
        }
    };
    Ok(RetryPolicy {
        max_attempts,
        max_age: duration("max_age", r.max_age)?,
        initial_backoff: duration("initial_backoff", r.initial_backoff)?,
        backoff_multiplier,
        max_backoff: duration("max_backoff", r.max_backoff)?,
    })
}

/// `[expiry]` as the services config's `client_message_expiry` (the default first).
fn expiry(ctx: &Ctx<'_>, e: ExpiryToml) -> Result<Vec<ClientMessageExpiry>, ConfigError> {
    let mut out = Vec::new();
    let entry = |service: String, key: String, v: Spanned<String>| -> Result<_, ConfigError> {
        Ok(ClientMessageExpiry {
            service,
            max_age: prost_types::Duration::try_from(age(ctx, &key, Some(v))?).ok(),
        })
    };
    if let Some(d) = e.default {
        out.push(entry(String::new(), "expiry.default".into(), d)?);
    }
    for (service, v) in e.services {
        if service.is_empty() {
            return Err(ctx.error(
                v.span(),
                "expiry.services",
                "a service name is empty; the default is `expiry.default`",
            ));
        }
        let key = format!("expiry.services.{service}");
        out.push(entry(service, key, v)?);
    }
    Ok(out)
}

/// Dotted key at byte `offset`: the table header in force plus the key on
/// that line (best effort; `None` if nothing recognisable).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut header: Option<String> = None;
    let mut array_counts: std::collections::HashMap<String, usize> = Default::default();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let line_end = line_start + line.len();
        let on_error_line = offset >= line_start && offset < line_end.max(line_start + 1);
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|t| t.split("]]").next())
        {
            let name = name.trim().to_owned();
            let n = array_counts.entry(name.clone()).or_default();
            header = Some(format!("{name}[{n}]"));
            *n += 1;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.split(']').next()) {
            let name = name.trim();
            // `[services.grpc]` belongs to the latest `[[services]]`.
            let prefix = array_counts
                .iter()
                .filter(|(a, _)| name.starts_with(&format!("{a}.")))
                .max_by_key(|(a, _)| a.len())
                .map(|(a, n)| (a.clone(), n.saturating_sub(1)));
            header = Some(match prefix {
                Some((a, n)) => format!("{a}[{n}]{}", &name[a.len()..]),
                None => name.to_owned(),
            });
        }
        if on_error_line {
            let key = trimmed
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_owned())
                .filter(|k| !k.is_empty() && !k.starts_with('['));
            return match (header, key) {
                (Some(h), Some(k)) => Some(format!("{h}.{k}")),
                (None, Some(k)) => Some(k),
                (h, None) => h,
            };
        }
        line_start = line_end;
    }
    header
}

#[cfg(test)]
mod tests;
