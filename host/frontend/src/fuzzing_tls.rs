//! Fuzz entry points for [`tls_stream`]: a real rustls `ServerConfig` behind [`TlsStream`], over
//! an in-memory transport polled by hand, so a run is one thread with no runtime and no sockets.
//!
//! * [`tls_accept`]: arbitrary bytes as everything the peer sends, in chunks, into
//!   [`tls_stream::accept`]; if a handshake ever completes, the rest is read as application data.
//! * [`tls_session`]: a real rustls client does the handshake, and the input is a script of
//!   operations on both ends: application data either way, reads of any size, key updates,
//!   close_notify, shutdown, end of stream, a transport that takes few bytes per write, and
//!   corruptions of what the client sends (flipped bits, dropped tails, injected bytes), during
//!   the handshake and after it.
//!
//! Both assert what must hold for any input: no panic, every poll that can finish does so once
//! the peer has gone, the bytes each side reads are a prefix of what the other side wrote (TLS
//! lets nothing else through), and the stream's buffers stay within a few records.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rustls::{ClientConfig, ClientConnection, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls_stream::{self, TlsStream};

/// Everything [`TlsStream`] may hold at once: an incomplete record, a few records of decrypted
/// data, one write's ciphertext (64 KiB of plaintext in records) and alerts or key-update answers.
const MAX_BUFFERED: usize = 4 * (16 * 1024 + 5 + 256) + 64 * 1024 + 4 * 1024;

/// Polls of a finished peer after which a stream that still answers `Pending` is hung.
const MAX_POLLS_AFTER_EOF: usize = 64;

/// Both directions of an in-memory connection; the harness holds one handle, the server's
/// transport ([`MemIo`]) the other.
#[derive(Default)]
struct Pipe {
    /// Bytes the peer sent, not yet read by the server.
    to_server: Vec<u8>,
    /// The peer sent everything it will: reads return end of stream once `to_server` is empty.
    eof: bool,
    /// Bytes the server wrote, not yet taken by the peer.
    to_client: Vec<u8>,
    /// Most bytes one write takes; `0` means the transport is full (writes pend).
    write_room: usize,
    /// The server shut down its write side.
    shut: bool,
}

struct MemIo(Rc<RefCell<Pipe>>);

impl AsyncRead for MemIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut pipe = self.0.borrow_mut();
        if pipe.to_server.is_empty() {
            return if pipe.eof {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let n = pipe.to_server.len().min(buf.remaining());
        buf.put_slice(&pipe.to_server[..n]);
        pipe.to_server.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.0.borrow_mut();
        if pipe.shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = buf.len().min(pipe.write_room);
        if n == 0 && !buf.is_empty() {
            return Poll::Pending;
        }
        pipe.to_client.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().shut = true;
        Poll::Ready(Ok(()))
    }
}

type Accepting = Pin<Box<dyn Future<Output = io::Result<TlsStream<MemIo>>>>>;

/// The server end: handshaking, established, or failed (nothing more to drive).
enum Server {
    Accepting(Accepting),
    Open(Box<TlsStream<MemIo>>),
    Failed,
}

impl Server {
    fn new(config: Arc<ServerConfig>, pipe: &Rc<RefCell<Pipe>>) -> Self {
        let io = MemIo(pipe.clone());
        Server::Accepting(Box::pin(tls_stream::accept(io, config)))
    }

