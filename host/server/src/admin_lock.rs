//! The locked admin listener: the config crate's policy turned into the admin crate's, and the
//! TLS acceptor built before the server says it started, so a bad file fails the start.

use anyhow::{Context, Result};
use fleetgate_admin::lock::{Matcher, Policy, Rpcs, Rule, Services};
use fleetgate_admin::{Lock, LockConfig};
use fleetgate_config::admin_lock::{AdminLockSettings, AdminPolicy, PolicyMatcher};

pub fn build(s: &AdminLockSettings) -> Result<Lock> {
    let lock = Lock::new(LockConfig {
        cert_chain_pem: s.cert_pem.clone(),
        key_pem: s.key_pem.clone(),
        client_ca_pem: s.client_ca_pem.clone(),
        policy: policy(&s.policy),
    })
    .context("the locked admin listener (-admin_cert, -admin_key, -admin_client_ca)")?;
    tracing::info!(
        policy = %s.policy_file.display(),
        identities = s.policy.identities.len(),
        "admin policy loaded"
    );
    Ok(lock)
}

fn policy(p: &AdminPolicy) -> Policy {
    Policy::new(
        p.identities
            .iter()
            .map(|i| Rule {
                name: i.name.clone(),
                matcher: match &i.matcher {
                    PolicyMatcher::Subject(s) => Matcher::Subject(s.clone()),
                    PolicyMatcher::SpkiSha256(h) => Matcher::Spki(*h),
                },
                rpcs: i.rpcs.clone().map_or(Rpcs::All, Rpcs::Only),
                services: i.services.clone().map_or(Services::Any, Services::Only),
            })
            .collect(),
    )
}
