//! `fleetgate loadgen`: simulated Fleetspeak clients against any server that speaks the public
//! wire protocol (Fleetgate or the Go `fleetspeak-server`). Flags in `args::LoadgenArgs`.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use fleetgate_loadgen::{InsertPlan, LoadgenConfig, Mode, Outbound};

use crate::args::{self, LoadgenArgs};

pub async fn run(a: &LoadgenArgs) -> Result<String> {
    let report = fleetgate_loadgen::run(config(a)?)
        .await
        .map_err(|e| anyhow!("loadgen: {e}"))?;
    Ok(report.to_string())
}

fn seconds(name: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s.max(0.0)).map_err(|e| anyhow!("--{name} {s}: {e}"))
}

fn config(a: &LoadgenArgs) -> Result<LoadgenConfig> {
    let mut c = LoadgenConfig::new(a.server, a.ca.clone());
    c.server_name = a.server_name.clone();
    c.admin = a.admin;
    c.clients = a.clients;
    c.mode = match a.mode {
        args::Mode::Streaming => Mode::Streaming,
        args::Mode::Polling => Mode::Polling,
    };
    c.service = a.service.clone();
    c.duration = seconds("duration", a.duration)?;
    c.connect_rate = a.connect_rate;
    if !(c.connect_rate.is_finite() && c.connect_rate > 0.0) {
        bail!("--connect_rate must be positive");
    }
    c.connect_timeout = if a.connect_timeout > 0.0 {
        seconds("connect_timeout", a.connect_timeout)?
    } else {
        seconds("connect_timeout", c.clients as f64 / c.connect_rate + 60.0)?
    };
    c.settle = seconds("settle", a.settle)?;
    c.http2 = a.http2;
    c.ready_file = a.ready_file.clone();
    if a.outbound_rate > 0.0 {
        c.outbound = Some(Outbound {
            rate: a.outbound_rate,
            size: a.outbound_size,
            service: a.outbound_service.clone(),
        });
    }
    if a.messages > 0 {
        c.insert = Some(InsertPlan {
            messages: a.messages,
            rate: a.rate,
            receive_timeout: Duration::from_secs(30),
        });
    }
    Ok(c)
}
