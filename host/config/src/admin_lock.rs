//! The locked admin listener (TLS, client certificates, a per-identity policy): its settings from
//! flags and the TOML `[admin.tls]` table, and its policy file.
//!
//! A policy file is TOML, one `[[identity]]` table per caller:
//!
//! ```toml
//! [[identity]]
//! name = "grr"                       # how logs and audit lines name this caller
//! subject = "CN=grr-worker"          # the certificate subject, or instead:
//! # spki_sha256 = "3f9a…"            # SHA-256 of its SubjectPublicKeyInfo, 64 hex digits
//! rpcs = ["InsertMessage", "ListClients", "GetMessageStatus", "KeepAlive"]
//! services = ["GRR"]                 # where InsertMessage(s) may send; "*" for any
//! ```
//!
//! `rpcs` takes method names of `fleetspeak.server.Admin` and `fleetgate.admin.v1.FleetgateAdmin`
//! (`InsertMessage`, or `fleetspeak.server.Admin/InsertMessage`), or `"*"` for all. `services` is
//! required when an insert is allowed and refused otherwise, so a typo cannot silently widen or
//! narrow what a caller may do.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, TomlError};
use crate::textproto::{descriptor_pool, line_column};

/// The services whose methods a policy may name.
pub const ADMIN_SERVICES: &[&str] = &[
    "fleetspeak.server.Admin",
    "fleetgate.admin.v1.FleetgateAdmin",
];

/// Where the locked listener listens and what it needs, files already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminLockSettings {
    pub listen_address: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: String,
    pub policy: AdminPolicy,
    /// Where `policy` came from, for logs.
    pub policy_file: PathBuf,
}

/// A parsed, validated policy file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminPolicy {
    pub identities: Vec<PolicyIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIdentity {
    pub name: String,
    pub matcher: PolicyMatcher,
    /// Method names; `None` is `"*"`.
    pub rpcs: Option<BTreeSet<String>>,
    /// Destination services for inserts; `None` is `"*"`, empty when no insert is allowed.
    pub services: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyMatcher {
    Subject(String),
    SpkiSha256([u8; 32]),
}

/// The five settings as one source gives them (flags, or `[admin.tls]` with paths resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminLockSource {
    pub listen_address: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub policy_file: Option<PathBuf>,
}

impl AdminLockSource {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Each setting from `self`, else from `fallback`.
    fn or(self, fallback: AdminLockSource) -> AdminLockSource {
        AdminLockSource {
            listen_address: self.listen_address.or(fallback.listen_address),
            cert_file: self.cert_file.or(fallback.cert_file),
            key_file: self.key_file.or(fallback.key_file),
            client_ca_file: self.client_ca_file.or(fallback.client_ca_file),
            policy_file: self.policy_file.or(fallback.policy_file),
        }
    }
}

/// The locked listener's settings: the flags given win over the file's `[admin.tls]`. Nothing
/// given: no locked listener. Some given: all five are required.
pub fn resolve(
    flags: AdminLockSource,
    file: AdminLockSource,
) -> Result<Option<AdminLockSettings>, ConfigError> {
    if flags.is_empty() && file.is_empty() {
        return Ok(None);
    }
    let s = flags.or(file);
    let missing = |flag: &str, key: &str| {
        ConfigError::Usage(format!(
            "the locked admin listener needs -{flag} (or {key} in [admin.tls])"
        ))
    };
    let listen_address = s
        .listen_address
        .ok_or_else(|| missing("admin_tls_addr", "listen_address"))?;
    let cert = s
        .cert_file
        .ok_or_else(|| missing("admin_cert", "cert_file"))?;
    let key = s.key_file.ok_or_else(|| missing("admin_key", "key_file"))?;
    let ca = s
        .client_ca_file
        .ok_or_else(|| missing("admin_client_ca", "client_ca_file"))?;
    let policy_file = s
        .policy_file
        .ok_or_else(|| missing("admin_policy", "policy_file"))?;
    let policy_text = read_text(&policy_file)?;
    Ok(Some(AdminLockSettings {
        listen_address,
        cert_pem: read_text(&cert)?,
        key_pem: read_text(&key)?,
        client_ca_pem: read_text(&ca)?,
        policy: parse_policy(&policy_file, &policy_text)?,
        policy_file,
    }))
}

/// A shared secret from a file, surrounding whitespace (the trailing newline) dropped.
pub fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let secret = read_text(path)?.trim().to_owned();
    if secret.is_empty() {
        return Err(ConfigError::Usage(format!(
            "{}: the notification secret file is empty",
            path.display()
        )));
    }
    // It travels as an HTTP header value.
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Usage(format!(
            "{}: the notification secret must be printable ASCII without spaces",
            path.display()
        )));
    }
    Ok(secret)
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyToml {
    #[serde(default)]
    identity: Vec<Spanned<IdentityToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityToml {
    name: Spanned<String>,
    subject: Option<Spanned<String>>,
    spki_sha256: Option<Spanned<String>>,
    rpcs: Spanned<Vec<Spanned<String>>>,
    services: Option<Spanned<Vec<Spanned<String>>>>,
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn error(&self, span: Range<usize>, key: String, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::from(TomlError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: Some(key),
            message: message.into(),
        })
    }
}

