//! Hostile input against the real binary: each test starts `fleetgate quickstart` with one real
//! Go client, runs a series of attacks on the client port, and after every attack checks that
//! the process is alive, that it logged no panic, that the Go client still gets a message
//! (insert, delivery), and that the server's resident memory stays under a bound a leak would
//! cross. Each attack prints one `hostile:` line (what was sent, what came back, memory), the
//! source of `docs/HOSTILE.md`.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetgate_frontend::wire;
use fleetgate_loadgen::{Identity, load_roots};
use fleetgate_pb::fleetspeak::{Address, ContactData, Message, WrappedContactData};
use fleetgate_tests::node::{Flavor, Node};
use fleetgate_tests::ports::free_addr;
use fleetgate_tests::{Admin, ClientOptions, GoClient, Server, ServerOptions, checks};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Resident memory the server may gain over its size after start-up, across all attacks of a
/// test. Every attack here, were its input held instead of refused, would cost more than this.
const RSS_HEADROOM_KIB: u64 = 256 * 1024;

/// Longest any single exchange of an attack may take before the server counts as stuck.
const STEP: Duration = Duration::from_secs(30);

/// The 10-byte handshake record holding a HelloRequest plus one byte.
const HELLO_REQUEST: [u8; 10] = [0x16, 0x03, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00];

/// A server with one well-behaved Go client, and the checks run after each attack.
struct Target {
    server: Server,
    client: GoClient,
    admin: Admin,
    client_id: Vec<u8>,
    rss_start_kib: u64,
    round_trips: usize,
}

impl Target {
    async fn start() -> Target {
        let server = Server::start(ServerOptions::default()).await;
        let client = GoClient::start(&server, ClientOptions::default()).await;
        let client_id = client.client_id().await;
        let admin = server.admin().await;
        checks::enrolled(&admin, &client_id, STEP).await;
        let mut target = Target {
            rss_start_kib: 0,
            server,
            client,
            admin,
            client_id,
            round_trips: 0,
        };
        // Measured after a first delivery: the engine and plugins are warm.
        target.round_trip().await;
        target.rss_start_kib = target.rss_kib();
        target
    }

    fn https(&self) -> SocketAddr {
        self.server.https_addr()
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.server.pid().expect("the server runs"))
    }

    /// A message inserted through the admin API reaches the Go client's daemon.
    async fn round_trip(&mut self) {
        self.round_trips += 1;
        let payload = format!("round trip {}", self.round_trips).into_bytes();
        let id = self
            .admin
            .insert(&self.client_id, "TestService", "plain", &payload)
            .await
            .expect("InsertMessage");
        checks::delivered(&self.client, &[id], STEP).await;
    }

    /// The checks after an attack; `outcome` says what the attacker got back.
    async fn survived(&mut self, attack: &str, outcome: &str, started: Instant) {
        assert!(
            self.server.is_running(),
            "the server died during {attack}; log tail:\n{}",
            fleetgate_tests::tail(&self.server.log_text(), 40)
        );
        assert_no_panic(attack, &self.server.log_text());
        self.round_trip().await;
        assert_bounded(attack, outcome, started, self.rss_kib(), self.rss_start_kib);
    }
}

/// Resident memory of process `pid` (`VmRSS` in `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The first log line of `log` that reports a panic.
fn panic_line(log: &str) -> Option<&str> {
    log.lines().find(|l| l.contains("panicked at"))
}

// ---------- raw connections ----------

/// Writes `bytes`, then reads until the server closes (or `STEP`); returns what came back.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    read_until_closed(&mut tcp).await
}

/// As [`send_raw`], ending the sending side after `bytes`.
async fn send_then_end(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(bytes).await;
    let _ = tcp.shutdown().await;
    read_until_closed(&mut tcp).await
}

async fn read_until_closed(io: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut back = Vec::new();
    let read = tokio::time::timeout(STEP, io.read_to_end(&mut back)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {STEP:?} after bad input"
    );
    back
}

