//! Who may call what on the locked admin listener: each rule names one identity (certificate
//! subject or SPKI hash), the RPCs it may call, and where its inserted messages may go.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tonic::Status;

use super::Identity;
use crate::status;

/// How a rule recognises a caller's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// The subject as [`Identity::subject`] prints it (`CN=ops, O=Example`).
    Subject(String),
    /// SHA-256 of the certificate's DER SubjectPublicKeyInfo: survives re-issuing with the same
    /// key and does not depend on how a CA spells names.
    Spki([u8; 32]),
}

/// Method names (`InsertMessage`, `PurgePendingMessages`), unique across both services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rpcs {
    All,
    Only(BTreeSet<String>),
}

/// Destination services an identity may address with `InsertMessage` and `InsertMessages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Services {
    Any,
    Only(BTreeSet<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// How logs and audit lines name this caller.
    pub name: String,
    pub matcher: Matcher,
    pub rpcs: Rpcs,
    pub services: Services,
}

/// Rules in file order; the first whose matcher fits the certificate applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    pub fn find(&self, id: &Identity) -> Option<&Rule> {
        self.rules.iter().find(|r| match &r.matcher {
            Matcher::Subject(s) => *s == id.subject,
            Matcher::Spki(h) => *h == id.spki_sha256,
        })
    }
}

impl Rpcs {
    pub fn allows(&self, method: &str) -> bool {
        match self {
            Rpcs::All => true,
            Rpcs::Only(set) => set.contains(method),
        }
    }
}

/// What an admitted call may do, put in its request extensions by the gate for the handlers.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The rule's name, or `plaintext` on the unauthenticated listener.
    pub caller: String,
    pub services: Services,
    /// What a mutating handler says it is about to change, for the gate's audit line.
    pub(crate) detail: Arc<Mutex<String>>,
}

impl Grant {
    pub(crate) fn unrestricted(caller: impl Into<String>) -> Self {
        Self::new(caller.into(), Services::Any)
    }

    pub(crate) fn new(caller: String, services: Services) -> Self {
        Self {
            caller,
            services,
            detail: Arc::default(),
        }
    }

    /// Records what a mutating call is about (`client=… service=…`) for its audit line.
    pub(crate) fn note<T>(req: &tonic::Request<T>, detail: impl FnOnce(&T) -> String) {
        if let Some(g) = req.extensions().get::<Grant>() {
            let text = detail(req.get_ref());
            *g.detail.lock().unwrap_or_else(|p| p.into_inner()) = text;
        }
    }

    pub(crate) fn detail(&self) -> String {
        self.detail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The grant of a request; a request that did not pass the gate may do nothing.
    pub(crate) fn of<T>(req: &tonic::Request<T>) -> Result<Grant, Status> {
        req.extensions()
            .get::<Grant>()
            .cloned()
            .ok_or_else(|| status::permission_denied("this call did not pass the admin gate"))
    }

    /// Refuses a message to a service the caller may not address.
    pub(crate) fn may_send_to(&self, service: &str) -> Result<(), Status> {
        match &self.services {
            Services::Any => Ok(()),
            Services::Only(set) if set.contains(service) => Ok(()),
            Services::Only(_) => {
                tracing::warn!(
                    target: crate::AUDIT_TARGET,
                    caller = %self.caller,
                    service,
                    "insert refused: service not allowed for this identity"
                );
                Err(status::permission_denied(format!(
                    "identity {:?} may not send messages to service {service:?}",
                    self.caller
                )))
            }
        }
    }
}
