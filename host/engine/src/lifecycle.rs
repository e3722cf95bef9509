//! Every message has an end: per-service retry policies, dead letters, expiry of client-bound
//! messages, and replay.
//!
//! * A processing attempt ends in one of three ways ([`Settled`]): the message is finished
//!   (processed, stored with its result), it waits for another attempt (pending, due per the
//!   service's back-off), or it is **dead**: failed permanently, out of attempts, or older than
//!   its policy allows. A dead message is stored failed (so `GetMessageStatus` answers as
//!   Fleetspeak does) and kept with its payload in the dead letters, in one transaction.
//! * Client-bound messages older than their service's expiry (or the server-wide default) are
//!   never handed out: delivery checks each leased message, and a sweep
//!   ([`Engine::run_expiry`]) moves those of clients that never come back.
//! * Replay ([`Engine::replay_dead_letters`]) queues dead messages again under the same ID, due
//!   now, through the service's current version; a letter replayed once is no longer dead, so a
//!   second replay does nothing and the message is processed once.
//!
//! Defaults keep Fleetspeak's behaviour: unlimited attempts on the original's back-off, no
//! expiry. What changes even then is only that a permanently failed message keeps its payload in
//! the dead letters, where it can be replayed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fleetgate_pb::fleetspeak::Message;
use fleetgate_store::{DeadLetter, DeadLetterQuery, DeadReason, Replayed, StoreError};
use fleetgate_types::message::{destination_client, destination_service};
use fleetgate_types::time::from_timestamp;
use fleetgate_types::{ClientId, ContactId, MessageId};
use tokio_util::sync::CancellationToken;

use crate::ingest::apply_outcome;
use crate::service::Outcome;
use crate::trace::StepKind;
use crate::{Engine, EngineError};

/// The original's back-off: 60 s × 1.1ⁿ, times U[1, 2).
pub const FLEETSPEAK_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(60),
    multiplier: 1.1,
    max: None,
};

/// How long the wait before retry `n` (0 for the first retry) is: `initial × multiplierⁿ`, at most
/// `max`, times a random factor in [1, 2) so that retries of many messages spread out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        FLEETSPEAK_BACKOFF
    }
}

impl Backoff {
    /// When retry `n` (0 for the first retry) is due.
    pub fn next_due(&self, now: SystemTime, n: u32) -> SystemTime {
        let jitter: f64 = rand::random();
        let base = self.initial.as_secs_f64() * self.multiplier.powi(n.min(400) as i32);
        let base = match self.max {
            Some(max) => base.min(max.as_secs_f64()),
            None => base,
        };
        // Capped at a year, whatever the policy says, so the arithmetic cannot overflow.
        let secs = (base * (1.0 + jitter)).clamp(0.0, 365.0 * 86400.0);
        now + Duration::from_secs_f64(secs)
    }
}

/// How a server service's messages are retried, and when they give up.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; `None`: unlimited (Fleetspeak).
    pub max_attempts: Option<u32>,
    /// A message older than this is not retried again; `None`: no limit (Fleetspeak).
    pub max_age: Option<Duration>,
    pub backoff: Backoff,
}

/// When client-bound messages stop being delivered: per destination service, else the default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expiry {
    /// For services not listed; `None`: never (Fleetspeak).
    pub default: Option<Duration>,
    /// Per destination service; `None` exempts a service from the default.
    pub services: BTreeMap<String, Option<Duration>>,
}

impl Expiry {
    /// Whether any message can expire.
    pub fn is_off(&self) -> bool {
        self.default.is_none() && self.services.values().all(Option::is_none)
    }

    /// The maximum age of messages to `service`.
    pub fn max_age(&self, service: &str) -> Option<Duration> {
        match self.services.get(service) {
            Some(age) => *age,
            None => self.default,
        }
    }
}

/// How often the expiry sweep looks for expired messages, and how many it moves per statement.
const EXPIRY_TICK: Duration = Duration::from_secs(5);
const EXPIRY_BATCH: usize = 500;

/// One processed message, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Settled {
    /// Stored with its result (finished) or without (pending); a pending server-bound message
    /// is due at `due` if its service's back-off says so, else at the store's default.
    Keep {
        message: Message,
        due: Option<SystemTime>,
    },
    /// Moved to the dead letters.
    Dead(DeadLetter),
}

impl Settled {
    /// The message as it will be stored (a dead one with its payload).
    pub(crate) fn message(&self) -> &Message {
        match self {
            Settled::Keep { message, .. } => message,
            Settled::Dead(l) => &l.message,
        }
    }
}