    /// Drives the handshake one step; true while it has not finished either way.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> bool {
        let Server::Accepting(fut) = self else {
            return false;
        };
        match fut.as_mut().poll(cx) {
            Poll::Pending => return true,
            Poll::Ready(Ok(stream)) => *self = Server::Open(Box::new(stream)),
            Poll::Ready(Err(_)) => *self = Server::Failed,
        }
        false
    }

    fn open(&mut self) -> Option<Pin<&mut TlsStream<MemIo>>> {
        match self {
            Server::Open(s) => {
                let s = &mut **s;
                assert!(
                    s.buffered() <= MAX_BUFFERED,
                    "TlsStream holds {} bytes",
                    s.buffered()
                );
                Some(Pin::new(s))
            }
            _ => None,
        }
    }

    /// One read of at most `size` bytes into `out`; false once reads have ended (EOF or error).
    fn read(&mut self, cx: &mut Context<'_>, size: usize, out: &mut Vec<u8>) -> Poll<bool> {
        let Some(stream) = self.open() else {
            return Poll::Ready(false);
        };
        let mut space = vec![0u8; size.max(1)];
        let mut buf = ReadBuf::new(&mut space);
        match stream.poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(false),
            Poll::Ready(Ok(())) => {
                out.extend_from_slice(buf.filled());
                Poll::Ready(true)
            }
            Poll::Ready(Err(_)) => {
                *self = Server::Failed;
                Poll::Ready(false)
            }
        }
    }

    /// A write of `data`; records how much was taken in `written`.
    fn write(&mut self, cx: &mut Context<'_>, data: &[u8], written: &mut Vec<u8>) {
        let Some(stream) = self.open() else { return };
        match stream.poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                assert!(
                    n <= data.len(),
                    "poll_write took {n} of {} bytes",
                    data.len()
                );
                written.extend_from_slice(&data[..n]);
            }
            Poll::Ready(Err(_)) => *self = Server::Failed,
            Poll::Pending => {}
        }
    }

    fn flush(&mut self, cx: &mut Context<'_>) {
        if let Some(stream) = self.open()
            && let Poll::Ready(Err(_)) = stream.poll_flush(cx)
        {
            *self = Server::Failed;
        }
    }

    fn shutdown(&mut self, cx: &mut Context<'_>) {
        if let Some(stream) = self.open()
            && let Poll::Ready(Err(_)) = stream.poll_shutdown(cx)
        {
            *self = Server::Failed;
        }
    }
}

/// Reads bytes off the front of the fuzz input; exhausted input reads as zeros.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) + seed) as u8)
        .collect()
}

/// Feeds `data` as the peer's bytes into [`tls_stream::accept`]: the first byte is the chunk size
/// (1 to 256), the rest is sent chunk by chunk, the handshake polled after each, then end of
/// stream. The handshake must then be over, and the server's answer a few records at most.
pub fn tls_accept(config: Arc<ServerConfig>, data: &[u8]) {
    let (step, body) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s) + 1, rest),
        None => return,
    };
    let pipe = Rc::new(RefCell::new(Pipe {
        write_room: usize::MAX,
        ..Pipe::default()
    }));
    let mut cx = Context::from_waker(Waker::noop());
    let mut server = Server::new(config, &pipe);
    let mut read = Vec::new();
    for chunk in body.chunks(step) {
        pipe.borrow_mut().to_server.extend_from_slice(chunk);
        if !server.poll_accept(&mut cx) {
            // Only a peer holding a certificate's key and the transcript gets here; what it sends
            // next is application data (or more garbage).
            while let Poll::Ready(true) = server.read(&mut cx, 4096, &mut read) {}
        }
        assert!(
            pipe.borrow().to_client.len() <= 64 * 1024,
            "the server answered {} bytes to {} received",
            pipe.borrow().to_client.len(),
            body.len()
        );
    }
    pipe.borrow_mut().eof = true;
    finish(&mut server, &mut cx, &mut read);
}

/// Polls `server` after the peer's end of stream until the handshake and reads are over; a
/// stream still pending then would hang its task forever.
fn finish(server: &mut Server, cx: &mut Context<'_>, read: &mut Vec<u8>) {
    let mut pending = 0;
    while pending < MAX_POLLS_AFTER_EOF {
        if server.poll_accept(cx) {
            pending += 1;
            continue;
        }
        // Every read that returns data takes it from what the peer sent, so this ends.
        match server.read(cx, 4096, read) {
            Poll::Ready(true) => {}
            Poll::Ready(false) => return,
            Poll::Pending => pending += 1,
        }
    }
    let state = match server {
        Server::Accepting(_) => "the handshake",
        Server::Open(_) => "a read",
        Server::Failed => return,
    };
    panic!("{state} still pending {MAX_POLLS_AFTER_EOF} polls after the peer's end of stream");
}

