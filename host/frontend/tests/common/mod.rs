//! Test harness: certificates, an in-memory `ContactHandler`, a running server and a TLS client.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fleetgate_frontend::body::ResponseBody;
use fleetgate_frontend::wire::{self, FrameDecoder};
use fleetgate_frontend::{FrontendConfig, frames, serve};
use fleetgate_pb::fleetspeak::{ContactData, Message, WrappedContactData};
use fleetgate_types::ClientId;
use fleetgate_types::contact::{Contact, ContactError, ContactHandler, FileContent, StreamSession};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

pub const STEP: Duration = Duration::from_secs(5);

// ---------- certificates ----------

pub struct Pki {
    pub ca_der: CertificateDer<'static>,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "test ca");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_der: ca_cert.der().clone(),
        server_cert_pem: format!("{}{}", cert.pem(), ca_cert.pem()),
        server_key_pem: key.serialize_pem(),
    }
}

/// A certificate shaped like the Go client's: self-signed P-256, serial 1, dated year 0001.
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub spki: Vec<u8>,
    pub id: ClientId,
}

pub fn client_cert() -> ClientCert {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let spki = key.public_key_der();
    let id = ClientId::from_public_key(&spki);
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, id.to_hex());
    params.serial_number = Some(rcgen::SerialNumber::from(1u64));
    params.not_before = rcgen::date_time_ymd(1, 1, 1);
    params.not_after = rcgen::date_time_ymd(1, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    ClientCert {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
        spki,
        id,
    }
}

// ---------- the engine double ----------

/// What a test sees of one open stream.
pub struct StreamProbe {
    pub contact: Contact,
    pub frames: mpsc::UnboundedReceiver<WrappedContactData>,
    /// `Some(batch)` → `next_messages` returns it; `None` → `Ok(None)` (superseded).
    pub push: mpsc::UnboundedSender<Option<Vec<Message>>>,
    pub closed: mpsc::UnboundedReceiver<()>,
}

#[derive(Default)]
pub struct TestHandler {
    pub polls: Mutex<Vec<Contact>>,
    pub poll_error: Mutex<Option<ContactError>>,
    pub files: Mutex<HashMap<(String, String), FileContent>>,
    probes: Mutex<Option<mpsc::UnboundedSender<StreamProbe>>>,
}

impl TestHandler {
    pub fn stream_probes(&self) -> mpsc::UnboundedReceiver<StreamProbe> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.probes.lock().unwrap() = Some(tx);
        rx
    }
}

pub struct TestSession {
    frames: mpsc::UnboundedSender<WrappedContactData>,
    push: tokio::sync::Mutex<mpsc::UnboundedReceiver<Option<Vec<Message>>>>,
    closed: mpsc::UnboundedSender<()>,
}

impl ContactHandler for TestHandler {
    type Stream = TestSession;

    async fn poll(&self, contact: Contact) -> Result<ContactData, ContactError> {
        if let Some(e) = self.poll_error.lock().unwrap().clone() {
            return Err(e);
        }
        let echo = contact.wcd.client_labels.len() as u64;
        self.polls.lock().unwrap().push(contact);
        Ok(ContactData {
            sequencing_nonce: 0x1234 + echo,
            ..Default::default()
        })
    }

    async fn open_stream(
        &self,
        contact: Contact,
    ) -> Result<(TestSession, ContactData), ContactError> {
        if contact.wcd.client_labels.iter().any(|l| l == "refuse") {
            return Err(ContactError::NotAuthorized("missing label".into()));
        }
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (push, push_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let session = TestSession {
            frames: frames_tx,
            push: tokio::sync::Mutex::new(push_rx),
            closed: closed_tx,
        };
        if let Some(tx) = self.probes.lock().unwrap().as_ref() {
            let _ = tx.send(StreamProbe {
                contact,
                frames,
                push,
                closed,
            });
        }
        Ok((
            session,
            ContactData {
                sequencing_nonce: 77,
                ..Default::default()
            },
        ))
    }

    async fn read_file(
        &self,
        service: &str,
        name: &str,
    ) -> Result<Option<FileContent>, ContactError> {
        Ok(self
            .files
            .lock()
            .unwrap()
            .get(&(service.to_string(), name.to_string()))
            .cloned())
    }
}

impl StreamSession for TestSession {
    async fn frame(&self, wcd: WrappedContactData) -> Result<(), ContactError> {
        if wcd.client_labels.iter().any(|l| l == "slow") {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if wcd.client_labels.iter().any(|l| l == "fail") {
            return Err(ContactError::Internal("store failed".into()));
        }
        let _ = self.frames.send(wcd);
        Ok(())
    }

    async fn next_messages(&self) -> Result<Option<Vec<Message>>, ContactError> {
        match self.push.lock().await.recv().await {
            Some(batch) => Ok(batch),
            None => std::future::pending().await,
        }
    }

    async fn close(&self) {
        let _ = self.closed.send(());
    }
}

// ---------- server ----------

pub struct Server {
    pub addr: SocketAddr,
    pub handler: Arc<TestHandler>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), fleetgate_frontend::FrontendError>>,
    pub pki: Pki,
}

pub async fn start(tweak: impl FnOnce(&mut FrontendConfig)) -> Server {
    let pki = pki();
    let mut config = FrontendConfig::new(pki.server_cert_pem.clone(), pki.server_key_pem.clone());
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(TestHandler::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, config, handler.clone(), shutdown.clone()));
    Server {
        addr,
        handler,
        shutdown,
        task,
        pki,
    }
}

