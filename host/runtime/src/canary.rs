//! A canary: the stable version and a candidate behind one [`Service`] that picks per message.
//!
//! The pick is deterministic per client, so a client gets the same version on every server and
//! after reconnecting: with a share, the first 8 bytes of SHA-256(client ID ‖ deployment ID, big
//! endian) mod 100 below the share; with labels, the client having every label. A message
//! without a source client (an admin insert to a server service) goes to the stable version.
//!
//! With automatic rollback, each version's recent calls are kept over a window (the last
//! `window` of time, at most `window_calls` calls) and after each candidate call the candidate
//! is compared with the stable version. Once the candidate passes a threshold the canary is
//! *tripped*: from then on this server sends everything to the stable version, at once, and
//! the reason waits for the rollout loop to record the rollback in the store (so the other
//! servers follow within one poll). Messages the candidate failed temporarily stay pending and
//! the backlog retries them, on the stable version.
//!
//! A shadow run is a canary that serves no one: every message goes to the stable version, and
//! the messages the selection picks are also copied to the candidate, after the stable version
//! answered and without the caller waiting. The candidate runs with its side effects withheld
//! (see [`crate::Factory::build_shadow`]); [`ShadowStats`] compares the two outcomes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fleetgate_engine::{Engine, Service, ServiceError};
use fleetgate_pb::fleetspeak::{Label, Message};
use fleetgate_types::ClientId;
use sha2::{Digest, Sha256};

use crate::host::Withheld;
use crate::service::{CallKind, ComponentService};

/// A candidate's p99 is compared with the stable version's only above this: below it, call times
/// are dominated by noise (instance set-up, the scheduler).
pub const P99_FLOOR: Duration = Duration::from_millis(50);

/// Which messages the candidate takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Clients whose stable hash falls below this percentage (0–100).
    Share(u8),
    /// Clients having every one of these labels: `service:label`, or a bare label of any service.
    Labels(Vec<String>),
}

/// When a canary with automatic rollback is stopped (see `DeploymentStore`'s `Thresholds`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub window: Duration,
    pub window_calls: u32,
    pub min_calls: u32,
    pub error_rate_points: f64,
    pub p99_ratio: f64,
}

/// One version a canary routes to.
#[derive(Clone)]
pub struct Version {
    pub service: Arc<dyn Service>,
    /// Set for a component, whose calls say whether they trapped.
    pub component: Option<Arc<ComponentService>>,
}

impl Version {
    pub fn of(component: Arc<ComponentService>) -> Self {
        Self {
            service: component.clone(),
            component: Some(component),
        }
    }

    /// The component's digest (hex), empty for a native service.
    pub fn digest(&self) -> String {
        self.component
            .as_ref()
            .map(|c| c.digest().to_owned())
            .unwrap_or_default()
    }

    async fn call(&self, m: &Message) -> (Result<(), ServiceError>, CallKind) {
        match &self.component {
            Some(c) => c.process_classified(m).await,
            None => {
                let r = self.service.process(m).await;
                let kind = match &r {
                    Ok(()) => CallKind::Ok,
                    Err(ServiceError::Permanent(_)) => CallKind::Permanent,
                    Err(ServiceError::Temporary(_)) => CallKind::Temporary,
                };
                (r, kind)
            }
        }
    }
}

/// Whether the client with `id` falls in a `share` % canary of `deployment`.
pub fn in_share(client: &[u8], deployment: u64, share: u8) -> bool {
    let mut h = Sha256::new();
    h.update(client);
    h.update(deployment.to_be_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) % 100 < u64::from(share)
}

/// Whether `labels` contain every one of `wanted` (`service:label` or a bare label).
pub fn has_labels(labels: &[Label], wanted: &[String]) -> bool {
    wanted.iter().all(|w| {
        labels.iter().any(|l| match w.split_once(':') {
            Some((svc, label)) => l.service_name == svc && l.label == label,
            None => l.label == *w,
        })
    })
}

/// A shadow run's outcomes: the candidate's against the stable version's, for the same copies.
#[derive(Debug, Default)]
pub struct ShadowStats {
    /// The candidate's withheld side effects.
    pub withheld: Arc<Withheld>,
    copies: AtomicU64,
    agreed: AtomicU64,
    candidate_failed: AtomicU64,
    candidate_succeeded: AtomicU64,
    last_difference: Mutex<String>,
}

