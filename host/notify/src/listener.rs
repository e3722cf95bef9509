//! The receiving side: a plain HTTP server answering `POST /client/<hex id>`
//! (notifications.md §3.2–3.3).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetgate_types::ClientId;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Dispatch, NotifyError, Stats};

/// How long a peer may take to send a request's head. Without it a connection that never
/// finishes one is held forever (hyper sets no limit of its own), and enough of them exhaust
/// file descriptors; a notifying server sends its whole request at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound notification listener; [`Listener::serve`] starts answering.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    local: SocketAddr,
    /// When set, a notification must carry it in [`SECRET_HEADER`](crate::SECRET_HEADER).
    secret: Option<Arc<str>>,
}

impl Listener {
    /// Binds `address` (`host:port`, or Go's `:port` for every interface, IPv6 included).
    pub async fn bind(address: &str) -> Result<Self, NotifyError> {
        let tcp = match address.strip_prefix(':') {
            // Go listens dual-stack and reports `[::]:port`; fall back where IPv6 is off.
            Some(port) => match TcpListener::bind(format!("[::]:{port}")).await {
                Ok(l) => Ok(l),
                Err(_) => TcpListener::bind(format!("0.0.0.0:{port}")).await,
            },
            None => TcpListener::bind(address).await,
        }
        .map_err(|source| NotifyError::Bind {
            address: address.to_owned(),
            source,
        })?;
        let local = tcp.local_addr().map_err(|source| NotifyError::Bind {
            address: address.to_owned(),
            source,
        })?;
        Ok(Self {
            tcp,
            local,
            secret: None,
        })
    }

    /// Refuses notifications that do not carry `secret` (none: every one is accepted, as in Go).
    pub fn with_secret(mut self, secret: Option<String>) -> Self {
        self.secret = secret.map(Arc::from);
        self
    }

    /// The bound address in Go's `host:port` form (`[::]:8080`, `127.0.0.1:41234`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answers notifications until `shutdown` fires; each valid one goes to `dispatch`.
    pub async fn serve(self, dispatch: Dispatch, stats: Arc<Stats>, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        loop {
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "notification listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // The sender waits for the answer before its next notification on this connection:
            // with Nagle's algorithm a response written in pieces would wait for its delayed ACK.
            let _ = tcp.set_nodelay(true);
            let (dispatch, stats, shutdown) = (dispatch.clone(), stats.clone(), shutdown.clone());
            let secret = self.secret.clone();
            tasks.spawn(async move {
                let served =
                    serve_connection(tcp, dispatch, stats, secret, shutdown, HEADER_READ_TIMEOUT)
                        .await;
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "notification connection ended with an error");
                }
            });
        }
        tasks.close();
        // Requests are answered at once; do not wait for idle keep-alive connections.
        let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    }
}

/// Answers the requests of one connection (HTTP/1.1 with keep-alive) until the peer closes it,
/// until `shutdown` fires and the request in progress is answered, or until a request head has
/// taken longer than `header_timeout` to arrive. With `secret`, a request without it is refused.
pub async fn serve_connection<IO>(
    io: IO,
    dispatch: Dispatch,
    stats: Arc<Stats>,
    secret: Option<Arc<str>>,
    shutdown: CancellationToken,
    header_timeout: Duration,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let reply = if authorized(&req, secret.as_deref()) {
            handle(&req, &dispatch, &stats)
        } else {
            Stats::bump(&stats.unauthorized);
            tracing::warn!(
                path = req.uri().path(),
                "notification refused: the shared secret is missing or wrong"
            );
            text_reply(
                StatusCode::UNAUTHORIZED,
                "notification secret missing or wrong",
            )
        };
        async move { Ok::<_, Infallible>(reply) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Whether a request carries the secret, when one is required. Compared in constant time, so the
/// answer's timing does not reveal how much of a guess was right.
pub fn authorized<B>(req: &Request<B>, secret: Option<&str>) -> bool {
    let Some(secret) = secret else { return true };
    let Some(given) = req.headers().get(crate::SECRET_HEADER) else {
        return false;
    };
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One request, checked in Go's order (§3.2).
pub fn handle<B>(req: &Request<B>, dispatch: &Dispatch, stats: &Stats) -> Response<Full<Bytes>> {
    let client = match parse_path(req.uri().path()) {
        Ok(c) => c,
        Err((status, text)) => return text_reply(status, &text),
    };
    if req.method() != Method::POST {
        return text_reply(
            StatusCode::BAD_REQUEST,
            &format!("Unexpected method: {}", req.method()),
        );
    }
    Stats::bump(&stats.received);
    let held = dispatch(client);
    if held {
        Stats::bump(&stats.dispatched);
    }
    tracing::debug!(%client, held, "notification received");
    Response::new(Full::new(Bytes::new()))
}

/// The client id of an escaped path `/client/<id>`, or the status and text to answer.
pub fn parse_path(path: &str) -> Result<ClientId, (StatusCode, String)> {
    // Go's path.Split: the directory keeps its trailing slash.
    let cut = path.rfind('/').map_or(0, |i| i + 1);
    let (dir, segment) = path.split_at(cut);
    if dir != "/client/" {
        return Err((StatusCode::NOT_FOUND, "not found".into()));
    }
    let bad = |e: String| {
        (
            StatusCode::BAD_REQUEST,
            format!("Failed to parse client id [{segment}]: {e}"),
        )
    };
    if segment.is_empty() || segment == "nil" {
        return Err((StatusCode::BAD_REQUEST, "Client id is required.".into()));
    }
    if segment.len() != 16 {
        return Err(bad("ClientID must be 16 characters".into()));
    }
    if let Some(c) = segment.chars().find(|c| !c.is_ascii_hexdigit()) {
        // Go's hex.InvalidByteError text.
        return Err(bad(format!(
            "encoding/hex: invalid byte: U+{:04X} {c:?}",
            u32::from(c)
        )));
    }
    ClientId::from_hex(segment).map_err(|e| bad(e.to_string()))
}

/// Go's `http.Error`: plain text with a trailing newline.
fn text_reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    r
}
