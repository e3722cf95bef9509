//! The sending side: `POST http://<target>/client/<hex id>` (notifications.md §3.1).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetgate_engine::Notifier;
use fleetgate_engine::notifier::LOCAL;
use fleetgate_types::ClientId;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::Stats;

/// The whole exchange (connect, request, response head) must finish within this. Go bounds it
/// only by the admin caller's deadline; a dead target should not hold `InsertMessage` that long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per target, and for how long (Go's default transport keeps them 90 s).
/// A connection per notification would cost a handshake each and leave a socket in TIME_WAIT
/// for a minute: at a few hundred inserts a second that runs out of ephemeral ports.
const IDLE_PER_TARGET: usize = 32;
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most of a target's answer that is read: Go's and Fleetgate's listeners answer with an
/// empty body or a one-line error.
const MAX_RESPONSE_BODY: usize = 4096;

/// Sends notifications over plain HTTP/1.1, reusing keep-alive connections per target. Cheap to
/// share.
#[derive(Debug)]
pub struct HttpNotifier {
    timeout: Duration,
    stats: Arc<Stats>,
    pool: Client<HttpConnector, Empty<Bytes>>,
    /// Sent in [`SECRET_HEADER`](crate::SECRET_HEADER) when the servers share one.
    secret: Option<http::HeaderValue>,
}

impl HttpNotifier {
    pub fn new(timeout: Duration, stats: Arc<Stats>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let pool = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_TARGET)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        Self {
            timeout,
            stats,
            pool,
            secret: None,
        }
    }

    /// Sends `secret` with every notification. A secret that cannot be a header value (checked
    /// when the configuration is loaded) is not sent.
    pub fn with_secret(mut self, secret: Option<&str>) -> Self {
        self.secret = secret
            .and_then(|s| http::HeaderValue::from_str(s).ok())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        self
    }

    /// Sends one notification. The response status is not looked at (Go counts a 404 as
    /// delivered); only transport failures are errors.
    pub async fn send(&self, target: &str, client: ClientId) -> Result<http::StatusCode, String> {
        match tokio::time::timeout(self.timeout, self.post(target, client)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn post(&self, target: &str, client: ClientId) -> Result<http::StatusCode, String> {
        let uri: http::Uri = format!("http://{target}/client/{}", client.to_hex())
            .parse()
            .map_err(|e| format!("not a host:port: {e}"))?;
        let mut req = http::Request::post(uri).header(http::header::CONTENT_LENGTH, "0");
        if let Some(secret) = &self.secret {
            req = req.header(crate::SECRET_HEADER, secret.clone());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building the request: {e}"))?;
        let resp = self.pool.request(req).await.map_err(|e| chain(&e))?;
        let status = resp.status();
        // Read to the end so the connection can be reused. A listener answers at most a
        // one-line text; a target sending more is not one, and is not read into memory.
        Limited::new(resp.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        Ok(status)
    }
}

/// An error with its causes (the pool's own text is only "client error (Connect)").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
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
