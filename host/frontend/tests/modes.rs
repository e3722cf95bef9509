//! The header frontend modes (protocol.md §4.2–4.4) over real connections: the certificate comes
//! from a header on TLS (`https_header*`) or on plain HTTP/1.1 (`cleartext_*`).
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::*;
use fleetgate_frontend::CertSource;
use fleetgate_frontend::body::ResponseBody;
use fleetgate_frontend::certsource::checksum;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::net::TcpStream;

const CERT_HEADER: &str = "x-client-certificate";
const SUM_HEADER: &str = "x-client-certificate-checksum";

/// The client's certificate as the Go client sends it: PEM, then `url.PathEscape`.
fn escaped_pem(c: &ClientCert) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&c.chain[0]);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem += std::str::from_utf8(line).unwrap();
        pem.push('\n');
    }
    pem += "-----END CERTIFICATE-----\n";
    pem.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b'$' | b'&' | b'+' | b':' | b'=' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Plain HTTP/1.1 to the listener, after an optional preamble (a PROXY header).
async fn connect_plain(server: &Server, preamble: &[u8]) -> Sender {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, preamble)
        .await
        .unwrap();
    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    Sender::H1(s)
}

fn poll_with(headers: &[(&'static str, &str)]) -> http::Request<ResponseBody> {
    let mut req = post("/message", wcd(&["amd64"]).encode_to_vec());
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    req
}

async fn status_and_body(s: &mut Sender, req: http::Request<ResponseBody>) -> (u16, String) {
    let resp = s.send(req).await;
    let status = resp.status().as_u16();
    (
        status,
        String::from_utf8_lossy(&body_bytes(resp).await).into_owned(),
    )
}

fn header_mode() -> CertSource {
    CertSource::Header {
        header: CERT_HEADER.into(),
    }
}

fn checksum_mode() -> CertSource {
    CertSource::HeaderChecksum {
        header: CERT_HEADER.into(),
        checksum_header: SUM_HEADER.into(),
    }
}

#[tokio::test]
async fn https_header_takes_the_certificate_from_the_header() {
    let server = start(|c| c.cert_source = header_mode()).await;
    let cert = client_cert();
    // No TLS client certificate at all: the header is the identity.
    let mut s = connect(&server, None, Proto::H1).await;
    let (st, body) =
        status_and_body(&mut s, poll_with(&[(CERT_HEADER, &escaped_pem(&cert))])).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = status_and_body(&mut s, poll_with(&[])).await;
    assert_eq!(st, 400);
    assert!(body.contains(CERT_HEADER), "{body}");
    let polls = server.handler.polls.lock().unwrap();
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].client_id, cert.id);
    assert_eq!(polls[0].public_key, cert.spki);
}

#[tokio::test]
async fn https_header_checksum_must_match() {
    let server = start(|c| c.cert_source = checksum_mode()).await;
    let cert = client_cert();
    let mut s = connect(&server, None, Proto::H2).await;
    let pem = escaped_pem(&cert);
    let sum = checksum(&cert.chain[0]);
    let (st, body) = status_and_body(
        &mut s,
        poll_with(&[(CERT_HEADER, &pem), (SUM_HEADER, &sum)]),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let other = checksum(b"another certificate");
    let (st, _) = status_and_body(
        &mut s,
        poll_with(&[(CERT_HEADER, &pem), (SUM_HEADER, &other)]),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = status_and_body(&mut s, poll_with(&[(CERT_HEADER, &pem)])).await;
    assert_eq!(st, 400);
    assert_eq!(server.handler.polls.lock().unwrap()[0].client_id, cert.id);
}

#[tokio::test]
async fn cleartext_header_serves_plain_http_without_a_certificate_or_key() {
    let server = start(|c| {
        c.cleartext = true;
        c.cert_source = header_mode();
        c.cert_chain_pem.clear();
        c.key_pem.clear();
    })
    .await;
    let cert = client_cert();
    let mut s = connect_plain(&server, b"").await;
    let (st, body) =
        status_and_body(&mut s, poll_with(&[(CERT_HEADER, &escaped_pem(&cert))])).await;
    assert_eq!(st, 200, "{body}");
    // Two certificates in the header: refused.
    let two = escaped_pem(&cert).repeat(2);
    let (st, _) = status_and_body(&mut s, poll_with(&[(CERT_HEADER, &two)])).await;
    assert_eq!(st, 400);
    assert_eq!(server.handler.polls.lock().unwrap()[0].client_id, cert.id);
}

#[tokio::test]
async fn cleartext_header_checksum_and_proxy_header() {
    let server = start(|c| {
        c.cleartext = true;
        c.proxy_protocol = true;
        c.cert_source = checksum_mode();
    })
    .await;
    let cert = client_cert();
    let mut s = connect_plain(&server, b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 443\r\n").await;
    let sum = checksum(&cert.chain[0]);
    let (st, body) = status_and_body(
        &mut s,
        poll_with(&[(CERT_HEADER, &escaped_pem(&cert)), (SUM_HEADER, &sum)]),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let polls = server.handler.polls.lock().unwrap();
    assert_eq!(polls[0].client_id, cert.id);
    assert_eq!(polls[0].observed_address, "192.0.2.7:40001");
}

#[tokio::test]
async fn cleartext_xfcc_reads_the_cert_field() {
    let xfcc = "x-forwarded-client-cert";
    let server = start(|c| {
        c.cleartext = true;
        c.cert_source = CertSource::Xfcc {
            header: xfcc.into(),
        };
    })
    .await;
    let cert = client_cert();
    let value = format!(
        "By=spiffe://proxy;Hash=00ff;Cert=\"{}\";Subject=\"O=x,CN=y\"",
        escaped_pem(&cert)
    );
    let mut s = connect_plain(&server, b"").await;
    let (st, body) = status_and_body(&mut s, poll_with(&[(xfcc, &value)])).await;
    assert_eq!(st, 200, "{body}");
    let (st, _) = status_and_body(&mut s, poll_with(&[(xfcc, "By=x;Cert=garbage")])).await;
    assert_eq!(st, 400);
    assert_eq!(server.handler.polls.lock().unwrap()[0].client_id, cert.id);
}

#[tokio::test]
async fn cleartext_streaming_uses_the_header_identity() {
    let server = start(|c| {
        c.cleartext = true;
        c.cert_source = header_mode();
    })
    .await;
    let mut probes = server.handler.stream_probes();
    let cert = client_cert();
    let mut s = connect_plain(&server, b"").await;
    let (body_tx, rx) = fleetgate_frontend::frames::channel(4);
    body_tx
        .send(frame(&wcd(&["amd64"]), true).into())
        .await
        .unwrap();
    let mut req = http::Request::post("http://localhost/streaming-message")
        .body(ResponseBody::Channel(rx))
        .unwrap();
    req.headers_mut()
        .insert(CERT_HEADER, escaped_pem(&cert).parse().unwrap());
    let resp = s.send(req).await;
    assert_eq!(resp.status(), 200);
    let probe = tokio::time::timeout(STEP, probes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(probe.contact.client_id, cert.id);
    drop(body_tx);
}

#[tokio::test]
async fn mtls_mode_on_cleartext_has_no_tls_information() {
    let server = start(|c| c.cleartext = true).await;
    let mut s = connect_plain(&server, b"").await;
    let (st, body) = status_and_body(&mut s, poll_with(&[])).await;
    assert_eq!(st, 400);
    assert!(body.contains("TLS information not found"), "{body}");
}
