//! The message trace: each step of a message's life, with the time and the server that took it,
//! written to the shared store so `fleetgate admin trace ID` can show it from any server.
//!
//! Message handling never waits for the trace. [`Tracer::record`] puts a step into a bounded
//! queue and returns; [`Tracer::run`] (one task per server) writes the queue to the store in
//! batches, every [`TraceConfig::flush_every`] or as soon as [`TraceConfig::batch`] steps are
//! waiting, with up to two batches in the database at once. When the queue is full the step is dropped and counted
//! (`fleetgate_trace_steps_dropped_total{reason="queue_full"}`); a batch the store refuses is
//! dropped and counted too (`reason="store_error"`). So the trace is best effort: a crash loses
//! the steps of the last fraction of a second, while the messages themselves stay as durable as
//! ever (they are stored before any step about them is queued, or with their outcome).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use fleetgate_store::{TraceRecord, TraceStore};
use fleetgate_telemetry::Metrics;
use fleetgate_types::time::to_timestamp;
use fleetgate_types::{ClientId, ContactId, MessageId};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Steps waiting to be written, at most.
pub const QUEUE: usize = 10_000;
/// Steps written in one transaction, at most.
pub const BATCH: usize = 500;
/// How long the first step of a batch waits for others.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Batches written at once: the next batch is gathered (and written) while one is in the
/// database, so a busy database's commit time does not cap the trace at one batch per commit.
const WRITERS: usize = 2;
/// Longer details are cut (an error text can be long; the trace is for people).
const DETAIL_MAX: usize = 2000;

/// Whether and how steps are traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// Off: nothing is queued or written (reading old traces still works).
    pub enabled: bool,
    pub queue: usize,
    pub batch: usize,
    pub flush_every: Duration,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue: QUEUE,
            batch: BATCH,
            flush_every: FLUSH_EVERY,
        }
    }
}

/// How a message was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handout {
    Poll,
    /// The first reply of a stream.
    StreamStart,
    Stream,
}

/// What happened to a message, with what the step's detail says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// Stored by this server; the text says how (an admin insert, …).
    Stored(String),
    /// A client's message stored with its outcome (the detail is built by the writer, off the
    /// message path).
    StoredFromClient {
        client: ClientId,
        contact: ContactId,
    },
    /// Seen by the router: where it sent the message, and the router's version if known.
    Routed { to: String, router: Option<String> },
    /// Leased for delivery to a contact of its client.
    Leased {
        contact: ContactId,
        until: SystemTime,
    },
    /// Handed to the frontend to write to the client.
    Pushed { contact: ContactId, how: Handout },
    /// The client acknowledged it (`MessageAck` to `system`).
    Acknowledged { client: ClientId },
    /// A server service processed it.
    Processed {
        service: String,
        version: Option<String>,
    },
    /// It failed for good: a service's permanent error, or an error the client reported.
    Failed {
        service: String,
        version: Option<String>,
        error: String,
    },
    /// The client reported an error for it (`MessageError` to `system`): failed for good.
    ClientError { client: ClientId, error: String },
    /// Processing failed temporarily; it stays pending and is tried again on the back-off.
    Retried { service: String, reason: String },
    /// For dead letters: moved to the dead-letter table.
    DeadLettered(String),
    /// For dead letters: replayed.
    Replayed(String),
    /// For expiry: no longer delivered.
    Expired(String),
}

