//! [`Metrics`]: the handle every part of the server records into. Each method is one event in the
//! server's life; the metric names, types and labels are listed in `docs/METRICS.md`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::labels::BoundedLabel;
use crate::registry::{Counter, Family, Gauge, Histogram, LATENCY_BUCKETS};

/// Distinct service names kept as labels (configured services are always kept on top).
const MAX_SERVICES: usize = 64;
/// Distinct message types kept as labels.
const MAX_TYPES: usize = 128;
/// Series per family, whatever the labels.
const MAX_SERIES: usize = 2000;

/// How a client reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKind {
    Poll,
    Stream,
}

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Poll => "poll",
            ContactKind::Stream => "stream",
        }
    }
}

/// The result of one call into a plugin. A guest error is normal flow; a trap or timeout is the
/// plugin's fault (STYLE.md habit 3), so they are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginOutcome {
    Ok,
    /// The guest returned an error (temporary or permanent).
    Error,
    Trap,
    Timeout,
}

impl PluginOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginOutcome::Ok => "ok",
            PluginOutcome::Error => "error",
            PluginOutcome::Trap => "trap",
            PluginOutcome::Timeout => "timeout",
        }
    }
}

/// Cheap to clone; every clone records into the same registry. `Default` is a fresh registry
/// nobody scrapes, for engines built without one.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Refreshes some metrics from elsewhere just before each scrape.
type Collector = Box<dyn Fn(&Metrics) + Send + Sync>;

struct Families {
    collectors: RwLock<Vec<Collector>>,
    services: BoundedLabel,
    types: BoundedLabel,
    build_info: Family<Gauge>,
    contacts: Family<Counter>,
    contact_errors: Family<Counter>,
    streams_active: Family<Gauge>,
    from_clients: Family<Counter>,
    to_clients: Family<Counter>,
    redelivered: Family<Counter>,
    processed: Family<Counter>,
    processing_latency: Family<Histogram>,
    pending: Family<Gauge>,
    plugin_calls: Family<Counter>,
    plugin_latency: Family<Histogram>,
    store_latency: Family<Histogram>,
    notifications_sent: Family<Counter>,
    notifications_received: Family<Counter>,
    retention_deleted: Family<Counter>,
    plugin_reloads: Family<Counter>,
    admin_refused: Family<Counter>,
    dead_letters: Family<Counter>,
    expired: Family<Counter>,
    oldest_pending: Family<Gauge>,
    trace_written: Family<Counter>,
    trace_dropped: Family<Counter>,
    rollout_events: Family<Counter>,
}

fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family<Counter> {
    Family::new(name, help, labels, MAX_SERIES, Counter::default)
}

fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family<Gauge> {
    Family::new(name, help, labels, MAX_SERIES, Gauge::default)
}

