//! Fleetgate load generator: many simulated Fleetspeak clients in one process, talking the real
//! wire protocol to a server, and a delivery-latency benchmark driven through the admin API.
//!
//! Layout, top-down:
//! - this file: [`LoadgenConfig`] and [`run`], the orchestration — generate identities, ramp up
//!   clients, wait for all to connect, insert benchmark messages, wait for receipts, stop;
//! - [`client`]: one simulated client's loop (streaming or polling, acks, tokens, reconnects);
//! - [`conn`]: TLS + HTTP/1.1 to the frontend, `/message` and `/streaming-message` requests;
//! - [`identity`]: P-256 keys, self-signed certificates, client IDs;
//! - [`contact`] and [`outbox`]: pure message building and frame bookkeeping;
//! - [`admin`]: `InsertMessage` and `ListClients`;
//! - [`stats`] and [`report`]: counters, receipts, and the printable [`Report`].
//!
//! A CLI calls [`run`] with a config and prints the report:
//! `println!("{}", fleetgate_loadgen::run(config).await?)`.
#![forbid(unsafe_code)]

mod admin;
mod client;
mod conn;
mod contact;
mod error;
mod identity;
mod outbox;
mod ready;
mod report;
mod sender;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::ClientId;
use rustls_pki_types::ServerName;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use error::{ClientError, LoadgenError};
pub use identity::{Identity, load_roots};
pub use report::{Latency, Report};

use crate::admin::{Admin, Inserted};
use crate::client::SimClient;
use crate::conn::Endpoint;
use crate::stats::Stats;

/// TCP + TLS + HTTP handshake limit per connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How simulated clients contact the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `/streaming-message`: one long-lived stream per client, pushed deliveries.
    #[default]
    Streaming,
    /// `/message`: a poll every `poll_interval` (sooner when there is something to send).
    Polling,
}

/// Client → server traffic of each client.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Messages per second per client.
    pub rate: f64,
    /// Payload bytes per message.
    pub size: usize,
    /// Server service name: source and destination service of the messages.
    pub service: String,
}

/// The delivery-latency benchmark: server → client messages inserted through the admin API.
#[derive(Debug, Clone)]
pub struct InsertPlan {
    /// Messages to insert, spread round-robin over the clients.
    pub messages: usize,
    /// Inserts per second.
    pub rate: f64,
    /// How long after the last insert a message may still arrive before it counts as lost.
    pub receive_timeout: Duration,
}

/// Everything a run needs. [`LoadgenConfig::new`] fills in defaults.
#[derive(Debug, Clone)]
pub struct LoadgenConfig {
    /// The client frontend (`https=` address of the server).
    pub server: SocketAddr,
    /// TLS server name checked against the server certificate and sent as `Host`.
    pub server_name: String,
    /// PEM file of the CA that signed the server certificate.
    pub ca_pem: PathBuf,
    /// Number of simulated clients.
    pub clients: usize,
    pub mode: Mode,
    /// The client-side service (besides `system`) each client runs; inserts go to it.
    pub service: String,
    /// New connections per second while ramping up.
    pub connect_rate: f64,
    /// Give up waiting for every client to connect after this long (the run continues).
    pub connect_timeout: Duration,
    /// How long clients wait to batch acks and outbound messages into one frame (the stock
    /// client: up to 1 s).
    pub batch_delay: Duration,
    /// Idle interval between polls in polling mode.
    pub poll_interval: Duration,
    /// Back-off after a failed contact (the stock client: 5–7.5 min; shorter here).
    pub retry_delay: Duration,
    /// The measured phase lasts at least this long after all clients connected.
    pub duration: Duration,
    /// At the end, how long clients may wait for the server's acks of their last frames.
    pub drain: Duration,
    pub outbound: Option<Outbound>,
    /// The admin API (`admin=` address); needed for `insert` and the enrolment count.
    pub admin: Option<SocketAddr>,
    pub insert: Option<InsertPlan>,
    /// Written with `<connected> <clients>` once the connect phase ends (see [`ready`]).
    pub ready_file: Option<PathBuf>,
    /// How long to hold the streams idle after the connect phase, before any insert.
    pub settle: Duration,
    /// Offer HTTP/2 (ALPN `h2`, as the stock Go client does) besides HTTP/1.1. The Go server
    /// streams only over HTTP/2 (see `sender.rs`).
    pub http2: bool,
}