/// Parses and checks a policy file; `path` names it in errors.
pub fn parse_policy(path: &Path, text: &str) -> Result<AdminPolicy, ConfigError> {
    let ctx = Ctx { file: path, text };
    let file: PolicyToml = toml::from_str(text).map_err(|e| {
        let (line, column) = line_column(text, e.span().unwrap_or(0..0).start);
        ConfigError::from(TomlError {
            file: path.to_path_buf(),
            line,
            column,
            key: None,
            message: e.message().to_owned(),
        })
    })?;
    if file.identity.is_empty() {
        return Err(ctx.error(
            0..0,
            "identity".into(),
            "no [[identity]]: nobody could call",
        ));
    }
    let known = known_methods()?;
    let mut identities: Vec<PolicyIdentity> = Vec::new();
    for (i, entry) in file.identity.into_iter().enumerate() {
        let span = entry.span();
        let key = format!("identity[{i}]");
        let id = identity(&ctx, &key, span.clone(), entry.into_inner(), &known)?;
        if let Some(other) = identities.iter().find(|o| o.name == id.name) {
            return Err(ctx.error(
                span,
                format!("identity[{i}].name"),
                format!("name {:?} is used twice", other.name),
            ));
        }
        if let Some(other) = identities.iter().find(|o| o.matcher == id.matcher) {
            return Err(ctx.error(
                span,
                key,
                format!("matches the same certificate as {:?}", other.name),
            ));
        }
        identities.push(id);
    }
    Ok(AdminPolicy { identities })
}

fn identity(
    ctx: &Ctx<'_>,
    key: &str,
    span: Range<usize>,
    t: IdentityToml,
    known: &BTreeSet<String>,
) -> Result<PolicyIdentity, ConfigError> {
    if t.name.get_ref().trim().is_empty() {
        return Err(ctx.error(t.name.span(), format!("{key}.name"), "name is empty"));
    }
    let matcher = match (t.subject, t.spki_sha256) {
        (Some(s), None) if !s.get_ref().trim().is_empty() => PolicyMatcher::Subject(s.into_inner()),
        (Some(s), None) => {
            return Err(ctx.error(s.span(), format!("{key}.subject"), "subject is empty"));
        }
        (None, Some(h)) => {
            let bytes = hex_32(h.get_ref()).ok_or_else(|| {
                ctx.error(
                    h.span(),
                    format!("{key}.spki_sha256"),
                    "spki_sha256 must be 64 hex digits (SHA-256 of the SubjectPublicKeyInfo)",
                )
            })?;
            PolicyMatcher::SpkiSha256(bytes)
        }
        _ => {
            return Err(ctx.error(
                span,
                key.to_owned(),
                "give exactly one of subject and spki_sha256",
            ));
        }
    };
    let rpcs = rpcs(ctx, key, t.rpcs, known)?;
    let inserts = rpcs
        .as_ref()
        .is_none_or(|r| r.contains("InsertMessage") || r.contains("InsertMessages"));
    let services = match (inserts, t.services) {
        (true, None) => {
            return Err(ctx.error(
                span,
                format!("{key}.services"),
                "services is required when InsertMessage or InsertMessages is allowed (\"*\" for any)",
            ));
        }
        (false, Some(s)) => {
            return Err(ctx.error(
                s.span(),
                format!("{key}.services"),
                "services is used only with InsertMessage or InsertMessages",
            ));
        }
        (false, None) => Some(BTreeSet::new()),
        (true, Some(list)) => {
            let list_span = list.span();
            let list = list.into_inner();
            if list.iter().any(|s| s.get_ref() == "*") {
                None
            } else if list.is_empty() {
                return Err(ctx.error(
                    list_span,
                    format!("{key}.services"),
                    "services is empty: no insert could pass",
                ));
            } else {
                Some(list.into_iter().map(Spanned::into_inner).collect())
            }
        }
    };
    Ok(PolicyIdentity {
        name: t.name.into_inner(),
        matcher,
        rpcs,
        services,
    })
}