fn describe_answer(back: &[u8]) -> String {
    match back {
        [] => "closed without an answer".into(),
        [0x15, 0x03, _, 0x00, 0x02, 0x02, desc, ..] => format!("TLS fatal alert {desc}, closed"),
        b if b.starts_with(b"HTTP/1.1 ") => {
            let line = b.split(|&c| c == b'\r').next().unwrap_or_default();
            format!("{:?}, closed", String::from_utf8_lossy(line))
        }
        b => format!("{} bytes then closed", b.len()),
    }
}

/// A client identity of the attacker's own (valid: the handshake succeeds).
struct Attacker {
    identity: Identity,
    h1: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
}

impl Attacker {
    fn new(ca_pem: &Path) -> Attacker {
        let identity = Identity::generate().unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(load_roots(ca_pem).unwrap());
        Attacker {
            h1: identity.tls_config(&provider, &roots, false).unwrap(),
            h2: identity.tls_config(&provider, &roots, true).unwrap(),
            identity,
        }
    }

    async fn tls(&self, addr: SocketAddr, h2: bool) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let config = if h2 { &self.h2 } else { &self.h1 };
        let tls = TlsConnector::from(config.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        if h2 {
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        }
        tls
    }

    /// One HTTP/1.1 request over its own connection; the status, or the error if the server cut
    /// the connection first.
    async fn request(&self, addr: SocketAddr, req: http::Request<Full<Bytes>>) -> String {
        let tls = self.tls(addr, false).await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let answer = tokio::time::timeout(STEP, async {
            match sender.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                    let body = body.unwrap_or_default();
                    match std::str::from_utf8(&body).map(str::trim) {
                        Ok(text) if !text.chars().any(char::is_control) => {
                            format!("{status} {text:?}")
                        }
                        _ => format!("{status} ({} bytes of protobuf)", body.len()),
                    }
                }
                Err(e) => format!("connection cut: {e}"),
            }
        })
        .await
        .expect("the server answered in time");
        driver.abort();
        answer
    }
}

fn post(path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::post(path).header(http::header::HOST, "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::from(body))).unwrap()
}

/// A real rustls ClientHello (what a client sends first), for cutting short.
fn client_hello(attacker: &Attacker) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        attacker.h1.clone(),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn message_to(service: &str, source: Address, id: &[u8]) -> Message {
    Message {
        source: Some(source),
        source_message_id: id.to_vec(),
        destination: Some(Address {
            service_name: service.into(),
            ..Default::default()
        }),
        message_type: "hostile".into(),
        ..Default::default()
    }
}

/// A zlib stream of `mib` MiB of zeros, built from one compressed MiB: after a full flush the
/// compressor's output for the same input is the same bytes, so the blocks can be repeated
/// (compressing 256 MiB in an unoptimised test build would take a minute).
fn zlib_of_zeros(mib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut raw = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(64 * 1024);
    raw.compress_vec(&[0u8; 1 << 20], &mut block, FlushCompress::Full)
        .unwrap();
    assert_eq!(raw.total_in(), 1 << 20, "one MiB compressed in one call");
    let mut end = Vec::with_capacity(64);
    Compress::new(Compression::best(), false)
        .compress_vec(&[], &mut end, FlushCompress::Finish)
        .unwrap();
    let mut out = vec![0x78, 0xda];
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&end);
    // Adler-32 of n zeros: a = 1, b = n (mod 65521).
    let b = ((mib << 20) % 65521) as u32;
    out.extend_from_slice(&(b << 16 | 1).to_be_bytes());
    out
}

