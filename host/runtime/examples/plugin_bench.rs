//! What a component costs per message, storage aside.
//!
//! ```text
//! cargo run --release -p fleetgate-runtime --example plugin_bench [-- N [MAX_INSTANCES [back-to-back]]]
//! ```
//!
//! `MAX_INSTANCES` (default: the runtime's default) shrinks the pool's address-space
//! reservation, e.g. to 128 so that it fits under `valgrind --tool=callgrind`. `back-to-back`
//! skips the paced passes, whose spinning would count in callgrind's totals: the run then makes
//! 4 N echo calls after its warm-up (N latencies, 3 N for throughput).
//!
//! 1. Overhead: N messages one after another through `ServiceEntry` + `service::run` (the
//!    engine's path: slot, budget, call) with the bundled `echo` component (a fresh pooled
//!    instance, `init` and `process` per message, its reply handed to a sink that drops it)
//!    against the native `NoopService`; p50/p99 per call. Three ways: back to back; 200 µs
//!    apart with the thread spinning in between (the core stays busy); and 200 µs apart with
//!    the thread asleep in between (the core goes idle, and on a virtual machine the vCPU may
//!    be descheduled, so each call starts on cold caches and TLBs).
//! 2. Throughput through `echo` with `max_parallelism` 1, 10 and 100: N messages, as many in
//!    flight as the service allows, on a Tokio runtime with one worker per core.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fleetgate_engine::service::run;
use fleetgate_engine::{NoopService, Outcome, Service, ServiceEntry};
use fleetgate_pb::fleetspeak::{Address, Message};
use fleetgate_runtime::{
    ComponentService, Grants, HostServices, Limits, MessageSink, PluginSpec, Runtime,
    RuntimeConfig, bundled,
};

/// Drops what the plugin sends: the store is not what is measured.
struct DropSink;

#[async_trait]
impl MessageSink for DropSink {
    async fn send(&self, _message: Message) -> Result<(), String> {
        Ok(())
    }
}

fn message(i: u64) -> Message {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_be_bytes());
    Message {
        message_id: id.to_vec(),
        source: Some(Address {
            client_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            service_name: "Echo".into(),
        }),
        source_message_id: i.to_be_bytes().to_vec(),
        destination: Some(Address {
            client_id: Vec::new(),
            service_name: "Echo".into(),
        }),
        message_type: "Ping".into(),
        data: Some(prost_types::Any {
            type_url: "type.googleapis.com/test.Ping".into(),
            value: vec![42; 64],
        }),
        ..Message::default()
    }
}

/// The pause between paced calls: 5,000 messages/s at most.
const GAP_US: u64 = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What the calling thread does between two calls.
#[derive(Clone, Copy)]
enum Pace {
    BackToBack,
    /// Spins for `GAP_US`: the core stays busy.
    Busy,
    /// Sleeps for `GAP_US` (a thread sleep, not Tokio's timer, which has 1 ms granularity).
    Idle,
}

impl Pace {
    fn title(self) -> String {
        match self {
            Pace::BackToBack => "back to back".into(),
            Pace::Busy => format!("{GAP_US} µs apart, spinning in between"),
            Pace::Idle => format!("{GAP_US} µs apart, asleep in between"),
        }
    }

    fn pause(self) {
        let gap = Duration::from_micros(GAP_US);
        match self {
            Pace::BackToBack => {}
            Pace::Busy => {
                // No `spin_loop()` hint: on a virtual machine a run of PAUSE instructions
                // looks like lock spinning, and the hypervisor may deschedule the vCPU
                // (pause-loop exiting), which is the idle case again.
                let t = Instant::now();
                while t.elapsed() < gap {}
            }
            Pace::Idle => std::thread::sleep(gap),
        }
    }
}

/// Sequential calls, paced by `pace`; returns sorted latencies.
async fn latencies(entry: &ServiceEntry, n: u64, pace: Pace) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        pace.pause();
        let m = message(i);
        let t = Instant::now();
        let (outcome, _) = run(entry, &m).await;
        out.push(t.elapsed());
        assert_eq!(outcome, Outcome::Processed);
    }
    out.sort();
    out
}

/// N messages, `in_flight` at a time (the service's slots are the real limit). Messages/s.
async fn throughput(entry: &ServiceEntry, n: u64, in_flight: usize) -> f64 {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (entry, next) = (entry.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                assert_eq!(run(&entry, &message(i)).await.0, Outcome::Processed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    n as f64 / t.elapsed().as_secs_f64()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let max_instances = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(RuntimeConfig::default().max_instances);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runtime = Runtime::new(RuntimeConfig {
            max_instances,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let spec = PluginSpec {
            name: "Echo".into(),
            origin: "bundled:echo".into(),
            wasm: bundled::ECHO.to_vec(),
            config: Vec::new(),
            grants: Grants::basic().with(fleetgate_runtime::Capability::Messaging),
            limits: Limits::default(),
        };
        let t = Instant::now();
        let echo = ComponentService::load(&runtime, spec, HostServices::new(Arc::new(DropSink)))
            .await
            .unwrap();
        println!(
            "echo compiled and loaded in {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let echo: Arc<dyn Service> = Arc::new(echo);
        let noop: Arc<dyn Service> = Arc::new(NoopService);

        // Warm up: pool slots, allocator, branch predictors.
        latencies(&ServiceEntry::new(echo.clone(), 1), 2_000, Pace::BackToBack).await;

        let paces: &[Pace] = if std::env::args().nth(3).as_deref() == Some("back-to-back") {
            &[Pace::BackToBack]
        } else {
            &[Pace::BackToBack, Pace::Busy, Pace::Idle]
        };
        for &pace in paces {
            println!(
                "\n== per-call latency, sequential, {}, N = {n} ==",
                pace.title()
            );
            let native = latencies(&ServiceEntry::new(noop.clone(), 1), n, pace).await;
            let wasm = latencies(&ServiceEntry::new(echo.clone(), 1), n, pace).await;
            println!(
                "{:<12} {:>10} {:>10} {:>10}",
                "service", "p50 µs", "p99 µs", "max µs"
            );
            for (name, l) in [("NoopService", &native), ("echo (wasm)", &wasm)] {
                println!(
                    "{name:<12} {:>10.2} {:>10.2} {:>10.1}",
                    us(percentile(l, 0.5)),
                    us(percentile(l, 0.99)),
                    us(*l.last().unwrap())
                );
            }
            println!(
                "added by the component: p50 {:.2} µs, p99 {:.2} µs",
                us(percentile(&wasm, 0.5)) - us(percentile(&native, 0.5)),
                us(percentile(&wasm, 0.99)) - us(percentile(&native, 0.99))
            );
        }

        println!("\n== throughput through echo, N = {n}, {cores} worker threads ==");
        println!(
            "{:<16} {:>12} {:>14}",
            "max_parallelism", "msg/s", "msg/s per core"
        );
        for p in [1u32, 10, 100] {
            let entry = ServiceEntry::new(echo.clone(), p);
            let rate = throughput(&entry, n, p as usize).await;
            // One call at a time can use at most one core.
            let used = (p as usize).min(cores) as f64;
            println!("{p:<16} {rate:>12.0} {:>14.0}", rate / used);
        }
    });
}
