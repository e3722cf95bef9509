//! `/streaming-message` over a real TLS connection, HTTP/1.1 and h2.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use fleetgate_pb::fleetspeak::ContactData;
use prost::Message as _;

fn ack(k: u64) -> ContactData {
    ContactData {
        ack_index: k,
        ..Default::default()
    }
}

async fn recv<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("in time")
        .expect("open")
}

#[tokio::test]
async fn frame0_acks_and_pushes_over_http1_and_h2() {
    let server = start(|_| {}).await;
    let mut probes = server.handler.stream_probes();
    let cert = client_cert();
    for proto in [Proto::H1, Proto::H2] {
        let mut s = connect(&server, Some(&cert), proto).await;
        // The request body stays open: frame 0's reply must come anyway.
        let (status, stream) =
            ClientStream::open(&mut s, frame(&wcd(&["amd64"]), true), false).await;
        assert_eq!(status, 200);
        let mut stream = stream.unwrap();
        assert_eq!(stream.next().await.unwrap().sequencing_nonce, 77);
        let mut probe = recv(&mut probes).await;
        assert_eq!(probe.contact.client_id, cert.id);
        assert_eq!(probe.contact.wcd.client_labels, ["amd64"]);

        // Frames in odd chunks, a slow one first and an empty one (length 0) in the middle.
        let mut bytes = frame(&wcd(&["slow", "one"]), false);
        bytes.extend(frame(&Default::default(), false));
        bytes.extend(frame(&wcd(&["three"]), false));
        for chunk in bytes.chunks(3) {
            stream.send(chunk.to_vec()).await;
        }
        for k in 1..=3 {
            assert_eq!(stream.next().await.unwrap(), ack(k));
        }
        assert_eq!(recv(&mut probe.frames).await.client_labels, ["slow", "one"]);
        assert_eq!(recv(&mut probe.frames).await, Default::default());
        assert_eq!(recv(&mut probe.frames).await.client_labels, ["three"]);

        probe.push.send(Some(vec![])).unwrap(); // "look again": nothing is written
        probe
            .push
            .send(Some(vec![message("m1"), message("m2")]))
            .unwrap();
        let pushed = stream.next().await.unwrap();
        assert_eq!(pushed.sequencing_nonce, 77);
        assert_eq!(pushed.messages, vec![message("m1"), message("m2")]);
        assert_eq!(pushed.ack_index, 0);

        // Superseded: pushing stops, acking goes on.
        probe.push.send(None).unwrap();
        probe.push.send(Some(vec![message("never")])).unwrap();
        stream.send(frame(&wcd(&["four"]), false)).await;
        assert_eq!(stream.next().await.unwrap(), ack(4));

        drop(stream); // the client goes away: a normal end
        recv(&mut probe.closed).await;
    }
}

