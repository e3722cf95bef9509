//! Request bodies in (decoded per `Content-Encoding`, §8) and response bodies out.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::frames;
use crate::wire::{WireError, ZlibStream};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// How much decoded data one read hands out, so a zlib bomb is processed in bounded steps.
const MAX_DECODED_CHUNK: usize = 64 * 1024;

/// The request's `Content-Encoding`, or the unsupported value (→ 415).
pub fn content_encoding(headers: &HeaderMap) -> Result<bool, String> {
    let Some(value) = headers.get(http::header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    match value.to_str().map(str::trim) {
        Ok("") => Ok(false),
        Ok(v) if v.eq_ignore_ascii_case("deflate") => Ok(true),
        _ => Err(format!("unsupported Content-Encoding {value:?}")),
    }
}

/// Why reading a request body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("reading request body: {0}")]
    Transport(#[from] hyper::Error),
}

/// A request body, zlib-decoded when the client compressed it.
pub struct DecodedBody<B> {
    inner: B,
    zlib: Option<ZlibStream>,
    /// Raw bytes received but not yet inflated.
    pending: Bytes,
    /// The last inflate step filled its output: the inflater may hold more even with no input.
    inflater_full: bool,
}

impl<B> DecodedBody<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    /// `max_total` caps the decoded total of a compressed body (`None` for a stream).
    pub fn new(inner: B, deflate: bool, max_total: Option<usize>) -> Self {
        Self {
            inner,
            zlib: deflate.then(|| ZlibStream::new(max_total)),
            pending: Bytes::new(),
            inflater_full: false,
        }
    }

    /// True if the body was compressed and its zlib stream has not ended.
    pub fn zlib_unfinished(&self) -> bool {
        self.zlib.as_ref().is_some_and(|z| !z.ended())
    }

    /// The next non-empty piece of decoded data, `Ok(None)` at the end of the body.
    ///
    /// Cancel-safe: the only await point is the transport read, and everything after it completes
    /// in the same poll, so dropping the future loses nothing.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            if let Some(zlib) = self.zlib.as_mut()
                && (!self.pending.is_empty() || self.inflater_full)
            {
                let out = zlib.decode(&mut self.pending, MAX_DECODED_CHUNK)?;
                self.inflater_full = out.len() == MAX_DECODED_CHUNK;
                if !out.is_empty() {
                    return Ok(Some(out));
                }
                self.pending.clear(); // fully consumed, or trailing bytes after the zlib end
            }
            let Some(frame) = self.inner.frame().await else {
                return Ok(None);
            };
            let Ok(data) = frame?.into_data() else {
                continue; // trailers carry nothing we use
            };
            if self.zlib.is_none() {
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            } else {
                self.pending = data;
            }
        }
    }
}

/// Reads a whole (non-streaming) body, decoded, up to `max` decoded bytes.
pub async fn read_to_end<B>(body: &mut DecodedBody<B>, max: usize) -> Result<Vec<u8>, BodyError>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    let mut out = Vec::new();
    while let Some(chunk) = body.next_chunk().await? {
        if out.len() + chunk.len() > max {
            return Err(WireError::BodyTooLarge(max).into());
        }
        out.extend_from_slice(&chunk);
    }
    if body.zlib_unfinished() {
        return Err(WireError::Zlib("compressed body ends before the zlib trailer".into()).into());
    }
    Ok(out)
}

/// Every response body the frontend sends: a complete buffer or a stream fed by a channel.
#[derive(Debug)]
pub enum ResponseBody {
    Full(Option<Bytes>),
    Channel(frames::Receiver),
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    pub fn empty() -> Self {
        Self::Full(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Channel(rx) => rx.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Channel(_) => SizeHint::default(),
        }
    }
}
