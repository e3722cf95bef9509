//! Checks and defaults applied after parsing, in the original server's order
//! (server.md §1.2, §5.2, config.md §2.1).
//!
//! Deliberate differences from Fleetspeak:
//! * no datastore setting is not an error: Fleetgate falls back to SQLite
//!   (resolved in [`crate::settings`]);
//! * two services with one name are an error (the original silently replaced
//!   the first and left it running);
//! * `broadcast_poll_time` below one second is raised to one second (the
//!   original would spin).
//!
//! Factories and their configs are checked by the runtime that builds the
//! services, not here.

use fleetgate_pb::fleetspeak::components::{self, frontend_config::FrontendMode};
use fleetgate_pb::fleetspeak::server::ServerConfig;
use std::collections::HashSet;

use crate::error::ValidationError;

/// `max_parallelism` used when a service config says 0.
pub const DEFAULT_MAX_PARALLELISM: u32 = 100;
/// `broadcast_poll_time` used when the services config has none.
pub const DEFAULT_BROADCAST_POLL_TIME: std::time::Duration = std::time::Duration::from_secs(60);
/// Smallest accepted `broadcast_poll_time`.
pub const MIN_BROADCAST_POLL_TIME: std::time::Duration = std::time::Duration::from_secs(1);
/// Service names the server reserves.
pub const RESERVED_SERVICE_NAMES: [&str; 3] = ["", "system", "client"];

/// True if the HTTPS listener serves plain HTTP (a cleartext frontend mode
/// behind a TLS-terminating proxy).
pub fn is_cleartext(https: &components::HttpsConfig) -> bool {
    matches!(
        https
            .frontend_config
            .as_ref()
            .and_then(|f| f.frontend_mode.as_ref()),
        Some(
            FrontendMode::CleartextHeaderConfig(_)
                | FrontendMode::CleartextHeaderChecksumConfig(_)
                | FrontendMode::CleartextXfccConfig(_)
        )
    )
}

/// Validates a components config: listener sections first, then admin.
pub fn components(config: &components::Config) -> Result<(), ValidationError> {
    if let Some(https) = &config.https_config {
        if is_cleartext(https) {
            if https.listen_address.is_empty() {
                return Err(ValidationError::HttpIncomplete);
            }
        } else if https.listen_address.is_empty()
            || https.certificates.is_empty()
            || https.key.is_empty()
        {
            return Err(ValidationError::HttpsIncomplete);
        }
    }
    if config
        .admin_config
        .as_ref()
        .is_some_and(|admin| admin.listen_address.is_empty())
    {
        return Err(ValidationError::AdminAddressEmpty);
    }
    Ok(())
}

/// Checks that `address` is `HOST:PORT` as Go's `net.Listen` takes it: HOST empty (every
/// interface), a name, an IPv4 address or a bracketed IPv6 address; PORT a number (0 picks a
/// free port). Binding can still fail (the port is taken, the name does not resolve); this
/// catches what can never work, before anything starts.
pub fn listen_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?} is not HOST:PORT: missing port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{address:?} is not HOST:PORT: port {port:?} is not a number from 0 to 65535"
        ));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        return Err(format!(
            "{address:?} is not HOST:PORT: an IPv6 address must be in brackets, e.g. [::1]:4443"
        ));
    }
    if bracketed
        && host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_err()
    {
        return Err(format!(
            "{address:?} is not HOST:PORT: {host} is not an IPv6 address"
        ));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("{address:?} is not HOST:PORT: bad host {host:?}"));
    }
    Ok(())
}

/// Validates a services config in file order and fills in its defaults:
/// `max_parallelism` 0 → 100, `broadcast_poll_time` absent → 60 s, below
/// 1 s → 1 s.
pub fn services(config: &mut ServerConfig) -> Result<(), ValidationError> {
    let mut names = HashSet::new();
    for (index, service) in config.services.iter_mut().enumerate() {
        let name = service.name.clone();
        if RESERVED_SERVICE_NAMES.contains(&name.as_str()) {
            return Err(ValidationError::IllegalServiceName { index, name });
        }
        if !names.insert(name.clone()) {
            return Err(ValidationError::DuplicateServiceName { index, name });
        }
        if service.max_parallelism == 0 {
            service.max_parallelism = DEFAULT_MAX_PARALLELISM;
        }
        if let Some(policy) = &service.retry_policy {
            retry_policy(policy).map_err(|(field, reason)| ValidationError::Lifecycle {
                field: format!("services[{index}] \"{name}\": retry_policy.{field}"),
                reason,
            })?;
        }
    }
    let mut expiring = HashSet::new();
    for (index, e) in config.client_message_expiry.iter().enumerate() {
        let bad = |reason: String| ValidationError::Lifecycle {
            field: format!("client_message_expiry[{index}]"),
            reason,
        };
        if !expiring.insert(e.service.as_str()) {
            return Err(bad(if e.service.is_empty() {
                "a second default (service empty); give it once".into()
            } else {
                format!("service {:?} is given twice", e.service)
            }));
        }
        duration(e.max_age.as_ref()).map_err(|why| bad(format!("max_age {why}")))?;
    }
    let poll = match &config.broadcast_poll_time {
        None => DEFAULT_BROADCAST_POLL_TIME,
        Some(d) => std::time::Duration::try_from(*d)
            .unwrap_or_default()
            .max(MIN_BROADCAST_POLL_TIME),
    };
    config.broadcast_poll_time = prost_types::Duration::try_from(poll).ok();
    Ok(())
}

