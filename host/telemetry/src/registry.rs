//! A small Prometheus registry: counters, gauges and histograms in labelled families, encoded in
//! the text exposition format (version 0.0.4).
//!
//! Hand-rolled rather than `prometheus-client`: the server needs three metric kinds and one
//! encoder, and this keeps the engine's dependency tree free of another registry crate.
//! Recording is one short read-locked map lookup plus atomic adds; a new label set takes the write
//! lock once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Label value used when a family is full or a value is not acceptable as a label.
pub const OTHER: &str = "other";

/// Prometheus' default latency buckets, in seconds (what the original's histograms use).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One time series' value, and how it is written out.
pub trait Metric: Send + Sync {
    const TYPE: &'static str;
    /// Appends the sample lines of one series; `labels` is `a="x",b="y"` (possibly empty).
    fn encode(&self, name: &str, labels: &str, out: &mut String);
}

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Mirrors a total counted elsewhere; never moves backwards.
    pub fn set_total(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
}

impl Metric for Counter {
    const TYPE: &'static str = "counter";
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        sample(out, name, "", labels, self.value() as f64);
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }

    pub fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Metric for Gauge {
    const TYPE: &'static str = "gauge";
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        sample(out, name, "", labels, self.value() as f64);
    }
}

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: Box<[AtomicU64]>,
    /// The sum as `f64` bits, updated by compare-and-swap.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

impl Metric for Histogram {
    const TYPE: &'static str = "histogram";
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |v| v.to_string());
            let l = format!("{labels}{sep}le=\"{le}\"");
            sample(out, name, "_bucket", &l, cumulative as f64);
        }
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed));
        sample(out, name, "_sum", labels, sum);
        sample(out, name, "_count", labels, cumulative as f64);
    }
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, v: f64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name}{suffix} {v}");
    } else {
        let _ = writeln!(out, "{name}{suffix}{{{labels}}} {v}");
    }
}

/// One metric name with its series, keyed by label values (in the order of `labels`).
///
/// At most `max_series` label sets are kept; further ones are recorded under a series whose every
/// label is [`OTHER`], so a misbehaving peer cannot grow the registry without bound.
pub struct Family<M> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    max_series: usize,
    make: Box<dyn Fn() -> M + Send + Sync>,
    series: RwLock<BTreeMap<Box<[String]>, Arc<M>>>,
}

impl<M: Metric> Family<M> {
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        max_series: usize,
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            help,
            labels,
            max_series,
            make: Box::new(make),
            series: RwLock::new(BTreeMap::new()),
        }
    }

    /// The series for these label values, created on first use.
    pub fn get(&self, values: &[&str]) -> Arc<M> {
        debug_assert_eq!(values.len(), self.labels.len(), "labels of {}", self.name);
        let key: Box<[String]> = values.iter().map(|v| (*v).to_owned()).collect();
        if let Some(m) = self.read().get(&key) {
            return m.clone();
        }
        let mut map = self.series.write().unwrap_or_else(|p| p.into_inner());
        let key = if map.len() >= self.max_series && !map.contains_key(&key) {
            self.labels.iter().map(|_| OTHER.to_owned()).collect()
        } else {
            key
        };
        map.entry(key)
            .or_insert_with(|| Arc::new((self.make)()))
            .clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Box<[String]>, Arc<M>>> {
        self.series.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `# HELP`, `# TYPE` and every series, in label order.
    pub fn encode(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, M::TYPE);
        for (values, m) in self.read().iter() {
            let labels = self
                .labels
                .iter()
                .zip(values.iter())
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect::<Vec<_>>()
                .join(",");
            m.encode(self.name, &labels, out);
        }
    }
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_and_cap() {
        let f = Family::new("t_total", "Test.", &["a"], 2, Counter::default);
        f.get(&["x"]).inc_by(2);
        f.get(&["y\"z"]).inc_by(1);
        f.get(&["w"]).inc_by(5);
        f.get(&["v"]).inc_by(1);
        let mut out = String::new();
        f.encode(&mut out);
        assert_eq!(
            out,
            "# HELP t_total Test.\n# TYPE t_total counter\nt_total{a=\"other\"} 6\nt_total{a=\"x\"} 2\nt_total{a=\"y\\\"z\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.5, 1.0]);
        h.observe(0.25);
        h.observe(0.5);
        h.observe(3.0);
        let mut out = String::new();
        h.encode("h", "op=\"x\"", &mut out);
        assert_eq!(
            out,
            "h_bucket{op=\"x\",le=\"0.5\"} 2\nh_bucket{op=\"x\",le=\"1\"} 2\nh_bucket{op=\"x\",le=\"+Inf\"} 3\nh_sum{op=\"x\"} 3.75\nh_count{op=\"x\"} 3\n"
        );
    }
}