// ---------- client ----------

pub enum Proto {
    H1,
    H2,
}

pub fn connector(pki: &Pki, cert: Option<&ClientCert>, proto: &Proto) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match cert {
        Some(c) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone()));
            builder.with_client_auth_cert(c.chain.clone(), key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match proto {
        Proto::H1 => vec![b"http/1.1".to_vec()],
        Proto::H2 => vec![b"h2".to_vec()],
    };
    TlsConnector::from(Arc::new(config))
}

pub enum Sender {
    H1(hyper::client::conn::http1::SendRequest<ResponseBody>),
    H2(hyper::client::conn::http2::SendRequest<ResponseBody>),
}

impl Sender {
    pub async fn send(&mut self, req: Request<ResponseBody>) -> Response<Incoming> {
        let fut = async {
            match self {
                Sender::H1(s) => s.send_request(req).await,
                Sender::H2(s) => s.send_request(req).await,
            }
        };
        tokio::time::timeout(STEP, fut)
            .await
            .expect("response in time")
            .expect("response")
    }
}

/// Opens a TLS connection (after writing `preamble`, e.g. a PROXY header) and an HTTP session.
pub async fn connect_with(
    server: &Server,
    cert: Option<&ClientCert>,
    proto: Proto,
    preamble: &[u8],
) -> Sender {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, preamble)
        .await
        .unwrap();
    let tls = connector(&server.pki, cert, &proto)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let io = TokioIo::new(tls);
    match proto {
        Proto::H1 => {
            let (s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(s)
        }
        Proto::H2 => {
            let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Sender::H2(s)
        }
    }
}

pub async fn connect(server: &Server, cert: Option<&ClientCert>, proto: Proto) -> Sender {
    connect_with(server, cert, proto, b"").await
}

pub fn post(path: &str, body: impl Into<Bytes>) -> Request<ResponseBody> {
    Request::post(format!("https://localhost{path}"))
        .body(ResponseBody::full(body))
        .unwrap()
}

pub fn wcd(labels: &[&str]) -> WrappedContactData {
    WrappedContactData {
        client_labels: labels.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes()
}

/// Zlib with a sync flush after each part, as the Go client compresses.
pub fn zlib(parts: &[&[u8]], finish: bool) -> Vec<Vec<u8>> {
    let mut c = flate2::Compress::new(flate2::Compression::default(), true);
    let mut out = Vec::new();
    for p in parts {
        let mut buf = Vec::with_capacity(p.len() + 1024);
        c.compress_vec(p, &mut buf, flate2::FlushCompress::Sync)
            .unwrap();
        out.push(buf);
    }
    if finish {
        let mut buf = Vec::with_capacity(1024);
        c.compress_vec(&[], &mut buf, flate2::FlushCompress::Finish)
            .unwrap();
        out.push(buf);
    }
    out
}

/// `uvarint(len) ‖ wcd`, preceded by the magic if `magic`.
pub fn frame(w: &WrappedContactData, magic: bool) -> Vec<u8> {
    let mut out = if magic {
        wire::MAGIC.to_vec()
    } else {
        Vec::new()
    };
    let bytes = w.encode_to_vec();
    wire::encode_uvarint(bytes.len() as u64, &mut out);
    out.extend_from_slice(&bytes);
    out
}

/// The client side of a stream: a request body we keep open and a frame reader.
pub struct ClientStream {
    pub body_tx: frames::Sender,
    pub resp: Incoming,
    dec: FrameDecoder,
}

impl ClientStream {
    pub async fn open(
        sender: &mut Sender,
        first: Vec<u8>,
        deflate: bool,
    ) -> (u16, Option<ClientStream>) {
        let (body_tx, rx) = frames::channel(16);
        body_tx.send(Bytes::from(first)).await.unwrap();
        let mut req = Request::post("https://localhost/streaming-message")
            .body(ResponseBody::Channel(rx))
            .unwrap();
        if deflate {
            req.headers_mut()
                .insert("content-encoding", "deflate".parse().unwrap());
        }
        let resp = sender.send(req).await;
        let status = resp.status().as_u16();
        if status != 200 {
            return (status, None);
        }
        let dec = FrameDecoder::without_magic(1 << 20);
        (
            status,
            Some(ClientStream {
                body_tx,
                resp: resp.into_body(),
                dec,
            }),
        )
    }

    pub async fn send(&self, bytes: Vec<u8>) {
        self.body_tx.send(Bytes::from(bytes)).await.unwrap();
    }

    /// The next server frame; `None` when the response ended.
    pub async fn next(&mut self) -> Option<ContactData> {
        loop {
            if let Some(f) = self.dec.next_frame().unwrap() {
                return Some(ContactData::decode(f).unwrap());
            }
            let frame = tokio::time::timeout(STEP, self.resp.frame())
                .await
                .expect("server frame in time")?;
            if let Ok(data) = frame.ok()?.into_data() {
                self.dec.push(&data);
            }
        }
    }
}

pub fn message(service: &str) -> Message {
    Message {
        message_type: service.to_string(),
        message_id: vec![7; 32],
        ..Default::default()
    }
}

pub fn file(data: &[u8], secs: u64) -> FileContent {
    FileContent {
        data: data.to_vec(),
        modified: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    }
}
