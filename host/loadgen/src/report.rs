//! The result of a run: what was sent, received and lost, delivery latency, and the loadgen's
//! own memory. Pure: built from counters and samples, printed with `Display`.

use std::fmt;
use std::time::Duration;

/// Insert → receipt latency of benchmark messages (first receipts only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// Nearest-rank percentiles; `None` without samples.
    pub fn from_samples(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let n = samples.len();
            let i = ((p / 100.0) * n as f64).ceil() as usize;
            samples.get(i.clamp(1, n) - 1).copied().unwrap_or_default()
        };
        Some(Self {
            samples: samples.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: rank(100.0),
        })
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Simulated clients configured.
    pub clients: usize,
    /// Clients that completed at least one contact.
    pub connected: u64,
    /// Time from the first connection attempt until every client had contacted (or the
    /// connect timeout).
    pub connect_time: Duration,
    /// Simulated clients the admin API lists (`ListClients`), when an admin address was given.
    pub enrolled: Option<usize>,
    /// Successful contacts (stream starts and polls), reconnects included.
    pub contacts: u64,
    /// Failed connection or contact attempts.
    pub failures: u64,
    /// Streams ended by the server with `done_sending`.
    pub done_sending: u64,
    /// Streams that ended otherwise (server close, error).
    pub stream_drops: u64,
    /// Client → server messages generated and acknowledged by the server.
    pub sent: u64,
    pub delivered: u64,
    /// Benchmark messages inserted through the admin API, and inserts that failed.
    pub inserted: u64,
    pub insert_failures: u64,
    /// How long inserting took.
    pub insert_time: Duration,
    /// Server → client messages received (all, duplicates included), distinct IDs received
    /// more than once, and inserted messages never received before the deadline.
    pub received: u64,
    pub duplicates: u64,
    pub lost: u64,
    /// From the first insert to the last receipt.
    pub delivery_time: Duration,
    pub latency: Option<Latency>,
    /// Duration of the `InsertMessage` calls alone: the part of `latency` spent before the
    /// server could push.
    pub insert_call: Option<Latency>,
    /// The measured phase: from all clients connected to stop.
    pub measured: Duration,
    /// Resident set of the loadgen process at the end, and its peak.
    pub rss_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
}

impl Report {
    /// Inserted messages received per second, first insert to last receipt.
    pub fn delivery_rate(&self) -> f64 {
        rate(self.inserted.saturating_sub(self.lost), self.delivery_time)
    }

    /// Client → server messages acknowledged per second of the measured phase.
    pub fn upload_rate(&self) -> f64 {
        rate(self.delivered, self.measured)
    }
}

fn rate(n: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        n as f64 / over.as_secs_f64()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "clients:     {} connected of {} in {:.2?}",
            self.connected, self.clients, self.connect_time
        )?;
        if let Some(n) = self.enrolled {
            writeln!(f, "enrolled:    {n} listed by the admin API")?;
        }
        writeln!(
            f,
            "contacts:    {} ok, {} failed, {} done_sending, {} dropped streams",
            self.contacts, self.failures, self.done_sending, self.stream_drops
        )?;
        writeln!(
            f,
            "upload:      {} sent, {} acked by the server ({:.1}/s over {:.2?})",
            self.sent,
            self.delivered,
            self.upload_rate(),
            self.measured
        )?;
        writeln!(
            f,
            "download:    {} inserted ({} failed) in {:.2?}; {} received, {} duplicates, {} lost",
            self.inserted,
            self.insert_failures,
            self.insert_time,
            self.received,
            self.duplicates,
            self.lost
        )?;
        if self.inserted > 0 {
            writeln!(
                f,
                "throughput:  {:.1} msg/s delivered (first insert to last receipt {:.2?})",
                self.delivery_rate(),
                self.delivery_time
            )?;
        }
        if let Some(l) = &self.latency {
            writeln!(
                f,
                "latency:     p50 {} p90 {} p99 {} max {} (insert → receipt, {} samples)",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.max),
                l.samples
            )?;
        }
        if let Some(l) = &self.insert_call {
            writeln!(
                f,
                "insert call: p50 {} p90 {} p99 {} max {} (InsertMessage RPC alone)",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.max)
            )?;
        }
        write!(
            f,
            "loadgen RSS: {} now, {} peak",
            mib(self.rss_bytes),
            mib(self.peak_rss_bytes)
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a".into(),
        |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    )
}

/// `(VmRSS, VmHWM)` of this process in bytes, from `/proc/self/status` (Linux only).
pub fn memory() -> (Option<u64>, Option<u64>) {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(text) => (status_kib(&text, "VmRSS:"), status_kib(&text, "VmHWM:")),
        Err(_) => (None, None),
    }
}

/// A `Key:   1234 kB` line of `/proc/<pid>/status`, in bytes.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
    let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latency::from_samples(samples).expect("samples");
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50, Duration::from_millis(50));
        assert_eq!(l.p90, Duration::from_millis(90));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
        let one = Latency::from_samples(vec![Duration::from_millis(3)]).expect("one");
        assert_eq!(
            (one.p50, one.max),
            (Duration::from_millis(3), Duration::from_millis(3))
        );
        assert!(Latency::from_samples(vec![]).is_none());
    }

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(status_kib(text, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(status_kib(text, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(status_kib(text, "VmSwap:"), None);
        assert_eq!(status_kib("VmRSS: lots kB", "VmRSS:"), None);
    }

    #[test]
    fn display_mentions_the_figures() {
        let r = Report {
            clients: 2,
            connected: 2,
            inserted: 10,
            received: 10,
            delivery_time: Duration::from_secs(2),
            latency: Latency::from_samples(vec![Duration::from_millis(4)]),
            ..Default::default()
        };
        let text = r.to_string();
        assert!(text.contains("2 connected of 2"), "{text}");
        assert!(text.contains("5.0 msg/s"), "{text}");
        assert!(text.contains("p50 4.00 ms"), "{text}");
        assert!(memory().0.is_some(), "Linux has /proc/self/status");
    }
}