fn wcd(messages: Vec<Message>) -> Vec<u8> {
    WrappedContactData {
        contact_data: ContactData {
            messages,
            ..Default::default()
        }
        .encode_to_vec(),
        client_labels: vec!["linux".into()],
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn the_deflate_bomb_is_a_valid_zlib_stream() {
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::ZlibDecoder::new(&zlib_of_zeros(3)[..]),
        &mut inflated,
    )
    .unwrap();
    assert_eq!(inflated.len(), 3 << 20);
    assert!(inflated.iter().all(|&b| b == 0));
}

// ---------- TLS ----------

#[tokio::test]
async fn tls_attacks_leave_the_server_serving() {
    let mut t = Target::start().await;
    let attacker = Attacker::new(&t.server.ca_pem_path());

    let started = Instant::now();
    let mut answers = Vec::new();
    for _ in 0..200 {
        answers.push(describe_answer(&send_raw(t.https(), &HELLO_REQUEST).await));
    }
    answers.dedup();
    let outcome = format!("200 connections: {}", answers.join(" / "));
    t.survived(
        "HelloRequest record before the handshake",
        &outcome,
        started,
    )
    .await;

    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(7);
    let mut answers = Vec::new();
    for len in [1usize, 5, 100, 16 * 1024 + 6, 100_000] {
        let garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        answers.push(describe_answer(&send_raw(t.https(), &garbage).await));
    }
    answers.push(describe_answer(
        &send_raw(t.https(), b"GET /message HTTP/1.1\r\nHost: x\r\n\r\n").await,
    ));
    let outcome = format!("random bytes and plain HTTP: {}", answers.join(" / "));
    t.survived("garbage instead of a ClientHello", &outcome, started)
        .await;

    let started = Instant::now();
    let hello = client_hello(&attacker);
    let mut answers = Vec::new();
    for cut in [3, 5, 6, hello.len() / 2, hello.len() - 1] {
        answers.push(describe_answer(
            &send_then_end(t.https(), &hello[..cut]).await,
        ));
    }
    answers.dedup();
    let outcome = format!("ClientHello cut, then EOF: {}", answers.join(" / "));
    t.survived("truncated ClientHello", &outcome, started).await;

    // Half a ClientHello on many connections, held open while the real client is served.
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut tcp = TcpStream::connect(t.https()).await.unwrap();
        tcp.write_all(&hello[..hello.len() / 2]).await.unwrap();
        held.push(tcp);
    }
    t.survived(
        "200 stalled handshakes held open",
        "served meanwhile; each is closed by the 10 s handshake timeout",
        started,
    )
    .await;
    // Each is closed by the handshake timeout.
    read_until_closed(&mut held[0]).await;
    drop(held);

    // After a full handshake: records the server cannot decrypt, and a raw HelloRequest record.
    let started = Instant::now();
    let mut answers = Vec::new();
    for bad in [&HELLO_REQUEST[..], &[0x17, 0x03, 0x03, 0x00, 0x20][..]] {
        let mut tls = attacker.tls(t.https(), false).await;
        let (tcp, _) = tls.get_mut();
        tcp.write_all(bad).await.unwrap();
        tcp.write_all(&[0u8; 32]).await.unwrap();
        let mut back = Vec::new();
        let read = tokio::time::timeout(STEP, tls.read_to_end(&mut back)).await;
        answers.push(match read {
            Ok(Ok(_)) => "closed".to_string(),
            Ok(Err(e)) => format!("closed: {e}"),
            Err(_) => panic!("the server kept a connection with corrupt records open"),
        });
    }
    let outcome = answers.join(" / ");
    t.survived(
        "unencrypted and corrupt records after the handshake",
        &outcome,
        started,
    )
    .await;
}

// ---------- HTTP and streams ----------

