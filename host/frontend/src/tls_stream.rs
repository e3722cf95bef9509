//! The server side of a TLS connection over rustls' unbuffered API, holding no I/O buffer while
//! the connection is idle.
//!
//! Most connections are idle streams, so what one holds while idle is paid per client. With
//! tokio-rustls (rustls' buffered `ServerConnection`) every connection keeps a 4 KiB zero-filled
//! ciphertext buffer for its whole life, and each read zero-fills the whole of the reader's
//! buffer (hyper's 8 KiB) before copying a few bytes into it, so both stay resident. Here
//! ciphertext is kept only while a record is incomplete, decrypted bytes only while the reader's
//! buffer is too small for them, and ciphertext to send only until the socket takes it; each is
//! freed once empty. Reads from the socket go through a buffer on the stack, and only the bytes
//! received are written into the reader's buffer.
//!
//! rustls does the protocol: handshake, records, alerts, key updates, session tickets. This
//! module moves bytes between it and the socket. Everything sent (handshake records, alerts,
//! application data) goes through one queue, [`TlsStream::outgoing`], so it leaves in the order
//! rustls produced it.

use std::io;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::{CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket per read: one full TLS record (16 KiB of plaintext plus header and
/// the largest AEAD expansion rustls accepts).
const READ_CHUNK: usize = 16 * 1024 + 5 + 256;

/// Plaintext encrypted per write. A caller's larger write is taken in parts, so the ciphertext
/// waiting to be sent stays bounded.
const MAX_WRITE: usize = 64 * 1024;

/// A server-side TLS connection over `IO`, once [`accept`]ed.
pub struct TlsStream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed (an incomplete record).
    incoming: Vec<u8>,
    /// Decrypted and not yet read.
    plaintext: BytesMut,
    /// Ciphertext produced and not yet taken by the socket, in order.
    outgoing: BytesMut,
    /// The peer sent `close_notify`, or closed the transport.
    read_closed: bool,
    /// We queued our `close_notify`; nothing can be sent after it.
    write_closed: bool,
    /// rustls reported an error. The connection is dead and rustls is not called again: its
    /// handshake deframer may still hold offsets into bytes we no longer keep.
    failed: bool,
}

/// What [`TlsStream::process`] should do once rustls has processed what was received.
#[derive(Clone, Copy)]
enum Op<'a> {
    /// Nothing more: return when rustls needs more bytes from the peer.
    Receive,
    /// Encrypt this application data.
    Send(&'a [u8]),
    /// Queue our `close_notify`.
    Close,
}

/// Runs the TLS handshake on `io` as a server with `config`. Records the client sends right after
/// its `Finished` (its first request) are kept for the first read.
pub async fn accept<IO>(io: IO, config: Arc<ServerConfig>) -> io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut tls = TlsStream {
        io,
        conn,
        incoming: Vec::new(),
        plaintext: BytesMut::new(),
        outgoing: BytesMut::new(),
        read_closed: false,
        write_closed: false,
        failed: false,
    };
    loop {
        let processed = tls.process(Op::Receive);
        // Our flight, or the alert that says why the handshake failed.
        let sent = std::future::poll_fn(|cx| tls.poll_send(cx)).await;
        processed?;
        sent?;
        if !tls.conn.is_handshaking() {
            return Ok(tls);
        }
        if tls.read_closed {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection during the TLS handshake",
            ));
        }
        std::future::poll_fn(|cx| tls.poll_receive(cx)).await?;
    }
}

impl<IO> TlsStream<IO> {
    /// The negotiated TLS state: peer certificates, ALPN protocol, version.
    pub fn tls(&self) -> &CommonState {
        &self.conn
    }

    /// Bytes held in this connection's buffers (received, decrypted, waiting to be sent).
    pub fn buffered(&self) -> usize {
        self.incoming.len() + self.plaintext.len() + self.outgoing.len()
    }

