//! Request dispatch and `/message` (protocol.md §1, §6).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use fleetgate_types::contact::{Contact, ContactError, ContactHandler};
use futures::future::{self, BoxFuture, FutureExt};
use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use prost::Message as _;

use crate::body::{self, DecodedBody, ResponseBody};
use crate::respond::{self, Rejection};
use crate::server::{Peer, Shared};
use crate::tls::Identity;
use crate::{files, stream, wire};

/// A request's handling, boxed; what [`route`] returns.
pub type Routed = BoxFuture<'static, Result<Response<ResponseBody>, Infallible>>;

/// Routes one request; every outcome, failure included, is a response.
///
/// The handler's future is boxed, at its own size, and the box is freed once the response is
/// ready. Hyper keeps the service future inline in its per-request task for h2 (the task that
/// then carries the response body for the stream's whole life), and in a box kept for the whole
/// connection for HTTP/1.1: unboxed, every idle stream would hold a finished request's state.
pub fn route<H: ContactHandler>(
    req: Request<Incoming>,
    shared: Arc<Shared<H>>,
    peer: Arc<Peer>,
) -> Routed {
    let path = req.uri().path();
    if path == "/message" {
        respond_with(async move { message(req, &shared, &peer).await })
    } else if path == "/streaming-message" && !shared.config.disable_streaming {
        respond_with(async move { stream::open(req, &shared, &peer).await })
    } else if path.starts_with("/files/") {
        respond_with(async move {
            let result = files::serve(&shared, &peer, &req).await;
            let status = result
                .as_ref()
                .map_or_else(Rejection::status, |r| r.status());
            tracing::debug!(path = req.uri().path(), %status, "file request");
            result
        })
    } else {
        respond_with(future::ready(Err(Rejection::NotFound)))
    }
}

fn respond_with<F>(handler: F) -> Routed
where
    F: Future<Output = Result<Response<ResponseBody>, Rejection>> + Send + 'static,
{
    handler.map(|result| Ok(respond::finish(result))).boxed()
}

/// What `/message` and `/streaming-message` have checked before reading the body.
pub struct Admitted {
    pub identity: Identity,
    /// `Content-Encoding: deflate`.
    pub deflate: bool,
}

/// The checks shared by both contact endpoints, in Go's order (§6.2) except that an unsupported
/// encoding is refused first, as Go's decompression wrapper does.
pub fn admit<H>(
    req: &Request<Incoming>,
    shared: &Shared<H>,
    peer: &Peer,
) -> Result<Admitted, Rejection> {
    if shared.shutdown.is_cancelled() {
        return Err(Rejection::NotReady);
    }
    let deflate = body::content_encoding(req.headers()).map_err(Rejection::UnsupportedEncoding)?;
    if req.method() != Method::POST {
        return Err(Rejection::BadRequest(format!(
            "method {} not allowed, use POST",
            req.method()
        )));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > shared.config.max_body as u64) {
        return Err(Rejection::BadRequest(format!(
            "body larger than {} bytes",
            shared.config.max_body
        )));
    }
    let identity = crate::certsource::identity(&shared.config.cert_source, req.headers(), peer)
        .map_err(Rejection::BadRequest)?;
    Ok(Admitted { identity, deflate })
}

/// The verified contact handed to the engine.
pub fn contact(
    identity: Identity,
    peer: &Peer,
    wcd: fleetgate_pb::fleetspeak::WrappedContactData,
) -> Contact {
    Contact {
        client_id: identity.client_id,
        public_key: identity.public_key,
        observed_address: peer.observed_address.clone(),
        wcd,
    }
}

/// `POST /message`: one WCD in, one ContactData out. The body is read to its end (not to
/// `Content-Length` of decoded data, Go's bug §6.2), within the decoded-size cap.
async fn message<H: ContactHandler>(
    req: Request<Incoming>,
    shared: &Shared<H>,
    peer: &Peer,
) -> Result<Response<ResponseBody>, Rejection> {
    let admitted = admit(&req, shared, peer)?;
    let max = shared.config.max_body;
    let work = async {
        let mut body = DecodedBody::new(req.into_body(), admitted.deflate, Some(max));
        let bytes = body::read_to_end(&mut body, max).await?;
        let wcd = wire::decode_wcd(&bytes)?;
        let reply = shared
            .handler
            .poll(contact(admitted.identity, peer, wcd))
            .await?;
        Ok::<_, Rejection>(respond::ok_bytes(reply.encode_to_vec().into()))
    };
    tokio::time::timeout(shared.config.contact_timeout, work)
        .await
        .map_err(|_| ContactError::Internal("contact timed out".into()))?
}
