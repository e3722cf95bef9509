//! The router hook: one optional [`Router`] sees every valid message from a client before it
//! goes to a service, and says where copies of it go.
//!
//! What the engine does with the answer (all decided here, so a router cannot break the
//! message lifecycle):
//!
//! * **One entry**: the message goes to that destination with those annotations, keeping its
//!   ID — the stored row shows where it was routed.
//! * **Several entries (fan-out)**: copy 0 keeps the ID; copy *i* gets
//!   [`MessageId::for_routed_copy`]`(id, i)`. The IDs are deterministic, so a client re-sending
//!   an unacknowledged message produces the same copies and they merge in the store.
//! * **No entry (drop)**: the message is stored processed, no service is called.
//! * **A copy addressed to a client or to no service**: that copy is stored failed.
//! * **The router fails** (an error of either kind, a trap, a timeout): *temporary*. The message
//!   is stored pending for its original service, marked [`UNROUTED`]; the backlog routes it
//!   again on the usual back-off (never dispatching it unrouted), and the marker goes when it
//!   is routed. A router never fails a client's message permanently: a bad router must not lose
//!   messages.
//!
//! The payload, source and ID are the engine's: the router only chooses destinations and
//! annotations ([`Routed`]).

use std::sync::Arc;

use async_trait::async_trait;
use fleetgate_pb::fleetspeak::{Address, Annotations, Message, annotations::Entry};
use fleetgate_types::MessageId;
use futures::future::join_all;

use crate::Engine;
use crate::ingest::apply_outcome;
use crate::lifecycle::Settled;
use crate::service::{Outcome, ServiceError};
use crate::trace::StepKind;
use fleetgate_types::message::destination_service;

/// Annotation key marking a message whose routing failed; the backlog routes it again.
pub const UNROUTED: &str = "fleetgate.unrouted";

/// One output of a router: where a copy goes and the annotations it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub destination: Address,
    pub annotations: Option<Annotations>,
}

/// Decides where messages from clients go. Called concurrently for every valid client message
/// (the plugin runtime implements it for router components).
#[async_trait]
pub trait Router: Send + Sync + 'static {
    /// The copies `message` becomes; empty drops it. Any error keeps the message pending.
    async fn route(&self, message: &Message) -> Result<Vec<Routed>, ServiceError>;

    /// The router's version for the message trace (a component's digest); `None` by default.
    fn version(&self) -> Option<String> {
        None
    }
}

impl Engine {
    /// Installs (or, with `None`, removes) the router. Messages being routed finish with the
    /// router they started with.
    pub fn set_router(&self, router: Option<Arc<dyn Router>>) {
        *self.inner.router.write().unwrap_or_else(|p| p.into_inner()) = router;
    }

