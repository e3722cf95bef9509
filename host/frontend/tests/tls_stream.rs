//! The frontend's own TLS stream (`tls_stream`) against rustls' client through tokio-rustls, over
//! real loopback sockets: both protocol versions, large transfers both ways at once, small reads,
//! key updates, clean and unclean closes, and broken handshakes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::IoSlice;
use std::sync::Arc;

use common::{Pki, STEP, client_cert, pki};
use fleetgate_frontend::tls;
use fleetgate_frontend::tls_stream::{self, TlsStream};
use rustls::SupportedProtocolVersion;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream as ClientStream;

fn client(pki: &Pki, version: &'static SupportedProtocolVersion) -> TlsConnector {
    let cert = client_cert();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(cert.chain.clone(), key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// A connected pair: our server stream and a rustls client, `version` negotiated.
async fn pair(
    version: &'static SupportedProtocolVersion,
) -> (TlsStream<TcpStream>, ClientStream<TcpStream>) {
    let pki = pki();
    let config = tls::server_config(&pki.server_cert_pem, &pki.server_key_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        tls_stream::accept(tcp, config).await.unwrap()
    };
    let client = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        client(&pki, version).connect(name, tcp).await.unwrap()
    };
    tokio::time::timeout(STEP, async { tokio::join!(server, client) })
        .await
        .unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sends `data` from the client while the server echoes it, reading back concurrently.
async fn echo_round_trip(version: &'static SupportedProtocolVersion, len: usize) {
    let (mut server, client) = pair(version).await;
    assert_eq!(server.tls().protocol_version(), Some(version.version));
    assert_eq!(server.tls().alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(server.tls().peer_certificates().map(<[_]>::len), Some(1));
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 7000];
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                server.shutdown().await.unwrap();
                return;
            }
            server.write_all(&buf[..n]).await.unwrap();
        }
    });
    let data = pattern(len, 7);
    let (mut rd, mut wr) = tokio::io::split(client);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(50_000) {
            wr.write_all(chunk).await.unwrap();
        }
        wr.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(STEP * 4, rd.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    echo.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
}

#[tokio::test]
async fn tls13_echoes_four_mebibytes_both_ways() {
    echo_round_trip(&rustls::version::TLS13, 4 << 20).await;
}

#[tokio::test]
async fn tls12_echoes_four_mebibytes_both_ways() {
    echo_round_trip(&rustls::version::TLS12, 4 << 20).await;
}

#[tokio::test]
async fn a_record_larger_than_the_readers_buffer_is_read_in_parts() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    let data = pattern(16 * 1024, 3);
    client.write_all(&data).await.unwrap();
    client.flush().await.unwrap();
    let mut got = Vec::new();
    let mut small = [0u8; 10];
    while got.len() < data.len() {
        let n = server.read(&mut small).await.unwrap();
        assert!(n > 0 && n <= small.len());
        got.extend_from_slice(&small[..n]);
    }
    assert_eq!(got, data);
}

#[tokio::test]
async fn key_updates_from_the_client_keep_the_connection_working() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    for round in 0..3u8 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(&[round; 100]).await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 100];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, [round; 100]);
        server.write_all(&[round + 1; 50]).await.unwrap();
        server.flush().await.unwrap();
        let mut back = [0u8; 50];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [round + 1; 50]);
    }
}

#[tokio::test]
async fn close_notify_ends_reads_cleanly_on_both_sides() {
    let (mut server, mut client) = pair(&rustls::version::TLS13).await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    server.write_all(b"reply").await.unwrap();
    server.shutdown().await.unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"reply");
}

