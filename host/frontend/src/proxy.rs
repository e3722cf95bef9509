//! PROXY protocol v1/v2 (protocol.md §5), parsed per connection before TLS.
//!
//! Unlike Go, the header is read in the connection's own task with a timeout, and a malformed
//! header closes only that connection. The header is optional: bytes that cannot start one (a TLS
//! ClientHello starts with 0x16) are replayed to the TLS layer unchanged.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const V1_PREFIX: &[u8] = b"PROXY";
const V1_MAX: usize = 107;
const V2_SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
const V2_HEADER: usize = 16;

/// A malformed PROXY header; the connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad PROXY header: {0}")]
pub struct ProxyError(pub &'static str);

/// The outcome of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// These bytes cannot start a PROXY header: use the connection as is.
    NotProxy,
    /// A prefix of a header; read more.
    Incomplete,
    /// A complete header of `len` bytes. `source` is `None` for LOCAL/UNKNOWN/unix, where the
    /// socket address stands.
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Parses a PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if is_prefix_either_way(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(Parsed::Incomplete)
        } else {
            parse_v1(buf)
        };
    }
    if is_prefix_either_way(buf, &V2_SIG) {
        return if buf.len() < V2_SIG.len() {
            Ok(Parsed::Incomplete)
        } else {
            parse_v2(buf)
        };
    }
    Ok(Parsed::NotProxy)
}

fn is_prefix_either_way(buf: &[u8], sig: &[u8]) -> bool {
    buf.starts_with(sig) || sig.starts_with(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or_default();
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError("v1 line too long"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = std::str::from_utf8(window.get(..end).unwrap_or_default())
        .map_err(|_| ProxyError("v1 not ASCII"))?;
    let tokens: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    match tokens.get(1).copied() {
        Some("UNKNOWN") => Ok(Parsed::Header { len, source: None }),
        Some(proto @ ("TCP4" | "TCP6")) => {
            let [_, _, src, _dst, sport, _dport] = tokens.as_slice() else {
                return Err(ProxyError("v1 needs 6 fields"));
            };
            let ip: IpAddr = src
                .parse()
                .map_err(|_| ProxyError("v1 bad source address"))?;
            if ip.is_ipv4() != (proto == "TCP4") {
                return Err(ProxyError("v1 address family mismatch"));
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| ProxyError("v1 bad source port"))?;
            Ok(Parsed::Header {
                len,
                source: Some(SocketAddr::new(ip, port)),
            })
        }
        _ => Err(ProxyError("v1 unknown protocol")),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(head) = buf.get(..V2_HEADER) else {
        return Ok(Parsed::Incomplete);
    };
    let (ver_cmd, family) = (head[12], head[13]);
    let body_len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    let local = match ver_cmd {
        0x20 => true,
        0x21 => false,
        _ => return Err(ProxyError("v2 bad version/command")),
    };
    let addr_len = match family {
        0x00 if local => 0,
        0x00 => return Err(ProxyError("v2 UNSPEC with PROXY command")),
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        _ => return Err(ProxyError("v2 bad address family")),
    };
    if body_len < addr_len {
        return Err(ProxyError("v2 length shorter than the address block"));
    }
    let Some(body) = buf.get(V2_HEADER..V2_HEADER + body_len) else {
        return Ok(Parsed::Incomplete);
    };
    let len = V2_HEADER + body_len;
    if local {
        return Ok(Parsed::Header { len, source: None });
    }
    Ok(Parsed::Header {
        len,
        source: v2_source(family, body),
    })
}

/// The source address of a v2 PROXY body; `None` for unix sockets.
fn v2_source(family: u8, body: &[u8]) -> Option<SocketAddr> {
    match family {
        0x11 | 0x12 => {
            let ip: [u8; 4] = body.get(0..4)?.try_into().ok()?;
            let port: [u8; 2] = body.get(8..10)?.try_into().ok()?;
            Some(SocketAddr::new(
                Ipv4Addr::from(ip).into(),
                u16::from_be_bytes(port),
            ))
        }
        0x21 | 0x22 => {
            let ip: [u8; 16] = body.get(0..16)?.try_into().ok()?;
            let port: [u8; 2] = body.get(32..34)?.try_into().ok()?;
            Some(SocketAddr::new(
                Ipv6Addr::from(ip).into(),
                u16::from_be_bytes(port),
            ))
        }
        _ => None,
    }
}

/// `a.b.c.d:port`, `[v6]:port`; IPv4-mapped IPv6 addresses in dotted form (Contact docs).
pub fn format_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", addr.port()),
            None => format!("[{ip}]:{}", addr.port()),
        },
    }
}

/// Reads an optional PROXY header from `io` within `timeout`. Returns the connection with any
/// bytes read past the header put back in front, and the PROXY source address if there was one.
pub async fn accept<T: AsyncRead + Unpin>(
    mut io: T,
    timeout: Duration,
) -> io::Result<(Rewind<T>, Option<SocketAddr>)> {
    let mut buf = Vec::with_capacity(V1_MAX);
    let read = async {
        loop {
            match parse(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
                Parsed::NotProxy => return Ok::<_, io::Error>((0, None)),
                Parsed::Header { len, source } => return Ok((len, source)),
                Parsed::Incomplete => {}
            }
            // An empty buffer parses as Incomplete, so this also waits for the first bytes.
            if io.read_buf(&mut buf).await? == 0 {
                return Ok((0, None)); // EOF while peeking: no header, as in Go
            }
        }
    };
    let (len, source) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "PROXY header timeout"))??;
    let mut prefix = Bytes::from(buf);
    prefix.advance(len);
    Ok((Rewind { prefix, inner: io }, source))
}

/// A connection whose first bytes were already read; they are replayed before the rest.
#[derive(Debug)]
pub struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(inner: T) -> Self {
        Self {
            prefix: Bytes::new(),
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
