//! The TOML file's shape, as serde reads it: every table denies unknown keys, and the values
//! that need a position in error messages are `Spanned`.

use std::path::PathBuf;

use ::toml::Spanned;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileToml {
    pub(super) state_dir: Option<PathBuf>,
    pub(super) broadcast_poll_time: Option<Spanned<String>>,
    pub(super) database: Option<DatabaseToml>,
    pub(super) https: Option<Spanned<HttpsToml>>,
    pub(super) admin: Option<Spanned<AdminToml>>,
    pub(super) stats: Option<StatsToml>,
    pub(super) health: Option<HealthToml>,
    pub(super) notifications: Option<NotificationsToml>,
    pub(super) retention: Option<RetentionToml>,
    pub(super) router: Option<WasmToml>,
    pub(super) expiry: Option<ExpiryToml>,
    pub(super) trace: Option<TraceToml>,
    #[serde(default)]
    pub(super) services: Vec<Spanned<ServiceToml>>,
}

/// `[expiry]`: when client-bound messages stop being delivered.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpiryToml {
    pub(super) default: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) services: std::collections::BTreeMap<String, Spanned<String>>,
}

/// `[services.retry]`: the service's retry policy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryToml {
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) max_age: Option<Spanned<String>>,
    pub(super) initial_backoff: Option<Spanned<String>>,
    pub(super) backoff_multiplier: Option<Spanned<f64>>,
    pub(super) max_backoff: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TraceToml {
    pub(super) enabled: Option<bool>,
    pub(super) server_name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionToml {
    pub(super) contacts: Option<Spanned<String>>,
    pub(super) messages: Option<Spanned<String>>,
    pub(super) resource_usage: Option<Spanned<String>>,
    pub(super) dead_letters: Option<Spanned<String>>,
    pub(super) traces: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DatabaseToml {
    pub(super) url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpsToml {
    pub(super) listen_address: String,
    pub(super) certificates: Option<String>,
    pub(super) certificates_file: Option<PathBuf>,
    pub(super) key: Option<String>,
    pub(super) key_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) disable_streaming: bool,
    #[serde(default)]
    pub(super) proxy_protocol: bool,
    #[serde(default)]
    pub(super) required_label: String,
    #[serde(default)]
    pub(super) enable_file_server_authorization: bool,
    pub(super) frontend: Option<Frontend>,
    pub(super) client_certificate_header: Option<String>,
    pub(super) client_certificate_checksum_header: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Frontend {
    Mtls,
    HttpsHeader,
    HttpsHeaderChecksum,
    CleartextHeader,
    CleartextHeaderChecksum,
    CleartextXfcc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminToml {
    /// The plaintext listener (Fleetspeak's `admin_config`).
    pub(super) listen_address: Option<String>,
    /// The locked listener.
    pub(super) tls: Option<AdminTlsToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminTlsToml {
    pub(super) listen_address: String,
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
    pub(super) client_ca_file: PathBuf,
    pub(super) policy_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsToml {
    pub(super) address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthToml {
    pub(super) listen_address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotificationsToml {
    #[serde(default)]
    pub(super) listen_address: String,
    #[serde(default)]
    pub(super) public_address: String,
    #[serde(default)]
    pub(super) use_http_notifier: bool,
    /// A file holding the shared secret notifications must carry (sent and required).
    pub(super) secret_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceToml {
    pub(super) name: String,
    pub(super) factory: Option<String>,
    #[serde(default)]
    pub(super) max_parallelism: u32,
    pub(super) grpc: Option<GrpcToml>,
    pub(super) cps: Option<CpsToml>,
    pub(super) wasm: Option<WasmToml>,
    pub(super) retry: Option<RetryToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrpcToml {
    pub(super) target: String,
    #[serde(default)]
    pub(super) insecure: bool,
    pub(super) cert_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CpsToml {
    pub(super) project: String,
    pub(super) topic: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WasmToml {
    /// A component file, or `bundled:<name>`.
    pub(super) path: String,
    /// Handed to the plugin's `init`.
    #[serde(default)]
    pub(super) config: String,
    /// Capabilities granted (`messaging`, `grpc`, `log`, `metrics`, `clock`, `clients`).
    #[serde(default)]
    pub(super) grants: Vec<String>,
    #[serde(default)]
    pub(super) memory_limit_bytes: u64,
    #[serde(default)]
    pub(super) cpu_budget_ms: u32,
}
