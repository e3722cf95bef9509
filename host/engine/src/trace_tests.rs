//! The tracer on its own: batching by size and by time, dropping when the queue is full (never
//! waiting), counting what a failing store lost, writing what is queued when stopped.

use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use fleetgate_store::{Result, StoreError};

use super::*;

/// Records the size of every batch; fails every write when `fail` is set.
#[derive(Default)]
struct Batches {
    sizes: Mutex<Vec<usize>>,
    rows: Mutex<Vec<TraceRecord>>,
    fail: bool,
}

#[async_trait]
impl TraceStore for Batches {
    async fn record_trace(&self, steps: &[TraceRecord]) -> Result<()> {
        if self.fail {
            return Err(StoreError::Backend {
                op: "record_trace",
                message: "the database is down".into(),
                retryable: true,
            });
        }
        self.sizes.lock().unwrap().push(steps.len());
        self.rows.lock().unwrap().extend_from_slice(steps);
        Ok(())
    }
    async fn message_trace(&self, _id: MessageId) -> Result<Vec<TraceRecord>> {
        Ok(Vec::new())
    }
    async fn prune_trace(&self, _before: SystemTime, _limit: usize) -> Result<u64> {
        Ok(0)
    }
}

fn config(queue: usize, batch: usize, flush_ms: u64) -> TraceConfig {
    TraceConfig {
        enabled: true,
        queue,
        batch,
        flush_every: Duration::from_millis(flush_ms),
    }
}