    /// Lets rustls process the ciphertext received so far, queueing whatever it has to send,
    /// and then does `op`. Returns the plaintext bytes taken by `Op::Send`.
    fn process(&mut self, op: Op<'_>) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS connection failed earlier",
            ));
        }
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    drain_front(&mut self.incoming, discard);
                    self.queue_alert();
                    return Err(tls_error(e));
                }
            };
            // `None`: processed something, go on. The bytes rustls consumed are discarded
            // before returning, whatever the outcome, so nothing is processed twice.
            let step: io::Result<Option<usize>> = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    let mut read = Ok(None);
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                self.plaintext.extend_from_slice(record.payload);
                            }
                            Err(e) => {
                                read = Err(tls_error(e));
                                break;
                            }
                        }
                    }
                    read
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(&mut self.outgoing, 512, |buf| data.encode(buf))
                        .map(|()| None)
                        .map_err(encode_error)
                }
                // Everything queued goes out in order before anything produced later, so
                // rustls may consider it sent now.
                ConnectionState::TransmitTlsData(data) => {
                    data.done();
                    Ok(None)
                }
                ConnectionState::PeerClosed => {
                    self.read_closed = true;
                    Ok(None)
                }
                ConnectionState::WriteTraffic(mut traffic) => match op {
                    Op::Receive => Ok(Some(0)),
                    Op::Send(_) if self.write_closed => Err(io::ErrorKind::BrokenPipe.into()),
                    Op::Send(data) => {
                        let n = data.len().min(MAX_WRITE);
                        encrypt(&mut self.outgoing, &mut traffic, &data[..n]).map(|()| Some(n))
                    }
                    Op::Close if self.write_closed => Ok(Some(0)),
                    Op::Close => {
                        let queued = encode(&mut self.outgoing, 64, |buf| {
                            traffic.queue_close_notify(buf)
                        });
                        self.write_closed = queued.is_ok();
                        queued.map(|()| Some(0)).map_err(encrypt_error)
                    }
                },
                ConnectionState::BlockedHandshake => match op {
                    Op::Receive => Ok(Some(0)),
                    Op::Send(_) | Op::Close => Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "TLS handshake not complete",
                    )),
                },
                ConnectionState::Closed => match op {
                    Op::Receive | Op::Close => {
                        self.read_closed = true;
                        Ok(Some(0))
                    }
                    Op::Send(_) => Err(io::ErrorKind::BrokenPipe.into()),
                },
                // Early data is not enabled in the config, and later states are unknown here.
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected TLS connection state",
                )),
            };
            drain_front(&mut self.incoming, discard);
            if let Some(n) = step? {
                return Ok(n);
            }
        }
    }

    /// After a TLS error rustls queues an alert for the peer; take it into `outgoing` so that the
    /// next send carries it, and mark the connection failed. Best effort: the error is reported
    /// either way.
    ///
    /// rustls is asked for records only while it has some queued (`wants_write`): it hands those
    /// out before it looks at received bytes again. Otherwise it would deframe once more, and the
    /// received bytes are no longer what its handshake deframer expects: offsets into bytes of a
    /// message split across records made it index past the end of an empty buffer and panic (a
    /// single 10-byte record, a `HelloRequest` and one more byte, before any handshake), and a
    /// record it already refused would be refused a second time.
    fn queue_alert(&mut self) {
        self.failed = true;
        self.incoming = Vec::new();
        for _ in 0..4 {
            if !self.conn.wants_write() {
                return;
            }
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    if encode(&mut self.outgoing, 512, |buf| data.encode(buf)).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream<IO> {
    /// Reads from the socket into `incoming`. End of stream marks the read side closed.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut chunk = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut chunk))?;
        let received = chunk.filled();
        if received.is_empty() {
            if !self.incoming.is_empty() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection inside a TLS record",
                )));
            }
            // Without close_notify: HTTP's own framing tells a cut-off message from a whole one.
            self.read_closed = true;
        } else {
            self.incoming.extend_from_slice(received);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `outgoing` to the socket; ready once all of it is taken.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.advance(n);
        }
        // Freed rather than kept for the next write: an idle connection holds no buffer.
        self.outgoing = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// Sends what is queued without waiting for the socket: a reader must not block on it.
    fn send_eagerly(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.poll_send(cx) {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plaintext.is_empty() {
                let n = this.plaintext.len().min(buf.remaining());
                buf.put_slice(&this.plaintext[..n]);
                this.plaintext.advance(n);
                if this.plaintext.is_empty() {
                    this.plaintext = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            let processed = this.process(Op::Receive);
            // Owed to the peer whatever happens to our reader: alerts, key update answers.
            this.send_eagerly(cx)?;
            processed?;
            if this.plaintext.is_empty() && !this.read_closed {
                ready!(this.poll_receive(cx))?;
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // At most one write's ciphertext waits for the socket: that is the backpressure.
        ready!(this.poll_send(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = this.process(Op::Send(buf))?;
        this.send_eagerly(cx)?;
        Poll::Ready(Ok(n))
    }

    /// hyper hands over a response's head and body chunks as separate slices when the transport
    /// takes them together, and otherwise copies them into a buffer of its own that stays as
    /// large as the largest response. Here they are gathered into one temporary buffer, so they
    /// also go out in as few records as they fit in.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let [one] = bufs {
            return self.poll_write(cx, one);
        }
        // Wait for room before copying anything: a full socket would make every retry copy.
        ready!(self.as_mut().get_mut().poll_send(cx))?;
        let mut gathered = Vec::new();
        for buf in bufs {
            let room = MAX_WRITE - gathered.len();
            gathered.extend_from_slice(&buf[..buf.len().min(room)]);
            if gathered.len() == MAX_WRITE {
                break;
            }
        }
        self.poll_write(cx, &gathered)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.process(Op::Close)?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Removes the first `n` bytes; an emptied buffer is freed.
fn drain_front(buf: &mut Vec<u8>, n: usize) {
    if n >= buf.len() {
        *buf = Vec::new();
    } else if n > 0 {
        buf.drain(..n);
    }
}

/// Appends what `write` produces to `out`, with `room` bytes to write into at first and then as
/// many as rustls asks for.
fn encode<E: SizeHint>(
    out: &mut BytesMut,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<(), E> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => match e.required_size() {
                Some(required) if required > room => room = required,
                _ => {
                    out.truncate(start);
                    return Err(e);
                }
            },
        }
    }
}

/// Encrypts `data` into `out`, with room for it up front so that one pass is enough.
fn encrypt(
    out: &mut BytesMut,
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    data: &[u8],
) -> io::Result<()> {
    // Per record of at most 16 KiB: a 5-byte header, and for TLS 1.3 a 16-byte tag and the
    // content type byte (TLS 1.2's GCM suites add 24).
    let records = data.len() / (16 * 1024) + 1;
    encode(out, data.len() + records * 32, |buf| {
        traffic.encrypt(data, buf)
    })
    .map_err(encrypt_error)
}

/// The buffer size a failed encode or encrypt asked for, if that was the failure.
trait SizeHint {
    fn required_size(&self) -> Option<usize>;
}

impl SizeHint for EncodeError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(e) => Some(e.required_size),
            _ => None,
        }
    }
}

impl SizeHint for EncryptError {
    fn required_size(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(e) => Some(e.required_size),
            _ => None,
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn encode_error(e: EncodeError) -> io::Error {
    io::Error::other(format!("TLS: {e}"))
}

fn encrypt_error(e: EncryptError) -> io::Error {
    io::Error::other(format!("TLS: {e}"))
}