/// The server config under test and rustls clients to talk to it, indexed by the first byte of
/// a [`tls_session`] script: bit 0 set offers TLS 1.2 only, bit 1 set sends no client
/// certificate (the handshake must still complete; the HTTP layer refuses such requests).
pub struct TlsPeers {
    pub server: Arc<ServerConfig>,
    clients: [Arc<ClientConfig>; 4],
}

impl TlsPeers {
    /// The frontend's own config ([`crate::tls::server_config`]) for `server_cert_pem` and
    /// `server_key_pem`, and clients that trust `ca` and present `client_chain` with
    /// `client_key`.
    pub fn new(
        server_cert_pem: &str,
        server_key_pem: &str,
        ca: CertificateDer<'static>,
        client_chain: Vec<CertificateDer<'static>>,
        client_key: PrivateKeyDer<'static>,
    ) -> Result<Self, String> {
        let server = crate::tls::server_config(server_cert_pem, server_key_pem)
            .map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).map_err(|e| e.to_string())?;
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let both: &[&'static rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        let tls12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        let client = |versions, with_cert: bool| -> Result<Arc<ClientConfig>, String> {
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots.clone());
            let mut config = if with_cert {
                builder
                    .with_client_auth_cert(client_chain.clone(), client_key.clone_key())
                    .map_err(|e| e.to_string())?
            } else {
                builder.with_no_client_auth()
            };
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Self {
            server,
            clients: [
                client(both, true)?,
                client(tls12, true)?,
                client(both, false)?,
                client(tls12, false)?,
            ],
        })
    }
}

/// What to do to the client's next bytes on their way to the server.
#[derive(Clone, Copy)]
enum Tamper {
    None,
    /// XOR the byte at `pos % len` with `mask`.
    Flip {
        pos: usize,
        mask: u8,
    },
    /// Deliver only the first `keep` bytes; drop the rest.
    Cut {
        keep: usize,
    },
    /// Deliver only the first `keep` bytes now; the rest with the next delivery.
    Split {
        keep: usize,
    },
}

/// A real rustls client and the server, with a script from `data` (see the module comment).
/// The first byte picks the client ([`TlsPeers`]); every later op is one byte and its
/// arguments.
pub fn tls_session(peers: &TlsPeers, data: &[u8]) {
    let mut script = Script(data);
    let flags = script.byte();
    let Ok(mut client) = ClientConnection::new(
        peers.clients[usize::from(flags & 3)].clone(),
        ServerName::try_from("localhost").expect("a valid server name"),
    ) else {
        return;
    };
    let pipe = Rc::new(RefCell::new(Pipe {
        write_room: usize::MAX,
        ..Pipe::default()
    }));
    let mut cx = Context::from_waker(Waker::noop());
    let mut server = Server::new(peers.server.clone(), &pipe);
    let mut s = Session {
        pipe,
        tamper: Tamper::None,
        held: Vec::new(),
        client_ok: true,
        client_sent: Vec::new(),
        client_read: Vec::new(),
        server_sent: Vec::new(),
        server_read: Vec::new(),
    };
    let mut ops = 0;
    while !script.is_empty() && ops < 256 {
        ops += 1;
        match script.byte() % 12 {
            0 => {
                let len = usize::from(script.byte()) * 67;
                let data = pattern(len, s.client_sent.len());
                if s.client_ok && client.writer().write_all(&data).is_ok() {
                    s.client_sent.extend_from_slice(&data);
                }
            }
            1 => {
                let len = usize::from(script.byte());
                let bytes = script.bytes(len).to_vec();
                s.pipe.borrow_mut().to_server.extend_from_slice(&bytes);
            }
            2 => {
                let pos = usize::from(script.u16());
                let mask = script.byte() | 1;
                s.tamper = Tamper::Flip { pos, mask };
            }
            3 => {
                let len = usize::from(script.u16()) * 3;
                let data = pattern(len, s.server_sent.len() + 1);
                server.write(&mut cx, &data, &mut s.server_sent);
            }
            4 => {
                let size = usize::from(script.u16());
                let _ = server.read(&mut cx, size, &mut s.server_read);
            }
            5 => {
                if s.client_ok {
                    let _ = client.refresh_traffic_keys();
                }
            }
            6 => client.send_close_notify(),
            7 => server.shutdown(&mut cx),
            8 => s.pipe.borrow_mut().eof = true,
            9 => {
                s.pipe.borrow_mut().write_room = match script.byte() {
                    0 => 0,
                    255 => usize::MAX,
                    n => usize::from(n) * 7,
                }
            }
            10 => {
                let keep = usize::from(script.u16());
                s.tamper = if script.byte() & 1 == 0 {
                    Tamper::Cut { keep }
                } else {
                    Tamper::Split { keep }
                };
            }
            _ => server.flush(&mut cx),
        }
        s.pump(&mut client, &mut server, &mut cx);
    }
    // The client says goodbye (or has already failed); the server must wind down.
    client.send_close_notify();
    s.pump(&mut client, &mut server, &mut cx);
    s.pipe.borrow_mut().eof = true;
    s.pipe.borrow_mut().write_room = usize::MAX;
    let mut read = std::mem::take(&mut s.server_read);
    finish(&mut server, &mut cx, &mut read);
    s.server_read = read;
    s.check();
}

