//! TLS for the locked listener. Handshakes run in their own tasks, so a peer that never finishes
//! one holds only its own connection, for at most [`HANDSHAKE_TIMEOUT`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::{Caller, Identity, LockConfig, LockError};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

pub(super) fn acceptor(c: &LockConfig) -> Result<TlsAcceptor, LockError> {
    let certs = rustls_pemfile::certs(&mut c.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LockError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(LockError::Certificate("no PEM certificate found".into()));
    }
    let key = rustls_pemfile::private_key(&mut c.key_pem.as_bytes())
        .map_err(|e| LockError::Key(e.to_string()))?
        .ok_or_else(|| LockError::Key("no PEM private key found".into()))?;
    let mut roots = RootCertStore::empty();
    let cas = rustls_pemfile::certs(&mut c.client_ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LockError::ClientCa(e.to_string()))?;
    if cas.is_empty() {
        return Err(LockError::ClientCa("no PEM certificate found".into()));
    }
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| LockError::ClientCa(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // A caller without a certificate completes the handshake and gets UNAUTHENTICATED with a
    // reason, which tells an operator more than a failed handshake; a certificate the CA did not
    // sign still ends the handshake.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| LockError::ClientCa(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LockError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| LockError::Certificate(e.to_string()))?;
    // gRPC clients (grpcio among them) insist on negotiating h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts on `listener` until `shutdown`, yielding each connection once its handshake is done.
pub(crate) fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin TLS listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tcp.set_nodelay(true);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(Conn::new(tls, peer))).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "admin TLS handshake failed");
                    }
                    Err(_) => tracing::info!(%peer, "admin TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A TLS connection and who is at the other end.
pub(crate) struct Conn {
    tls: TlsStream<TcpStream>,
    caller: Caller,
}

impl Conn {
    fn new(tls: TlsStream<TcpStream>, peer: std::net::SocketAddr) -> Self {
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let identity = leaf.and_then(|der| match Identity::from_der(der) {
            Ok(id) => Some(id),
            // rustls verified it, so this does not happen; treated as no certificate.
            Err(e) => {
                tracing::warn!(%peer, error = %e, "admin client certificate unreadable");
                None
            }
        });
        Conn {
            tls,
            caller: Caller {
                peer: Some(peer),
                identity,
            },
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}
