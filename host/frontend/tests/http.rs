//! `/message`, `/files/`, routing, status codes and PROXY over a real TLS connection.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fleetgate_pb::fleetspeak::ContactData;
use fleetgate_types::contact::ContactError;
use http::Request;
use prost::Message as _;

use fleetgate_frontend::body::ResponseBody;

#[tokio::test]
async fn poll_round_trip_over_http1_and_h2() {
    let server = start(|_| {}).await;
    let cert = client_cert();
    for proto in [Proto::H1, Proto::H2] {
        let mut s = connect(&server, Some(&cert), proto).await;
        let resp = s
            .send(post("/message", wcd(&["amd64", "linux"]).encode_to_vec()))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/octet-stream");
        assert!(resp.headers().get("content-encoding").is_none());
        let date = resp.headers()["date"].to_str().unwrap();
        assert!(fleetgate_frontend::date::parse(date).is_some(), "{date}");
        let cd = ContactData::decode(body_bytes(resp).await).unwrap();
        assert_eq!(cd.sequencing_nonce, 0x1234 + 2);
    }
    let polls = server.handler.polls.lock().unwrap();
    assert_eq!(polls.len(), 2);
    assert_eq!(polls[0].client_id, cert.id);
    assert_eq!(polls[0].public_key, cert.spki);
    assert_eq!(polls[0].wcd.client_labels, ["amd64", "linux"]);
    assert!(
        polls[0].observed_address.starts_with("127.0.0.1:"),
        "{}",
        polls[0].observed_address
    );
}

#[tokio::test]
async fn empty_body_is_an_empty_contact_and_deflate_is_decoded() {
    let server = start(|_| {}).await;
    let cert = client_cert();
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    assert_eq!(s.send(post("/message", Vec::new())).await.status(), 200);

    let body = zlib(&[&wcd(&["a", "b", "c"]).encode_to_vec()], true).concat();
    let mut req = post("/message", body);
    req.headers_mut()
        .insert("content-encoding", "deflate".parse().unwrap());
    let resp = s.send(req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        ContactData::decode(body_bytes(resp).await)
            .unwrap()
            .sequencing_nonce,
        0x1234 + 3
    );
}

#[tokio::test]
async fn bad_requests_get_the_documented_statuses() {
    let server = start(|c| c.max_body = 1000).await;
    let cert = client_cert();
    let mut s = connect(&server, Some(&cert), Proto::H1).await;
    let with_encoding = |enc: &str, body: Vec<u8>| {
        let mut req = post("/message", body);
        req.headers_mut()
            .insert("content-encoding", enc.parse().unwrap());
        req
    };
    let truncated = zlib(&[b"\x0a\x03abc"], false).concat();
    let bomb = zlib(&[&vec![0u8; 5000]], true).concat();
    let cases: Vec<(Request<ResponseBody>, u16, &str)> = vec![
        (with_encoding("gzip", vec![]), 415, "Content-Encoding"),
        (with_encoding("deflate", b"not zlib".to_vec()), 400, "zlib"),
        (with_encoding("deflate", truncated), 400, "zlib"),
        (with_encoding("deflate", bomb), 400, "exceeds"),
        (post("/message", vec![0xff, 0xff]), 400, "protobuf"),
        (post("/message", vec![0u8; 1001]), 400, "larger"),
        (
            Request::get("https://localhost/message")
                .body(ResponseBody::empty())
                .unwrap(),
            400,
            "POST",
        ),
        (post("/nope", vec![]), 404, "not found"),
        (post("/files", vec![]), 404, "not found"),
    ];
    for (req, status, text) in cases {
        let what = format!("{} {:?}", req.uri(), req.headers());
        let resp = s.send(req).await;
        assert_eq!(resp.status(), status, "{what}");
        let body = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
        assert!(body.contains(text), "{what}: {body}");
    }
}

#[tokio::test]
async fn engine_errors_map_to_503_and_500() {
    let server = start(|_| {}).await;
    let cert = client_cert();
    let mut s = connect(&server, Some(&cert), Proto::H2).await;
    for (err, status, text) in [
        (
            ContactError::NotAuthorized("label".into()),
            503,
            "not authorized",
        ),
        (ContactError::NotReady, 500, "Server not ready."),
        (ContactError::Internal("db down".into()), 500, "db down"),
        (
            ContactError::Invalid("101 messages".into()),
            500,
            "101 messages",
        ),
    ] {
        *server.handler.poll_error.lock().unwrap() = Some(err);
        let resp = s.send(post("/message", vec![])).await;
        assert_eq!(resp.status(), status);
        assert!(String::from_utf8_lossy(&body_bytes(resp).await).contains(text));
    }
}

