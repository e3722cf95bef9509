//! Broadcasts (server.md §9): one message template, sent once to every client with the required
//! labels, up to a limit shared by all servers through allocations.
//!
//! The working set is refreshed at start and then every [P, 2P) (`broadcast_poll_time`). Limited
//! broadcasts are sent only against an allocation this server holds (20 % of what is left, for
//! 10 minutes); unlimited ones need none and their sent count is written when they leave the set
//! or at [`Engine::stop_broadcasts`]. A refresh that adds anything clears the client cache (so the
//! next contact of every client is checked) and wakes every stream, a batch at a time.
//!
//! Which contacts are checked: a poll or stream start whose client record was not a cache hit,
//! and a stream's first fetch after a refresh that added something (tracked by
//! [`Engine::broadcast_generation`]), since a long-lived stream would otherwise never see a new
//! broadcast.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use fleetgate_pb::fleetspeak::server::Broadcast;
use fleetgate_pb::fleetspeak::{Address, Label, Message};
use fleetgate_store::{BROADCAST_UNLIMITED, BroadcastInfo, StoreError};
use fleetgate_types::time::{from_timestamp, to_timestamp};
use fleetgate_types::{BroadcastId, ClientId, MessageId};
use tokio_util::sync::CancellationToken;

use crate::{Engine, EngineError};

/// The original's default `broadcast_poll_time`.
pub const DEFAULT_POLL_TIME: Duration = Duration::from_secs(60);
/// After a refresh that added a broadcast, streams are woken this many at a time, one batch per
/// [`WAKE_EVERY`]: 2,000 a second, so 50,000 streams have all looked within 25 s, well inside a
/// poll period, while the store sees a steady load instead of one burst.
const WAKE_BATCH: usize = 100;
const WAKE_EVERY: Duration = Duration::from_millis(50);
/// A zero poll time made the original spin.
const MIN_POLL_TIME: Duration = Duration::from_secs(1);
/// Share of a broadcast's remaining limit one allocation reserves.
const ALLOCATION_FRACTION: f32 = 0.2;
const ALLOCATION_LIFETIME: Duration = Duration::from_secs(600);

/// The broadcast working set of one engine.
#[derive(Debug)]
pub(crate) struct Broadcasts {
    poll: Duration,
    held: RwLock<HashMap<BroadcastId, Arc<Held>>>,
    /// Serialises refreshes and the final cleanup. `true` once stopped: no allocation may be
    /// created after the final cleanup, or its share would stay reserved until it expires.
    refresh: tokio::sync::Mutex<bool>,
    /// Bumped after each refresh that added something.
    generation: AtomicU64,
    /// The paced wake of every stream after the last refresh that added something, while it runs.
    waking: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Broadcasts {
    pub(crate) fn new(poll: Duration) -> Self {
        Self {
            poll: poll.max(MIN_POLL_TIME),
            held: RwLock::new(HashMap::new()),
            refresh: tokio::sync::Mutex::new(false),
            generation: AtomicU64::new(0),
            waking: std::sync::Mutex::new(None),
        }
    }

    fn snapshot(&self) -> HashMap<BroadcastId, Arc<Held>> {
        self.held.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, next: HashMap<BroadcastId, Arc<Held>>) {
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = next;
    }
}

/// One broadcast this server may send, with its allocation.
#[derive(Debug)]
struct Held {
    id: BroadcastId,
    broadcast: Broadcast,
    required: HashSet<(String, String)>,
    expiry: Option<SystemTime>,
    /// `None` for unlimited broadcasts.
    allocation: Option<[u8; 8]>,
    limit: u64,
    allocation_expiry: Option<SystemTime>,
    /// Instances saved under this entry (reserved before saving, returned if saving fails).
    sent: AtomicU64,
    /// Senders hold a read guard while saving; the cleanup takes the write guard, so the count it
    /// writes includes every instance, and marks the entry retired so no later sender uses it.
    in_use: tokio::sync::RwLock<()>,
    retired: AtomicBool,
}

impl Held {
    fn new(
        id: BroadcastId,
        broadcast: Broadcast,
        allocation: Option<([u8; 8], u64, SystemTime)>,
    ) -> Self {
        let required = broadcast
            .required_labels
            .iter()
            .map(|l| (l.service_name.clone(), l.label.clone()))
            .collect();
        let expiry = broadcast.expiration_time.as_ref().and_then(from_timestamp);
        Self {
            id,
            required,
            expiry,
            allocation: allocation.map(|a| a.0),
            limit: allocation.map_or(BROADCAST_UNLIMITED, |a| a.1),
            allocation_expiry: allocation.map(|a| a.2),
            broadcast,
            sent: AtomicU64::new(0),
            in_use: tokio::sync::RwLock::new(()),
            retired: AtomicBool::new(false),
        }
    }