#[tokio::test]
async fn compressed_stream_without_an_end_is_decoded_frame_by_frame() {
    let server = start(|_| {}).await;
    let mut probes = server.handler.stream_probes();
    let cert = client_cert();
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    let f0 = frame(&wcd(&["zero"]), true);
    let f1 = frame(&wcd(&["one"]), false);
    let f2 = frame(&wcd(&["two"]), false);
    let parts = zlib(&[&f0, &f1, &f2], false);
    let (status, stream) = ClientStream::open(&mut s, parts[0].clone(), true).await;
    assert_eq!(status, 200);
    let mut stream = stream.unwrap();
    assert_eq!(stream.next().await.unwrap().sequencing_nonce, 77);
    let probe = recv(&mut probes).await;
    assert_eq!(probe.contact.wcd.client_labels, ["zero"]);
    stream.send(parts[1].clone()).await;
    assert_eq!(stream.next().await.unwrap(), ack(1));
    stream.send(parts[2].clone()).await;
    assert_eq!(stream.next().await.unwrap(), ack(2));
    // A frame that inflates to far more than one decode step, arriving in one small chunk.
    let big = "x".repeat(300_000);
    let f3 = frame(&wcd(&[&big]), false);
    let mut z = flate2::Compress::new(flate2::Compression::default(), true);
    for part in [&f0, &f1, &f2] {
        z.compress_vec(
            part,
            &mut Vec::with_capacity(part.len() + 1024),
            flate2::FlushCompress::Sync,
        )
        .unwrap();
    }
    let mut tail = Vec::with_capacity(f3.len());
    z.compress_vec(&f3, &mut tail, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(tail.len() < 10_000);
    stream.send(tail).await;
    assert_eq!(stream.next().await.unwrap(), ack(3));
}

#[tokio::test]
async fn done_sending_exactly_once_then_acks_until_the_deadline() {
    let server = start(|c| {
        c.streaming_lifespan = Duration::from_millis(1500);
        c.streaming_jitter = Duration::ZERO;
        c.streaming_close_time = Duration::from_millis(1000);
    })
    .await;
    let mut probes = server.handler.stream_probes();
    let cert = client_cert();
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    let started = Instant::now();
    let (_, stream) = ClientStream::open(&mut s, frame(&wcd(&[]), true), false).await;
    let mut stream = stream.unwrap();
    assert_eq!(stream.next().await.unwrap().sequencing_nonce, 77);
    let mut probe = recv(&mut probes).await;
    assert_eq!(
        stream.next().await.unwrap(),
        ContactData {
            done_sending: true,
            ..Default::default()
        }
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    // Pushes stop after done_sending, but a late frame is still acked.
    probe.push.send(Some(vec![message("late")])).unwrap();
    stream.send(frame(&wcd(&["late"]), false)).await;
    assert_eq!(stream.next().await.unwrap(), ack(1));
    // Nothing more, then the response ends at the hard deadline.
    assert_eq!(stream.next().await, None);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    recv(&mut probe.closed).await;
}

#[tokio::test]
async fn a_failed_frame_ends_the_stream_without_an_ack() {
    let server = start(|_| {}).await;
    let mut probes = server.handler.stream_probes();
    let cert = client_cert();
    let mut s = connect(&server, Some(&cert), Proto::H2).await;
    let (_, stream) = ClientStream::open(&mut s, frame(&wcd(&[]), true), false).await;
    let mut stream = stream.unwrap();
    stream.next().await.unwrap();
    let mut probe = recv(&mut probes).await;
    stream.send(frame(&wcd(&["ok"]), false)).await;
    stream.send(frame(&wcd(&["fail"]), false)).await;
    stream.send(frame(&wcd(&["after"]), false)).await;
    assert_eq!(stream.next().await.unwrap(), ack(1));
    assert_eq!(stream.next().await, None);
    recv(&mut probe.closed).await;
}

#[tokio::test]
async fn stream_setup_errors_have_statuses() {
    let server = start(|_| {}).await;
    let cert = client_cert();
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    assert_eq!(
        ClientStream::open(&mut s, b"POST".to_vec(), false).await.0,
        400
    );
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    assert_eq!(
        ClientStream::open(&mut s, frame(&wcd(&["refuse"]), true), false)
            .await
            .0,
        503
    );
    let mut s = connect(&server, None, Proto::H1).await;
    assert_eq!(
        ClientStream::open(&mut s, frame(&wcd(&[]), true), false)
            .await
            .0,
        400
    );
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    let mut bad = wcd(&[]).encode_to_vec();
    bad.insert(0, 0xff);
    let mut body = fleetgate_frontend::wire::MAGIC.to_vec();
    fleetgate_frontend::wire::encode_uvarint(bad.len() as u64, &mut body);
    body.extend(bad);
    assert_eq!(ClientStream::open(&mut s, body, false).await.0, 400);

    let server = start(|c| c.disable_streaming = true).await;
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    assert_eq!(
        ClientStream::open(&mut s, frame(&wcd(&[]), true), false)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn shutdown_sends_done_sending_once_and_serve_returns_after_the_client_leaves() {
    let server = start(|c| c.streaming_close_time = Duration::from_secs(3)).await;
    let mut probes = server.handler.stream_probes();
    let cert = client_cert();
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    let (_, stream) = ClientStream::open(&mut s, frame(&wcd(&[]), true), false).await;
    let mut stream = stream.unwrap();
    stream.next().await.unwrap();
    let mut probe = recv(&mut probes).await;

    server.shutdown.cancel();
    assert_eq!(
        stream.next().await.unwrap(),
        ContactData {
            done_sending: true,
            ..Default::default()
        }
    );
    stream.send(frame(&wcd(&["pending"]), false)).await;
    assert_eq!(stream.next().await.unwrap(), ack(1));
    let started = Instant::now();
    drop(stream);
    drop(s);
    recv(&mut probe.closed).await;
    tokio::time::timeout(STEP, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

/// The Go client's exact HTTP/1.1 request shape (§7.1): chunked, `Expect: 100-continue`,
/// `Connection: close`, magic and frame 0 in separate chunks, body never terminated.
#[tokio::test]
async fn raw_go_style_http1_request_gets_100_continue_then_frame0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(|_| {}).await;
    let cert = client_cert();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector(&server.pki, Some(&cert), &Proto::H1)
        .connect(name, tcp)
        .await
        .unwrap();
    let head = "POST /streaming-message HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Go-http-client/1.1\r\n\
                Connection: close\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\
                Accept-Encoding: gzip\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut read_until = async |tls: &mut tokio_rustls::client::TlsStream<_>, needle: &[u8]| {
        let mut buf = [0u8; 1024];
        while !got.windows(needle.len()).any(|w| w == needle) {
            let n = tokio::time::timeout(STEP, tls.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "EOF, got {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    };
    read_until(&mut tls, b"HTTP/1.1 100 Continue\r\n\r\n").await;
    let w = wcd(&["amd64", "linux"]).encode_to_vec();
    tls.write_all(b"4\r\n\x01\x10\xee\xf1\r\n").await.unwrap();
    tls.write_all(&[b'1', b'\r', b'\n', w.len() as u8, b'\r', b'\n'])
        .await
        .unwrap();
    tls.write_all(format!("{:x}\r\n", w.len()).as_bytes())
        .await
        .unwrap();
    tls.write_all(&w).await.unwrap();
    tls.write_all(b"\r\n").await.unwrap();
    // Frame 0 is ContactData{sequencing_nonce: 77} = 08 4d, framed as 02 08 4d in one chunk.
    read_until(&mut tls, b"\r\n\x02\x08\x4d\r\n").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/octet-stream"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
}