#[tokio::test]
async fn a_transport_closed_inside_a_record_is_an_error() {
    let (mut server, client) = pair(&rustls::version::TLS13).await;
    let (mut tcp, _) = client.into_inner();
    // A record header announcing 100 bytes, then only 3 of them.
    tcp.write_all(&[23, 3, 3, 0, 100, 1, 2, 3]).await.unwrap();
    // FIN, not a drop: the session tickets unread on this socket would turn a close into a reset.
    tcp.shutdown().await.unwrap();
    let err = server.read(&mut [0u8; 64]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
}

#[tokio::test]
async fn a_corrupted_record_is_an_error_and_the_peer_gets_an_alert() {
    let (mut server, client) = pair(&rustls::version::TLS13).await;
    let (mut tcp, _) = client.into_inner();
    tcp.write_all(&[23, 3, 3, 0, 40]).await.unwrap();
    tcp.write_all(&[0xAB; 40]).await.unwrap();
    let err = server.read(&mut [0u8; 64]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    // The alert record rustls queued reached the socket.
    let mut alert = [0u8; 5];
    tokio::time::timeout(STEP, tcp.read_exact(&mut alert))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        alert[0], 23,
        "an encrypted alert record (TLS 1.3 hides its type)"
    );
}

#[tokio::test]
async fn handshake_failures_are_errors_naming_the_cause() {
    let pki = pki();
    let config = tls::server_config(&pki.server_cert_pem, &pki.server_key_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // Not TLS at all.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let err = tls_stream::accept(tcp, config.clone()).await.err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");

    // Closed before the handshake finished.
    let early = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    drop(early);
    let err = tls_stream::accept(tcp, config.clone()).await.err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");

    // No common ALPN protocol: rustls refuses, and the client hears why.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let mut other = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    other.alpn_protocols = vec![b"spdy/3".to_vec()];
    let connecting = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        TlsConnector::from(Arc::new(other)).connect(name, tcp).await
    };
    let accepting = async {
        let (tcp, _) = listener.accept().await.unwrap();
        tls_stream::accept(tcp, config.clone()).await
    };
    let (client, server) = tokio::join!(connecting, accepting);
    let server_err = server.err().unwrap();
    assert!(
        server_err.to_string().contains("known protocol"),
        "{server_err}"
    );
    let client_err = client.err().unwrap();
    assert!(
        client_err.to_string().contains("NoApplicationProtocol"),
        "{client_err}"
    );
}

#[tokio::test]
async fn vectored_writes_arrive_whole_and_in_order() {
    let (mut server, mut client) = pair(&rustls::version::TLS12).await;
    assert!(server.is_write_vectored());
    let parts = [pattern(10, 1), pattern(70_000, 2), pattern(5, 3)];
    let expected = parts.concat();
    let writer = async {
        let mut slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        while !slices.is_empty() {
            let io: Vec<IoSlice<'_>> = slices.iter().map(|s| IoSlice::new(s)).collect();
            let mut n = server.write_vectored(&io).await.unwrap();
            assert!(n > 0);
            while n > 0 {
                let take = n.min(slices[0].len());
                slices[0] = &slices[0][take..];
                n -= take;
                if slices[0].is_empty() {
                    slices.remove(0);
                }
            }
        }
        server.flush().await.unwrap();
    };
    let mut got = vec![0u8; expected.len()];
    let (_, read) = tokio::join!(writer, client.read_exact(&mut got));
    read.unwrap();
    assert!(got == expected, "bytes differ");
}

/// A peer that keeps asking for key updates and never reads: rustls keeps at most one answer
/// queued (it goes out with our next write), so reading from such a peer holds no more than
/// the record being read, however long it goes on.
#[tokio::test]
async fn a_peer_asking_for_key_updates_without_reading_costs_no_memory() {
    let pki = pki();
    let config = tls::server_config(&pki.server_cert_pem, &pki.server_key_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Small socket buffers, so anything owed to the peer would back up in ours.
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(4096)
            .unwrap();
        tls_stream::accept(tcp, config).await.unwrap()
    };
    let client = async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        client(&pki, &rustls::version::TLS13)
            .connect(name, tcp)
            .await
            .unwrap()
    };
    let (mut server, mut client) =
        tokio::time::timeout(STEP, async { tokio::join!(server, client) })
            .await
            .unwrap();
    const ROUNDS: usize = 20_000;
    let flood = tokio::spawn(async move {
        for _ in 0..ROUNDS {
            // One byte of application data between requests keeps rustls' limit of 32
            // consecutive key update requests from ending the connection first.
            client.get_mut().1.refresh_traffic_keys().unwrap();
            client.write_all(b"x").await.unwrap();
        }
        client.flush().await.unwrap();
        // Still connected, still not reading.
        std::future::pending::<()>().await;
    });
    let mut buf = [0u8; 4096];
    let (mut read, mut most) = (0, 0);
    while read < ROUNDS {
        let n = tokio::time::timeout(STEP, server.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream ended after {read} bytes");
        read += n;
        most = most.max(server.buffered());
    }
    flood.abort();
    assert!(
        most <= 32 * 1024,
        "{most} bytes buffered for one connection"
    );
}

/// One record holding a `HelloRequest` and one byte of another handshake message, before any
/// handshake: rustls refuses it, and the alert it queues must be taken without rustls reading
/// past the bytes it kept (this panicked inside rustls, once per connection).
#[tokio::test]
async fn a_hello_request_before_the_handshake_is_an_error_not_a_panic() {
    let pki = pki();
    let config = tls::server_config(&pki.server_cert_pem, &pki.server_key_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    for record in [
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00][..],
        // The same split over two records, and a HelloRequest followed by a whole second one.
        &[
            0x16, 0x03, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x16, 0x03, 0x01, 0x00, 0x01,
            0x00,
        ],
        &[0x16, 0x03, 0x01, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        let mut peer = TcpStream::connect(addr).await.unwrap();
        peer.write_all(record).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let accepting = tokio::spawn(tls_stream::accept(tcp, config.clone()));
        let err = tokio::time::timeout(STEP, accepting)
            .await
            .unwrap()
            .expect("accept must not panic")
            .err()
            .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        // The peer hears why: an alert record, then the end.
        let mut reply = Vec::new();
        tokio::time::timeout(STEP, peer.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.first(), Some(&21), "an alert record: {reply:?}");
    }
}
