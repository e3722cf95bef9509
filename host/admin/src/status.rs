//! The one place where errors become gRPC statuses for admin callers.
//!
//! The original answered every failure with UNKNOWN; callers (GRR's connector, the CLI) retry or
//! print regardless of the code, so precise codes cost nothing and help operators.

use fleetgate_engine::EngineError;
use fleetgate_store::StoreError;
use tonic::Status;

pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

pub fn from_store(context: &str, e: StoreError) -> Status {
    let msg = format!("{context}: {e}");
    match e {
        StoreError::NotFound(_) => Status::not_found(msg),
        StoreError::Invalid(_) => Status::invalid_argument(msg),
        StoreError::NotSupported(_) => Status::unimplemented(msg),
        StoreError::BroadcastDisabled(_) => Status::failed_precondition(msg),
        StoreError::Backend {
            retryable: true, ..
        } => Status::unavailable(msg),
        StoreError::Backend { .. } => Status::internal(msg),
    }
}

pub fn from_engine(context: &str, e: EngineError) -> Status {
    match e {
        EngineError::Invalid(m) => Status::invalid_argument(format!("{context}: {m}")),
        EngineError::Store(e) => from_store(context, e),
    }
}