impl LoadgenConfig {
    /// Defaults: 10 streaming clients, no traffic, 10 s measured phase.
    pub fn new(server: SocketAddr, ca_pem: impl Into<PathBuf>) -> Self {
        Self {
            server,
            server_name: "localhost".into(),
            ca_pem: ca_pem.into(),
            clients: 10,
            mode: Mode::Streaming,
            service: "loadgen".into(),
            connect_rate: 200.0,
            connect_timeout: Duration::from_secs(60),
            batch_delay: Duration::from_secs(1),
            poll_interval: Duration::from_secs(5),
            retry_delay: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(5),
            outbound: None,
            admin: None,
            insert: None,
            ready_file: None,
            settle: Duration::ZERO,
            http2: false,
        }
    }

    fn validate(&self) -> Result<(), LoadgenError> {
        let bad = |what: &str| Err(LoadgenError::Config(what.into()));
        if self.clients == 0 {
            return bad("clients must be at least 1");
        }
        if !positive(self.connect_rate) {
            return bad("connect_rate must be positive");
        }
        if self.insert.is_some() && self.admin.is_none() {
            return bad("inserting messages needs the admin address");
        }
        if self.insert.as_ref().is_some_and(|p| !positive(p.rate)) {
            return bad("insert rate must be positive");
        }
        if self
            .outbound
            .as_ref()
            .is_some_and(|o| !(o.rate == 0.0 || positive(o.rate)))
        {
            return bad("outbound rate must not be negative");
        }
        Ok(())
    }
}

/// A finite rate above zero (NaN and infinity would break interval arithmetic).
fn positive(rate: f64) -> bool {
    rate.is_finite() && rate > 0.0
}

/// Runs the whole load test and reports. Fails only on setup problems (bad config, CA file,
/// unreachable admin API); client failures are counted in the report.
pub async fn run(config: LoadgenConfig) -> Result<Report, LoadgenError> {
    config.validate()?;
    let config = Arc::new(config);
    let admin = match config.admin {
        Some(addr) => Some(Admin::connect(addr).await?),
        None => None,
    };
    let mut report = Report {
        clients: config.clients,
        ..Default::default()
    };
    let ramp = Instant::now();
    let fleet = Fleet::launch(&config).await?;
    let everyone = config.clients as u64;
    wait_for(ramp + config.connect_timeout, || {
        Stats::read(&fleet.stats.connected) >= everyone
    })
    .await;
    report.connect_time = ramp.elapsed();
    if let Some(path) = &config.ready_file {
        ready::announce(path, Stats::read(&fleet.stats.connected), config.clients);
    }
    tokio::time::sleep(config.settle).await;

    let measured = Instant::now();
    if let Some(admin) = &admin {
        report.enrolled = Some(admin.count_enrolled(&fleet.ids).await?);
        if let Some(plan) = &config.insert {
            benchmark(admin, plan, &config.service, &fleet, &mut report).await;
        }
    }
    tokio::time::sleep_until(measured + config.duration).await;
    report.measured = measured.elapsed();
    let stats = fleet.stats.clone();
    fleet.stop(config.drain).await;
    fill_counters(&mut report, &stats);
    Ok(report)
}

