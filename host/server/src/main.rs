//! `fleetgate`: a Fleetspeak-compatible server.
//!
//! * `fleetgate quickstart` — single machine, nothing prepared (see `quickstart`).
//! * `fleetgate server --components_config C --services_config S` — the drop-in for
//!   `fleetspeak-server`; Go-style flags, glog switches accepted. Bare flags mean `server`.
//! * `fleetgate config -config FILE` — the equivalent of `fleetspeak-config` (see `configurator`).
//! * `fleetgate plugin check FILE | new NAME` — tools for plugin authors (see `plugin_cli`).
//! * `fleetgate admin`, `loadgen`, `completions`, `man`; `fleetgate --help` lists them all
//!   (definitions in `args`).
//!
//! This crate only wires: it turns configuration into each crate's settings, spawns tasks, and
//! stops them on SIGINT/SIGTERM. SIGHUP reloads the plugins (see `reload`); `rollout` follows
//! the plugin deployments of the shared store (the decisions live in the store's invariants and
//! `fleetgate_runtime::canary`; the loop only builds what the store says and swaps it in).
#![forbid(unsafe_code)]

mod admin_cli;
mod admin_conn;
mod admin_dead_letters;
mod admin_format;
mod admin_history;
mod admin_lock;
mod admin_rollout;
mod args;
mod certs;
mod cli;
mod clientconf;
mod configurator;
mod loadgen_cli;
mod observe;
mod plugin_cli;
mod plugin_template;
mod plugins;
mod quickstart;
mod reload;
mod rollout;
mod routing;
mod run;

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os()) {
        Ok(c) => c,
        // Help and --version print to stdout and exit 0; usage errors (with a suggestion for
        // a misspelt command or flag) to stderr with exit 2.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    cli::init_tracing(&command.logging());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fleetgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        cli::execute(command, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetgate: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined with ": " as `{:#}` does, leaving out a cause whose text the
/// message before it already ends with: many library errors say their source in their own text
/// (`FILE: No such file or directory`) and also return it as their source.
fn causes(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the server with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
}

#[cfg(test)]
mod causes_tests {
    use super::causes;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("s.config: No such file");
        assert_eq!(causes(&e), "s.config: No such file");
        let e = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(causes(&e), "top: middle: root");
    }
}
