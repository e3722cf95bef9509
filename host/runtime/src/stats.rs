//! Per-service counters: the runtime's own (calls, errors, traps, latency — what the admin
//! `PluginStatus` reports) and the guest's (`metrics` capability).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many recent call durations the percentiles are computed from.
const LATENCY_WINDOW: usize = 1024;

#[derive(Debug, Default)]
pub struct ServiceStats {
    calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    latencies_ms: Mutex<VecDeque<f64>>,
    guest: Mutex<GuestMetrics>,
}

/// What a plugin recorded through the `metrics` capability.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestMetrics {
    pub counters: BTreeMap<String, u64>,
    /// Name → (count, sum) of observations.
    pub histograms: BTreeMap<String, (u64, f64)>,
}

/// A point-in-time copy of a service's statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    pub calls: u64,
    /// Calls that ended in anything but success, traps included.
    pub errors: u64,
    /// Traps, CPU-budget timeouts and out-of-memory.
    pub traps: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub guest: GuestMetrics,
}

/// Guest metric names are bounded so a plugin cannot grow the host's memory without limit.
const MAX_GUEST_SERIES: usize = 256;

impl ServiceStats {
    pub(crate) fn record(&self, took: Duration, ok: bool, trap: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if trap {
            self.traps.fetch_add(1, Ordering::Relaxed);
        }
        let mut l = self.latencies_ms.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() == LATENCY_WINDOW {
            l.pop_front();
        }
        l.push_back(took.as_secs_f64() * 1000.0);
    }

    pub(crate) fn counter_add(&self, name: String, value: u64) {
        let mut g = self.guest.lock().unwrap_or_else(|p| p.into_inner());
        if g.counters.len() < MAX_GUEST_SERIES || g.counters.contains_key(&name) {
            let c = g.counters.entry(name).or_default();
            *c = c.saturating_add(value);
        }
    }

    pub(crate) fn histogram_observe(&self, name: String, value: f64) {
        let mut g = self.guest.lock().unwrap_or_else(|p| p.into_inner());
        if g.histograms.len() < MAX_GUEST_SERIES || g.histograms.contains_key(&name) {
            let h = g.histograms.entry(name).or_default();
            h.0 += 1;
            h.1 += value;
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut sorted: Vec<f64> = self
            .latencies_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        sorted.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() - 1) as f64 * p).round() as usize;
            sorted[i.min(sorted.len() - 1)]
        };
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            guest: self.guest.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}
