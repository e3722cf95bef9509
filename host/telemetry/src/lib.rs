//! Operator telemetry for Fleetgate.
//!
//! * [`Metrics`] (`metrics`): the handle the engine, the plugin runtime and the notifier record
//!   into, one method per event. It depends on nothing heavier than `std`, so recording crates
//!   take this crate with default features and never see HTTP.
//! * `registry`: counters, gauges and histograms in capped label families, and the Prometheus
//!   text encoder; `labels` keeps peer-chosen label values (services, message types) bounded.
//! * [`Observed`] (`contact`): a decorator for the frontend↔engine contract giving each contact a
//!   tracing span and counting contacts, active streams and messages handed to clients.
//! * [`TimedStore`] (`timed_store`): a `fleetgate_store::Store` decorator timing every call.
//! * `serve` (feature `serve`, used only by the binary): the `/metrics` listener and the health
//!   listener (`/healthz`, `/readyz` from [`Readiness`]).
//!
//! Dependencies point one way: `engine → telemetry → store`; the binary alone enables `serve`.
//! Metric names, types and labels are documented in `docs/METRICS.md`.
#![forbid(unsafe_code)]

mod contact;
mod labels;
mod metrics;
pub mod registry;
#[cfg(feature = "serve")]
mod serve;
mod timed_store;

pub use contact::{Observed, ObservedStream};
pub use metrics::{ContactKind, Metrics, PluginOutcome, StreamGuard};
#[cfg(feature = "serve")]
pub use serve::{Readiness, serve_health, serve_metrics};
pub use timed_store::TimedStore;
