//! Telling the server that holds a client's stream that the client has new messages
//! (notifications.md). The engine wakes streams it holds itself; for a stream held elsewhere it
//! asks a [`Notifier`], which `fleetgate-notify` implements over HTTP.

use std::time::{Duration, SystemTime};

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

impl Engine {
    /// Installs the notifier used for streams held by other servers. Set once, at start-up.
    pub fn set_notifier(&self, notifier: std::sync::Arc<dyn Notifier>) {
        if self.inner.notifier.set(notifier).is_err() {
            tracing::warn!("a notifier was already installed; keeping the first");
        }
    }

    /// After a message for `client` was stored and its stream is not held here: finds where the
    /// client streams (its last contact) and notifies that server, if that contact is recent.
    pub(crate) async fn notify_elsewhere(&self, client: ClientId) {
        let Some(notifier) = self.inner.notifier.get() else {
            return;
        };
        let record = match self.inner.store.list_clients(&[client]).await {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(%client, error = %e, "looking up where the client streams");
                return;
            }
        };
        let target = record.last_contact_streaming_to.as_str();
        // Polling clients record no target; `local` and our own address mean "this server",
        // which was already checked.
        if target.is_empty() || target == LOCAL || target == self.inner.config.streaming_to {
            return;
        }
        let started = record
            .last_contact_time
            .and_then(|t| SystemTime::try_from(t).ok());
        let now = self.inner.clock.now();
        if started.is_none_or(|t| now.duration_since(t).unwrap_or_default() >= STREAM_RECENCY) {
            return;
        }
        notifier.new_message_for_client(target, client).await;
    }
}