/// Checks one service's retry policy; on error, the field and what is wrong.
fn retry_policy(
    p: &fleetgate_pb::fleetgate::lifecycle::v1::RetryPolicy,
) -> Result<(), (&'static str, String)> {
    if p.max_attempts == Some(0) {
        return Err((
            "max_attempts",
            "must be at least 1 (leave it out to retry without limit)".into(),
        ));
    }
    for (field, d) in [
        ("max_age", &p.max_age),
        ("initial_backoff", &p.initial_backoff),
        ("max_backoff", &p.max_backoff),
    ] {
        duration(d.as_ref()).map_err(|why| (field, why))?;
    }
    if let Some(m) = p.backoff_multiplier
        && !(m.is_finite() && m >= 1.0)
    {
        return Err((
            "backoff_multiplier",
            format!("{m} is not a number of at least 1 (1 keeps the wait constant)"),
        ));
    }
    Ok(())
}

/// A duration field is absent or a non-negative, valid duration.
fn duration(d: Option<&prost_types::Duration>) -> Result<(), String> {
    match d {
        Some(d) if d.seconds < 0 || d.nanos < 0 => Err(format!(
            "is negative ({}s); durations here are at least 0",
            d.seconds
        )),
        Some(d) if std::time::Duration::try_from(*d).is_err() => {
            Err(format!("is not a valid duration ({d:?})"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetgate_pb::fleetspeak::components::{
        AdminConfig, CleartextXfccConfig, FrontendConfig, HttpsConfig,
    };
    use fleetgate_pb::fleetspeak::server::ServiceConfig;

    fn https(listen: &str, certs: &str, key: &str) -> HttpsConfig {
        HttpsConfig {
            listen_address: listen.into(),
            certificates: certs.into(),
            key: key.into(),
            ..Default::default()
        }
    }

    #[test]
    fn https_needs_address_certificates_and_key() {
        for (l, c, k) in [("", "c", "k"), ("a:1", "", "k"), ("a:1", "c", "")] {
            let config = components::Config {
                https_config: Some(https(l, c, k)),
                ..Default::default()
            };
            let err = components(&config).expect_err("incomplete https_config");
            assert_eq!(
                err.to_string(),
                "https_config requires listen_address, certificates and key"
            );
        }
        let ok = components::Config {
            https_config: Some(https("a:1", "c", "k")),
            ..Default::default()
        };
        assert_eq!(components(&ok), Ok(()));
    }

    #[test]
    fn cleartext_needs_only_address() {
        let mut h = https("", "", "");
        h.frontend_config = Some(FrontendConfig {
            frontend_mode: Some(FrontendMode::CleartextXfccConfig(CleartextXfccConfig {
                client_certificate_header: "x-forwarded-client-cert".into(),
            })),
        });
        let mut config = components::Config {
            https_config: Some(h),
            ..Default::default()
        };
        assert_eq!(
            components(&config).map_err(|e| e.to_string()),
            Err("http_config requires listen_address".to_owned())
        );
        if let Some(h) = config.https_config.as_mut() {
            h.listen_address = ":8080".into();
        }
        assert_eq!(components(&config), Ok(()));
    }

    #[test]
    fn https_is_checked_before_admin() {
        let config = components::Config {
            https_config: Some(https("", "", "")),
            admin_config: Some(AdminConfig::default()),
            ..Default::default()
        };
        assert_eq!(components(&config), Err(ValidationError::HttpsIncomplete));
        let config = components::Config {
            admin_config: Some(AdminConfig::default()),
            ..Default::default()
        };
        assert_eq!(
            components(&config).map_err(|e| e.to_string()),
            Err("admin_config.listen_address can't be empty".to_owned())
        );
    }

    #[test]
    fn listen_addresses() {
        for ok in [
            ":4443",
            "0.0.0.0:0",
            "localhost:80",
            "[::1]:4443",
            "[::]:1",
            "a.b:65535",
        ] {
            assert_eq!(listen_address(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("not-an-address", "missing port"),
            ("host:", "port \"\""),
            ("host:http", "port \"http\""),
            ("host:70000", "65535"),
            ("::1:80", "brackets"),
            ("[zz]:80", "not an IPv6"),
            ("a b:80", "bad host"),
        ] {
            let err = listen_address(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn nothing_configured_is_valid() {
        // Neither listener nor datastore: accepted (SQLite fallback).
        assert_eq!(components(&components::Config::default()), Ok(()));
    }

    fn service(name: &str, max: u32) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            factory: "NOOP".into(),
            max_parallelism: max,
            ..Default::default()
        }
    }

    #[test]
    fn service_names_and_defaults() {
        for bad in ["", "system", "client"] {
            let mut config = ServerConfig {
                services: vec![service("GRR", 0), service(bad, 0)],
                ..Default::default()
            };
            assert_eq!(
                services(&mut config).map_err(|e| e.to_string()),
                Err(format!("services[1]: illegal service name [{bad}]"))
            );
        }
        let mut dup = ServerConfig {
            services: vec![service("GRR", 0), service("GRR", 5)],
            ..Default::default()
        };
        assert_eq!(
            services(&mut dup),
            Err(ValidationError::DuplicateServiceName {
                index: 1,
                name: "GRR".into()
            })
        );
        // `server` is not reserved, whatever the proto comment says.
        let mut ok = ServerConfig {
            services: vec![service("server", 0), service("b", 7)],
            ..Default::default()
        };
        assert_eq!(services(&mut ok), Ok(()));
        let max: Vec<u32> = ok.services.iter().map(|s| s.max_parallelism).collect();
        assert_eq!(max, [100, 7]);
        assert_eq!(
            ok.broadcast_poll_time,
            Some(prost_types::Duration {
                seconds: 60,
                nanos: 0
            })
        );
    }

    #[test]
    fn broadcast_poll_time_is_clamped() {
        for (given, want) in [
            ((0, 0), 1),
            ((0, 500_000_000), 1),
            ((-5, 0), 1),
            ((7, 0), 7),
        ] {
            let mut config = ServerConfig {
                services: vec![],
                broadcast_poll_time: Some(prost_types::Duration {
                    seconds: given.0,
                    nanos: given.1,
                }),
                ..Default::default()
            };
            assert_eq!(services(&mut config), Ok(()));
            assert_eq!(
                config.broadcast_poll_time,
                Some(prost_types::Duration {
                    seconds: want,
                    nanos: 0
                })
            );
        }
    }

    #[test]
    fn retry_policies_and_expiry_name_the_field_that_cannot_work() {
        use fleetgate_pb::fleetgate::lifecycle::v1::{ClientMessageExpiry, RetryPolicy};
        let with_policy = |p: RetryPolicy| ServerConfig {
            services: vec![
                service("GRR", 0),
                ServiceConfig {
                    retry_policy: Some(p),
                    ..service("Foo", 0)
                },
            ],
            ..Default::default()
        };
        let secs = |s: i64| {
            Some(prost_types::Duration {
                seconds: s,
                nanos: 0,
            })
        };
        for (policy, want) in [
            (
                RetryPolicy {
                    max_attempts: Some(0),
                    ..Default::default()
                },
                "services[1] \"Foo\": retry_policy.max_attempts: must be at least 1 (leave it out to retry without limit)",
            ),
            (
                RetryPolicy {
                    max_age: secs(-5),
                    ..Default::default()
                },
                "services[1] \"Foo\": retry_policy.max_age: is negative (-5s); durations here are at least 0",
            ),
            (
                RetryPolicy {
                    backoff_multiplier: Some(0.5),
                    ..Default::default()
                },
                "services[1] \"Foo\": retry_policy.backoff_multiplier: 0.5 is not a number of at least 1 (1 keeps the wait constant)",
            ),
        ] {
            let mut config = with_policy(policy);
            assert_eq!(
                services(&mut config).map_err(|e| e.to_string()),
                Err(want.to_owned())
            );
        }
        let mut ok = with_policy(RetryPolicy {
            max_attempts: Some(3),
            initial_backoff: secs(1),
            backoff_multiplier: Some(1.0),
            ..Default::default()
        });
        assert_eq!(services(&mut ok), Ok(()));

        let expiry = |service: &str, s: i64| ClientMessageExpiry {
            service: service.into(),
            max_age: secs(s),
        };
        for (list, want) in [
            (
                vec![expiry("", 60), expiry("GRR", 5), expiry("", 7)],
                "client_message_expiry[2]: a second default (service empty); give it once",
            ),
            (
                vec![expiry("GRR", 5), expiry("GRR", 7)],
                "client_message_expiry[1]: service \"GRR\" is given twice",
            ),
            (
                vec![expiry("GRR", -1)],
                "client_message_expiry[0]: max_age is negative (-1s); durations here are at least 0",
            ),
        ] {
            let mut config = ServerConfig {
                client_message_expiry: list,
                ..Default::default()
            };
            assert_eq!(
                services(&mut config).map_err(|e| e.to_string()),
                Err(want.to_owned())
            );
        }
    }
}