/// The running simulated clients.
struct Fleet {
    ids: Vec<ClientId>,
    stats: Arc<Stats>,
    /// Tells every client to flush and leave; see [`Fleet::stop`].
    stop: CancellationToken,
    /// One task per client; dropping the set aborts them, so an early error leaks nothing.
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Generates identities and starts the clients at `connect_rate` per second.
    async fn launch(config: &Arc<LoadgenConfig>) -> Result<Self, LoadgenError> {
        let roots = Arc::new(identity::load_roots(&config.ca_pem)?);
        let server_name = ServerName::try_from(config.server_name.clone())
            .map_err(|e| LoadgenError::Config(format!("server name: {e}")))?;
        let clients = config.clients;
        // Key generation is CPU work: keep it off the async workers.
        let identities = tokio::task::spawn_blocking(move || {
            (0..clients)
                .map(|_| Identity::generate())
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| LoadgenError::Identity(e.to_string()))??;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut fleet = Fleet {
            ids: identities.iter().map(|i| i.id).collect(),
            stats: Arc::new(Stats::default()),
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
        };
        let spacing = Duration::from_secs_f64(1.0 / config.connect_rate);
        for identity in &identities {
            let endpoint = Endpoint {
                addr: config.server,
                server_name: server_name.clone(),
                host_header: format!("{}:{}", config.server_name, config.server.port()),
                tls: identity.tls_config(&provider, &roots, config.http2)?,
                connect_timeout: CONNECT_TIMEOUT,
            };
            let client = SimClient::new(
                identity.id,
                endpoint,
                config.clone(),
                fleet.stats.clone(),
                fleet.stop.clone(),
            );
            fleet.tasks.spawn(client.run());
            tokio::time::sleep(spacing).await;
        }
        Ok(fleet)
    }

    /// Lets clients flush their last acks for up to `drain`, then aborts stragglers.
    async fn stop(mut self, drain: Duration) {
        self.stop.cancel();
        let tasks = &mut self.tasks;
        let all_done = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(drain + Duration::from_secs(2), all_done)
            .await
            .is_err()
        {
            tracing::warn!(left = self.tasks.len(), "clients did not stop in time");
            self.tasks.shutdown().await;
        }
    }
}

/// Inserts the planned messages and waits until all arrived or the receive timeout passed.
async fn benchmark(
    admin: &Admin,
    plan: &InsertPlan,
    service: &str,
    fleet: &Fleet,
    report: &mut Report,
) {
    let inserted = admin
        .insert_spread(&fleet.ids, service, plan.messages, plan.rate)
        .await;
    let want = inserted.ids.len();
    wait_for(Instant::now() + plan.receive_timeout, || {
        fleet.stats.count_received(&inserted.ids) >= want
    })
    .await;
    account_inserts(report, &inserted, &fleet.stats);
}

/// Polls `done` every 10 ms until it holds or `deadline` passes.
async fn wait_for(deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn account_inserts(report: &mut Report, inserted: &Inserted, stats: &Stats) {
    let arrived = stats.count_received(&inserted.ids);
    report.inserted = inserted.ids.len() as u64;
    report.insert_failures = inserted.failures;
    report.insert_time = inserted.elapsed;
    report.insert_call = Latency::from_samples(inserted.call_times.clone());
    report.lost = (inserted.ids.len() - arrived) as u64;
    let receipts = stats.receipts();
    if let (Some(first), Some(last)) = (inserted.started, receipts.last) {
        report.delivery_time = last.saturating_duration_since(first.into_std());
    }
}

fn fill_counters(report: &mut Report, stats: &Stats) {
    report.connected = Stats::read(&stats.connected);
    report.contacts = Stats::read(&stats.contacts);
    report.failures = Stats::read(&stats.failures);
    report.done_sending = Stats::read(&stats.done_sending);
    report.stream_drops = Stats::read(&stats.stream_drops);
    report.sent = Stats::read(&stats.sent);
    report.delivered = Stats::read(&stats.delivered);
    let receipts = stats.receipts();
    report.received = receipts.total;
    report.duplicates = receipts.duplicates;
    report.latency = Latency::from_samples(receipts.latencies);
    (report.rss_bytes, report.peak_rss_bytes) = report::memory();
}