#[tokio::test]
async fn no_client_certificate_is_400_but_files_still_work() {
    let server = start(|_| {}).await;
    server.handler.files.lock().unwrap().insert(
        ("system".into(), "RevokedCertificates".into()),
        file(b"x", 100),
    );
    let mut s = connect(&server, None, Proto::H1).await;
    let resp = s.send(post("/message", vec![])).await;
    assert_eq!(resp.status(), 400);
    assert!(
        String::from_utf8_lossy(&body_bytes(resp).await).contains("exactly 1 client certificate")
    );
    let resp = s
        .send(
            Request::get("https://localhost/files/system/RevokedCertificates")
                .body(ResponseBody::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
}

fn get(path: &str, ims: Option<&str>) -> Request<ResponseBody> {
    let mut b = Request::get(format!("https://localhost{path}"));
    if let Some(ims) = ims {
        b = b.header("if-modified-since", ims);
    }
    b.body(ResponseBody::empty()).unwrap()
}

#[tokio::test]
async fn files_200_304_404_head_and_bad_paths() {
    let server = start(|_| {}).await;
    let cert = client_cert();
    {
        let mut files = server.handler.files.lock().unwrap();
        files.insert(
            ("system".into(), "RevokedCertificates".into()),
            file(b"revoked", 784_111_777),
        );
        files.insert(("svc".into(), "a/b".into()), file(b"slashed", 784_111_777));
    }
    for proto in [Proto::H1, Proto::H2] {
        let mut s = connect(&server, Some(&cert), proto).await;
        let resp = s.send(get("/files/system/RevokedCertificates", None)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["last-modified"],
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(resp.headers()["content-length"], "7");
        assert_eq!(body_bytes(resp).await.as_ref(), b"revoked");

        let resp = s
            .send(get(
                "/files/system/RevokedCertificates",
                Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            ))
            .await;
        assert_eq!(resp.status(), 304);
        let resp = s
            .send(get(
                "/files/system/RevokedCertificates",
                Some("Sun, 06 Nov 1994 08:49:36 GMT"),
            ))
            .await;
        assert_eq!(resp.status(), 200);
        let resp = s
            .send(get("/files/system/RevokedCertificates", Some("garbage")))
            .await;
        assert_eq!(resp.status(), 200);

        let head = Request::head("https://localhost/files/system/RevokedCertificates")
            .body(ResponseBody::empty());
        let resp = s.send(head.unwrap()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], "7");
        assert!(body_bytes(resp).await.is_empty());

        assert_eq!(s.send(get("/files/svc/a%252Fb", None)).await.status(), 200);
        assert_eq!(s.send(get("/files/svc/a%2Fb", None)).await.status(), 400);
        assert_eq!(
            s.send(get("/files/system/missing", None)).await.status(),
            404
        );
        assert_eq!(s.send(get("/files/only-two", None)).await.status(), 400);
        assert_eq!(
            s.send(post("/files/system/RevokedCertificates", vec![]))
                .await
                .status(),
            405
        );
    }
}

#[tokio::test]
async fn proxy_header_sets_the_observed_address_and_bad_headers_close_only_their_connection() {
    let server = start(|c| c.proxy_protocol = true).await;
    let cert = client_cert();

    let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n";
    let mut s = connect_with(&server, Some(&cert), Proto::H1, v1).await;
    assert_eq!(s.send(post("/message", vec![])).await.status(), 200);

    let mut v2 = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x21, 0, 36,
    ];
    v2.extend_from_slice(
        &"::ffff:10.1.2.3"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(&[0; 16]);
    v2.extend_from_slice(&[0x04, 0xd2, 0x01, 0xbb]);
    let mut s = connect_with(&server, Some(&cert), Proto::H2, &v2).await;
    assert_eq!(s.send(post("/message", vec![])).await.status(), 200);

    let mut s = connect_with(&server, Some(&cert), Proto::H1, b"").await;
    assert_eq!(s.send(post("/message", vec![])).await.status(), 200);

    // A malformed header: the server drops this connection only.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"PROXY BOGUS\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)));

    let mut s = connect_with(&server, Some(&cert), Proto::H1, v1).await;
    assert_eq!(s.send(post("/message", vec![])).await.status(), 200);

    let addrs: Vec<String> = server
        .handler
        .polls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.observed_address.clone())
        .collect();
    assert_eq!(addrs[0], "192.0.2.1:56324");
    assert_eq!(addrs[1], "10.1.2.3:1234");
    assert!(addrs[2].starts_with("127.0.0.1:"));
    assert_eq!(addrs[3], "192.0.2.1:56324");
}

#[tokio::test]
async fn invalid_server_key_fails_to_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pki = pki();
    let config = fleetgate_frontend::FrontendConfig::new(pki.server_cert_pem, "not a key");
    assert!(config.validate().is_err());
    let handler = std::sync::Arc::new(TestHandler::default());
    let res = fleetgate_frontend::serve(listener, config, handler, Default::default()).await;
    // The key is refused by name, before any connection.
    assert!(matches!(
        res,
        Err(fleetgate_frontend::FrontendError::Key(_))
    ));
}
