//! Built-in retention (datastore.md §4): deleting contacts, finished messages, resource usage
//! records, dead letters and message trace steps older than configured ages, so operators need no
//! cron job of hand-written DELETEs.
//!
//! Off unless asked: every age defaults to "keep forever". A pass deletes in bounded batches,
//! pausing between them, so a large first pass neither holds long locks on MySQL nor starves
//! client traffic; shutdown is checked between batches. Pending messages are never deleted.

use std::time::{Duration, SystemTime};

use fleetgate_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// How often a pass runs.
pub const INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Rows deleted per statement.
pub const BATCH: usize = 500;
/// Pause between batches of one pass, so other transactions get the database.
const BREATHER: Duration = Duration::from_millis(50);

/// How long to keep each kind of record; `None` keeps it forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Client contacts (and which messages travelled in them), by contact time.
    pub contacts: Option<Duration>,
    /// Finished messages, by creation time.
    pub messages: Option<Duration>,
    /// Resource usage records, by the time the server received them.
    pub resource_usage: Option<Duration>,
    /// Dead letters, by the time the message died (or last died).
    pub dead_letters: Option<Duration>,
    /// Message trace steps (`fleetgate_message_trace`), by the time of the step.
    pub traces: Option<Duration>,
}

impl RetentionConfig {
    /// From ages where zero means "keep forever" (the configuration's convention).
    pub fn from_ages(contacts: Duration, messages: Duration, resource_usage: Duration) -> Self {
        let age = |d: Duration| (!d.is_zero()).then_some(d);
        Self {
            contacts: age(contacts),
            messages: age(messages),
            resource_usage: age(resource_usage),
            dead_letters: None,
            traces: None,
        }
    }

    /// With trace steps kept for `traces` (zero: forever).
    pub fn with_traces(self, traces: Duration) -> Self {
        Self {
            traces: (!traces.is_zero()).then_some(traces),
            ..self
        }
    }

    /// With dead letters kept for `age` (zero: forever).
    pub fn with_dead_letters(self, age: Duration) -> Self {
        Self {
            dead_letters: (!age.is_zero()).then_some(age),
            ..self
        }
    }

    pub fn is_off(&self) -> bool {
        self.contacts.is_none()
            && self.messages.is_none()
            && self.resource_usage.is_none()
            && self.dead_letters.is_none()
            && self.traces.is_none()
    }
}

/// Rows one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub contacts: u64,
    pub messages: u64,
    pub resource_usage: u64,
    pub dead_letters: u64,
    pub traces: u64,
}

#[derive(Clone, Copy)]
enum Table {
    Contacts,
    Messages,
    ResourceUsage,
    DeadLetters,
    Traces,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Contacts => "client_contacts",
            Table::Messages => "messages",
            Table::ResourceUsage => "client_resource_usage_records",
            Table::DeadLetters => "fleetgate_dead_letters",
            Table::Traces => "fleetgate_message_trace",
        }
    }
}

impl Engine {
    /// Runs a pass every [`INTERVAL`] until `shutdown` fires; returns at once if retention is off.
    pub async fn run_retention(&self, config: RetentionConfig, shutdown: CancellationToken) {
        if config.is_off() {
            return;
        }
        tracing::info!(?config, "retention enabled");
        loop {
            match self.prune_once(&config, &shutdown).await {
                Ok(p) if p != Pruned::default() => tracing::info!(?p, "retention pass"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed; retrying next time"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }

    /// One pass over every table with an age; stops early when `shutdown` fires.
    pub async fn prune_once(
        &self,
        config: &RetentionConfig,
        shutdown: &CancellationToken,
    ) -> Result<Pruned, StoreError> {
        let now = self.inner.clock.now();
        let mut p = Pruned::default();
        // Contacts first: their links go with them, which makes the message deletes lighter.
        if let Some(age) = config.contacts {
            p.contacts = self
                .prune_table(Table::Contacts, now, age, shutdown)
                .await?;
        }
        if let Some(age) = config.messages {
            p.messages = self
                .prune_table(Table::Messages, now, age, shutdown)
                .await?;
        }
        if let Some(age) = config.resource_usage {
            p.resource_usage = self
                .prune_table(Table::ResourceUsage, now, age, shutdown)
                .await?;
        }
        if let Some(age) = config.dead_letters {
            p.dead_letters = self
                .prune_table(Table::DeadLetters, now, age, shutdown)
                .await?;
        }
        if let Some(age) = config.traces {
            p.traces = self.prune_table(Table::Traces, now, age, shutdown).await?;
        }
        Ok(p)
    }

    async fn prune_table(
        &self,
        table: Table,
        now: SystemTime,
        age: Duration,
        shutdown: &CancellationToken,
    ) -> Result<u64, StoreError> {
        let Some(before) = now.checked_sub(age) else {
            return Ok(0);
        };
        let store = &self.inner.store;
        let mut total = 0;
        while !shutdown.is_cancelled() {
            let n = match table {
                Table::Contacts => store.prune_contacts(before, BATCH).await?,
                Table::Messages => store.prune_messages(before, BATCH).await?,
                Table::ResourceUsage => store.prune_resource_usage(before, BATCH).await?,
                Table::DeadLetters => store.prune_dead_letters(before, BATCH).await?,
                Table::Traces => store.prune_trace(before, BATCH).await?,
            };
            total += n;
            if let Some(m) = self.metrics() {
                m.retention_deleted(table.name(), n);
            }
            if n < BATCH as u64 {
                break;
            }
            tokio::time::sleep(BREATHER).await;
        }
        Ok(total)
    }
}
