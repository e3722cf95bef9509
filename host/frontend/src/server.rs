//! The accept loop, per-connection setup (PROXY, TLS, identity) and orderly shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_types::contact::ContactHandler;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::{self, Rewind};
use crate::tls::{self, Identity};
use crate::{FrontendConfig, FrontendError, routes};

/// State shared by every connection of one listener.
pub struct Shared<H> {
    pub handler: Arc<H>,
    pub config: FrontendConfig,
    /// Cancelled by the caller: stop accepting, wind streams down.
    pub shutdown: CancellationToken,
    /// Cancelled by us once the close time is over: drop whatever is left.
    pub hard_stop: CancellationToken,
    /// Connections and stream tasks, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

/// What one connection proved about its peer.
#[derive(Debug)]
pub struct Peer {
    /// The identity from the client certificate, or the reason there is none (a 400 body).
    pub identity: Result<Identity, String>,
    pub observed_address: String,
}

/// Serves the client-facing protocol on `listener` until `shutdown` is cancelled, then sends every
/// open stream `done_sending`, lets streams drain for up to `streaming_close_time`, and returns.
pub async fn serve<H: ContactHandler>(
    listener: TcpListener,
    config: FrontendConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), FrontendError> {
    // The cleartext modes serve plain HTTP/1.1 behind a TLS-terminating proxy (§4).
    let acceptor = if config.cleartext {
        None
    } else {
        let tls = tls::server_config(&config.cert_chain_pem, &config.key_pem)?;
        Some(TlsAcceptor::from(tls))
    };
    let builder = Arc::new(http_builder(&config));
    let shared = Arc::new(Shared {
        handler,
        config,
        shutdown: shutdown.clone(),
        hard_stop: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    let conn = connection(tcp, addr, acceptor.clone(), builder.clone(), shared.clone());
                    shared.tasks.spawn(conn);
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning; the listener itself is fine.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    drain(&shared).await;
    Ok(())
}

/// Waits for connections and streams to finish; streams end by themselves within the close time.
async fn drain<H>(shared: &Shared<H>) {
    shared.tasks.close();
    let grace = shared.config.streaming_close_time + Duration::from_secs(2);
    if tokio::time::timeout(grace, shared.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = shared.tasks.len(),
            "close time over; dropping remaining connections"
        );
        shared.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), shared.tasks.wait()).await;
    }
}

fn http_builder(config: &FrontendConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// One TCP connection: optional PROXY header, TLS (unless cleartext), identity, then HTTP until
/// it closes.
async fn connection<H: ContactHandler>(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared<H>>,
) {
    // Boxed so that the handshake's state (a rustls connection mid-handshake, the PROXY reader)
    // is freed once it is done, instead of being reserved in this task for as long as the
    // connection lives: that is per open stream, idle or not.
    let setup = Box::pin(async {
        let (io, source) = if shared.config.proxy_protocol {
            proxy::accept(tcp, shared.config.proxy_header_timeout).await?
        } else {
            (Rewind::new(tcp), None)
        };
        let Some(acceptor) = acceptor else {
            return Ok::<_, std::io::Error>((Either::Right(io), source));
        };
        let tls = tokio::time::timeout(shared.config.tls_handshake_timeout, acceptor.accept(io))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timeout")
            })??;
        Ok((Either::Left(tls), source))
    });
    let (tls, source) = tokio::select! {
        () = shared.shutdown.cancelled() => return,
        result = setup => match result {
            Ok(ok) => ok,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connection setup failed");
                return;
            }
        },
    };
    let peer = Arc::new(Peer {
        identity: match &tls {
            Either::Left(tls) => tls::identity(tls.get_ref().1.peer_certificates()),
            Either::Right(_) => Err("TLS information not found".into()),
        },
        observed_address: proxy::format_addr(source.unwrap_or(addr)),
    });
    let (shutdown, hard_stop) = (shared.shutdown.clone(), shared.hard_stop.clone());
    let service = service_fn(move |req| {
        let (shared, peer) = (shared.clone(), peer.clone());
        async move { Ok::<_, Infallible>(routes::route(req, shared, peer).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return log_end(addr, result),
        () = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    // In-flight requests, streams included, finish; HTTP/1 stops keep-alive and h2 sends GOAWAY.
    tokio::select! {
        result = conn => log_end(addr, result),
        () = hard_stop.cancelled() => {}
    }
}

fn log_end<E: std::fmt::Display>(addr: SocketAddr, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::debug!(%addr, error = %e, "connection ended with an error");
    }
}
