//! The sending side: `POST http://<target>/client/<hex id>` (notifications.md §3.1).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetgate_engine::Notifier;
use fleetgate_engine::notifier::LOCAL;
use fleetgate_types::ClientId;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Stats;

/// The whole exchange (connect, request, response head) must finish within this. Go bounds it
/// only by the admin caller's deadline; a dead target should not hold `InsertMessage` that long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends notifications over plain HTTP/1.1. Cheap to share; one connection per notification.
#[derive(Debug)]
pub struct HttpNotifier {
    timeout: Duration,
    stats: Arc<Stats>,
}

impl HttpNotifier {
    pub fn new(timeout: Duration, stats: Arc<Stats>) -> Self {
        Self { timeout, stats }
    }

    /// Sends one notification. The response status is not looked at (Go counts a 404 as
    /// delivered); only transport failures are errors.
    pub async fn send(&self, target: &str, client: ClientId) -> Result<http::StatusCode, String> {
        match tokio::time::timeout(self.timeout, post(target, client)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

#[async_trait::async_trait]
impl Notifier for HttpNotifier {
    async fn new_message_for_client(&self, target: &str, client: ClientId) {
        match self.send(target, client).await {
            Ok(status) => {
                Stats::bump(&self.stats.sent);
                tracing::debug!(%target, %client, %status, "notification sent");
            }
            Err(e) => {
                Stats::bump(&self.stats.failed);
                tracing::warn!(%target, %client, error = %e, "notification failed; the message stays queued");
            }
        }
    }
}

async fn post(target: &str, client: ClientId) -> Result<http::StatusCode, String> {
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    tcp.set_nodelay(true).ok();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // The connection task ends when the exchange is done and `sender` is dropped.
    let driver = tokio::spawn(conn);
    let req = http::Request::post(format!("/client/{}", client.to_hex()))
        .header(http::header::HOST, target)
        .header(http::header::CONTENT_LENGTH, "0")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let result = sender.send_request(req).await;
    drop(sender);
    // The body is dropped unread: it is at most a one-line error text.
    let status = result
        .map(|r| r.status())
        .map_err(|e| format!("request: {e}"));
    driver.abort();
    status
}

/// The single-server notifier: streams record `local`, and this engine already woke its own
/// streams, so there is nothing to send. Any other target means servers share a database without
/// HTTP notifications, a misconfiguration worth a warning (Go logs the same and does nothing).
#[derive(Debug, Default)]
pub struct InProcessNotifier;

#[async_trait::async_trait]
impl Notifier for InProcessNotifier {
    async fn new_message_for_client(&self, target: &str, client: ClientId) {
        if target != LOCAL {
            tracing::warn!(%target, %client, "Attempt to send non-local notification. Ignoring.");
        }
    }
}
