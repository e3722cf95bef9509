//! Counters shared by every simulated client, and the receipt log the report is built from.
//!
//! Counters are relaxed atomics: they are only read after the clients stop (or for progress).
//! Receipts go through one mutex, held for a hash-map insert; at benchmark rates (thousands
//! per second) that is far from contention.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Everything the clients count.
#[derive(Debug, Default)]
pub struct Stats {
    /// Clients that completed at least one contact (poll or stream start).
    pub connected: AtomicU64,
    /// Successful contacts: stream starts plus polls.
    pub contacts: AtomicU64,
    /// Connection or contact attempts that failed (TCP, TLS, HTTP status, bad frames).
    pub failures: AtomicU64,
    /// Streams the server ended with `done_sending`.
    pub done_sending: AtomicU64,
    /// Streams that ended without `done_sending` (server closed, error).
    pub stream_drops: AtomicU64,
    /// Client → server data messages generated.
    pub sent: AtomicU64,
    /// Client → server data messages in frames the server acknowledged.
    pub delivered: AtomicU64,
    /// Server → client message IDs acknowledged with `MessageAck`.
    pub acks: AtomicU64,
    receipts: Mutex<Receipts>,
}

#[derive(Debug, Default)]
struct Receipts {
    /// How often each message ID arrived.
    seen: HashMap<[u8; 32], u32>,
    /// Insert → receipt of first receipts of benchmark messages.
    latencies: Vec<Duration>,
    duplicates: u64,
    total: u64,
    last: Option<Instant>,
}

/// A copy of the receipt log.
#[derive(Debug, Clone, Default)]
pub struct ReceiptSummary {
    pub total: u64,
    pub duplicates: u64,
    pub latencies: Vec<Duration>,
    pub last: Option<Instant>,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records that message `id` arrived now; `inserted_at` is the benchmark's timestamp, if
    /// the payload had one.
    pub fn received(&self, id: [u8; 32], inserted_at: Option<SystemTime>) {
        let now = SystemTime::now();
        let mut r = self.receipts.lock().unwrap_or_else(|p| p.into_inner());
        r.total += 1;
        r.last = Some(Instant::now());
        let count = r.seen.entry(id).or_default();
        *count += 1;
        if *count > 1 {
            r.duplicates += 1;
        } else if let Some(at) = inserted_at {
            // A clock step backwards would make this negative; count it as zero.
            r.latencies
                .push(now.duration_since(at).unwrap_or(Duration::ZERO));
        }
    }

    /// How many of `ids` have arrived at least once.
    pub fn count_received<'a>(&self, ids: impl IntoIterator<Item = &'a [u8; 32]>) -> usize {
        let r = self.receipts.lock().unwrap_or_else(|p| p.into_inner());
        ids.into_iter()
            .filter(|id| r.seen.contains_key(*id))
            .count()
    }

    pub fn receipts(&self) -> ReceiptSummary {
        let r = self.receipts.lock().unwrap_or_else(|p| p.into_inner());
        ReceiptSummary {
            total: r.total,
            duplicates: r.duplicates,
            latencies: r.latencies.clone(),
            last: r.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_and_first_latencies_only() {
        let s = Stats::default();
        let past = SystemTime::now() - Duration::from_millis(50);
        s.received([1; 32], Some(past));
        s.received([1; 32], Some(past));
        s.received([2; 32], None);
        let r = s.receipts();
        assert_eq!((r.total, r.duplicates), (3, 1));
        assert_eq!(r.latencies.len(), 1);
        assert!(r.latencies[0] >= Duration::from_millis(50));
        assert_eq!(s.count_received(&[[1; 32], [3; 32]]), 1);
    }

    #[test]
    fn future_timestamps_count_as_zero() {
        let s = Stats::default();
        s.received([1; 32], Some(SystemTime::now() + Duration::from_secs(60)));
        assert_eq!(s.receipts().latencies, vec![Duration::ZERO]);
    }
}