struct Session {
    pipe: Rc<RefCell<Pipe>>,
    tamper: Tamper,
    /// Client bytes held back by `Tamper::Split`.
    held: Vec<u8>,
    /// The client has not failed yet.
    client_ok: bool,
    client_sent: Vec<u8>,
    client_read: Vec<u8>,
    server_sent: Vec<u8>,
    server_read: Vec<u8>,
}

impl Session {
    /// Moves bytes both ways until neither side has anything more to say.
    fn pump(&mut self, client: &mut ClientConnection, server: &mut Server, cx: &mut Context<'_>) {
        for _ in 0..8 {
            let mut out = std::mem::take(&mut self.held);
            while client.wants_write() {
                if client.write_tls(&mut out).is_err() {
                    break;
                }
            }
            let moved = !out.is_empty();
            match std::mem::replace(&mut self.tamper, Tamper::None) {
                Tamper::None => {}
                Tamper::Flip { pos, mask } if !out.is_empty() => {
                    let i = pos % out.len();
                    out[i] ^= mask;
                }
                Tamper::Cut { keep } if !out.is_empty() => out.truncate(keep),
                Tamper::Split { keep } if !out.is_empty() => {
                    self.held = out.split_off(keep.min(out.len()));
                }
                unused => self.tamper = unused,
            }
            self.pipe.borrow_mut().to_server.extend_from_slice(&out);
            server.poll_accept(cx);
            // The server's flight, alerts and application data, as the client's socket would.
            let answer = std::mem::take(&mut self.pipe.borrow_mut().to_client);
            if self.client_ok && !answer.is_empty() {
                let mut rd: &[u8] = &answer;
                while !rd.is_empty() {
                    if client.read_tls(&mut rd).is_err() || client.process_new_packets().is_err() {
                        self.client_ok = false;
                        break;
                    }
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = client.reader().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    self.client_read.extend_from_slice(&buf[..n]);
                }
            }
            if !moved && answer.is_empty() {
                return;
            }
        }
    }

    fn check(&self) {
        assert!(
            self.client_sent.starts_with(&self.server_read),
            "the server read {} bytes that the client did not send in that order ({} sent)",
            self.server_read.len(),
            self.client_sent.len()
        );
        assert!(
            self.server_sent.starts_with(&self.client_read),
            "the client read {} bytes that the server did not write in that order ({} written)",
            self.client_read.len(),
            self.server_sent.len()
        );
    }
}
