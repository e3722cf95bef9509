//! The interface every server-side service implements, and the registry that routes to them.
//!
//! The plugin runtime implements [`Service`] for WebAssembly components; the built-in `system`
//! service and `NOOP` implement it natively.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetgate_types::pb::fleetspeak::Message;
use tokio::sync::Semaphore;

use crate::lifecycle::RetryPolicy;

/// Why a service did not process a message. A temporary error is retried later; a permanent one
/// marks the message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("temporary: {0}")]
    Temporary(String),
    #[error("{0}")]
    Permanent(String),
}

#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Processes one message. Called concurrently, up to the service's `max_parallelism`.
    async fn process(&self, message: &Message) -> Result<(), ServiceError>;

    /// What version of the service processed a message (a plugin's component digest): named
    /// in the message trace and in the dead letters of the messages it fails. `None` for
    /// services without one (the default).
    fn version(&self) -> Option<String> {
        None
    }

    /// [`process`](Self::process), also saying which version processed the message: a service
    /// that picks between versions per message (a canary) overrides it, so a dead letter names
    /// the version that failed it.
    async fn process_versioned(
        &self,
        message: &Message,
    ) -> (Result<(), ServiceError>, Option<String>) {
        (self.process(message).await, self.version())
    }
}

/// Accepts and drops everything (the original's `NOOP` factory).
#[derive(Debug, Default)]
pub struct NoopService;

#[async_trait]
impl Service for NoopService {
    async fn process(&self, _message: &Message) -> Result<(), ServiceError> {
        Ok(())
    }
}

/// One configured service with its concurrency limit and retry policy.
#[derive(Clone)]
pub struct ServiceEntry {
    pub service: Arc<dyn Service>,
    /// Permits = `max_parallelism`. A caller waits for a permit rather than shedding the message.
    pub slots: Arc<Semaphore>,
    /// When its messages are retried and when they end in the dead letters.
    pub policy: RetryPolicy,
}

impl ServiceEntry {
    pub fn new(service: Arc<dyn Service>, max_parallelism: u32) -> Self {
        let n = if max_parallelism == 0 {
            100
        } else {
            max_parallelism as usize
        };
        Self {
            service,
            slots: Arc::new(Semaphore::new(n)),
            policy: RetryPolicy::default(),
        }
    }

    /// The entry with `policy` instead of Fleetspeak's (retry forever on its back-off).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// What the outcome of one processing attempt means for storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    Failed(String),
    /// Keep the message pending and retry it later.
    Retry(String),
}

/// How long one processing attempt may take, waiting for a slot included.
pub const PROCESSING_BUDGET: Duration = Duration::from_secs(30);

/// The services of this server, by name.
#[derive(Clone, Default)]
pub struct Services {
    by_name: HashMap<String, ServiceEntry>,
}

impl Services {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, entry: ServiceEntry) {
        self.by_name.insert(name.into(), entry);
    }

    /// Returns whether `name` was present.
    pub fn remove(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    pub fn get(&self, name: &str) -> Option<&ServiceEntry> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// Runs one message through a service: waits for a slot (backpressure, not shedding), then calls it,
/// all within the processing budget. A timeout is temporary, as in the original. Returns the
/// outcome and the version that gave it.
pub async fn run(entry: &ServiceEntry, message: &Message) -> (Outcome, Option<String>) {
    let attempt = async {
        let Ok(_permit) = entry.slots.acquire().await else {
            return (
                Err(ServiceError::Temporary("service stopped".into())),
                entry.service.version(),
            );
        };
        entry.service.process_versioned(message).await
    };
    match tokio::time::timeout(PROCESSING_BUDGET, attempt).await {
        Ok((Ok(()), v)) => (Outcome::Processed, v),
        Ok((Err(ServiceError::Permanent(e)), v)) => (Outcome::Failed(e), v),
        Ok((Err(ServiceError::Temporary(e)), v)) => (Outcome::Retry(e), v),
        Err(_) => (
            Outcome::Retry("processing deadline exceeded".into()),
            entry.service.version(),
        ),
    }
}
