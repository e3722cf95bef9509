//! Capability `grpc`: `fleetspeak.grpcservice.Processor/Process` on an upstream the host is
//! connected to (GRR's side of Fleetspeak's `GRPC` service, server.md §11).
//!
//! The host owns the connection and its TLS; the plugin only names the upstream. Within one
//! call the host retries after 1, 2, 4, 8, 16 s … while the next attempt can still start before
//! the deadline, then classifies the last gRPC status: `DEADLINE_EXCEEDED`, `UNAVAILABLE`,
//! `ABORTED`, `CANCELLED`, `UNAUTHENTICATED`, `PERMISSION_DENIED` are temporary, all other codes
//! permanent. (Fleetspeak then idles until its 30 s context ends; we answer as soon as no
//! attempt is left, with the same classification.)
//!
//! Targets: `host:port`, `dns:///host:port` and `unix:///path` (plaintext only), as in
//! Fleetspeak's `fleetspeak.grpcservice.Config`.

use std::time::Duration;

use fleetgate_pb::fleetspeak::Message;
use fleetgate_pb::fleetspeak::grpcservice::{self, processor_client::ProcessorClient};
use tokio::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::bindings::grpc::Host;
use crate::bindings::{WitMessage, WitProcessError};
use crate::convert::{from_wit, to_wit};
use crate::state::HostState;

/// Fleetspeak's processing deadline is 30 s and so is the engine's; finishing a little earlier
/// lets the classified error, rather than the engine's timeout, decide the outcome.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(29);

const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// One upstream `Processor`, connected lazily: a backend that is down does not fail startup.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    client: ProcessorClient<Channel>,
    deadline: Duration,
}

impl Upstream {
    /// Applies Fleetspeak's rules for `fleetspeak.grpcservice.Config`: `insecure` wins,
    /// otherwise `cert_file` holds the trusted roots (PEM), otherwise it is an error.
    /// Must be called inside a Tokio runtime (the channel's worker is spawned on it).
    pub fn new(config: &grpcservice::Config, deadline: Duration) -> Result<Self, String> {
        let target = config.target.trim();
        if target.is_empty() {
            return Err("GRPCService requires a target".into());
        }
        if let Some(path) = target
            .strip_prefix("unix://")
            .or_else(|| target.strip_prefix("unix:"))
        {
            if !config.insecure {
                return Err(format!("TLS over a unix socket is not supported: {target}"));
            }
            return Ok(Self {
                client: ProcessorClient::new(unix_channel(path)?),
                deadline,
            });
        }
        let authority = target.strip_prefix("dns:///").unwrap_or(target);
        let scheme = if config.insecure { "http" } else { "https" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|e| format!("bad target {target:?}: {e}"))?;
        if !config.insecure {
            if config.cert_file.is_empty() {
                return Err("GRPCService requires either insecure or cert_file to be set".into());
            }
            let pem = std::fs::read(&config.cert_file)
                .map_err(|e| format!("reading cert_file {}: {e}", config.cert_file))?;
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name(host.trim_start_matches('[').trim_end_matches(']'));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("TLS config: {e}"))?;
        }
        Ok(Self {
            client: ProcessorClient::new(endpoint.connect_lazy()),
            deadline,
        })
    }

    /// Sends `message`, retrying until a call succeeds or no attempt fits before the deadline.
    pub async fn forward(&self, message: Message) -> Result<(), Status> {
        let deadline = Instant::now() + self.deadline;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
            let status = match self.client.clone().process(request).await {
                Ok(_) => return Ok(()),
                Err(status) => status,
            };
            if Instant::now() + backoff >= deadline {
                return Err(status);
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
}

/// `unix:///path` (or `unix:path`): plaintext HTTP/2 over a Unix socket, dialled lazily.
fn unix_channel(path: &str) -> Result<Channel, String> {
    if path.is_empty() {
        return Err("unix target without a path".into());
    }
    let path = std::path::PathBuf::from(path);
    // The URI is a placeholder: the connector ignores it and dials the socket.
    let endpoint = Endpoint::from_static("http://unix.socket");
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        })),
    )
}

/// The gRPC codes Fleetspeak treats as temporary.
pub(crate) fn is_temporary(code: Code) -> bool {
    matches!(
        code,
        Code::DeadlineExceeded
            | Code::Unavailable
            | Code::Aborted
            | Code::Cancelled
            | Code::Unauthenticated
            | Code::PermissionDenied
    )
}

fn classify(status: &Status) -> WitProcessError {
    let text = format!("gRPC {:?}: {}", status.code(), status.message());
    if is_temporary(status.code()) {
        WitProcessError::Temporary(text)
    } else {
        WitProcessError::Permanent(text)
    }
}

impl Host for HostState {
    async fn forward(
        &mut self,
        upstream: String,
        message: WitMessage,
    ) -> wasmtime::Result<Result<(), WitProcessError>> {
        let Some(up) = self.ctx.upstreams.get(&upstream).cloned() else {
            return Ok(Err(WitProcessError::Permanent(format!(
                "no gRPC upstream named {upstream:?} is granted to service {}",
                self.ctx.name
            ))));
        };
        if let Some(w) = &self.ctx.host.withheld {
            w.grpc_calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Ok(()));
        }
        // The message being processed, unchanged, goes out exactly as stored.
        let pb = match self.current.as_ref() {
            Some(current) if to_wit(current) == message => current.clone(),
            _ => from_wit(message),
        };
        let result = self.meter.off_budget(up.forward(pb)).await;
        Ok(result.map_err(|status| classify(&status)))
    }
}