#[tokio::test]
async fn http_and_stream_attacks_leave_the_server_serving() {
    let mut t = Target::start().await;
    let attacker = Attacker::new(&t.server.ca_pem_path());
    let octets = ("content-type", "application/octet-stream");

    let started = Instant::now();
    let big = vec![0u8; 21 * 1024 * 1024];
    let outcome = attacker
        .request(t.https(), post("/message", &[octets], big))
        .await;
    t.survived("21 MiB /message body", &outcome, started).await;

    let started = Instant::now();
    let bomb = zlib_of_zeros(256);
    let size = bomb.len();
    let outcome = attacker
        .request(
            t.https(),
            post("/message", &[octets, ("content-encoding", "deflate")], bomb),
        )
        .await;
    let outcome = format!("{size} bytes inflating to 256 MiB: {outcome}");
    t.survived("deflate bomb on /message", &outcome, started)
        .await;

    let started = Instant::now();
    let mut body = wire::MAGIC.to_vec();
    wire::encode_uvarint(64 << 20, &mut body);
    body.extend_from_slice(&[0u8; 1024]);
    let oversized = attacker
        .request(t.https(), post("/streaming-message", &[octets], body))
        .await;
    let mut body = wire::MAGIC.to_vec();
    wire::encode_uvarint(5, &mut body);
    body.extend_from_slice(b"\xff\xff\xff\xff\xff");
    let garbage = attacker
        .request(t.https(), post("/streaming-message", &[octets], body))
        .await;
    let mut body = b"XXXX".to_vec();
    body.extend_from_slice(&wcd(vec![]));
    let no_magic = attacker
        .request(t.https(), post("/streaming-message", &[octets], body))
        .await;
    let mut body = wire::MAGIC.to_vec();
    wire::encode_uvarint(u64::MAX, &mut body);
    let varint = attacker
        .request(t.https(), post("/streaming-message", &[octets], body))
        .await;
    let outcome = format!(
        "64 MiB frame length: {oversized}; unparsable frame: {garbage}; wrong magic: {no_magic}; \
         overlong varint: {varint}"
    );
    t.survived("malformed stream frames", &outcome, started)
        .await;

    let started = Instant::now();
    let mut answers = Vec::new();
    for bad in [
        &b"\x0a\xff\xff\xff\xff\x0f"[..],
        b"\x12\x03abc\x1a",
        b"\xff\xff\xff\xff",
    ] {
        answers.push(
            attacker
                .request(t.https(), post("/message", &[octets], bad.to_vec()))
                .await,
        );
    }
    let outcome = answers.join(" / ");
    t.survived("unparsable WrappedContactData", &outcome, started)
        .await;

    // The attacker names the Go client as the source of its message.
    let started = Instant::now();
    let victim = Address {
        client_id: t.client_id.clone(),
        service_name: "TestService".into(),
    };
    let spoof_id = b"spoofed".to_vec();
    let outcome = attacker
        .request(
            t.https(),
            post(
                "/message",
                &[octets],
                wcd(vec![message_to("MessageSaver", victim, &spoof_id)]),
            ),
        )
        .await;
    let ours = checks::client_message_id(&attacker.identity.id.to_vec(), "TestService", &spoof_id);
    let theirs = checks::client_message_id(&t.client_id, "TestService", &spoof_id);
    let stored = t.admin.message_status(&ours).await.unwrap();
    assert!(
        stored.creation_time.is_some(),
        "the spoofed message is not stored under the sender's own id: {stored:?}"
    );
    let victims = t.admin.message_status(&theirs).await.unwrap();
    assert!(
        victims.creation_time.is_none(),
        "a message was stored as coming from the Go client: {victims:?}"
    );
    let outcome = format!("{outcome}; stored as the attacker's own message");
    t.survived("source client ID of another client", &outcome, started)
        .await;

    // Slowloris: request heads that never finish, held open while the real client is served.
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut tls = attacker.tls(t.https(), false).await;
        tls.write_all(b"POST /message HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        held.push(tls);
    }
    let mut rest_open = Vec::new();
    for _ in 0..20 {
        let mut tls = attacker.tls(t.https(), false).await;
        let head = "POST /message HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n";
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&[0u8; 10]).await.unwrap();
        tls.flush().await.unwrap();
        rest_open.push(tls);
    }
    t.survived(
        "slowloris: 100 unfinished request heads, 20 stalled bodies",
        "served meanwhile; heads are cut by the 10 s header timeout",
        started,
    )
    .await;
    // Each is closed by the header timeout.
    read_until_closed(&mut held[0]).await;
    drop(held);
    drop(rest_open);

    h2_floods(&mut t, &attacker).await;
}

