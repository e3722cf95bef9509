//! Telling the server that holds a client's stream that the client has new messages
//! (notifications.md). The engine wakes streams it holds itself; for a stream held elsewhere it
//! asks a [`Notifier`], which `fleetgate-notify` implements over HTTP.
//!
//! The insert that causes a notification does not wait for it: the message is already stored
//! when the notification is sent, and a lost or late notification only delays delivery until the
//! client's next fetch. So the caller's answer depends on the commit alone, not on another
//! server's round trip.

use std::time::{Duration, SystemTime};

use fleetgate_pb::fleetspeak::server::Client;
use fleetgate_types::ClientId;

use crate::Engine;

/// A stream started longer ago than this has ended (streams last 10 minutes), so nobody is
/// told about it (notifications.md §5).
pub const STREAM_RECENCY: Duration = Duration::from_secs(600);

/// The address streams record when no notification listener runs (single-server installs).
pub const LOCAL: &str = "local";

/// Sends "client X has new messages" to another server.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Tells the server whose notification address is `target`. Never fails the caller: a
    /// failure is the notifier's to log and count, and the message stays queued either way.
    async fn new_message_for_client(&self, target: &str, client: ClientId);
}

/// Where a client last streamed, from its record: all that decides whether, and which server,
/// to notify. A caller that has just read the record (the admin API checks that the client
/// exists) passes this along, so the engine does not read the record again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamedTo {
    /// `last_contact_streaming_to`: a notification address, `local`, or empty for a poll.
    target: String,
    /// When that contact, the stream's start, was recorded.
    started: Option<SystemTime>,
}

impl From<&Client> for StreamedTo {
    fn from(record: &Client) -> Self {
        Self {
            target: record.last_contact_streaming_to.clone(),
            started: record
                .last_contact_time
                .and_then(|t| SystemTime::try_from(t).ok()),
        }
    }
}

impl Engine {
    /// Installs the notifier used for streams held by other servers. Set once, at start-up.
    pub fn set_notifier(&self, notifier: std::sync::Arc<dyn Notifier>) {
        if self.inner.notifier.set(notifier).is_err() {
            tracing::warn!("a notifier was already installed; keeping the first");
        }
    }

    /// Notification tasks not yet finished (lookups and sends after an insert).
    pub fn notifications_in_flight(&self) -> usize {
        self.inner.notifications.len()
    }

    /// At shutdown: waits up to `within` for the notifications of inserts already answered, so
    /// a stopping admin server still wakes the streams it stored messages for. Returns how many
    /// were still running.
    pub async fn finish_notifications(&self, within: Duration) -> usize {
        let tracker = &self.inner.notifications;
        tracker.close();
        if tokio::time::timeout(within, tracker.wait()).await.is_ok() {
            return 0;
        }
        tracker.len()
    }

    /// After messages for `clients` were stored and their streams are not held here: tells the
    /// server holding each stream, in a task of its own so that the insert answers without
    /// waiting. A client without a known record has it read first, in that task. One task per
    /// call, sending in order, so a batch insert opens no more connections than a single one.
    pub(crate) fn notify_elsewhere(&self, clients: Vec<(ClientId, Option<StreamedTo>)>) {
        let Some(notifier) = self.inner.notifier.get().cloned() else {
            return;
        };
        if clients.is_empty() {
            return;
        }
        let engine = self.clone();
        self.inner.notifications.spawn(async move {
            for (client, known) in clients {
                let streamed = match known {
                    Some(s) => s,
                    None => match engine.streamed_to(client).await {
                        Some(s) => s,
                        None => continue,
                    },
                };
                if let Some(target) = engine.target(&streamed) {
                    notifier.new_message_for_client(target, client).await;
                }
            }
        });
    }

    /// Reads where `client` last streamed; `None` when it has no record or the read failed.
    async fn streamed_to(&self, client: ClientId) -> Option<StreamedTo> {
        match self.inner.store.list_clients(&[client]).await {
            Ok(v) if v.len() == 1 => Some(StreamedTo::from(&v[0])),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(%client, error = %e, "looking up where the client streams");
                None
            }
        }
    }

    /// The server to notify about a client that last streamed as `s`, if any.
    fn target<'s>(&self, s: &'s StreamedTo) -> Option<&'s str> {
        let target = s.target.as_str();
        // Polling clients record no target; `local` and our own address mean "this server",
        // which was already checked.
        if target.is_empty() || target == LOCAL || target == self.inner.config.streaming_to {
            return None;
        }
        let now = self.inner.clock.now();
        let recent = s
            .started
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() < STREAM_RECENCY);
        recent.then_some(target)
    }
}
