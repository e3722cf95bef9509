//! A short-lived cache of client records, so a busy client does not cost a read per contact.
//!
//! Entries live 45 s from when they were read, as in the original; that bounds how long a
//! blacklisting done on another server can go unnoticed. Expired entries are swept out once per
//! 45 s, on a `put`: a streaming client contacts once per stream, so without the sweep every
//! client that ever connected would keep its record here for the life of the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fleetgate_store::ClientData;
use fleetgate_types::ClientId;

pub const MAX_AGE: Duration = Duration::from_secs(45);
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, Default)]
pub struct ClientCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<ClientId, (Instant, ClientData)>,
    /// When expired entries were last swept out; `None` until the first `put`.
    swept: Option<Instant>,
}

impl Inner {
    /// Drops expired entries, and gives back the table's memory once it is mostly empty.
    fn sweep(&mut self, now: Instant) {
        self.entries
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < MAX_AGE);
        if self.entries.capacity() > 4 * self.entries.len() + 1024 {
            self.entries.shrink_to(2 * self.entries.len());
        }
        self.swept = Some(now);
    }
}

impl ClientCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, id: ClientId) -> Option<ClientData> {
        let inner = self.lock();
        let (at, data) = inner.entries.get(&id)?;
        (at.elapsed() < MAX_AGE).then(|| data.clone())
    }

    pub fn put(&self, id: ClientId, data: ClientData) {
        self.put_at(id, data, Instant::now());
    }

    fn put_at(&self, id: ClientId, data: ClientData, now: Instant) {
        let mut inner = self.lock();
        let due = inner
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= MAX_AGE);
        if due || inner.entries.len() >= MAX_ENTRIES {
            inner.sweep(now);
            // Bounded memory even when every entry is fresh.
            if inner.entries.len() >= MAX_ENTRIES {
                inner.entries.clear();
            }
        }
        inner.entries.insert(id, (now, data));
    }

    pub fn remove(&self, id: ClientId) {
        self.lock().entries.remove(&id);
    }

    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ClientId {
        ClientId::from_bytes(&[n; 8]).unwrap()
    }

    fn data() -> ClientData {
        ClientData {
            key: vec![1; 91],
            labels: Vec::new(),
            blacklisted: false,
        }
    }

    fn len(cache: &ClientCache) -> usize {
        cache.lock().entries.len()
    }

    #[test]
    fn expired_entries_are_swept_once_per_max_age() {
        let cache = ClientCache::new();
        let t0 = Instant::now();
        for n in 0..100 {
            cache.put_at(id(n), data(), t0);
        }
        assert_eq!(len(&cache), 100);
        // Not yet due: nothing is swept, even past an entry's age.
        cache.put_at(id(200), data(), t0 + MAX_AGE / 2);
        assert_eq!(len(&cache), 101);
        // Due: the 100 first entries have expired, the one from half-way has not.
        cache.put_at(id(201), data(), t0 + MAX_AGE + Duration::from_secs(1));
        assert_eq!(len(&cache), 2);
        assert!(cache.get(id(0)).is_none());
    }

    #[test]
    fn a_sweep_gives_memory_back() {
        let cache = ClientCache::new();
        let t0 = Instant::now();
        for n in 0..10_000u32 {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&n.to_be_bytes());
            cache.put_at(ClientId::from_bytes(&b).unwrap(), data(), t0);
        }
        let before = cache.lock().entries.capacity();
        cache.put_at(id(1), data(), t0 + MAX_AGE);
        let after = cache.lock().entries.capacity();
        assert!(after < before / 4, "capacity {before} -> {after}");
    }
}
