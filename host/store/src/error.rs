//! Store errors that callers branch on.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A single-row lookup found nothing.
    #[error("not found: {0}")]
    NotFound(String),
    /// The broadcast or allocation is gone, full or disabled.
    #[error("broadcast disabled: {0}")]
    BroadcastDisabled(String),
    /// The store does not support the request (e.g. broadcast groups).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The request itself is wrong (bad ID length, missing creation time, start after end, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request conflicts with the stored state (a second canary, promoting what is not the
    /// canary).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed. `retryable` says whether trying again may help (connection loss,
    /// deadlock, lock wait timeout).
    #[error("database error in {op}: {message}")]
    Backend {
        op: &'static str,
        message: String,
        retryable: bool,
    },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }
}