impl StepKind {
    /// The short word stored as the step.
    pub fn word(&self) -> &'static str {
        match self {
            StepKind::Stored(_) | StepKind::StoredFromClient { .. } => "stored",
            StepKind::Routed { .. } => "routed",
            StepKind::Leased { .. } => "leased",
            StepKind::Pushed { .. } => "pushed",
            StepKind::Acknowledged { .. } => "acknowledged",
            StepKind::Processed { .. } => "processed",
            StepKind::Failed { .. } | StepKind::ClientError { .. } => "failed",
            StepKind::Retried { .. } => "retried",
            StepKind::DeadLettered(_) => "dead_lettered",
            StepKind::Replayed(_) => "replayed",
            StepKind::Expired(_) => "expired",
        }
    }

    /// The stored detail text.
    pub fn detail(&self) -> String {
        let by = |service: &str, version: &Option<String>| match version {
            Some(v) => format!("by service {service}, plugin digest {v}"),
            None => format!("by service {service}"),
        };
        let mut s = match self {
            StepKind::Stored(s)
            | StepKind::DeadLettered(s)
            | StepKind::Replayed(s)
            | StepKind::Expired(s) => s.clone(),
            StepKind::StoredFromClient { client, contact } => {
                format!("from client {client} in contact {contact}")
            }
            StepKind::Routed { to, router: None } => to.clone(),
            StepKind::Routed {
                to,
                router: Some(v),
            } => format!("{to}, by router digest {v}"),
            StepKind::Leased { contact, until } => {
                // To the second: the lease is 15 minutes.
                let until = prost_types::Timestamp {
                    nanos: 0,
                    ..to_timestamp(*until)
                };
                format!("to contact {contact}, due again at {until} unless acknowledged")
            }
            StepKind::Pushed { contact, how } => match how {
                Handout::Poll => format!("in the poll response of contact {contact}"),
                Handout::StreamStart => format!("in the first reply of stream contact {contact}"),
                Handout::Stream => format!("on the stream of contact {contact}"),
            },
            StepKind::Acknowledged { client } => format!("by client {client}"),
            StepKind::Processed { service, version } => by(service, version),
            StepKind::Failed {
                service,
                version,
                error,
            } => format!("{}: {error}", by(service, version)),
            StepKind::ClientError { client, error } => {
                format!("client {client} reported: {error}")
            }
            StepKind::Retried { service, reason } => {
                format!("service {service}: {reason}; pending again after the back-off")
            }
        };
        if s.len() > DETAIL_MAX {
            let mut cut = DETAIL_MAX;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    }
}

/// One step of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    pub message_id: MessageId,
    pub time: SystemTime,
    pub kind: StepKind,
}

