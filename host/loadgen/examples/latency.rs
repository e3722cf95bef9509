//! Delivery-latency benchmark: N simulated clients, M messages inserted through the admin API.
//!
//! Starts its own `fleetgate quickstart` (from `--bin` or `$FLEETGATE_BIN`), or targets a
//! running server with `--https ADDR --admin ADDR --ca FILE`.
//!
//! ```text
//! cargo build --release -p fleetgate-server
//! FLEETGATE_BIN=target/release/fleetgate \
//!   cargo run --release -p fleetgate-loadgen --example latency -- --clients 100 --messages 2000 --rate 200
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fleetgate_loadgen::{InsertPlan, LoadgenConfig, Mode, Outbound};

const USAGE: &str =
    "usage: latency [--clients N] [--messages M] [--rate R] [--mode streaming|polling]
    [--duration SECS] [--outbound-rate R --outbound-size BYTES] [--batch-ms MS]
    [--bin PATH] [--server-arg ARG]... | --https ADDR --admin ADDR --ca FILE]";

struct Args {
    clients: usize,
    messages: usize,
    rate: f64,
    mode: Mode,
    duration: u64,
    outbound_rate: f64,
    outbound_size: usize,
    batch_ms: u64,
    bin: Option<PathBuf>,
    server_args: Vec<String>,
    target: Option<(SocketAddr, SocketAddr, PathBuf)>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        clients: 100,
        messages: 2000,
        rate: 200.0,
        mode: Mode::Streaming,
        duration: 0,
        outbound_rate: 0.0,
        outbound_size: 100,
        batch_ms: 1000,
        bin: None,
        server_args: vec![],
        target: None,
    };
    let (mut https, mut admin, mut ca) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--clients" => a.clients = num(value()?)? as usize,
            "--messages" => a.messages = num(value()?)? as usize,
            "--rate" => a.rate = num(value()?)?,
            "--duration" => a.duration = num(value()?)? as u64,
            "--outbound-rate" => a.outbound_rate = num(value()?)?,
            "--outbound-size" => a.outbound_size = num(value()?)? as usize,
            "--batch-ms" => a.batch_ms = num(value()?)? as u64,
            "--mode" => {
                a.mode = match value()?.as_str() {
                    "streaming" => Mode::Streaming,
                    "polling" => Mode::Polling,
                    other => return Err(format!("unknown mode {other}")),
                }
            }
            "--bin" => a.bin = Some(PathBuf::from(value()?)),
            "--server-arg" => a.server_args.push(value()?),
            "--https" => https = Some(value()?.parse().map_err(|e| format!("--https: {e}"))?),
            "--admin" => admin = Some(value()?.parse().map_err(|e| format!("--admin: {e}"))?),
            "--ca" => ca = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    a.target = match (https, admin, ca) {
        (Some(h), Some(ad), Some(c)) => Some((h, ad, c)),
        (None, None, None) => None,
        _ => return Err(format!("--https, --admin and --ca go together\n{USAGE}")),
    };
    Ok(a)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // Keeps a self-started server alive until the end of main.
    let mut _server = None;
    let (https, admin, ca) = match args.target.clone() {
        Some(t) => t,
        None => {
            let bin = args.bin.clone().unwrap_or_else(support::fleetgate_bin);
            let s = support::Quickstart::start(&bin, &args.server_args)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("{e}");
                    std::process::exit(1)
                });
            println!(
                "server: {} (admin {}) from {}",
                s.https,
                s.admin,
                bin.display()
            );
            let t = (s.https, s.admin, s.ca_pem.clone());
            _server = Some(s);
            t
        }
    };
    let mut config = LoadgenConfig::new(https, ca);
    config.clients = args.clients;
    config.mode = args.mode;
    config.admin = Some(admin);
    config.duration = Duration::from_secs(args.duration);
    config.batch_delay = Duration::from_millis(args.batch_ms);
    if args.outbound_rate > 0.0 {
        config.outbound = Some(Outbound {
            rate: args.outbound_rate,
            size: args.outbound_size,
            service: "loadgen".into(),
        });
    }
    if args.messages > 0 {
        config.insert = Some(InsertPlan {
            messages: args.messages,
            rate: args.rate,
            receive_timeout: Duration::from_secs(60),
        });
    }
    match fleetgate_loadgen::run(config).await {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}