/// An HTTP/2 frame: 9-byte header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Writes `frames` after the preface and an empty SETTINGS on a fresh h2 connection while
/// reading what comes back, until the server closes or has said nothing for a few seconds after
/// the last frame; returns the GOAWAY code it closed with, if any.
async fn h2_flood(t: &Target, attacker: &Attacker, frames: &[u8]) -> String {
    let tls = attacker.tls(t.https(), true).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[]));
    out.extend_from_slice(frames);
    let (mut rd, mut wr) = tokio::io::split(tls);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let write = async move {
        let _ = wr.write_all(&out).await;
        let _ = wr.flush().await;
        let _ = done_tx.send(());
        wr
    };
    let read = async {
        let mut back = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = false;
        loop {
            let idle = if written {
                Duration::from_secs(3)
            } else {
                STEP
            };
            tokio::select! {
                r = tokio::time::timeout(idle, rd.read(&mut buf)) => match r {
                    Ok(Ok(n)) if n > 0 => back.extend_from_slice(&buf[..n]),
                    Ok(_) => return (back, true),
                    Err(_) => return (back, false),
                },
                _ = &mut done_rx, if !written => written = true,
            }
        }
    };
    let (_wr, (back, closed)) = tokio::join!(write, read);
    let closed = if closed { "closed" } else { "kept open" };
    format!("{}, {closed}", goaway_code(&back))
}

fn goaway_code(back: &[u8]) -> String {
    let mut rest = back;
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let Some(payload) = rest.get(9..9 + len) else {
            break;
        };
        if rest[3] == 0x7 && payload.len() >= 8 {
            let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            return format!("GOAWAY code {code:#x}");
        }
        rest = &rest[9 + len..];
    }
    format!("no GOAWAY in {} bytes", back.len())
}

/// A HEADERS block for `POST /message` (HPACK: indexed and literal fields).
fn request_headers() -> Vec<u8> {
    let mut h = vec![0x83, 0x87, 0x44, 8];
    h.extend_from_slice(b"/message");
    h.extend_from_slice(&[0x41, 9]);
    h.extend_from_slice(b"localhost");
    h
}

async fn h2_floods(t: &mut Target, attacker: &Attacker) {
    const END_HEADERS: u8 = 0x4;
    let started = Instant::now();
    let mut frames = Vec::new();
    for i in 0..5_000u32 {
        let stream = 2 * i + 1;
        frames.extend(h2_frame(0x1, END_HEADERS, stream, &request_headers()));
        frames.extend(h2_frame(0x3, 0, stream, &8u32.to_be_bytes()));
    }
    let outcome = h2_flood(t, attacker, &frames).await;
    t.survived(
        "HTTP/2 rapid reset: 5,000 HEADERS + RST_STREAM",
        &outcome,
        started,
    )
    .await;

    let started = Instant::now();
    let mut frames = Vec::new();
    for i in 0..20_000u64 {
        frames.extend(h2_frame(0x6, 0, 0, &i.to_be_bytes()));
    }
    let pings = h2_flood(t, attacker, &frames).await;
    let mut frames = Vec::new();
    for _ in 0..20_000 {
        frames.extend(h2_frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
    }
    let settings = h2_flood(t, attacker, &frames).await;
    let outcome = format!("20,000 PINGs: {pings}; 20,000 SETTINGS: {settings}");
    t.survived("HTTP/2 PING and SETTINGS floods", &outcome, started)
        .await;

    // One header block that never ends: 64 MiB of CONTINUATION frames.
    let started = Instant::now();
    let mut frames = h2_frame(0x1, 0, 1, &request_headers());
    let mut field = vec![0x40, 0x7f, 0x00, 0x01, b'x', 0x7f, 0x80, 0x7f];
    field.resize(16 * 1024, b'a');
    for _ in 0..4 * 1024 {
        frames.extend(h2_frame(0x9, 0, 1, &field));
    }
    let outcome = h2_flood(t, attacker, &frames).await;
    t.survived(
        "HTTP/2 CONTINUATION flood (64 MiB header block)",
        &outcome,
        started,
    )
    .await;
}

// ---------- the notification listener ----------

/// An admin-only `fleetgate server` with a notification listener, as the servers of a fleet run.
struct Listener {
    node: Node,
    notify: SocketAddr,
    admin: Admin,
    rss_start_kib: u64,
    _dir: tempfile::TempDir,
}

impl Listener {
    async fn start() -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let (admin_addr, notify) = (free_addr(), free_addr());
        let components = format!(
            "admin_config {{ listen_address: \"{admin_addr}\" }}\nnotification_listen_address: \"{notify}\"\n"
        );
        let state = dir.path().join("state");
        let mut node = Node::new(
            dir.path(),
            "listener",
            Flavor::Fleetgate,
            &components,
            vec![admin_addr, notify],
        )
        .with_args(&["--state_dir", state.to_str().unwrap()]);
        node.start().await;
        let admin = Admin::connect(admin_addr).await.unwrap();
        let mut listener = Listener {
            rss_start_kib: 0,
            node,
            notify,
            admin,
            _dir: dir,
        };
        listener.well_served().await;
        listener.rss_start_kib = rss_kib(listener.node.pid().unwrap());
        listener
    }

    /// What a well-behaved server sending a notification gets: 200 at once.
    async fn well_served(&mut self) {
        let answer = send_raw(
            self.notify,
            b"POST /client/0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "a valid notification got {:?}",
            String::from_utf8_lossy(&answer)
        );
        self.admin.list_clients(&[]).await.expect("ListClients");
    }

    async fn survived(&mut self, attack: &str, outcome: &str, started: Instant) {
        self.node.check_running();
        assert_no_panic(attack, &self.node.log_text());
        self.well_served().await;
        let rss = rss_kib(self.node.pid().unwrap());
        assert_bounded(attack, outcome, started, rss, self.rss_start_kib);
    }
}

