//! Domain types every Fleetgate crate shares.
//!
//! * [`ids`]: `ClientId`, `MessageId`, `BroadcastId`, `ContactId`, parsed from bytes or hex.
//! * [`time`]: the injectable clock and the retry schedules of the original server.
//! * [`message`]: helpers over the wire `fleetspeak.Message`, which is the in-memory message type.
//! * [`contact`]: the contract between the client-facing frontend and the engine.
//!
//! Nothing here does I/O: no tokio, hyper, sea-orm or wasmtime.
#![forbid(unsafe_code)]

pub mod contact;
pub mod ids;
pub mod message;
pub mod time;

pub use fleetgate_pb as pb;
pub use ids::{BroadcastId, ClientId, ContactId, IdError, MessageId};
pub use time::{Clock, FakeClock, SystemClock};
