//! The request half of one client connection, HTTP/1.1 or HTTP/2 — whichever ALPN chose.
//!
//! The stock Go client reaches its server over HTTP/2 (Go's TLS transport negotiates `h2`), and
//! the Go `fleetspeak-server` needs it for streaming: over HTTP/1.1 Go's `net/http` tries to
//! drain the still-open request body before it writes the response header, so frame 0 is never
//! answered. Fleetgate serves both. [`crate::LoadgenConfig::http2`] decides what is offered.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::ClientError;

pub type Body = BoxBody<Bytes, Infallible>;

/// ALPN protocols to offer: `h2` first when HTTP/2 is wanted, always `http/1.1`.
pub fn alpn(http2: bool) -> Vec<Vec<u8>> {
    let mut protocols = Vec::new();
    if http2 {
        protocols.push(b"h2".to_vec());
    }
    protocols.push(b"http/1.1".to_vec());
    protocols
}

pub enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Sender {
    /// The HTTP handshake on an established TLS stream; returns the sender and the spawned
    /// connection driver.
    pub async fn handshake<T>(io: T, h2: bool) -> Result<(Self, JoinHandle<()>), ClientError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let err = |e: hyper::Error| ClientError::Http(e.to_string());
        let io = TokioIo::new(io);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(err)?;
            let driver = tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "client connection ended");
                }
            });
            Ok((Self::H2(sender), driver))
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(err)?;
            let driver = tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "client connection ended");
                }
            });
            Ok((Self::H1(sender), driver))
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Self::H1(s) => s.is_closed(),
            Self::H2(s) => s.is_closed(),
        }
    }

    /// HTTP/2 needs the scheme and authority in the URI (`:scheme`, `:authority`); HTTP/1.1
    /// gets a path and a `Host` header.
    pub fn is_h2(&self) -> bool {
        matches!(self, Self::H2(_))
    }

    pub async fn send(&mut self, req: Request<Body>) -> Result<Response<Incoming>, ClientError> {
        let err = |e: hyper::Error| ClientError::Http(e.to_string());
        match self {
            Self::H1(s) => {
                s.ready().await.map_err(err)?;
                s.send_request(req).await.map_err(err)
            }
            Self::H2(s) => {
                s.ready().await.map_err(err)?;
                s.send_request(req).await.map_err(err)
            }
        }
    }
}