    /// Worth keeping at a refresh: room left and not expiring within `margin`.
    fn keep(&self, now: SystemTime, margin: Duration) -> bool {
        self.sent.load(Ordering::Acquire) < self.limit
            && self.allocation_expiry.is_none_or(|e| e > now + margin)
    }

    /// The client qualifies, apart from "not sent yet", which needs the store.
    fn matches(&self, now: SystemTime, labels: &HashSet<(&str, &str)>) -> bool {
        self.expiry.is_none_or(|e| e > now)
            && self.allocation_expiry.is_none_or(|e| e > now)
            && self.sent.load(Ordering::Acquire) < self.limit
            && self
                .required
                .iter()
                .all(|(s, l)| labels.contains(&(s.as_str(), l.as_str())))
    }

    fn reserve(&self) -> bool {
        self.sent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn instance(&self, client: ClientId, now: SystemTime) -> Message {
        let b = &self.broadcast;
        let source = b.source.as_ref().map_or("", |s| s.service_name.as_str());
        let service = match b.destination.as_ref() {
            Some(d) if !d.service_name.is_empty() => d.service_name.as_str(),
            _ => source,
        };
        Message {
            message_id: MessageId::random().to_vec(),
            source: Some(Address {
                client_id: Vec::new(),
                service_name: source.into(),
            }),
            destination: Some(Address {
                client_id: client.to_vec(),
                service_name: service.into(),
            }),
            message_type: b.message_type.clone(),
            data: b.data.clone(),
            creation_time: Some(to_timestamp(now)),
            ..Default::default()
        }
    }
}

impl Engine {
    /// Refreshes the broadcast working set now and then every [P, 2P) until `shutdown` fires.
    /// The binary spawns this once; [`Engine::stop_broadcasts`] writes the final counts.
    pub async fn run_broadcasts(&self, shutdown: CancellationToken) {
        let poll = self.inner.broadcasts.poll;
        loop {
            if let Err(e) = self.refresh_broadcasts().await {
                tracing::warn!(error = %e, "refreshing broadcasts failed");
            }
            let wait = poll.mul_f64(1.0 + rand::random::<f64>());
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One refresh; returns whether it added anything (then the client cache was cleared and
    /// every stream woken). Does nothing after [`Engine::stop_broadcasts`].
    pub async fn refresh_broadcasts(&self) -> Result<bool, EngineError> {
        let b = &self.inner.broadcasts;
        let stopped = b.refresh.lock().await;
        if *stopped {
            return Ok(false);
        }
        let active = self.inner.store.list_active_broadcasts().await?;
        let now = self.inner.clock.now();
        let old = b.snapshot();
        let mut next = HashMap::new();
        let mut added = false;
        for info in active {
            let Ok(id) = BroadcastId::from_bytes(&info.broadcast.broadcast_id) else {
                tracing::warn!(id = %hex::encode(&info.broadcast.broadcast_id), "skipping broadcast with a bad ID");
                continue;
            };
            let prev = old.get(&id);
            if let Some(h) = prev.filter(|h| h.keep(now, b.poll * 2)) {
                next.insert(id, h.clone());
                continue;
            }
            // Return a spent or expiring allocation before asking for the next: until its count
            // reaches the broadcast's `sent`, the allocation arithmetic would not see what it used
            // and could hand out more than the limit.
            if let Some(h) = prev {
                self.retire(h).await;
            }
            match self.hold(id, info, now).await {
                Ok(Some(h)) => {
                    next.insert(id, Arc::new(h));
                    added = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(broadcast = %id, error = %e, "allocating broadcast failed");
                }
            }
        }
        let retired: Vec<Arc<Held>> = old
            .into_iter()
            .filter(|(id, h)| !next.get(id).is_some_and(|n| Arc::ptr_eq(n, h)))
            .map(|(_, h)| h)
            .collect();
        b.replace(next);
        if added {
            b.generation.fetch_add(1, Ordering::AcqRel);
            self.inner.cache.clear();
            let engine = self.clone();
            let wake = tokio::spawn(async move {
                engine
                    .inner
                    .streams
                    .notify_all_paced(WAKE_BATCH, WAKE_EVERY)
                    .await;
            });
            // One paced wake at a time: the new one covers every stream, and two running side
            // by side would double the load the pacing is there to spread.
            let previous = b
                .waking
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(wake.abort_handle());
            if let Some(previous) = previous {
                previous.abort();
            }
        }
        for h in retired {
            self.retire(&h).await;
        }
        drop(stopped);
        Ok(added)
    }

    /// Returns every allocation with its final sent count; the binary calls this once at
    /// shutdown, after the frontend has drained and before the store closes. Idempotent.
    pub async fn stop_broadcasts(&self) {
        let b = &self.inner.broadcasts;
        let mut stopped = b.refresh.lock().await;
        *stopped = true;
        let held = b.snapshot();
        b.replace(HashMap::new());
        for h in held.values() {
            self.retire(h).await;
        }
    }

    /// Changes whenever a refresh added broadcasts; streams compare it with what they last saw.
    pub fn broadcast_generation(&self) -> u64 {
        self.inner.broadcasts.generation.load(Ordering::Acquire)
    }

    /// A new entry for an active broadcast: unlimited ones directly, limited ones with a fresh
    /// allocation (`None` when nothing is left to allocate).
    async fn hold(
        &self,
        id: BroadcastId,
        info: BroadcastInfo,
        now: SystemTime,
    ) -> Result<Option<Held>, StoreError> {
        if info.limit == BROADCAST_UNLIMITED {
            return Ok(Some(Held::new(id, info.broadcast, None)));
        }
        if info.sent >= info.limit {
            return Ok(None);
        }
        let expiry = now + ALLOCATION_LIFETIME;
        let alloc = self
            .inner
            .store
            .create_allocation(id, ALLOCATION_FRACTION, expiry)
            .await?;
        Ok(alloc.map(|a| Held::new(id, info.broadcast, Some((a.id, a.limit, a.expiry)))))
    }

    /// Waits for in-flight senders, then writes the entry's sent count and frees its allocation.
    /// Only the first call for an entry writes anything.
    async fn retire(&self, h: &Held) {
        let _exclusive = h.in_use.write().await;
        if h.retired.swap(true, Ordering::AcqRel) {
            return;
        }
        let sent = h.sent.load(Ordering::Acquire);
        if let Err(e) = self
            .inner
            .store
            .cleanup_allocation(h.id, h.allocation, sent)
            .await
        {
            tracing::warn!(broadcast = %h.id, sent, error = %e, "cleaning up broadcast allocation failed");
        }
    }

    /// Saves and returns an instance of every held broadcast `client` qualifies for. Failures are
    /// logged: a contact never fails because of a broadcast.
    pub(crate) async fn broadcast_messages(
        &self,
        client: ClientId,
        labels: &[Label],
    ) -> Vec<Message> {
        let now = self.inner.clock.now();
        let have: HashSet<(&str, &str)> = labels
            .iter()
            .map(|l| (l.service_name.as_str(), l.label.as_str()))
            .collect();
        let mut candidates: Vec<Arc<Held>> = self
            .inner
            .broadcasts
            .snapshot()
            .into_values()
            .filter(|h| h.matches(now, &have))
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        match self.inner.store.list_sent_broadcasts(client).await {
            Ok(sent) => candidates.retain(|h| !sent.contains(&h.id)),
            Err(e) => {
                tracing::warn!(client = %client, error = %e, "listing sent broadcasts failed");
                return Vec::new();
            }
        }
        let mut out = Vec::new();
        for h in candidates {
            if let Some(m) = self.send_instance(&h, client, now).await {
                out.push(m);
            }
        }
        out
    }

    async fn send_instance(&self, h: &Held, client: ClientId, now: SystemTime) -> Option<Message> {
        let _shared = h.in_use.read().await;
        if h.retired.load(Ordering::Acquire) || !h.reserve() {
            return None;
        }
        let m = h.instance(client, now);
        match self
            .inner
            .store
            .save_broadcast_message(&m, h.id, client, h.allocation)
            .await
        {
            Ok(()) => Some(m),
            Err(e) => {
                h.sent.fetch_sub(1, Ordering::AcqRel);
                match e {
                    StoreError::BroadcastDisabled(_) => {
                        tracing::debug!(broadcast = %h.id, client = %client, error = %e, "broadcast no longer sendable")
                    }
                    _ => {
                        tracing::warn!(broadcast = %h.id, client = %client, error = %e, "saving broadcast instance failed")
                    }
                }
                None
            }
        }
    }
}