/// The status lines in an HTTP/1.1 answer, counted by status.
fn statuses(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("HTTP/1.1 ")) {
        let status = line["HTTP/1.1 ".len()..].to_string();
        match counts.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status, 1)),
        }
    }
    if counts.is_empty() {
        return describe_answer(answer);
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} x {s}")).collect();
    counts.join(", ")
}

#[tokio::test]
async fn notification_floods_leave_the_listener_serving() {
    let mut l = Listener::start().await;

    // 20,000 notifications pipelined on one connection, for clients this server does not hold.
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(11);
    let mut flood = Vec::new();
    for _ in 0..20_000 {
        let id: u64 = rng.random();
        flood.extend_from_slice(
            format!("POST /client/{id:016x} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
    }
    flood.extend_from_slice(
        b"POST /client/0000000000000000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let outcome = statuses(&send_raw(l.notify, &flood).await);
    l.survived("20,000 pipelined notifications", &outcome, started)
        .await;

    let started = Instant::now();
    let mut answers = Vec::new();
    let long_path = format!(
        "POST /client/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let huge_body =
        "POST /client/0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
    let mut many_headers = b"POST /client/0123456789abcdef HTTP/1.1\r\n".to_vec();
    for i in 0..10_000 {
        many_headers.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many_headers.extend_from_slice(b"\r\n");
    for bad in [
        long_path.as_bytes(),
        huge_body.as_bytes(),
        &many_headers,
        b"GET /client/0123456789abcdef HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /client/0123456789abcdeg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /client/%30123456789abcdef HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"\x16\x03\x01\x00\x05\x00\x00\x00\x00\x00",
    ] {
        answers.push(statuses(&send_raw(l.notify, bad).await));
    }
    let outcome = answers.join(" / ");
    l.survived("malformed notifications", &outcome, started)
        .await;

    // Slowloris on the listener: request heads that never finish.
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut tcp = TcpStream::connect(l.notify).await.unwrap();
        tcp.write_all(b"POST /client/0123456789abcdef HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(tcp);
    }
    l.survived(
        "200 unfinished notification heads held open",
        "served meanwhile; heads are cut by the 10 s header timeout",
        started,
    )
    .await;
    // Each is closed by the header timeout.
    read_until_closed(&mut held[0]).await;
}

/// Fails if the server's log shows a panic since it started.
fn assert_no_panic(attack: &str, log: &str) {
    if let Some(line) = panic_line(log) {
        panic!("{attack} made the server panic: {line}");
    }
}

/// Prints what the attack cost and fails if the server's resident memory grew past the headroom.
fn assert_bounded(attack: &str, outcome: &str, started: Instant, rss: u64, rss_start: u64) {
    println!(
        "hostile: {attack}: {outcome}; {:.1?}; RSS {} MiB after (start {} MiB)",
        started.elapsed(),
        rss / 1024,
        rss_start / 1024
    );
    assert!(
        rss < rss_start + RSS_HEADROOM_KIB,
        "after {attack} the server holds {rss} KiB resident, started at {rss_start} KiB"
    );
}
