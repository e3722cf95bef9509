//! One client's HTTPS connection: TCP, TLS with the client certificate, HTTP/1.1 (hyper's
//! low-level client), and the two request shapes the client protocol uses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetgate_frontend::wire::{self, FrameDecoder};
use fleetgate_pb::fleetspeak::{ContactData, WrappedContactData};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use prost::Message as _;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;

use crate::ClientError;
use crate::sender::{Body, Sender};

/// The largest server frame accepted (the protocol's 20 MiB body limit).
pub const MAX_FRAME: usize = 20 * 1024 * 1024;
/// Client frames buffered before the request body applies back-pressure.
const BODY_DEPTH: usize = 16;

/// Where and how to connect; shared by every connection of one client.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    pub host_header: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
}

/// An open HTTP/1.1 or HTTP/2 connection. Dropping it closes the socket: the driver task is aborted.
pub struct Connection {
    sender: Sender,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// TCP connect, TLS handshake presenting the client certificate, HTTP/1.1 or HTTP/2
    /// handshake (as ALPN chose; see [`crate::sender`]).
    pub async fn open(ep: &Endpoint) -> Result<Self, ClientError> {
        let setup = async {
            let tcp = TcpStream::connect(ep.addr)
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            // The Go client leaves Nagle on, but a benchmark of latency should not measure it.
            let _ = tcp.set_nodelay(true);
            let tls = TlsConnector::from(ep.tls.clone())
                .connect(ep.server_name.clone(), tcp)
                .await
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            Sender::handshake(tls, h2).await
        };
        let (sender, driver) = tokio::time::timeout(ep.connect_timeout, setup)
            .await
            .map_err(|_| ClientError::Connect("timed out".into()))??;
        Ok(Self { sender, driver })
    }

    /// Whether the server still keeps the connection open for another request.
    pub fn is_usable(&self) -> bool {
        !self.sender.is_closed() && !self.driver.is_finished()
    }

    /// `POST /message`: one WCD out, one `ContactData` back (protocol.md §6).
    pub async fn poll(
        &mut self,
        ep: &Endpoint,
        wcd: &WrappedContactData,
    ) -> Result<ContactData, ClientError> {
        let body = Full::new(Bytes::from(wcd.encode_to_vec())).boxed();
        let resp = self.send(ep, "/message", body).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        ContactData::decode(bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `POST /streaming-message` (protocol.md §7): the magic and frame 0 go into the body first,
    /// because the server answers only after reading frame 0. The request body stays open for
    /// later frames until the returned [`FrameSender`] is dropped.
    pub async fn open_stream(
        &mut self,
        ep: &Endpoint,
        frame0: &WrappedContactData,
    ) -> Result<(FrameSender, FrameReader), ClientError> {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(BODY_DEPTH);
        let sender = FrameSender { tx };
        sender.send_bytes(Bytes::from_static(&wire::MAGIC)).await?;
        sender.send(frame0).await?;
        let body = BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx)));
        let resp = self.send(ep, "/streaming-message", body).await?;
        let reader = FrameReader {
            body: resp.into_body(),
            decoder: FrameDecoder::without_magic(MAX_FRAME),
        };
        Ok((sender, reader))
    }

    async fn send(
        &mut self,
        ep: &Endpoint,
        path: &str,
        body: Body,
    ) -> Result<Response<Incoming>, ClientError> {
        let req = if self.sender.is_h2() {
            Request::post(format!("https://{}{path}", ep.host_header))
        } else {
            Request::post(path).header(header::HOST, &ep.host_header)
        };
        let req = req
            .body(body)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self.sender.send(req).await?;
        if resp.status() != StatusCode::OK {
            return Err(ClientError::Status(resp.status().as_u16()));
        }
        Ok(resp)
    }
}

/// The open request body of a stream: each call writes `uvarint(len) ‖ WCD`.
pub struct FrameSender {
    tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
}

impl FrameSender {
    pub async fn send(&self, wcd: &WrappedContactData) -> Result<(), ClientError> {
        self.send_bytes(wire::encode_frame(wcd)).await
    }

    async fn send_bytes(&self, bytes: Bytes) -> Result<(), ClientError> {
        self.tx
            .send(Ok(Frame::data(bytes)))
            .await
            .map_err(|_| ClientError::Http("request body closed".into()))
    }
}

/// The response body of a stream, cut into `ContactData` frames.
pub struct FrameReader {
    body: Incoming,
    decoder: FrameDecoder,
}

impl FrameReader {
    /// The next server frame; `Ok(None)` when the server ended the response. Cancel-safe: bytes
    /// already read stay in the decoder.
    pub async fn next(&mut self) -> Result<Option<ContactData>, ClientError> {
        loop {
            if let Some(frame) = self
                .decoder
                .next_frame()
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                return ContactData::decode(frame)
                    .map(Some)
                    .map_err(|e| ClientError::Protocol(e.to_string()));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ClientError::Http(e.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.decoder.push(&data);
                    }
                }
            }
        }
    }
}
