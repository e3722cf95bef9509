//! Server services as WebAssembly components.
//!
//! A service is a component of the `fleetgate:plugin/service` world (`wit/plugin.wit`); the
//! runtime loads it, links only the host capabilities its configuration grants, and runs it
//! as a [`fleetgate_engine::Service`] under a CPU budget and a memory cap. A trap, a timeout or
//! an out-of-memory is the plugin's fault: that call fails *temporarily* (the message is
//! retried on the server's back-off) and is counted as a trap. A plugin answering `permanent`
//! is normal flow and fails the message.
//!
//! For the server binary, installing the services of a services configuration is:
//!
//! ```ignore
//! let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(dir), ..Default::default() })?;
//! let host = HostServices::new(Arc::new(engine.clone())).with_clients(directory);
//! let built = Factory::new(runtime, host).install(&engine, &services_config.services).await?;
//! ```
//!
//! Layout, top-down:
//!
//! * [`factory`]: `ServiceConfig` → service (`GRPC`, `WASM`, `NOOP`), and [`WasmConfig`].
//! * [`generation`]: the installed set ([`Generations`]) and hot reload: build all, then swap;
//!   deployments' overlays on top of it.
//! * [`canary`]: a stable version and a candidate behind one service, picked per client, with
//!   the automatic rollback's window and verdict.
//! * `service` ([`ComponentService`]) and `router` ([`ComponentRouter`]): the two worlds;
//!   `router_hook`: a router as the engine's `Router`, and the engine as [`ClientDirectory`].
//! * `call`: one call = a fresh store with its limits + a fresh instance from the pool; loading
//!   (grants checked, linked, pre-instantiated); classifying failures ([`CallError`]).
//! * `runtime` ([`Runtime`]): the wasmtime engine — component model, pooling allocator, epoch
//!   ticker — and `cache`, compiled components on disk.
//! * [`caps`]: one module per host capability (`messaging`, `grpc`, `log`, `metrics`, `clock`,
//!   `clients`, plus WASI), registered in one place.
//! * `host`: what the runtime needs from the server ([`MessageSink`], [`ClientDirectory`]).
//! * `spec`, `state`, `stats`, `convert`: plugin descriptions, per-call store data,
//!   statistics, and `fleetspeak.Message` ↔ WIT.
//! * `bindings`: the only place `bindgen!` output lives.
//! * [`check()`]: validate a component file against the worlds.
//! * [`bundled`]: components compiled from `plugins/` by `build.rs` and shipped in the binary.

mod bindings;
pub mod bundled;
mod cache;
mod call;
mod call_metrics;
pub mod canary;
pub mod caps;
mod check;
mod convert;
mod error;
pub mod factory;
pub mod generation;
mod host;
mod router;
mod router_hook;
mod runtime;
mod service;
mod spec;
mod state;
mod stats;
mod wasm_config;

pub use canary::Canary;
pub use caps::Capability;
pub use check::{CheckReport, check, check_bytes, check_on};
pub use error::{CallError, RuntimeError};
pub use factory::{BuiltService, Factory, WasmConfig, WasmPreopen, WasmUpstream, wasm_spec_bytes};
pub use generation::{Generation, Generations, Overlay, ReloadError, ReloadReport};
pub use host::{ClientDirectory, ClientInfo, HostServices, MessageSink, NoClients, Withheld};
pub use router::ComponentRouter;
pub use router_hook::ROUTER_NAME;
pub use runtime::{Runtime, RuntimeConfig};
pub use service::{CallKind, ComponentService};
pub use spec::{Grants, Limits, PluginSpec, Preopen};
pub use stats::{GuestMetrics, ServiceStats, StatsSnapshot};
