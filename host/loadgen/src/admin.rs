//! The server's admin API, driven by the benchmark: `InsertMessage` at a steady rate and
//! `ListClients` to confirm enrolment (plaintext HTTP/2, tonic).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fleetgate_pb::fleetspeak::server::ListClientsRequest;
use fleetgate_pb::fleetspeak::server::admin_client::AdminClient;
use fleetgate_pb::fleetspeak::{Address, Message};
use fleetgate_types::ClientId;
use rand::RngCore;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Channel;

use crate::LoadgenError;
use crate::contact;

/// Inserts in flight at once; enough to keep a steady rate while some calls are slow.
const MAX_CONCURRENT_INSERTS: usize = 64;
/// `ListClients` requests carry at most this many IDs.
const LIST_CHUNK: usize = 1000;
/// The server-side service benchmark messages come from.
const SOURCE_SERVICE: &str = "loadgen";

/// What [`Admin::insert_spread`] did.
#[derive(Debug, Default)]
pub struct Inserted {
    pub ids: HashSet<[u8; 32]>,
    pub failures: u64,
    pub started: Option<Instant>,
    pub elapsed: Duration,
    /// How long each successful `InsertMessage` call took (the server's store write and wake-up).
    pub call_times: Vec<Duration>,
}

#[derive(Clone)]
pub struct Admin {
    inner: AdminClient<Channel>,
}

impl Admin {
    pub async fn connect(addr: SocketAddr) -> Result<Self, LoadgenError> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| LoadgenError::Admin(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| LoadgenError::Admin(format!("connecting to {addr}: {e}")))?;
        Ok(Self {
            inner: AdminClient::new(channel),
        })
    }

    /// How many of `ids` the server knows.
    pub async fn count_enrolled(&self, ids: &[ClientId]) -> Result<usize, LoadgenError> {
        let mut found = 0;
        for chunk in ids.chunks(LIST_CHUNK) {
            let req = ListClientsRequest {
                client_ids: chunk.iter().map(|id| id.to_vec()).collect(),
            };
            let resp = self
                .inner
                .clone()
                .list_clients(req)
                .await
                .map_err(|e| LoadgenError::Admin(format!("ListClients: {e}")))?;
            found += resp.into_inner().clients.len();
        }
        Ok(found)
    }

    /// Inserts `count` messages to `service`, round-robin over `clients`, at `rate` per second.
    /// Each has a random 32-byte ID and its insert time as payload.
    pub async fn insert_spread(
        &self,
        clients: &[ClientId],
        service: &str,
        count: usize,
        rate: f64,
    ) -> Inserted {
        let mut out = Inserted::default();
        if clients.is_empty() || count == 0 {
            return out;
        }
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_INSERTS));
        let mut calls = JoinSet::new();
        let start = Instant::now();
        out.started = Some(start);
        for (i, client) in clients.iter().cycle().take(count).enumerate() {
            ticker.tick().await;
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let (id, message) = benchmark_message(*client, service);
            let mut api = self.inner.clone();
            calls.spawn(async move {
                let called = Instant::now();
                let result = api.insert_message(message).await;
                drop(slot);
                (id, result.map(|_| called.elapsed()))
            });
            if i % 64 == 63 {
                collect_finished(&mut calls, &mut out);
            }
        }
        while let Some(done) = calls.join_next().await {
            record(done, &mut out);
        }
        out.elapsed = start.elapsed();
        out
    }
}

type CallResult = ([u8; 32], Result<Duration, tonic::Status>);

fn collect_finished(calls: &mut JoinSet<CallResult>, out: &mut Inserted) {
    while let Some(done) = calls.try_join_next() {
        record(done, out);
    }
}

fn record(done: Result<CallResult, tokio::task::JoinError>, out: &mut Inserted) {
    match done {
        Ok((id, Ok(took))) => {
            out.ids.insert(id);
            out.call_times.push(took);
        }
        Ok((id, Err(status))) => {
            out.failures += 1;
            tracing::warn!(id = %hex_of(&id), %status, "InsertMessage failed");
        }
        Err(e) => {
            out.failures += 1;
            tracing::warn!(error = %e, "insert task failed");
        }
    }
}

/// A message for `client`'s `service` stamped with the current time just before the call.
fn benchmark_message(client: ClientId, service: &str) -> ([u8; 32], Message) {
    let mut id = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    let message = Message {
        message_id: id.to_vec(),
        source: Some(Address {
            client_id: vec![],
            service_name: SOURCE_SERVICE.into(),
        }),
        destination: Some(Address {
            client_id: client.to_vec(),
            service_name: service.into(),
        }),
        message_type: "LoadgenPing".into(),
        data: Some(contact::insert_payload(SystemTime::now())),
        ..Default::default()
    };
    (id, message)
}

fn hex_of(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
