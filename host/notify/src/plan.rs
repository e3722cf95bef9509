//! Which listener and notifier a components config asks for (notifications.md §2).

use std::sync::Arc;

use fleetgate_engine::Notifier;
use fleetgate_engine::notifier::LOCAL;
use fleetgate_pb::fleetspeak::components;

use crate::client::{DEFAULT_TIMEOUT, HttpNotifier, InProcessNotifier};
use crate::listener::Listener;
use crate::{NotifyError, Stats};

/// The notification set-up of one process, with the listener already bound.
pub struct Plan {
    /// Bound when `notification_listen_address` is set; serve it once the engine exists.
    pub listener: Option<Listener>,
    /// What this server's streams record as `last_contact_streaming_to`.
    pub streaming_to: String,
    /// What `InsertMessage` uses for streams held by other servers.
    pub notifier: Arc<dyn Notifier>,
    pub stats: Arc<Stats>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("listener", &self.listener)
            .field("streaming_to", &self.streaming_to)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// | listen address | `use_http_notifier` | listener | streams record | notifier |
    /// |---|---|---|---|---|
    /// | set | any | HTTP | public address, else the bound address | HTTP |
    /// | empty | false | in-process | `local` | in-process |
    /// | empty | true | in-process | `local` | HTTP (admin-only servers) |
    ///
    /// With a `secret`, the notifier sends it and the listener requires it.
    pub async fn from_config(
        c: &components::Config,
        secret: Option<&str>,
    ) -> Result<Plan, NotifyError> {
        let stats = Arc::new(Stats::default());
        let http: Arc<dyn Notifier> =
            Arc::new(HttpNotifier::new(DEFAULT_TIMEOUT, stats.clone()).with_secret(secret));
        if !c.notification_listen_address.is_empty() {
            let listener = Listener::bind(&c.notification_listen_address)
                .await?
                .with_secret(secret.map(str::to_owned));
            let streaming_to = if c.notification_public_address.is_empty() {
                listener.local_addr().to_string()
            } else {
                c.notification_public_address.clone()
            };
            tracing::info!(listen = %listener.local_addr(), advertised = %streaming_to, "notification listener bound");
            return Ok(Plan {
                listener: Some(listener),
                streaming_to,
                notifier: http,
                stats,
            });
        }
        let notifier = if c.notification_use_http_notifier {
            if c.https_config.is_some() {
                // notifications.md §2, third row: this server's own streams record `local`,
                // which no HTTP notification can reach. They are still woken in-process here.
                tracing::warn!(
                    "notification_use_http_notifier without notification_listen_address on a server with clients: other servers cannot notify its streams"
                );
            }
            http
        } else {
            Arc::new(InProcessNotifier)
        };
        Ok(Plan {
            listener: None,
            streaming_to: LOCAL.into(),
            notifier,
            stats,
        })
    }
}
