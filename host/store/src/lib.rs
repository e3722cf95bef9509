//! Persistent state behind one trait ([`Store`]), with a sea-orm implementation ([`SeaOrmStore`])
//! for SQLite (the single-machine default) and MySQL/MariaDB (shared by several servers, using
//! Fleetspeak's own schema so Go servers and Fleetgate can share one database).
//!
//! Layout:
//!
//! * [`api`]: the contract the engine and admin crates program against; [`StoreError`] in `error`.
//! * `store`: [`SeaOrmStore::open`], pool set-up per backend, `ping`/`close`.
//! * `migrations`: the schema, one migration per table (Fleetspeak's MySQL statements verbatim;
//!   SQLite equivalents with explicit foreign-key indexes).
//! * `db`: dialect differences, statement helpers that name the failing operation, typed row
//!   access, retryable-error classification and the transaction retry loop.
//! * `messages`: `StoreMessages` merge rules, results, leasing to clients and to the backlog
//!   processor, admin views of the pending queue.
//! * `clients`: clients, labels, contacts, resource usage records.
//! * `broadcasts`: broadcasts, allocations ([`broadcasts::arithmetic`]) and sent markers.
//! * `files`: the file store.
//! * `maintenance`: pending-queue counts and retention pruning in bounded batches.
//! * `dead_letters`: where a message's life ends without success, replay, expiry candidates,
//!   per-service back-off, the oldest pending message per service.
//! * `trace`: the message trace (Fleetgate's own table), written in batches, read per message.
//! * `deployments`: plugin rollout — components by digest, deployments and their states, what
//!   each server serves.
//! * `conformance` (feature `conformance` or tests): the datastore conformance suite, run against
//!   every backend by `tests/sqlite.rs` and `tests/mysql.rs`.
//!
//! All times come from the injected [`Clock`](fleetgate_types::Clock). SQL is written as raw
//! statements (shared by both backends wherever possible) rather than through entities: the
//! queries are few, dialect-sensitive (`INSERT IGNORE`, `FOR UPDATE`) and batch-shaped.
#![forbid(unsafe_code)]

pub mod api;
pub mod broadcasts;
mod clients;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod db;
mod dead_letters;
mod deployments;
mod error;
mod files;
mod maintenance;
mod messages;
mod migrations;
mod store;
mod trace;

pub use api::*;
pub use error::StoreError;
pub use store::SeaOrmStore;
