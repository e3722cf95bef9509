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

    /// Wakes every stream at once (shutdown).
    pub fn notify_all(&self) {
        for s in self.lock().values() {
            s.wake.notify_one();
        }
    }

    /// Wakes every stream held now, `batch` at a time, one batch per `every`, the first at
    /// once. Each woken stream reads the store, so waking tens of thousands together (a new
    /// broadcast) would hit the database with as many queries in the same instant; the original
    /// paces this too. A stream that has ended meanwhile is woken harmlessly.
    pub async fn notify_all_paced(&self, batch: usize, every: std::time::Duration) {
        let signals: Vec<Arc<StreamSignal>> = self.lock().values().cloned().collect();
        let mut batches = signals.chunks(batch.max(1)).peekable();
        while let Some(b) = batches.next() {
            for s in b {
                s.wake.notify_one();
            }
            if batches.peek().is_some() {
                tokio::time::sleep(every).await;
            }
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
    use std::time::Duration;

    use futures::FutureExt as _;

    use super::*;

    fn woken(s: &StreamSignal) -> bool {
        s.wake.notified().now_or_never().is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn paced_wake_reaches_every_stream_a_batch_at_a_time() {
        let r = Arc::new(StreamRegistry::new());
        let signals: Vec<_> = (0..5u8)
            .map(|i| r.register(ClientId::new([i; 8])))
            .collect();
        let every = Duration::from_millis(100);
        let task = tokio::spawn({
            let r = r.clone();
            async move { r.notify_all_paced(2, every).await }
        });
        tokio::task::yield_now().await;
        let count = || signals.iter().filter(|s| woken(s)).count();
        assert_eq!(count(), 2, "the first batch at once");
        // Both timers fire at the same paused instant; the yield lets the waker's run first.
        tokio::time::sleep(every).await;
        tokio::task::yield_now().await;
        assert_eq!(count(), 2, "the second batch one interval later");
        tokio::time::sleep(every).await;
        tokio::task::yield_now().await;
        assert_eq!(count(), 1, "the rest");
        task.await.unwrap();
    }

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
