//! The one place where errors become gRPC statuses for admin callers.
//!
//! The original answered every failure with UNKNOWN; callers (GRR's connector, the CLI) retry or
//! print regardless of the code, so precise codes cost nothing and help operators:
//!
//! | cause | code |
//! |---|---|
//! | malformed request (ID length, missing field, bad time range, oversize message) | `INVALID_ARGUMENT` |
//! | destination client unknown; store lookup found nothing | `NOT_FOUND` |
//! | feature the store does not support (broadcast groups); no plugin runtime | `UNIMPLEMENTED` |
//! | broadcast disabled or allocation gone | `FAILED_PRECONDITION` |
//! | locked listener: no client certificate, or one the policy does not name | `UNAUTHENTICATED` |
//! | locked listener: a known identity calling an RPC or addressing a service it may not | `PERMISSION_DENIED` |
//! | database failure a retry may fix | `UNAVAILABLE` |
//! | any other database failure | `INTERNAL` |

use fleetgate_engine::EngineError;
use fleetgate_store::StoreError;
use tonic::Status;

pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

pub fn not_found(msg: impl Into<String>) -> Status {
    Status::not_found(msg)
}

pub fn unimplemented(msg: impl Into<String>) -> Status {
    Status::unimplemented(msg)
}

pub fn unauthenticated(msg: impl Into<String>) -> Status {
    Status::unauthenticated(msg)
}

pub fn permission_denied(msg: impl Into<String>) -> Status {
    Status::permission_denied(msg)
}

/// Names the item of a batch a status is about, keeping its code.
pub fn for_item(index: usize, s: Status) -> Status {
    Status::new(s.code(), format!("message {index}: {}", s.message()))
}

pub fn from_store(context: &str, e: StoreError) -> Status {
    let msg = format!("{context}: {e}");
    match e {
        StoreError::NotFound(_) => Status::not_found(msg),
        StoreError::Invalid(_) => Status::invalid_argument(msg),
        StoreError::NotSupported(_) => Status::unimplemented(msg),
        StoreError::BroadcastDisabled(_) | StoreError::Conflict(_) => {
            Status::failed_precondition(msg)
        }
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