fn rpcs(
    ctx: &Ctx<'_>,
    key: &str,
    list: Spanned<Vec<Spanned<String>>>,
    known: &BTreeSet<String>,
) -> Result<Option<BTreeSet<String>>, ConfigError> {
    let span = list.span();
    let list = list.into_inner();
    if list.is_empty() {
        return Err(ctx.error(span, format!("{key}.rpcs"), "rpcs is empty"));
    }
    let mut out = BTreeSet::new();
    for (j, r) in list.into_iter().enumerate() {
        let name = r.get_ref().trim_start_matches('/');
        if name == "*" {
            return Ok(None);
        }
        let method = match name.split_once('/') {
            Some((service, m)) if ADMIN_SERVICES.contains(&service) => m,
            Some(_) => "",
            None => name,
        };
        if !known.contains(method) {
            return Err(ctx.error(
                r.span(),
                format!("{key}.rpcs[{j}]"),
                format!(
                    "{:?} is not an RPC of {}; known: {}",
                    r.get_ref(),
                    ADMIN_SERVICES.join(" or "),
                    known.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        out.insert(method.to_owned());
    }
    Ok(Some(out))
}

/// Method names of both admin services, from the compiled-in descriptors.
fn known_methods() -> Result<BTreeSet<String>, ConfigError> {
    let pool = descriptor_pool()?;
    let mut out = BTreeSet::new();
    for name in ADMIN_SERVICES {
        let service = pool
            .get_service_by_name(name)
            .ok_or_else(|| ConfigError::Internal(format!("service {name} not compiled in")))?;
        out.extend(service.methods().map(|m| m.name().to_owned()));
    }
    Ok(out)
}

fn hex_32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AdminPolicy, String> {
        parse_policy(Path::new("policy.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_valid_policy() {
        let p = parse(
            r#"
[[identity]]
name = "ops"
subject = "CN=ops"
rpcs = ["*"]
services = ["*"]

[[identity]]
name = "grr"
spki_sha256 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
rpcs = ["fleetspeak.server.Admin/InsertMessage", "ListClients"]
services = ["GRR"]

[[identity]]
name = "reader"
subject = "CN=reader, O=Example"
rpcs = ["ListClients", "fleetgate.admin.v1.FleetgateAdmin/ListPlugins"]
"#,
        )
        .expect("valid");
        assert_eq!(p.identities.len(), 3);
        assert_eq!(p.identities[0].rpcs, None);
        assert_eq!(p.identities[0].services, None);
        let grr = &p.identities[1];
        assert_eq!(
            grr.rpcs,
            Some(["InsertMessage", "ListClients"].map(String::from).into())
        );
        assert_eq!(grr.services, Some(["GRR".to_owned()].into()));
        assert!(matches!(grr.matcher, PolicyMatcher::SpkiSha256(h) if h[1] == 0x11));
        assert_eq!(p.identities[2].services, Some(BTreeSet::new()));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases = [
            (
                "[[identity]]\nname = \"a\"\nsubject = \"CN=a\"\nrpcs = [\"ListClients\", \"InsertMesage\"]\n",
                "policy.toml:4:",
                "identity[0].rpcs[1]",
            ),
            (
                "[[identity]]\nname = \"a\"\nsubject = \"CN=a\"\nrpcs = [\"InsertMessage\"]\n",
                "policy.toml:1:",
                "identity[0].services",
            ),
            (
                "[[identity]]\nname = \"a\"\nsubject = \"CN=a\"\nrpcs = [\"ListClients\"]\nservices = [\"X\"]\n",
                "policy.toml:5:",
                "identity[0].services",
            ),
            (
                "[[identity]]\nname = \"a\"\nspki_sha256 = \"abc\"\nrpcs = [\"*\"]\nservices = [\"*\"]\n",
                "policy.toml:3:",
                "identity[0].spki_sha256",
            ),
            (
                "[[identity]]\nname = \"a\"\nrpcs = [\"*\"]\nservices = [\"*\"]\n",
                "policy.toml:1:",
                "exactly one of subject and spki_sha256",
            ),
            (
                "[[identity]]\nname = \"a\"\nsubject = \"CN=a\"\nrpcs = [\"*\"]\nservices = [\"*\"]\nextra = 1\n",
                "policy.toml:6:",
                "unknown field `extra`",
            ),
            ("", "policy.toml:1:", "no [[identity]]"),
            (
                "[[identity]]\nname = \"a\"\nsubject = \"CN=a\"\nrpcs = [\"*\"]\nservices = [\"*\"]\n[[identity]]\nname = \"a\"\nsubject = \"CN=b\"\nrpcs = [\"*\"]\nservices = [\"*\"]\n",
                "policy.toml:",
                "identity[1].name",
            ),
        ];
        for (text, at, what) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.starts_with(at) && e.contains(what), "{e}\nfor:\n{text}");
        }
    }

    #[test]
    fn flags_win_and_all_five_are_needed() {
        assert_eq!(
            resolve(Default::default(), Default::default()).ok(),
            Some(None)
        );
        let partial = AdminLockSource {
            listen_address: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let e = resolve(partial.clone(), Default::default()).expect_err("incomplete");
        assert!(e.to_string().contains("-admin_cert"), "{e}");
        let file = AdminLockSource {
            listen_address: Some("file".into()),
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("k".into()),
            client_ca_file: Some("c".into()),
            policy_file: Some("p".into()),
        };
        match resolve(partial, file) {
            // The policy is read first, then the PEM files.
            Err(ConfigError::Read { path, .. }) => assert_eq!(path, Path::new("p")),
            other => panic!("expected a read error, got {other:?}"),
        }
    }
}
