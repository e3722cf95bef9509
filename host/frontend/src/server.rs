//! The accept loop, per-connection setup (PROXY, TLS, identity) and orderly shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fleetgate_types::contact::ContactHandler;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::ResponseBody;
use crate::proxy::{self, Rewind};
use crate::tls::{self, Identity};
use crate::tls_stream::{self, TlsStream};
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
        Some(tls::server_config(&config.cert_chain_pem, &config.key_pem)?)
    };
    let http = Arc::new(Http::new(&config));
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
                    keep_alive(&tcp);
                    no_delay(&tcp);
                    let conn = connection(tcp, addr, acceptor.clone(), http.clone(), shared.clone());
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

/// TCP keep-alive probes after this long without traffic, then every [`KEEPALIVE_INTERVAL`]; the
/// connection is dropped after [`KEEPALIVE_RETRIES`] unanswered ones.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 4;

/// Turns on TCP keep-alive. An idle stream sends nothing for minutes, so a client that vanished
/// without closing (power cut, a NAT that forgot the mapping) would otherwise keep its stream,
/// its memory and its registration until the stream's close time; with probes it is gone in
/// about 90 s. A socket that refuses is served anyway.
fn keep_alive(tcp: &TcpStream) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&probes) {
        tracing::debug!(error = %e, "could not enable TCP keep-alive");
    }
}

/// Turns off Nagle's algorithm. A response (or a pushed stream frame) often goes out as more
/// than one write, TLS records and HTTP framing apart; with Nagle the later ones wait for the
/// ACK of the first, which the client may delay by up to 40 ms.
fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
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

/// The HTTP settings, one builder per version. The version is known before the first request
/// byte (ALPN), so each connection holds only the state of the version it speaks: hyper-util's
/// `auto` connection reserves room for the larger of the two (h2) and a preface reader.
struct Http {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Http {
    fn new(config: &FrontendConfig) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        Self { http1, http2 }
    }

    /// Serves `io` as h2 if TLS negotiated it, as HTTP/1.1 otherwise: like Go's server, h2 only
    /// through ALPN (RFC 9113 §3.2), and plain HTTP/1.1 in the cleartext modes.
    fn serve<H: ContactHandler>(&self, io: Io, routes: Routes<H>) -> Serving<H> {
        let h2 = matches!(&io, Either::Left(tls) if tls.tls().alpn_protocol() == Some(b"h2"));
        let io = TokioIo::new(io);
        // Boxed, so that the connection's task holds a pointer whatever the version.
        if h2 {
            Serving::Http2(Box::pin(self.http2.serve_connection(io, routes)))
        } else {
            Serving::Http1(Box::pin(self.http1.serve_connection(io, routes)))
        }
    }
}

/// A connection's transport once set up: TLS, or plain TCP in the cleartext modes.
type Io = Either<TlsStream<Rewind<TcpStream>>, Rewind<TcpStream>>;

/// The service of one connection: every request goes to [`routes::route`].
struct Routes<H> {
    shared: Arc<Shared<H>>,
    peer: Arc<Peer>,
}

impl<H: ContactHandler> Service<Request<Incoming>> for Routes<H> {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = routes::Routed;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        routes::route(req, self.shared.clone(), self.peer.clone())
    }
}

type Http1Connection<H> = http1::Connection<TokioIo<Io>, Routes<H>>;
type Http2Connection<H> = http2::Connection<TokioIo<Io>, Routes<H>, TokioExecutor>;

/// One connection being served, in the HTTP version it negotiated.
enum Serving<H: ContactHandler> {
    Http1(Pin<Box<Http1Connection<H>>>),
    Http2(Pin<Box<Http2Connection<H>>>),
}

impl<H: ContactHandler> Serving<H> {
    /// HTTP/1 stops keep-alive, h2 sends GOAWAY; requests in flight, streams included, finish.
    fn graceful_shutdown(&mut self) {
        match self {
            Self::Http1(conn) => conn.as_mut().graceful_shutdown(),
            Self::Http2(conn) => conn.as_mut().graceful_shutdown(),
        }
    }
}

impl<H: ContactHandler> Future for Serving<H> {
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Http1(conn) => conn.as_mut().poll(cx),
            Self::Http2(conn) => conn.as_mut().poll(cx),
        }
    }
}

/// One TCP connection: optional PROXY header, TLS (unless cleartext), identity, then HTTP until
/// it closes.
///
/// This future is the connection's task, alive as long as the connection: for an idle stream,
/// per client. So what it keeps across its awaits is kept small: the handshake runs in a box of
/// its own, freed once done, and the HTTP connection is boxed at its exact size.
async fn connection<H: ContactHandler>(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: Option<Arc<ServerConfig>>,
    http: Arc<Http>,
    shared: Arc<Shared<H>>,
) {
    let setup = Box::pin(setup(tcp, addr, acceptor, &shared.config));
    let (io, peer) = tokio::select! {
        () = shared.shutdown.cancelled() => return,
        result = setup => match result {
            Ok(ok) => ok,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connection setup failed");
                return;
            }
        },
    };
    let (shutdown, hard_stop) = (shared.shutdown.clone(), shared.hard_stop.clone());
    let routes = Routes {
        shared,
        peer: Arc::new(peer),
    };
    let mut conn = http.serve(io, routes);
    tokio::select! {
        result = &mut conn => return log_end(addr, result),
        () = shutdown.cancelled() => conn.graceful_shutdown(),
    }
    tokio::select! {
        result = conn => log_end(addr, result),
        () = hard_stop.cancelled() => {}
    }
}

/// The PROXY header (if expected), the TLS handshake (unless cleartext) and what they prove.
async fn setup(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: Option<Arc<ServerConfig>>,
    config: &FrontendConfig,
) -> std::io::Result<(Io, Peer)> {
    let (io, source) = if config.proxy_protocol {
        proxy::accept(tcp, config.proxy_header_timeout).await?
    } else {
        (Rewind::new(tcp), None)
    };
    let observed_address = proxy::format_addr(source.unwrap_or(addr));
    let Some(acceptor) = acceptor else {
        let peer = Peer {
            identity: Err("TLS information not found".into()),
            observed_address,
        };
        return Ok((Either::Right(io), peer));
    };
    let tls = tokio::time::timeout(
        config.tls_handshake_timeout,
        tls_stream::accept(io, acceptor),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
    let peer = Peer {
        identity: tls::identity(tls.tls().peer_certificates()),
        observed_address,
    };
    Ok((Either::Left(tls), peer))
}

fn log_end<E: std::fmt::Display>(addr: SocketAddr, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::debug!(%addr, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_get_keep_alive_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (tcp, _) = accepted.unwrap();
        keep_alive(&tcp);
        let sock = socket2::SockRef::from(&tcp);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
    }
}
