//! The one place where failures become HTTP statuses (protocol.md §13).
//!
//! The client treats every non-200 status alike, so the codes exist for operators and tests.
//! Bodies are short plain text naming what was wrong; the client ignores them.

use std::time::SystemTime;

use bytes::Bytes;
use fleetgate_types::contact::ContactError;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{BodyError, ResponseBody};
use crate::wire::WireError;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// Malformed input: method, certificate, body, framing, protobuf, path.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedEncoding(String),
    #[error("not found")]
    NotFound,
    #[error("file not found")]
    FileNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `/files/` with file-server authorization on, and no acceptable certificate or labels.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A `Range` header that cannot be served; `size` is set when no range overlaps the file
    /// (for `Content-Range: bytes */size`).
    #[error("{reason}")]
    RangeNotSatisfiable { reason: String, size: Option<usize> },
    /// The server is shutting down.
    #[error("Server not ready.")]
    NotReady,
    #[error(transparent)]
    Contact(#[from] ContactError),
}

impl From<BodyError> for Rejection {
    fn from(e: BodyError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<WireError> for Rejection {
    fn from(e: WireError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound | Self::FileNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::NotReady => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Contact(ContactError::NotAuthorized(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Contact(
                ContactError::Invalid(_) | ContactError::Internal(_) | ContactError::NotReady,
            ) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body_text(&self) -> String {
        match self {
            Self::Contact(ContactError::NotAuthorized(_)) => "not authorized".into(),
            Self::Contact(ContactError::NotReady) | Self::NotReady => "Server not ready.".into(),
            // The reason is logged (debug), not told to the requester.
            Self::Unauthorized(_) => "unauthorized".into(),
            other => other.to_string(),
        }
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "request failed");
        } else {
            tracing::debug!(%status, error = %self, "request rejected");
        }
        let mut text = self.body_text();
        text.push('\n');
        let mut resp = Response::new(ResponseBody::full(text));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self, Self::MethodNotAllowed) {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if let Self::RangeNotSatisfiable {
            size: Some(size), ..
        } = self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        resp
    }
}

/// `200 application/octet-stream` with `body`.
///
/// Over h2 each header a response sends is added to that connection's HPACK encoder table
/// (an allocation of ~0.4 KiB on the first one), which a stream connection keeps for its whole
/// life to save a few bytes on responses that never come. So the headers are marked
/// never-indexed, and `Date` is set here, the same way, instead of by hyper.
pub fn octet_stream(body: ResponseBody) -> Response<ResponseBody> {
    let mut resp = Response::new(body);
    let mut content_type = HeaderValue::from_static("application/octet-stream");
    content_type.set_sensitive(true);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    if let Ok(mut date) = HeaderValue::try_from(crate::date::format(SystemTime::now())) {
        date.set_sensitive(true);
        resp.headers_mut().insert(header::DATE, date);
    }
    resp
}

/// A complete protobuf reply.
pub fn ok_bytes(bytes: Bytes) -> Response<ResponseBody> {
    octet_stream(ResponseBody::full(bytes))
}

/// Maps a handler result to a response.
pub fn finish(result: Result<Response<ResponseBody>, Rejection>) -> Response<ResponseBody> {
    result.unwrap_or_else(Rejection::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_protocol_table() {
        let cases = [
            (Rejection::BadRequest("x".into()), 400),
            (Rejection::UnsupportedEncoding("gzip".into()), 415),
            (Rejection::NotFound, 404),
            (Rejection::NotReady, 500),
            (Rejection::Unauthorized("no certificate".into()), 401),
            (
                Rejection::RangeNotSatisfiable {
                    reason: "invalid range".into(),
                    size: None,
                },
                416,
            ),
            (ContactError::NotAuthorized("label".into()).into(), 503),
            (ContactError::Invalid("101 messages".into()).into(), 500),
            (ContactError::Internal("db".into()).into(), 500),
            (ContactError::NotReady.into(), 500),
        ];
        for (rejection, code) in cases {
            assert_eq!(rejection.status().as_u16(), code, "{rejection:?}");
        }
    }

    #[test]
    fn not_ready_body_is_the_go_text() {
        assert_eq!(
            Rejection::Contact(ContactError::NotReady).body_text(),
            "Server not ready."
        );
    }
}