fn latency(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family<Histogram> {
    Family::new(name, help, labels, MAX_SERIES, || {
        Histogram::new(LATENCY_BUCKETS)
    })
}

impl Default for Families {
    fn default() -> Self {
        let f = Self {
            collectors: RwLock::new(Vec::new()),
            services: BoundedLabel::new(MAX_SERVICES),
            types: BoundedLabel::new(MAX_TYPES),
            build_info: gauge(
                "fleetgate_build_info",
                "Always 1; the version of this server.",
                &["version"],
            ),
            contacts: counter(
                "fleetgate_client_contacts_total",
                "Client contacts accepted: polls and stream starts.",
                &["kind"],
            ),
            contact_errors: counter(
                "fleetgate_client_contact_errors_total",
                "Client contacts refused or failed, by reason.",
                &["kind", "reason"],
            ),
            streams_active: gauge(
                "fleetgate_client_streams_active",
                "Streaming connections held by this server.",
                &[],
            ),
            from_clients: counter(
                "fleetgate_messages_from_clients_total",
                "Valid messages received from clients, by destination service and type.",
                &["service", "type"],
            ),
            to_clients: counter(
                "fleetgate_messages_to_clients_total",
                "Messages handed to clients, by destination service and type.",
                &["service", "type"],
            ),
            redelivered: counter(
                "fleetgate_messages_redelivered_total",
                "Unacknowledged messages of a client's earlier contacts made due again by its new stream.",
                &[],
            ),
            processed: counter(
                "fleetgate_messages_processed_total",
                "Processing attempts of server-bound messages, by service and outcome.",
                &["service", "outcome"],
            ),
            processing_latency: latency(
                "fleetgate_message_processing_seconds",
                "Time to process one server-bound message, waiting for a slot included.",
                &["service"],
            ),
            pending: gauge(
                "fleetgate_pending_messages",
                "Messages waiting in the pending queue (refreshed periodically from the database).",
                &["destination"],
            ),
            plugin_calls: counter(
                "fleetgate_plugin_calls_total",
                "Calls into plugins, by service, plugin generation and outcome.",
                &["service", "generation", "outcome"],
            ),
            plugin_latency: latency(
                "fleetgate_plugin_call_seconds",
                "Duration of plugin calls.",
                &["service", "generation"],
            ),
            store_latency: latency(
                "fleetgate_store_operation_seconds",
                "Duration of datastore operations, by operation and whether it failed.",
                &["operation", "errored"],
            ),
            notifications_sent: counter(
                "fleetgate_notifications_sent_total",
                "\"Client has new messages\" notifications sent to other servers.",
                &["outcome"],
            ),
            notifications_received: counter(
                "fleetgate_notifications_received_total",
                "\"Client has new messages\" notifications received from other servers.",
                &[],
            ),
            retention_deleted: counter(
                "fleetgate_retention_deleted_total",
                "Rows deleted by retention, by table.",
                &["table"],
            ),
            plugin_reloads: counter(
                "fleetgate_plugin_reloads_total",
                "Plugin reloads, by outcome: ok, or refused (the old generation kept serving).",
                &["outcome"],
            ),
            admin_refused: counter(
                "fleetgate_admin_calls_refused_total",
                "Admin calls refused by the locked listener's policy, by RPC and code.",
                &["rpc", "code"],
            ),
            dead_letters: counter(
                "fleetgate_dead_letters_total",
                "Messages moved to the dead letters, by destination service and reason \
                 (exhausted, max_age, permanent, expired).",
                &["service", "reason"],
            ),
            expired: counter(
                "fleetgate_messages_expired_total",
                "Client-bound messages not delivered within their expiry, by destination service.",
                &["service"],
            ),
            rollout_events: counter(
                "fleetgate_plugin_rollout_events_total",
                "Plugin deployment events on this server: applied, automatic_rollback, build_failure.",
                &["service", "event"],
            ),
            oldest_pending: gauge(
                "fleetgate_oldest_pending_message_age_seconds",
                "Age of the oldest pending message, by destination service and direction \
                 (client or server); 0 once none is pending. Refreshed with fleetgate_pending_messages.",
                &["service", "destination"],
            ),
            trace_written: counter(
                "fleetgate_trace_steps_written_total",
                "Message trace steps written to the store.",
                &[],
            ),
            trace_dropped: counter(
                "fleetgate_trace_steps_dropped_total",
                "Message trace steps lost, by reason: queue_full (never waited for) or store_error.",
                &["reason"],
            ),
        };
        f.build_info.get(&[env!("CARGO_PKG_VERSION")]).set(1);
        f.streams_active.get(&[]).set(0);
        f.redelivered.get(&[]).inc_by(0);
        f.trace_written.get(&[]).inc_by(0);
        for reason in ["queue_full", "store_error"] {
            f.trace_dropped.get(&[reason]).inc_by(0);
        }
        f
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives a configured service its own label value whatever the cap.
    pub fn known_service(&self, name: &str) {
        self.inner.services.pin(name);
    }

    pub fn contact(&self, kind: ContactKind) {
        self.inner.contacts.get(&[kind.as_str()]).inc_by(1);
    }

    /// `reason` is a fixed word (`not_authorized`, `invalid`, `not_ready`, `internal`).
    pub fn contact_error(&self, kind: ContactKind, reason: &'static str) {
        self.inner
            .contact_errors
            .get(&[kind.as_str(), reason])
            .inc_by(1);
    }

    /// Counts a stream as active until the returned guard is dropped.
    pub fn stream_opened(&self) -> StreamGuard {
        let g = self.inner.streams_active.get(&[]);
        g.add(1);
        StreamGuard(g)
    }

    pub fn message_from_client(&self, service: &str, message_type: &str) {
        self.by_service_type(&self.inner.from_clients, service, message_type, 1);
    }

    pub fn messages_to_client(&self, service: &str, message_type: &str, n: u64) {
        self.by_service_type(&self.inner.to_clients, service, message_type, n);
    }

    /// Messages a new stream made due again because the contact they were leased to is superseded.
    pub fn messages_redelivered(&self, n: u64) {
        self.inner.redelivered.get(&[]).inc_by(n);
    }

    /// One processing attempt; `outcome` is `processed`, `failed` or `retry`.
    pub fn message_processed(&self, service: &str, outcome: &'static str, took: Duration) {
        let service = self.inner.services.value(service);
        self.inner.processed.get(&[&service, outcome]).inc_by(1);
        self.inner
            .processing_latency
            .get(&[&service])
            .observe_duration(took);
    }

    /// A plugin deployment event on this server; `event` is `applied` (it switched to the
    /// store's deployments of the service), `automatic_rollback` (its canary passed a threshold
    /// here) or `build_failure` (it could not build a candidate).
    pub fn plugin_rollout_event(&self, service: &str, event: &'static str) {
        let service = self.inner.services.value(service);
        self.inner.rollout_events.get(&[&service, event]).inc_by(1);
    }

    /// A message moved to the dead letters; `reason` is a fixed word.
    pub fn message_dead_lettered(&self, service: &str, reason: &'static str) {
        let service = self.inner.services.value(service);
        self.inner.dead_letters.get(&[&service, reason]).inc_by(1);
        if reason == "expired" {
            self.inner.expired.get(&[&service]).inc_by(1);
        }
    }

    /// The age of the oldest pending message of `service` towards clients (`to_client`) or
    /// servers.
    pub fn set_oldest_pending(&self, service: &str, to_client: bool, age: Duration) {
        let service = self.inner.services.value(service);
        let destination = if to_client { "client" } else { "server" };
        self.inner
            .oldest_pending
            .get(&[&service, destination])
            .set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
    }

    pub fn set_pending(&self, to_clients: u64, to_servers: u64) {
        let p = &self.inner.pending;
        p.get(&["client"])
            .set(i64::try_from(to_clients).unwrap_or(i64::MAX));
        p.get(&["server"])
            .set(i64::try_from(to_servers).unwrap_or(i64::MAX));
    }

    /// One call into a plugin; `generation` counts reloads of the service (0 until reloads exist).
    pub fn plugin_call(
        &self,
        service: &str,
        generation: u64,
        outcome: PluginOutcome,
        took: Duration,
    ) {
        let service = self.inner.services.value(service);
        let generation = generation.to_string();
        let i = &self.inner;
        i.plugin_calls
            .get(&[&service, &generation, outcome.as_str()])
            .inc_by(1);
        i.plugin_latency
            .get(&[&service, &generation])
            .observe_duration(took);
    }

    /// One datastore call; `operation` is the store method's name.
    pub fn store_operation(&self, operation: &'static str, errored: bool, took: Duration) {
        let errored = if errored { "true" } else { "false" };
        self.inner
            .store_latency
            .get(&[operation, errored])
            .observe_duration(took);
    }

    pub fn notification_sent(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.inner.notifications_sent.get(&[outcome]).inc_by(1);
    }

    pub fn notification_received(&self) {
        self.inner.notifications_received.get(&[]).inc_by(1);
    }

    /// Mirrors totals a notifier keeps itself (sent, failed to send, received).
    pub fn set_notification_totals(&self, sent: u64, failed: u64, received: u64) {
        let i = &self.inner;
        i.notifications_sent.get(&["ok"]).set_total(sent);
        i.notifications_sent.get(&["error"]).set_total(failed);
        i.notifications_received.get(&[]).set_total(received);
    }

    /// Runs `collect` before every [`Metrics::encode`], to copy in values counted elsewhere. It
    /// gets the handle as an argument so it need not hold one (which would be a cycle).
    pub fn on_scrape(&self, collect: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.inner
            .collectors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(collect));
    }

    /// One plugin reload, applied or refused.
    pub fn plugin_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.inner.plugin_reloads.get(&[outcome]).inc_by(1);
    }

    /// One admin call refused. `rpc` is a method name from the admin crate's fixed table (or
    /// `unknown`), `code` is `unauthenticated` or `permission_denied`: the series stay bounded.
    pub fn admin_call_refused(&self, rpc: &str, code: &'static str) {
        self.inner.admin_refused.get(&[rpc, code]).inc_by(1);
    }

    /// Rows a retention pass deleted from `table`.
    pub fn retention_deleted(&self, table: &'static str, n: u64) {
        self.inner.retention_deleted.get(&[table]).inc_by(n);
    }

    /// Trace steps one batch wrote.
    pub fn trace_steps_written(&self, n: u64) {
        self.inner.trace_written.get(&[]).inc_by(n);
    }

    /// Trace steps lost; `reason` is `queue_full` or `store_error`.
    pub fn trace_steps_dropped(&self, reason: &'static str, n: u64) {
        self.inner.trace_dropped.get(&[reason]).inc_by(n);
    }

    fn by_service_type(&self, f: &Family<Counter>, service: &str, message_type: &str, n: u64) {
        let service = self.inner.services.value(service);
        let message_type = self.inner.types.value(message_type);
        f.get(&[&service, &message_type]).inc_by(n);
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        for collect in self
            .inner
            .collectors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            collect(self);
        }
        let i = &self.inner;
        let mut out = String::with_capacity(16 * 1024);
        i.build_info.encode(&mut out);
        i.contacts.encode(&mut out);
        i.contact_errors.encode(&mut out);
        i.streams_active.encode(&mut out);
        i.from_clients.encode(&mut out);
        i.to_clients.encode(&mut out);
        i.redelivered.encode(&mut out);
        i.processed.encode(&mut out);
        i.processing_latency.encode(&mut out);
        i.pending.encode(&mut out);
        i.plugin_calls.encode(&mut out);
        i.plugin_latency.encode(&mut out);
        i.store_latency.encode(&mut out);
        i.notifications_sent.encode(&mut out);
        i.notifications_received.encode(&mut out);
        i.retention_deleted.encode(&mut out);
        i.plugin_reloads.encode(&mut out);
        i.admin_refused.encode(&mut out);
        i.trace_written.encode(&mut out);
        i.trace_dropped.encode(&mut out);
        i.dead_letters.encode(&mut out);
        i.expired.encode(&mut out);
        i.oldest_pending.encode(&mut out);
        i.rollout_events.encode(&mut out);
        out
    }
}

