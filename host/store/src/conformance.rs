//! The datastore conformance suite: a port of checks 1–56 of datastore.md §6 (Fleetspeak's
//! `dbtesting` package), run against every backend.
//!
//! Each [`Case`] gets a fresh, empty store whose clock is the given [`FakeClock`]. Checks panic
//! on failure; [`run_case`] turns a panic into an error naming the case, so a harness can run all
//! cases and report every failure at once. Check 21 (the backlog processor) belongs to the engine;
//! [`messages`] instead checks `lease_server_messages` directly.

pub mod broadcasts;
pub mod clients;
pub mod concurrency;
pub mod dead_letters;
pub mod deployments;
pub mod files;
pub mod leases;
pub mod messages;
pub mod purge;
pub mod redelivery;
pub mod resources;
pub mod retention;
pub mod trace;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use fleetgate_types::pb::fleetspeak::{Address, Message};
use fleetgate_types::{ClientId, FakeClock, MessageId};
use prost_types::{Any, Timestamp};

use crate::Store;

pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One test case of the suite: a name, the checklist items it covers, and the test.
pub struct Case {
    pub name: &'static str,
    pub checks: &'static str,
    pub run: fn(Arc<dyn Store>, Arc<FakeClock>) -> CaseFuture,
}

/// Every case, in checklist order.
pub fn cases() -> Vec<Case> {
    [
        messages::cases(),
        purge::cases(),
        leases::cases(),
        redelivery::cases(),
        clients::cases(),
        resources::cases(),
        broadcasts::cases(),
        files::cases(),
        retention::cases(),
        dead_letters::cases(),
        trace::cases(),
        deployments::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Runs one case on its own task; a panic becomes `Err("name (checks): message")`.
pub async fn run_case(
    case: &Case,
    store: Arc<dyn Store>,
    clock: Arc<FakeClock>,
) -> Result<(), String> {
    let fut = (case.run)(store, clock);
    match tokio::spawn(fut).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let msg = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".into()),
                Err(e) => e.to_string(),
            };
            Err(format!("{} (checks {}): {msg}", case.name, case.checks))
        }
    }
}

/// The predefined client ids `00..01`, `00..02`, `00..03`.
pub fn client(n: u8) -> ClientId {
    ClientId::new([0, 0, 0, 0, 0, 0, 0, n])
}

/// A 32-byte message id from 32 ASCII characters, as the original tests write them.
pub fn mid(s: &str) -> MessageId {
    match MessageId::from_bytes(s.as_bytes()) {
        Ok(id) => id,
        Err(e) => panic!("bad test message id {s:?}: {e}"),
    }
}

pub fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos })
}

pub fn any(url: &str, value: &str) -> Option<Any> {
    Some(Any {
        type_url: url.into(),
        value: value.as_bytes().to_vec(),
    })
}

pub fn addr(client: Option<ClientId>, service: &str) -> Option<Address> {
    Some(fleetgate_types::message::address(client, service))
}

/// A message from a server service to `dest`'s service `service`, created at `created` seconds.
pub fn to_client(id: MessageId, dest: ClientId, service: &str, created: i64) -> Message {
    Message {
        message_id: id.to_vec(),
        source: addr(None, service),
        destination: addr(Some(dest), service),
        message_type: "Test message type".into(),
        creation_time: ts(created, 0),
        ..Default::default()
    }
}

/// A message from `src` to the server service `service`.
pub fn to_server(id: MessageId, src: ClientId, service: &str, created: i64) -> Message {
    Message {
        message_id: id.to_vec(),
        source: addr(Some(src), service),
        destination: addr(None, service),
        message_type: "Test message type".into(),
        creation_time: ts(created, 0),
        ..Default::default()
    }
}

pub fn secs(n: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(n)
}

/// Unwraps a store result, naming the step that failed.
pub fn ok<T, E: std::fmt::Display>(step: &str, r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{step}: unexpected error: {e}"),
    }
}
