//! A short-lived cache of client records, so a busy client does not cost a read per contact.
//!
//! Entries live 45 s from when they were read, as in the original; that bounds how long a
//! blacklisting done on another server can go unnoticed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fleetgate_store::ClientData;
use fleetgate_types::ClientId;

pub const MAX_AGE: Duration = Duration::from_secs(45);
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, Default)]
pub struct ClientCache {
    entries: Mutex<HashMap<ClientId, (Instant, ClientData)>>,
}

impl ClientCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, id: ClientId) -> Option<ClientData> {
        let entries = self.lock();
        let (at, data) = entries.get(&id)?;
        (at.elapsed() < MAX_AGE).then(|| data.clone())
    }

    pub fn put(&self, id: ClientId, data: ClientData) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            // Bounded memory: drop the stale ones first, everything if that is not enough.
            entries.retain(|_, (at, _)| at.elapsed() < MAX_AGE);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(id, (Instant::now(), data));
    }

    pub fn remove(&self, id: ClientId) {
        self.lock().remove(&id);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, (Instant, ClientData)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