/// The queue of one server's steps and its writer. Shared by the engine and its `system`
/// service.
pub struct Tracer {
    /// This server's name, stored with every step.
    server: String,
    /// `None` when tracing is off.
    queue: Option<mpsc::Sender<TraceStep>>,
    /// Taken by [`Tracer::run`]; a second `run` finds it gone and returns.
    receiver: Mutex<Option<mpsc::Receiver<TraceStep>>>,
    batch: usize,
    flush_every: Duration,
    dropped: AtomicU64,
    written: AtomicU64,
    /// Set with the engine's metrics handle; unset in tests and tools.
    metrics: OnceLock<Metrics>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("server", &self.server)
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

impl Tracer {
    pub fn new(server: impl Into<String>, config: &TraceConfig) -> Self {
        let (queue, receiver) = if config.enabled {
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Self {
            server: server.into(),
            queue,
            receiver: Mutex::new(receiver),
            batch: config.batch.max(1),
            flush_every: config.flush_every,
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            metrics: OnceLock::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn set_metrics(&self, metrics: Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Queues a step without waiting; returns whether it was queued (false: tracing is off, or
    /// the queue is full and the step was dropped and counted).
    pub fn record(&self, step: TraceStep) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        match queue.try_send(step) {
            Ok(()) => true,
            Err(_) => {
                self.lost("queue_full", 1);
                false
            }
        }
    }

    /// Steps dropped so far (queue full or store errors).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Steps written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn lost(&self, reason: &'static str, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = self.metrics.get() {
            m.trace_steps_dropped(reason, n);
        }
    }

    /// Writes queued steps to `store` in batches until `stop` fires, then writes what is still
    /// queued and returns. Returns at once when tracing is off or another `run` has the queue.
    pub async fn run(&self, store: Arc<dyn TraceStore>, stop: CancellationToken) {
        let taken = self
            .receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut rx) = taken else { return };
        let store = &*store;
        let mut buf = Vec::with_capacity(self.batch);
        // Batches being written; the next one is gathered meanwhile.
        let mut writing = FuturesUnordered::new();
        loop {
            let got = tokio::select! {
                biased;
                () = stop.cancelled() => 0,
                Some(()) = writing.next(), if !writing.is_empty() => continue,
                n = rx.recv_many(&mut buf, self.batch) => n,
            };
            if got == 0 {
                break;
            }
            let deadline = tokio::time::Instant::now() + self.flush_every;
            while buf.len() < self.batch {
                let want = self.batch - buf.len();
                tokio::select! {
                    n = rx.recv_many(&mut buf, want) => if n == 0 { break },
                    Some(()) = writing.next(), if !writing.is_empty() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                    () = stop.cancelled() => break,
                }
            }
            while writing.len() >= WRITERS {
                writing.next().await;
            }
            let batch = std::mem::replace(&mut buf, Vec::with_capacity(self.batch));
            writing.push(self.write(store, batch));
        }
        while writing.next().await.is_some() {}
        // Stopping: what is queued now still goes out.
        while let Ok(step) = rx.try_recv() {
            buf.push(step);
            if buf.len() == self.batch {
                self.write(store, std::mem::take(&mut buf)).await;
            }
        }
        self.write(store, buf).await;
    }

    async fn write(&self, store: &dyn TraceStore, steps: Vec<TraceStep>) {
        if steps.is_empty() {
            return;
        }
        let records: Vec<TraceRecord> = steps
            .into_iter()
            .map(|s| TraceRecord {
                message_id: s.message_id,
                time: s.time,
                server: self.server.clone(),
                step: s.kind.word().into(),
                detail: s.kind.detail(),
            })
            .collect();
        let n = records.len() as u64;
        match store.record_trace(&records).await {
            Ok(()) => {
                self.written.fetch_add(n, Ordering::Relaxed);
                if let Some(m) = self.metrics.get() {
                    m.trace_steps_written(n);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, steps = n, "writing message trace steps failed; they are lost");
                self.lost("store_error", n);
            }
        }
    }
}

impl crate::Engine {
    /// Records a step of message `id`, taken now by this server. Never waits; see the module
    /// docs for what may be lost. Public so every part of the lifecycle (dead letters, replay,
    /// expiry) records its steps the same way.
    pub fn trace(&self, id: MessageId, kind: StepKind) {
        let time = self.inner.clock.now();
        self.inner.tracer.record(TraceStep {
            message_id: id,
            time,
            kind,
        });
    }

    /// [`Engine::trace`](crate::Engine::trace) for a stored message; `kind` is only built when
    /// tracing is on. A message without a valid ID is not traced.
    pub(crate) fn trace_message(
        &self,
        m: &fleetgate_pb::fleetspeak::Message,
        kind: impl FnOnce() -> StepKind,
    ) {
        if !self.is_tracing() {
            return;
        }
        if let Ok(id) = MessageId::from_bytes(&m.message_id) {
            self.trace(id, kind());
        }
    }

    /// Whether steps are traced on this server.
    pub fn is_tracing(&self) -> bool {
        self.inner.tracer.is_enabled()
    }

    pub fn tracer(&self) -> &Tracer {
        &self.inner.tracer
    }

    /// Writes the trace queue to the store until `stop` fires, then what is left. Give it its
    /// own token, cancelled after the other tasks have drained, so their last steps are
    /// written before the store closes.
    pub async fn run_trace_writer(&self, stop: CancellationToken) {
        let store: Arc<dyn TraceStore> = self.inner.store.clone();
        self.inner.tracer.run(store, stop).await;
    }
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