fn age(m: &Message, now: SystemTime) -> Duration {
    m.creation_time
        .as_ref()
        .and_then(from_timestamp)
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

impl Engine {
    /// What attempt number `attempts` with `outcome` means for `m` under its service's policy.
    pub(crate) fn settle(
        &self,
        mut m: Message,
        outcome: Outcome,
        attempts: u32,
        plugin: Option<String>,
    ) -> Settled {
        let now = self.inner.clock.now();
        let policy = self
            .service(destination_service(&m))
            .map(|e| e.policy)
            .unwrap_or_default();
        let dead = |m: Message, reason, last_error: String| {
            Settled::Dead(DeadLetter {
                message: m,
                reason,
                last_error,
                plugin: plugin.clone().unwrap_or_default(),
                attempts,
            })
        };
        match outcome {
            Outcome::Failed(why) => dead(m, DeadReason::Permanent, why),
            Outcome::Retry(why) if policy.max_attempts.is_some_and(|n| attempts >= n) => dead(
                m,
                DeadReason::Exhausted,
                format!("{why} (after {attempts} attempts)"),
            ),
            Outcome::Retry(why) if policy.max_age.is_some_and(|max| age(&m, now) > max) => {
                let old = age(&m, now).as_secs();
                dead(
                    m,
                    DeadReason::MaxAge,
                    format!("{why} (created {old} s ago)"),
                )
            }
            outcome @ Outcome::Retry(_) => {
                apply_outcome(&mut m, outcome, now);
                let due = (policy.backoff != FLEETSPEAK_BACKOFF)
                    .then(|| policy.backoff.next_due(now, attempts.saturating_sub(1)));
                Settled::Keep { message: m, due }
            }
            Outcome::Processed => {
                apply_outcome(&mut m, Outcome::Processed, now);
                Settled::Keep {
                    message: m,
                    due: None,
                }
            }
        }
    }

    /// Stores processed messages: the kept ones (linked to the contact they came in, if they
    /// came from a client) in one transaction, the dead ones in another, then any back-off of
    /// the service's own. Returns once all of it is durable. Messages from a client are traced
    /// as stored before any is traced as dead-lettered.
    pub(crate) async fn store_settled(
        &self,
        settled: Vec<Settled>,
        from: Option<(ClientId, ContactId)>,
    ) -> Result<(), StoreError> {
        let traced: Vec<MessageId> = match from {
            Some(_) if self.is_tracing() => settled
                .iter()
                .filter_map(|s| MessageId::from_bytes(&s.message().message_id).ok())
                .collect(),
            _ => Vec::new(),
        };
        let mut keep = Vec::with_capacity(settled.len());
        let mut dead = Vec::new();
        let mut due = Vec::new();
        for s in settled {
            match s {
                Settled::Keep { message, due: d } => {
                    if let (Some(d), Ok(id)) = (d, MessageId::from_bytes(&message.message_id)) {
                        due.push((id, d));
                    }
                    keep.push(message);
                }
                Settled::Dead(l) => dead.push(l),
            }
        }
        if !keep.is_empty() {
            self.inner
                .store
                .store_messages(&keep, from.map(|(_, contact)| contact))
                .await?;
        }
        if let Some((client, contact)) = from {
            for id in traced {
                self.trace(id, StepKind::StoredFromClient { client, contact });
            }
        }
        self.dead_letter(dead).await?;
        if !due.is_empty() {
            self.inner.store.reschedule_server_messages(&due).await?;
        }
        Ok(())
    }

    /// Moves messages to the dead letters, logging and counting each; returns how many moved
    /// (a message finished meanwhile stays finished).
    pub(crate) async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<usize, StoreError> {
        if letters.is_empty() {
            return Ok(0);
        }
        let moved = self.inner.store.dead_letter(&letters).await?;
        for l in letters.iter().filter(|l| {
            MessageId::from_bytes(&l.message.message_id).is_ok_and(|id| moved.contains(&id))
        }) {
            let service = destination_service(&l.message);
            tracing::info!(
                id = %hex::encode(&l.message.message_id),
                service,
                reason = %l.reason,
                attempts = l.attempts,
                error = %l.last_error,
                "message dead-lettered"
            );
            if let Some(m) = self.metrics() {
                m.message_dead_lettered(service, l.reason.as_str());
            }
            self.trace_message(&l.message, || {
                StepKind::DeadLettered(format!(
                    "{}: {} ({} attempts)",
                    l.reason, l.last_error, l.attempts
                ))
            });
        }
        Ok(moved.len())
    }

    /// The leased client-bound messages that are still deliverable; the expired ones go to the
    /// dead letters instead of to the client.
    pub(crate) async fn drop_expired(
        &self,
        msgs: Vec<Message>,
    ) -> Result<Vec<Message>, StoreError> {
        let expiry = &self.inner.config.expiry;
        if expiry.is_off() {
            return Ok(msgs);
        }
        let now = self.inner.clock.now();
        let (expired, live): (Vec<Message>, Vec<Message>) = msgs.into_iter().partition(|m| {
            expiry
                .max_age(destination_service(m))
                .is_some_and(|max| age(m, now) > max)
        });
        self.dead_letter(
            expired
                .into_iter()
                .map(|m| self.expired_letter(m, now, "leased for delivery"))
                .collect(),
        )
        .await?;
        Ok(live)
    }

    /// Moves expired client-bound messages to the dead letters every few seconds, until
    /// `shutdown`: messages of clients that never come back end too.
    pub async fn run_expiry(&self, shutdown: CancellationToken) {
        if self.inner.config.expiry.is_off() {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EXPIRY_TICK) => {}
            }
            if let Err(e) = self.expire_once().await {
                tracing::warn!(error = %e, "expiring client messages failed; trying again later");
            }
        }
    }

    /// One sweep; returns how many messages expired.
    pub async fn expire_once(&self) -> Result<usize, StoreError> {
        let expiry = &self.inner.config.expiry;
        let now = self.inner.clock.now();
        let listed: Vec<String> = expiry.services.keys().cloned().collect();
        let mut groups: Vec<(Option<&str>, Duration)> = expiry
            .services
            .iter()
            .filter_map(|(s, age)| age.map(|a| (Some(s.as_str()), a)))
            .collect();
        if let Some(d) = expiry.default {
            groups.push((None, d));
        }
        let mut total = 0;
        for (service, max_age) in groups {
            let Some(before) = now.checked_sub(max_age) else {
                continue;
            };
            loop {
                let batch = self
                    .inner
                    .store
                    .expiring_client_messages(service, &listed, before, EXPIRY_BATCH)
                    .await?;
                let n = batch.len();
                let moved = self
                    .dead_letter(
                        batch
                            .into_iter()
                            .map(|m| self.expired_letter(m, now, "found by the expiry sweep"))
                            .collect(),
                    )
                    .await?;
                total += moved;
                // A full batch of which nothing moved would be read again forever.
                if n < EXPIRY_BATCH || moved == 0 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Dead letters matching `query`.
    pub async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<fleetgate_store::DeadLetterInfo>, StoreError> {
        self.inner.store.list_dead_letters(query).await
    }

    /// One dead letter with its message.
    pub async fn dead_letter_info(
        &self,
        id: MessageId,
    ) -> Result<Option<fleetgate_store::DeadLetterInfo>, StoreError> {
        self.inner.store.get_dead_letter(id).await
    }

    /// Deletes the dead letters matching `query`; returns how many.
    pub async fn purge_dead_letters(&self, query: &DeadLetterQuery) -> Result<u64, StoreError> {
        self.inner.store.purge_dead_letters(query).await
    }

    /// Queues dead messages again (same IDs, due now) and wakes their clients' streams; a letter
    /// that is not dead (unknown, replayed already) is reported in `not_dead` and left alone.
    /// Server-bound messages go through the backlog, so through the service's current version.
    pub async fn replay_dead_letters(&self, ids: &[MessageId]) -> Result<Replayed, EngineError> {
        let replayed = self.inner.store.replay_dead_letters(ids).await?;
        let mut clients: Vec<ClientId> = replayed
            .replayed
            .iter()
            .filter_map(|m| destination_client(m).ok().flatten())
            .collect();
        clients.sort();
        clients.dedup();
        // Where each client streams is not known here; the notifier asks every other server.
        self.wake(clients.into_iter().map(|c| (c, None)));
        for m in &replayed.replayed {
            tracing::info!(id = %hex::encode(&m.message_id), service = destination_service(m), "dead letter replayed");
            self.trace_message(m, || {
                StepKind::Replayed(match destination_client(m).ok().flatten() {
                    Some(c) => format!("pending again for client {c}"),
                    None => format!(
                        "pending again for service {}, through its current version",
                        destination_service(m)
                    ),
                })
            });
        }
        Ok(replayed)
    }

    /// The dead letter of an expired message (`how` it was found), its expiry traced.
    fn expired_letter(&self, m: Message, now: SystemTime, how: &str) -> DeadLetter {
        let old = age(&m, now).as_secs();
        let why = format!("not delivered within its expiry (created {old} s ago)");
        self.trace_message(&m, || StepKind::Expired(format!("{why}; {how}")));
        DeadLetter {
            message: m,
            reason: DeadReason::Expired,
            last_error: why,
            plugin: String::new(),
            attempts: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_back_off_is_fleetspeaks() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for n in [0, 1, 10] {
            let due = FLEETSPEAK_BACKOFF.next_due(now, n);
            let wait = due.duration_since(now).unwrap().as_secs_f64();
            let base = 60.0 * 1.1f64.powi(n as i32);
            assert!(wait >= base && wait < 2.0 * base, "retry {n}: {wait} s");
        }
    }

    #[test]
    fn a_back_off_stops_growing_at_its_maximum() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Some(Duration::from_secs(10)),
        };
        let now = SystemTime::UNIX_EPOCH;
        let wait = b.next_due(now, 30).duration_since(now).unwrap();
        assert!(wait >= Duration::from_secs(10) && wait < Duration::from_secs(20));
    }

    #[test]
    fn expiry_per_service_overrides_the_default() {
        let mut e = Expiry::default();
        assert!(e.is_off());
        e.default = Some(Duration::from_secs(60));
        e.services
            .insert("GRR".into(), Some(Duration::from_secs(5)));
        e.services.insert("Keep".into(), None);
        assert!(!e.is_off());
        assert_eq!(e.max_age("GRR"), Some(Duration::from_secs(5)));
        assert_eq!(e.max_age("Keep"), None);
        assert_eq!(e.max_age("Other"), Some(Duration::from_secs(60)));
    }
}