fn step(n: u8) -> TraceStep {
    TraceStep {
        message_id: MessageId::from_bytes(&[n; 32]).unwrap(),
        time: UNIX_EPOCH + Duration::from_secs(u64::from(n)),
        kind: StepKind::Stored(format!("step {n}")),
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn full_batches_go_at_once_and_a_lone_step_within_the_interval() {
    let tracer = Arc::new(Tracer::new("fe-1", &config(1000, 10, 50)));
    let store = Arc::new(Batches::default());
    for n in 0..25 {
        assert!(tracer.record(step(n)));
    }
    let stop = CancellationToken::new();
    let writer = tokio::spawn({
        let (tracer, store, stop) = (tracer.clone(), store.clone(), stop.clone());
        async move { tracer.run(store, stop).await }
    });
    until("25 steps written", || tracer.written() == 25).await;
    assert_eq!(*store.sizes.lock().unwrap(), [10, 10, 5]);
    // One step alone is not held back waiting for a full batch.
    let queued = std::time::Instant::now();
    assert!(tracer.record(step(30)));
    until("the lone step", || tracer.written() == 26).await;
    assert!(
        queued.elapsed() < Duration::from_secs(1),
        "{:?}",
        queued.elapsed()
    );
    assert_eq!(*store.sizes.lock().unwrap(), [10, 10, 5, 1]);
    let rows = store.rows.lock().unwrap().clone();
    assert!(
        rows.iter()
            .all(|r| r.server == "fe-1" && r.step == "stored")
    );
    assert_eq!(rows[3].detail, "step 3");
    stop.cancel();
    writer.await.unwrap();
    assert_eq!(tracer.dropped(), 0);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let tracer = Tracer::new("fe-1", &config(5, 500, 10));
    let metrics = Metrics::new();
    tracer.set_metrics(metrics.clone());
    // No writer runs: the queue fills, and record still returns at once.
    let accepted: Vec<bool> = (0..8).map(|n| tracer.record(step(n))).collect();
    assert_eq!(
        accepted,
        [true, true, true, true, true, false, false, false]
    );
    assert_eq!(tracer.dropped(), 3);
    let text = metrics.encode();
    assert!(
        text.contains("fleetgate_trace_steps_dropped_total{reason=\"queue_full\"} 3"),
        "{text}"
    );
    // Stopped before it starts: the writer still writes what is queued, then returns.
    let store = Arc::new(Batches::default());
    let stop = CancellationToken::new();
    stop.cancel();
    tracer.run(store.clone(), stop).await;
    assert_eq!(*store.sizes.lock().unwrap(), [5]);
    assert!(
        metrics
            .encode()
            .contains("fleetgate_trace_steps_written_total 5")
    );
}

#[tokio::test]
async fn a_failing_store_loses_the_batch_and_counts_it() {
    let tracer = Tracer::new("fe-1", &config(100, 4, 10));
    let metrics = Metrics::new();
    tracer.set_metrics(metrics.clone());
    for n in 0..6 {
        tracer.record(step(n));
    }
    let store = Arc::new(Batches {
        fail: true,
        ..Default::default()
    });
    let stop = CancellationToken::new();
    stop.cancel();
    tracer.run(store, stop).await;
    assert_eq!((tracer.written(), tracer.dropped()), (0, 6));
    assert!(
        metrics
            .encode()
            .contains("fleetgate_trace_steps_dropped_total{reason=\"store_error\"} 6")
    );
}

#[tokio::test]
async fn off_means_nothing_is_queued_and_the_writer_returns() {
    let tracer = Tracer::new(
        "fe-1",
        &TraceConfig {
            enabled: false,
            ..TraceConfig::default()
        },
    );
    assert!(!tracer.is_enabled());
    assert!(!tracer.record(step(1)));
    assert_eq!(tracer.dropped(), 0, "a step not taken is not a step lost");
    // Returns although `stop` never fires.
    tracer
        .run(Arc::new(Batches::default()), CancellationToken::new())
        .await;
}

#[test]
fn details_say_what_happened_and_long_ones_are_cut() {
    let client = ClientId::new([0, 0, 0, 0, 0, 0, 0, 1]);
    let k = StepKind::Processed {
        service: "GRR".into(),
        version: Some("ab12".into()),
    };
    assert_eq!(
        (k.word(), k.detail().as_str()),
        ("processed", "by service GRR, plugin digest ab12")
    );
    let k = StepKind::Acknowledged { client };
    assert_eq!(k.detail(), "by client 0000000000000001");
    let k = StepKind::Failed {
        service: "GRR".into(),
        version: None,
        error: "é".repeat(3000),
    };
    let d = k.detail();
    assert!(
        d.starts_with("by service GRR: éé") && d.ends_with('…'),
        "{d}"
    );
    assert!(d.len() <= DETAIL_MAX + '…'.len_utf8());
}

/// Holds every write until released, counting how many are in the database at once.
#[derive(Default)]
struct Slow {
    active: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    written: std::sync::atomic::AtomicUsize,
    release: tokio::sync::Notify,
}

#[async_trait]
impl TraceStore for Slow {
    async fn record_trace(&self, steps: &[TraceRecord]) -> Result<()> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.release.notified().await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.written.fetch_add(steps.len(), Ordering::SeqCst);
        Ok(())
    }
    async fn message_trace(&self, _id: MessageId) -> Result<Vec<TraceRecord>> {
        Ok(Vec::new())
    }
    async fn prune_trace(&self, _before: SystemTime, _limit: usize) -> Result<u64> {
        Ok(0)
    }
}

#[tokio::test]
async fn two_batches_are_written_at_once_never_more() {
    let tracer = Arc::new(Tracer::new("fe-1", &config(1000, 5, 10)));
    for n in 0..30 {
        tracer.record(step(n));
    }
    let store = Arc::new(Slow::default());
    let stop = CancellationToken::new();
    let writer = tokio::spawn({
        let (tracer, store, stop) = (tracer.clone(), store.clone(), stop.clone());
        async move { tracer.run(store, stop).await }
    });
    until("two writes in flight", || {
        store.active.load(Ordering::SeqCst) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store.most.load(Ordering::SeqCst),
        2,
        "a third write started"
    );
    while store.written.load(Ordering::SeqCst) < 30 {
        store.release.notify_waiters();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.most.load(Ordering::SeqCst), 2);
    stop.cancel();
    writer.await.unwrap();
    assert_eq!(tracer.written(), 30);
}