/// A point-in-time copy of [`ShadowStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShadowSnapshot {
    /// Messages copied to the candidate (and finished there).
    pub copies: u64,
    /// Copies where both versions ended the same way (both succeeded, or failed alike).
    pub agreed: u64,
    /// The stable version succeeded, the candidate did not.
    pub candidate_failed: u64,
    /// The stable version failed, the candidate succeeded.
    pub candidate_succeeded: u64,
    pub withheld_messages: u64,
    pub withheld_grpc_calls: u64,
    /// The latest difference, as `stable: …; candidate: …`.
    pub last_difference: String,
}

fn describe(kind: CallKind, r: &Result<(), ServiceError>) -> String {
    match (kind, r) {
        (_, Ok(())) => "ok".into(),
        (CallKind::Trap, Err(e)) => format!("trap ({e})"),
        (_, Err(e)) => e.to_string(),
    }
}

impl ShadowStats {
    fn compare(
        &self,
        stable: (CallKind, &Result<(), ServiceError>),
        candidate: (CallKind, &Result<(), ServiceError>),
    ) {
        self.copies.fetch_add(1, Ordering::Relaxed);
        if stable.0 == candidate.0 {
            self.agreed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Both failed, differently: a difference, in neither count.
        match (stable.1.is_ok(), candidate.1.is_ok()) {
            (true, false) => {
                self.candidate_failed.fetch_add(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.candidate_succeeded.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        *self
            .last_difference
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = format!(
            "stable: {}; candidate: {}",
            describe(stable.0, stable.1),
            describe(candidate.0, candidate.1)
        );
    }

    pub fn snapshot(&self) -> ShadowSnapshot {
        ShadowSnapshot {
            copies: self.copies.load(Ordering::Relaxed),
            agreed: self.agreed.load(Ordering::Relaxed),
            candidate_failed: self.candidate_failed.load(Ordering::Relaxed),
            candidate_succeeded: self.candidate_succeeded.load(Ordering::Relaxed),
            withheld_messages: self.withheld.messages.load(Ordering::Relaxed),
            withheld_grpc_calls: self.withheld.grpc_calls.load(Ordering::Relaxed),
            last_difference: self
                .last_difference
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// A version's calls over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowStats {
    pub calls: u64,
    /// Calls that did not succeed, traps included.
    pub errors: u64,
    /// Traps, CPU-budget timeouts and out-of-memory.
    pub traps: u64,
    pub permanent: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl WindowStats {
    /// Traps, timeouts and permanent errors, as a percentage of the calls.
    pub fn bad_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            (self.traps + self.permanent) as f64 * 100.0 / self.calls as f64
        }
    }
}

#[derive(Default)]
struct Window {
    calls: VecDeque<(Instant, CallKind, Duration)>,
}

impl Window {
    fn push(&mut self, kind: CallKind, took: Duration, t: &Thresholds) {
        self.calls.push_back((Instant::now(), kind, took));
        self.trim(t);
    }

    fn trim(&mut self, t: &Thresholds) {
        let max = t.window_calls.max(1) as usize;
        while self.calls.len() > max {
            self.calls.pop_front();
        }
        let now = Instant::now();
        while self
            .calls
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > t.window)
        {
            self.calls.pop_front();
        }
    }

    fn stats(&self) -> WindowStats {
        let mut s = WindowStats {
            calls: self.calls.len() as u64,
            ..Default::default()
        };
        let mut times: Vec<f64> = Vec::with_capacity(self.calls.len());
        for (_, kind, took) in &self.calls {
            match kind {
                CallKind::Ok => {}
                CallKind::Temporary => s.errors += 1,
                CallKind::Permanent => {
                    s.errors += 1;
                    s.permanent += 1;
                }
                CallKind::Trap => {
                    s.errors += 1;
                    s.traps += 1;
                }
            }
            times.push(took.as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if times.is_empty() {
                0.0
            } else {
                times[((times.len() - 1) as f64 * p).round() as usize]
            }
        };
        (s.p50_ms, s.p99_ms) = (pct(0.5), pct(0.99));
        s
    }
}

/// Why the candidate should be rolled back, if it should.
pub fn verdict(stable: &WindowStats, candidate: &WindowStats, t: &Thresholds) -> Option<String> {
    if candidate.calls < u64::from(t.min_calls.max(1)) {
        return None;
    }
    let (c, s) = (candidate.bad_rate(), stable.bad_rate());
    if c > s + t.error_rate_points {
        return Some(format!(
            "automatic rollback: {c:.0}% of the candidate's last {} calls trapped, timed out or \
             failed permanently ({} traps, {} permanent), against {s:.0}% of the stable version's \
             {} (threshold: {:.0} points above)",
            candidate.calls,
            candidate.traps,
            candidate.permanent,
            stable.calls,
            t.error_rate_points
        ));
    }
    let floor = P99_FLOOR.as_secs_f64() * 1000.0;
    if stable.calls >= u64::from(t.min_calls.max(1))
        && candidate.p99_ms > floor
        && candidate.p99_ms > stable.p99_ms * t.p99_ratio
    {
        return Some(format!(
            "automatic rollback: the candidate's p99 call time {:.1} ms over its last {} calls is \
             above {}x the stable version's {:.1} ms",
            candidate.p99_ms, candidate.calls, t.p99_ratio, stable.p99_ms
        ));
    }
    None
}

/// The stable version and a candidate, picked per message (see the module docs).
pub struct Canary {
    deployment: u64,
    stable: RwLock<Version>,
    candidate: Version,
    selection: Selection,
    engine: Engine,
    /// Automatic rollback's thresholds; the window is kept (for status) either way.
    auto_rollback: Option<Thresholds>,
    thresholds: Thresholds,
    windows: Mutex<(Window, Window)>,
    tripped: OnceLock<String>,
    /// Set for a shadow run.
    shadow: Option<Arc<ShadowStats>>,
}

impl Canary {
    pub fn new(
        deployment: u64,
        stable: Version,
        candidate: Version,
        selection: Selection,
        engine: Engine,
        thresholds: Thresholds,
        auto_rollback: bool,
    ) -> Self {
        Self {
            deployment,
            stable: RwLock::new(stable),
            candidate,
            selection,
            engine,
            auto_rollback: auto_rollback.then_some(thresholds),
            thresholds,
            windows: Mutex::default(),
            tripped: OnceLock::new(),
            shadow: None,
        }
    }

    /// Makes it a shadow run (see the module docs).
    pub fn shadowing(mut self, stats: Arc<ShadowStats>) -> Self {
        self.shadow = Some(stats);
        self
    }

    /// A shadow run's comparison, if it is one.
    pub fn shadow(&self) -> Option<ShadowSnapshot> {
        self.shadow.as_ref().map(|s| s.snapshot())
    }

    pub fn deployment(&self) -> u64 {
        self.deployment
    }

    pub fn candidate(&self) -> &Version {
        &self.candidate
    }

    pub fn stable(&self) -> Version {
        self.stable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The stable version changed underneath (a reload of the services file).
    pub fn set_stable(&self, stable: Version) {
        *self.stable.write().unwrap_or_else(|p| p.into_inner()) = stable;
    }

    /// Why the automatic rollback stopped the candidate on this server, once it has.
    pub fn tripped(&self) -> Option<&str> {
        self.tripped.get().map(String::as_str)
    }

    /// Both versions' calls over the window: (stable, candidate).
    pub fn window_stats(&self) -> (WindowStats, WindowStats) {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        w.0.trim(&self.thresholds);
        w.1.trim(&self.thresholds);
        (w.0.stats(), w.1.stats())
    }

    /// Whether `m` goes to the candidate.
    pub async fn picks_candidate(&self, m: &Message) -> bool {
        if self.tripped.get().is_some() {
            return false;
        }
        let Some(client) = m
            .source
            .as_ref()
            .map(|s| s.client_id.as_slice())
            .filter(|c| !c.is_empty())
        else {
            return false;
        };
        match &self.selection {
            Selection::Share(share) => in_share(client, self.deployment, *share),
            Selection::Labels(wanted) => {
                let Ok(id) = ClientId::from_bytes(client) else {
                    return false;
                };
                match self.engine.client_labels(id).await {
                    Some(labels) => has_labels(&labels, wanted),
                    None => false,
                }
            }
        }
    }

    fn record(&self, candidate: bool, kind: CallKind, took: Duration) {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let t = self.thresholds;
        if candidate {
            w.1.push(kind, took, &t);
        } else {
            w.0.push(kind, took, &t);
        }
        let Some(auto) = &self.auto_rollback else {
            return;
        };
        if !candidate || self.tripped.get().is_some() {
            return;
        }
        w.0.trim(&t);
        if let Some(reason) = verdict(&w.0.stats(), &w.1.stats(), auto) {
            tracing::warn!(deployment = self.deployment, "{reason}");
            let _ = self.tripped.set(reason);
        }
    }
}

#[async_trait]
impl Service for Canary {
    async fn process(&self, message: &Message) -> Result<(), ServiceError> {
        self.process_versioned(message).await.0
    }

    fn version(&self) -> Option<String> {
        self.stable().service.version()
    }

    async fn process_versioned(
        &self,
        message: &Message,
    ) -> (Result<(), ServiceError>, Option<String>) {
        if let Some(shadow) = &self.shadow {
            let copy = self.picks_candidate(message).await;
            let stable = self.stable();
            let started = Instant::now();
            let (result, kind) = stable.call(message).await;
            self.record(false, kind, started.elapsed());
            if copy {
                let (candidate, m, shadow) =
                    (self.candidate.clone(), message.clone(), shadow.clone());
                let stable_result = result.clone();
                tokio::spawn(async move {
                    let (r, k) = candidate.call(&m).await;
                    shadow.compare((kind, &stable_result), (k, &r));
                });
            }
            return (result, stable.service.version());
        }
        let candidate = self.picks_candidate(message).await;
        let version = if candidate {
            self.candidate.clone()
        } else {
            self.stable()
        };
        let started = Instant::now();
        let (result, kind) = version.call(message).await;
        self.record(candidate, kind, started.elapsed());
        (result, version.service.version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Thresholds {
        Thresholds {
            window: Duration::from_secs(30),
            window_calls: 50,
            min_calls: 5,
            error_rate_points: 10.0,
            p99_ratio: 2.0,
        }
    }

    #[test]
    fn the_share_is_stable_per_client_and_close_to_asked() {
        let picked = (0u32..10_000)
            .filter(|i| in_share(&u64::from(*i).to_be_bytes(), 7, 30))
            .count();
        assert!((2_700..3_300).contains(&picked), "{picked} of 10000 at 30%");
        for i in 0u64..100 {
            let c = i.to_be_bytes();
            assert_eq!(in_share(&c, 7, 30), in_share(&c, 7, 30));
            assert!(!in_share(&c, 7, 0));
            assert!(in_share(&c, 7, 100));
        }
    }

    #[test]
    fn labels_must_all_be_present() {
        let l = |s: &str, v: &str| Label {
            service_name: s.into(),
            label: v.into(),
        };
        let labels = [l("client", "linux"), l("Tag", "canary")];
        assert!(has_labels(&labels, &["linux".into()]));
        assert!(has_labels(
            &labels,
            &["client:linux".into(), "canary".into()]
        ));
        assert!(!has_labels(&labels, &["linux".into(), "windows".into()]));
        assert!(!has_labels(&labels, &["Tag:linux".into()]));
    }

    #[test]
    fn the_verdict_compares_with_the_stable_version() {
        let s = |calls, traps, p99_ms| WindowStats {
            calls,
            errors: traps,
            traps,
            permanent: 0,
            p50_ms: p99_ms,
            p99_ms,
        };
        assert_eq!(
            verdict(&s(100, 0, 1.0), &s(4, 4, 1.0), &t()),
            None,
            "too few"
        );
        assert!(verdict(&s(100, 0, 1.0), &s(10, 2, 1.0), &t()).is_some());
        assert_eq!(verdict(&s(100, 10, 1.0), &s(10, 2, 1.0), &t()), None);
        assert_eq!(
            verdict(&s(100, 0, 1.0), &s(10, 0, 30.0), &t()),
            None,
            "floor"
        );
        assert!(verdict(&s(100, 0, 40.0), &s(10, 0, 90.0), &t()).is_some());
        assert_eq!(verdict(&s(100, 0, 50.0), &s(10, 0, 90.0), &t()), None);
    }
}