    fn router(&self) -> Option<Arc<dyn Router>> {
        self.inner
            .router
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Routes a fresh client message and processes each copy; returns the rows to store, each
    /// with its outcome. Without a router this is just [`Engine::process_fresh`].
    pub(crate) async fn dispatch_fresh(&self, mut m: Message) -> Vec<Settled> {
        let Some(router) = self.router() else {
            return vec![self.process_fresh(m).await];
        };
        let id = hex::encode(&m.message_id);
        match router.route(&m).await {
            Ok(copies) if copies.is_empty() => {
                tracing::debug!(id, "router dropped the message");
                self.trace_routed(&router, &m, || {
                    "dropped: stored processed, no service called".into()
                });
                apply_outcome(&mut m, Outcome::Processed, self.inner.clock.now());
                vec![Settled::Keep {
                    message: m,
                    due: None,
                }]
            }
            Ok(copies) => {
                let copies: Vec<Message> = copies
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| copy(&m, i, r))
                    .collect();
                self.trace_copies(&router, &m, &copies);
                join_all(copies.into_iter().map(|c| self.process_copy(c))).await
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "router failed; the message waits for the backlog");
                self.trace_message(&m, || StepKind::Retried {
                    service: destination_service(&m).to_owned(),
                    reason: format!("router: {e}"),
                });
                mark_unrouted(&mut m);
                // Never dead-lettered, whatever the service's policy: a bad router must not
                // lose messages.
                apply_outcome(
                    &mut m,
                    Outcome::Retry(format!("router: {e}")),
                    self.inner.clock.now(),
                );
                vec![Settled::Keep {
                    message: m,
                    due: None,
                }]
            }
        }
    }

    fn trace_routed(&self, router: &Arc<dyn Router>, m: &Message, to: impl FnOnce() -> String) {
        self.trace_message(m, || StepKind::Routed {
            to: to(),
            router: router.version(),
        });
    }

    /// The original's step names every copy; each copy made under a new ID gets its own.
    fn trace_copies(&self, router: &Arc<dyn Router>, m: &Message, copies: &[Message]) {
        if !self.is_tracing() {
            return;
        }
        let to = |c: &Message| match c.destination.as_ref() {
            Some(d) if !d.client_id.is_empty() => format!("client {}", hex::encode(&d.client_id)),
            Some(d) => format!("service {}", d.service_name),
            None => "nowhere".into(),
        };
        let list: Vec<String> = copies
            .iter()
            .enumerate()
            .map(|(i, c)| match i {
                0 => to(c),
                _ => format!("{} as copy {}", to(c), hex::encode(&c.message_id)),
            })
            .collect();
        self.trace_routed(router, m, || format!("to {}", list.join(", ")));
        for (i, c) in copies.iter().enumerate().skip(1) {
            self.trace_routed(router, c, || {
                format!("copy {i} of {} to {}", hex::encode(&m.message_id), to(c))
            });
        }
    }

    async fn process_copy(&self, c: Message) -> Settled {
        let dest = c.destination.as_ref();
        let invalid = match dest {
            Some(d) if !d.client_id.is_empty() => Some("the router addressed it to a client"),
            Some(d) if d.service_name.is_empty() => Some("the router gave it no service"),
            None => Some("the router gave it no destination"),
            Some(_) => None,
        };
        match invalid {
            Some(why) => {
                self.trace_message(&c, || StepKind::Failed {
                    service: "router".into(),
                    version: None,
                    error: why.into(),
                });
                self.settle(c, Outcome::Failed(why.into()), 1, None)
            }
            None => self.process_fresh(c).await,
        }
    }

    /// The labels of `client` (all services'), from the 45-second client cache or the store;
    /// `None` for an unknown client or when the store cannot say. What routers see through the
    /// `clients` capability.
    pub async fn client_labels(
        &self,
        client: fleetgate_types::ClientId,
    ) -> Option<Vec<fleetgate_pb::fleetspeak::Label>> {
        if let Some(d) = self.inner.cache.get(client) {
            return Some(d.labels);
        }
        let d = self.inner.store.get_client_data(client).await.ok()?;
        let labels = d.labels.clone();
        self.inner.cache.put(client, d);
        Some(labels)
    }

    /// For the backlog: a message marked [`UNROUTED`] is routed now (marker removed) and the
    /// rows to store are returned; any other message is left alone (`None`).
    pub(crate) async fn route_from_backlog(&self, m: &Message) -> Option<Vec<Settled>> {
        let entries = &m.annotations.as_ref()?.entries;
        if !entries.iter().any(|e| e.key == UNROUTED) {
            return None;
        }
        let mut m = m.clone();
        if let Some(a) = m.annotations.as_mut() {
            a.entries.retain(|e| e.key != UNROUTED);
        }
        m.result = None;
        Some(self.dispatch_fresh(m).await)
    }
}

/// Copy `index` of `m`, addressed and annotated as the router said.
fn copy(m: &Message, index: usize, r: Routed) -> Message {
    let mut c = m.clone();
    if index > 0 {
        let original = MessageId::from_bytes(&m.message_id);
        // Client messages always carry a valid ID (set in validation); u32 copies is plenty.
        if let (Ok(original), Ok(i)) = (original, u32::try_from(index)) {
            c.message_id = MessageId::for_routed_copy(original, i).to_vec();
        }
    }
    c.destination = Some(r.destination);
    c.annotations = r.annotations;
    c
}

fn mark_unrouted(m: &mut Message) {
    m.annotations
        .get_or_insert_with(Annotations::default)
        .entries
        .push(Entry {
            key: UNROUTED.into(),
            value: "1".into(),
        });
}
