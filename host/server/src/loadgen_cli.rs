//! `fleetgate loadgen`: simulated Fleetspeak clients against any server that speaks the public
//! wire protocol (Fleetgate or the Go `fleetspeak-server`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fleetgate_config::flags::{FlagKind, FlagSpec, Flags, parse_flags};
use fleetgate_loadgen::{InsertPlan, LoadgenConfig, Mode, Outbound};

const fn flag(
    name: &'static str,
    kind: FlagKind,
    default: &'static str,
    usage: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        default,
        usage,
    }
}

pub const FLAGS: &[FlagSpec] = &[
    flag(
        "server",
        FlagKind::String,
        "",
        "client frontend HOST:PORT (required)",
    ),
    flag(
        "server_name",
        FlagKind::String,
        "localhost",
        "TLS name of the server certificate",
    ),
    flag(
        "ca",
        FlagKind::String,
        "",
        "PEM file of the CA that signed the server certificate (required)",
    ),
    flag(
        "admin",
        FlagKind::String,
        "",
        "admin API HOST:PORT, for inserted messages and the enrolment count",
    ),
    flag("clients", FlagKind::Int, "10", "simulated clients"),
    flag(
        "mode",
        FlagKind::String,
        "streaming",
        "streaming or polling",
    ),
    flag(
        "service",
        FlagKind::String,
        "loadgen",
        "client service that receives inserted messages",
    ),
    flag(
        "messages",
        FlagKind::Int,
        "0",
        "messages to insert through the admin API",
    ),
    flag("rate", FlagKind::String, "100", "inserts per second"),
    flag(
        "outbound_rate",
        FlagKind::String,
        "0",
        "client → server messages per second per client",
    ),
    flag(
        "outbound_size",
        FlagKind::Int,
        "100",
        "payload bytes of each client → server message",
    ),
    flag(
        "outbound_service",
        FlagKind::String,
        "loadgen",
        "server service the clients send to",
    ),
    flag(
        "duration",
        FlagKind::Int,
        "10",
        "seconds of measured traffic after every client connected",
    ),
    flag(
        "connect_rate",
        FlagKind::String,
        "200",
        "new client connections per second while ramping up",
    ),
    flag(
        "connect_timeout",
        FlagKind::String,
        "0",
        "seconds to wait for every client to connect (0: clients / connect_rate + 60)",
    ),
    flag(
        "settle",
        FlagKind::String,
        "0",
        "seconds to hold the streams idle after the connect phase, before inserting",
    ),
    flag(
        "http2",
        FlagKind::Bool,
        "true",
        "offer HTTP/2 (as the Go client does; the Go server streams only over HTTP/2)",
    ),
    flag(
        "ready_file",
        FlagKind::String,
        "",
        "written with \"<connected> <clients>\" when the connect phase ends",
    ),
];

pub async fn run(args: &[String]) -> Result<String> {
    let f = parse_flags(args, FLAGS)?;
    let config = config(&f)?;
    let report = fleetgate_loadgen::run(config)
        .await
        .map_err(|e| anyhow!("loadgen: {e}"))?;
    Ok(report.to_string())
}

fn config(f: &Flags) -> Result<LoadgenConfig> {
    let addr = |name: &str| -> Result<Option<SocketAddr>> {
        f.value(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.parse().with_context(|| format!("--{name} {v}")))
            .transpose()
    };
    let number = |name: &str, default: f64| -> Result<f64> {
        f.value(name)
            .map(|v| v.parse::<f64>().with_context(|| format!("--{name} {v}")))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let Some(server) = addr("server")? else {
        bail!("--server HOST:PORT is required")
    };
    let Some(ca) = f.value("ca").filter(|v| !v.is_empty()) else {
        bail!("--ca FILE is required")
    };
    let mut c = LoadgenConfig::new(server, ca);
    c.server_name = f.value("server_name").unwrap_or("localhost").to_owned();
    c.admin = addr("admin")?;
    c.clients = number("clients", 10.0)? as usize;
    c.mode = match f.value("mode").unwrap_or("streaming") {
        "streaming" => Mode::Streaming,
        "polling" => Mode::Polling,
        other => bail!("--mode must be streaming or polling, not {other:?}"),
    };
    if let Some(s) = f.value("service") {
        c.service = s.to_owned();
    }
    c.duration = Duration::from_secs_f64(number("duration", 10.0)?);
    c.connect_rate = number("connect_rate", 200.0)?;
    if !(c.connect_rate.is_finite() && c.connect_rate > 0.0) {
        bail!("--connect_rate must be positive");
    }
    let connect_timeout = number("connect_timeout", 0.0)?;
    c.connect_timeout = if connect_timeout > 0.0 {
        Duration::from_secs_f64(connect_timeout)
    } else {
        Duration::from_secs_f64(c.clients as f64 / c.connect_rate + 60.0)
    };
    c.settle = Duration::from_secs_f64(number("settle", 0.0)?.max(0.0));
    c.http2 = f.value("http2").is_none_or(|v| v != "false");
    c.ready_file = f
        .value("ready_file")
        .filter(|v| !v.is_empty())
        .map(Into::into);
    let outbound_rate = number("outbound_rate", 0.0)?;
    if outbound_rate > 0.0 {
        c.outbound = Some(Outbound {
            rate: outbound_rate,
            size: number("outbound_size", 100.0)? as usize,
            service: f.value("outbound_service").unwrap_or("loadgen").to_owned(),
        });
    }
    let messages = number("messages", 0.0)? as usize;
    if messages > 0 {
        if c.admin.is_none() {
            bail!("--messages needs --admin");
        }
        c.insert = Some(InsertPlan {
            messages,
            rate: number("rate", 100.0)?,
            receive_timeout: Duration::from_secs(30),
        });
    }
    Ok(c)
}
