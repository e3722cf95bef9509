//! The pure byte-level codec of the client protocol (protocol.md §7.2, §8).
//!
//! Nothing here does I/O, so every function can be unit-tested and fuzzed on its own. All input is
//! treated as hostile: lengths are checked before they are trusted, buffers are bounded, and nothing
//! indexes peer bytes without a bounds check.

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};
use fleetgate_pb::fleetspeak::WrappedContactData;

/// The 4 bytes that open every streaming request body (little-endian `0xF1EE1001`).
pub const MAGIC: [u8; 4] = [0x01, 0x10, 0xEE, 0xF1];

/// The longest uvarint a `u64` needs.
const MAX_UVARINT_LEN: usize = 10;

/// Why a byte stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("bad magic number {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("frame length varint is malformed")]
    BadVarint,
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: u64, max: usize },
    #[error("decoded body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("bad zlib data: {0}")]
    Zlib(String),
    #[error("bad protobuf: {0}")]
    Protobuf(String),
}

/// Appends the protobuf base-128 varint of `value`.
pub fn encode_uvarint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes a uvarint at the start of `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// value and how many bytes it took. More than 10 bytes, or a value above `u64::MAX`, is an error.
pub fn decode_uvarint(buf: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_UVARINT_LEN).enumerate() {
        let bits = u64::from(byte & 0x7f);
        // The 10th byte may only contribute the single top bit.
        if i == MAX_UVARINT_LEN - 1 && byte > 1 {
            return Err(WireError::BadVarint);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_UVARINT_LEN {
        Err(WireError::BadVarint)
    } else {
        Ok(None)
    }
}

/// `uvarint(len) ‖ msg`: one frame of a streaming response.
pub fn encode_frame(msg: &impl prost::Message) -> Bytes {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(len + MAX_UVARINT_LEN);
    encode_uvarint(len as u64, &mut out);
    // Encoding into a Vec cannot run out of space, so the error branch is unreachable.
    if msg.encode(&mut out).is_err() {
        out.truncate(0);
    }
    Bytes::from(out)
}

/// Parses one `WrappedContactData`. An empty slice is a valid, empty message.
pub fn decode_wcd(bytes: &[u8]) -> Result<WrappedContactData, WireError> {
    <WrappedContactData as prost::Message>::decode(bytes)
        .map_err(|e| WireError::Protobuf(e.to_string()))
}

/// Splits a byte stream into frames, whatever the chunk boundaries.
///
/// Push bytes with [`FrameDecoder::push`], then call [`FrameDecoder::next_frame`] until it returns
/// `Ok(None)` ("need more"). Draining before the next push keeps the buffer at one frame plus one
/// chunk, because an oversized length is rejected as soon as its varint is read.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame: usize,
    need_magic: bool,
}

impl FrameDecoder {
    /// A decoder for a request body: magic first, then frames of at most `max_frame` bytes.
    pub fn with_magic(max_frame: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame,
            need_magic: true,
        }
    }

    /// A decoder for a stream without magic (e.g. a response body, in tests).
    pub fn without_magic(max_frame: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame,
            need_magic: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame payload, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, WireError> {
        if self.need_magic {
            let Some(head) = self.buf.get(..MAGIC.len()) else {
                return self.check_magic_prefix();
            };
            let mut got = [0u8; 4];
            got.copy_from_slice(head);
            if got != MAGIC {
                return Err(WireError::BadMagic(got));
            }
            self.buf.advance(MAGIC.len());
            self.need_magic = false;
        }
        let Some((len, header)) = decode_uvarint(&self.buf)? else {
            return Ok(None);
        };
        if len > self.max_frame as u64 {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        let len = len as usize; // fits: bounded by max_frame
        // No reserve for the announced length: a few bytes must not make us allocate 20 MiB.
        if self.buf.len() < header + len {
            return Ok(None);
        }
        self.buf.advance(header);
        let frame = self.buf.split_to(len).freeze();
        self.release_if_idle();
        Ok(Some(frame))
    }

    /// Fails early on a wrong first byte so that a non-stream body is rejected at once.
    fn check_magic_prefix(&self) -> Result<Option<Bytes>, WireError> {
        if MAGIC.starts_with(&self.buf) {
            return Ok(None);
        }
        let mut got = [0u8; 4];
        for (slot, b) in got.iter_mut().zip(self.buf.iter()) {
            *slot = *b;
        }
        Err(WireError::BadMagic(got))
    }

    /// An idle stream keeps no buffer: not the capacity of its largest frame, and not the
    /// ~110 bytes that frame 0's small buffer and its shared header hold for the stream's life.
    fn release_if_idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

/// Incremental zlib (RFC 1950) decoding of a request body, with a cap on the decoded total.
///
/// The streaming client never finishes its zlib stream, so decoding must work on whatever prefix
/// has arrived; the client's sync flushes make every frame decodable as soon as it is sent.
pub struct ZlibStream {
    inner: Decompress,
    decoded: u64,
    max_total: Option<u64>,
    ended: bool,
}

impl std::fmt::Debug for ZlibStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZlibStream")
            .field("decoded", &self.decoded)
            .field("ended", &self.ended)
            .finish()
    }
}

impl ZlibStream {
    /// `max_total`: the decoded-size cap for a whole body (`None` for an endless stream, whose
    /// frames are bounded by the [`FrameDecoder`] instead).
    pub fn new(max_total: Option<usize>) -> Self {
        Self {
            inner: Decompress::new(true),
            decoded: 0,
            max_total: max_total.map(|m| m as u64),
            ended: false,
        }
    }

    /// Whether the zlib trailer has been seen.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Decodes from the front of `input`, advancing it past what was consumed, and returns at most
    /// `max_out` decoded bytes (possibly none: zlib may need more input). Bounding each call keeps
    /// a decompression bomb from producing more than `max_out` bytes at a time. Bytes after the
    /// zlib trailer are ignored, as Go's reader does.
    pub fn decode(&mut self, input: &mut Bytes, max_out: usize) -> Result<Bytes, WireError> {
        let mut out = vec![0u8; max_out.max(1)];
        let mut filled = 0usize;
        while !self.ended && filled < out.len() {
            let (before_in, before_out) = (self.inner.total_in(), self.inner.total_out());
            let rest = out.get_mut(filled..).unwrap_or_default();
            let status = self
                .inner
                .decompress(input, rest, FlushDecompress::None)
                .map_err(|e| WireError::Zlib(e.to_string()))?;
            let consumed = (self.inner.total_in() - before_in) as usize;
            let produced = (self.inner.total_out() - before_out) as usize;
            input.advance(consumed.min(input.len()));
            filled += produced;
            self.decoded += produced as u64;
            if let Some(max) = self.max_total
                && self.decoded > max
            {
                return Err(WireError::BodyTooLarge(max as usize));
            }
            if status == Status::StreamEnd {
                self.ended = true;
            }
            if consumed == 0 && produced == 0 {
                break;
            }
        }
        if self.ended {
            input.clear();
        }
        out.truncate(filled);
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
