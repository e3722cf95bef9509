//! Which clients hold a stream on this server, and how to wake them.
//!
//! One entry per client ID. A newer stream for the same client replaces the older one, which is
//! told to stop pushing (it still reads and acks), as in the original.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fleetgate_types::ClientId;
use tokio::sync::Notify;

/// The wake-up handle of one stream.
#[derive(Debug, Default)]
pub struct StreamSignal {
    /// Holds at most one stored permit, so a wake-up that arrives while the stream is fetching is
    /// not lost: the next wait returns at once.
    pub wake: Notify,
    /// Set when a newer stream for the same client took over.
    pub superseded: AtomicBool,
}

impl StreamSignal {
    pub fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
pub struct StreamRegistry {
    streams: Mutex<HashMap<ClientId, Arc<StreamSignal>>>,
}

impl StreamRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new stream for `client`, superseding any older one.
    pub fn register(&self, client: ClientId) -> Arc<StreamSignal> {
        let signal = Arc::new(StreamSignal::default());
        let old = self.lock().insert(client, signal.clone());
        if let Some(old) = old {
            old.superseded.store(true, Ordering::Release);
            old.wake.notify_one();
        }
        signal
    }

    /// Removes the stream, unless a newer one already replaced it.
    pub fn unregister(&self, client: ClientId, signal: &Arc<StreamSignal>) {
        let mut streams = self.lock();
        if streams.get(&client).is_some_and(|s| Arc::ptr_eq(s, signal)) {
            streams.remove(&client);
        }
    }

    /// Wakes the client's stream; returns whether this server holds one.
    pub fn notify(&self, client: ClientId) -> bool {
        match self.lock().get(&client) {
            Some(s) => {
                s.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Wakes every stream (new broadcasts, shutdown).
    pub fn notify_all(&self) {
        for s in self.lock().values() {
            s.wake.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, Arc<StreamSignal>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_stream_supersedes_older() {
        let r = StreamRegistry::new();
        let c = ClientId::new([1; 8]);
        let a = r.register(c);
        let b = r.register(c);
        assert!(a.is_superseded());
        assert!(!b.is_superseded());
        r.unregister(c, &a);
        assert!(r.notify(c), "the newer stream must stay registered");
        r.unregister(c, &b);
        assert!(!r.notify(c));
    }
}
