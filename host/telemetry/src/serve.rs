//! The two plain-HTTP listeners operators point their tooling at (server.md §15):
//!
//! * [`serve_metrics`] on `stats_config.address`: `GET /metrics` in the Prometheus text format.
//! * [`serve_health`] on `health_check_config.listen_address`: `/healthz` (liveness), `/readyz`
//!   (readiness from [`Readiness`]), and 200 with an empty body for every other path, as the
//!   original's health check answers, so existing probes keep working.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use fleetgate_store::Store;

use crate::Metrics;

/// How long `/readyz` waits for the database to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` reports. The binary sets each part as start-up reaches it; every part must hold.
#[derive(Default)]
pub struct Readiness {
    /// The open store, pinged on every `/readyz`. Unset until the database is open.
    store: OnceLock<Arc<dyn Store>>,
    /// Every configured listener is bound.
    listeners: AtomicBool,
    /// Every configured service (plugin) is installed.
    plugins: AtomicBool,
    /// Set when shutdown begins, so load balancers stop sending work before listeners close.
    stopping: AtomicBool,
}

impl Readiness {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set_store(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }

    pub fn set_listeners_bound(&self) {
        self.listeners.store(true, Ordering::Release);
    }

    pub fn set_plugins_loaded(&self) {
        self.plugins.store(true, Ordering::Release);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// `Ok` when ready, else the parts that are not, for the 503 body.
    pub async fn check(&self) -> Result<(), String> {
        let mut missing = Vec::new();
        if self.stopping.load(Ordering::Acquire) {
            missing.push("stopping".to_owned());
        }
        match self.store.get() {
            None => missing.push("database: not open".to_owned()),
            Some(s) => match tokio::time::timeout(PING_TIMEOUT, s.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => missing.push(format!("database: {e}")),
                Err(_) => missing.push(format!("database: no answer within {PING_TIMEOUT:?}")),
            },
        }
        if !self.listeners.load(Ordering::Acquire) {
            missing.push("listeners: not bound".to_owned());
        }
        if !self.plugins.load(Ordering::Acquire) {
            missing.push("plugins: not loaded".to_owned());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("\n"))
        }
    }
}

/// Serves `/metrics` until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve(listener, shutdown, move |req| {
        let metrics = metrics.clone();
        async move {
            if req.uri().path() != "/metrics" {
                return text(StatusCode::NOT_FOUND, "404 page not found\n".into());
            }
            let mut r = text(StatusCode::OK, metrics.encode());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
    })
    .await
}

/// Serves the health endpoints until `shutdown` is cancelled.
pub async fn serve_health(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve(listener, shutdown, move |req| {
        let readiness = readiness.clone();
        async move {
            match req.uri().path() {
                "/healthz" => text(StatusCode::OK, "ok\n".into()),
                "/readyz" => match readiness.check().await {
                    Ok(()) => text(StatusCode::OK, "ready\n".into()),
                    Err(why) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready:\n{why}\n"),
                    ),
                },
                _ => text(StatusCode::OK, String::new()),
            }
        }
    })
    .await
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// A small HTTP/1.1 accept loop: each connection is served on its own task and asked to finish
/// gracefully on shutdown.
async fn serve<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    handle: F,
) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let (tcp, addr) = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A scraper or health probe waits for the whole answer: no Nagle delay on its pieces.
        let _ = tcp.set_nodelay(true);
        let (handle, shutdown) = (handle.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%addr, error = %e, "telemetry connection ended with an error");
            }
        });
    }
}
