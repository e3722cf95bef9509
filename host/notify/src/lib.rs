//! "Client X has new messages" between servers (notifications.md).
//!
//! A client that streams to server B only looks for new messages when B is told to. When a
//! message for it is inserted on another server A (typically admin-only), A looks up where the
//! client streams (`last_contact_streaming_to`) and sends B `POST /client/<hex id>`.
//!
//! * [`client`]: [`HttpNotifier`], the sending side, and [`InProcessNotifier`] for a single
//!   server.
//! * [`listener`]: [`Listener`], the receiving side; it hands each id to a [`Dispatch`].
//! * [`fuzzing`]: the entry point for the listener's fuzz target.
//! * [`plan`]: which of them a components config asks for (§2) and the address streams record.
//!
//! The crate never sees message contents: only client ids and server addresses.
#![forbid(unsafe_code)]

pub mod client;
pub mod fuzzing;
pub mod listener;
pub mod plan;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fleetgate_types::ClientId;

pub use client::{HttpNotifier, InProcessNotifier};
pub use listener::Listener;
pub use plan::Plan;

/// The header carrying the shared secret, when one is configured: the notifier sends it and the
/// listener refuses a notification without it (401). Off by default, so Go servers can notify.
pub const SECRET_HEADER: &str = "x-fleetgate-notification-secret";

/// Wakes the local stream of a client; returns whether this server holds one.
pub type Dispatch = Arc<dyn Fn(ClientId) -> bool + Send + Sync>;

/// A dispatch into `engine`'s stream registry.
pub fn dispatch_to(engine: fleetgate_engine::Engine) -> Dispatch {
    Arc::new(move |client| engine.notify_client(client))
}

/// Why notifications could not be set up. Sending never fails its caller.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `notification_listen_address` cannot be bound (fatal at start, as in Go).
    #[error("failed to listen for notifications on [{address}]: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
}

/// Counters of one process, shared by its notifier and listener.
#[derive(Debug, Default)]
pub struct Stats {
    /// Notifications whose HTTP exchange completed (any status).
    pub sent: AtomicU64,
    /// Notifications that failed in transport (refused, DNS, timeout).
    pub failed: AtomicU64,
    /// Valid notifications received by the listener.
    pub received: AtomicU64,
    /// Received notifications for a client whose stream this server holds.
    pub dispatched: AtomicU64,
    /// Notifications refused because they lacked the configured secret.
    pub unauthorized: AtomicU64,
}

impl Stats {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Relaxed)
    }

    pub fn unauthorized(&self) -> u64 {
        self.unauthorized.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