/// Holds one stream in `fleetgate_client_streams_active`.
pub struct StreamGuard(Arc<Gauge>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_encodes() {
        let m = Metrics::new();
        m.contact(ContactKind::Stream);
        m.message_from_client("system", "MessageAck");
        m.messages_to_client("GRR", "Job", 3);
        let guard = m.stream_opened();
        m.plugin_call("GRR", 0, PluginOutcome::Trap, Duration::from_millis(3));
        m.store_operation("ping", false, Duration::from_millis(1));
        m.plugin_reload(false);
        m.message_dead_lettered("GRR", "expired");
        m.plugin_rollout_event("GRR", "automatic_rollback");
        let text = m.encode();
        for line in [
            "fleetgate_client_contacts_total{kind=\"stream\"} 1",
            "fleetgate_messages_from_clients_total{service=\"system\",type=\"MessageAck\"} 1",
            "fleetgate_messages_to_clients_total{service=\"GRR\",type=\"Job\"} 3",
            "fleetgate_client_streams_active 1",
            "fleetgate_plugin_calls_total{service=\"GRR\",generation=\"0\",outcome=\"trap\"} 1",
            "fleetgate_store_operation_seconds_count{operation=\"ping\",errored=\"false\"} 1",
            "fleetgate_plugin_reloads_total{outcome=\"refused\"} 1",
            "fleetgate_dead_letters_total{service=\"GRR\",reason=\"expired\"} 1",
            "fleetgate_messages_expired_total{service=\"GRR\"} 1",
            "fleetgate_plugin_rollout_events_total{service=\"GRR\",event=\"automatic_rollback\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        drop(guard);
        assert!(m.encode().contains("fleetgate_client_streams_active 0"));
    }
}
