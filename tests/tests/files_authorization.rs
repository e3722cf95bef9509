//! `enable_file_server_authorization`: `/files/` wants the client certificate the frontend
//! mode reads (here a cleartext header frontend, and mTLS with the real Go client) and the
//! components config's `required_label` among the request's `X-Fleetspeak-Labels`, or answers
//! 401 before even parsing the path. And `/files/` answers `Range` as Go's `ServeContent`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use fleetgate_pb::fleetspeak::RevokedCertificateList;
use fleetgate_pb::fleetspeak::server::StoreFileRequest;
use fleetgate_tests::fleet_client::FleetClient;
use fleetgate_tests::pki::{Pki, quote};
use fleetgate_tests::{Admin, eventually, tail};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::process::{Child, Command};

const CERT_HEADER: &str = "ssl-client-cert";
const LABEL: &str = "probe";

/// `fleetgate server` on `components` (addresses `127.0.0.1:0`), in `dir`.
struct Running {
    child: Child,
    https: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl Running {
    async fn start(dir: &Path, components: &str) -> Running {
        std::fs::write(dir.join("c.config"), components).expect("c.config");
        std::fs::write(dir.join("s.config"), "").expect("s.config");
        let (ready, log) = (dir.join("ready"), dir.join("server.log"));
        let out = std::fs::File::create(&log).expect("server.log");
        let mut child = Command::new(fleetgate_tests::env::fleetgate_bin())
            .current_dir(dir)
            .args(["server", "--components_config", "c.config"])
            .args([
                "--services_config",
                "s.config",
                "--state_dir",
                "state",
                "-v=1",
            ])
            .arg("--ready_file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("starting fleetgate");
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let addr = |key: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{key}=")))
                        .and_then(|a| a.parse().ok())
                        .expect("address in the ready file")
                };
                return Running {
                    https: addr("https"),
                    admin: addr("admin"),
                    child,
                    log,
                };
            }
            if let Ok(Some(st)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("fleetgate exited with {st}:\n{}", tail(&text, 40));
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no ready file");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log without its colour escapes.
    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find('\x1b') {
            out += &rest[..at];
            rest = rest[at..].find('m').map_or("", |m| &rest[at + m + 1..]);
        }
        out + rest
    }

    async fn store(&self, service: &str, name: &str, data: &[u8]) {
        let admin = Admin::connect(self.admin).await.expect("admin API");
        admin
            .raw()
            .store_file(StoreFileRequest {
                service_name: service.into(),
                file_name: name.into(),
                data: data.to_vec(),
            })
            .await
            .expect("StoreFile");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A response over plain HTTP/1.1.
struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let driver = tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new()))?)
        .await
        .context("sending")?;
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A self-signed client certificate, URL-escaped as a proxy puts it in a header.
fn escaped_client_cert() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let mut out = String::new();
    for b in cert.pem().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn authorization_wants_the_certificate_and_the_required_label() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Running::start(
        dir.path(),
        &format!(
            "https_config {{ listen_address: \"127.0.0.1:0\" enable_file_server_authorization: true \
             frontend_config {{ cleartext_header_config {{ client_certificate_header: \"{CERT_HEADER}\" }} }} }}\n\
             required_label: \"{LABEL}\"\nadmin_config {{ listen_address: \"127.0.0.1:0\" }}\n"
        ),
    )
    .await;
    server.store("svc", "report.txt", b"hello files").await;
    let cert = escaped_client_cert();
    let addr = server.https;
    let get = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let headers: Vec<(&str, String)> = headers;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send(addr, "GET", path, &h).await.expect("GET")
        }
    };

    let none = get("/files/svc/report.txt", vec![]).await;
    assert_eq!((none.status, &none.body[..]), (401, &b"unauthorized\n"[..]));
    // Checked before the path: a malformed one is 401 too, not 400.
    assert_eq!(get("/files/svc", vec![]).await.status, 401);
    let no_label = get("/files/svc/report.txt", vec![(CERT_HEADER, cert.clone())]).await;
    assert_eq!(
        no_label.status, 401,
        "certificate without the required label"
    );
    let wrong_label = get(
        "/files/svc/report.txt",
        vec![
            (CERT_HEADER, cert.clone()),
            ("X-Fleetspeak-Labels", "other".into()),
        ],
    )
    .await;
    assert_eq!(wrong_label.status, 401);
    let bad_cert = get(
        "/files/svc/report.txt",
        vec![
            (CERT_HEADER, "garbage".into()),
            ("X-Fleetspeak-Labels", LABEL.into()),
        ],
    )
    .await;
    assert_eq!(bad_cert.status, 401, "a certificate that does not parse");

    let both = vec![
        (CERT_HEADER, cert.clone()),
        ("X-Fleetspeak-Labels", "other".to_owned()),
        ("X-Fleetspeak-Labels", LABEL.to_owned()),
    ];
    let ok = get("/files/svc/report.txt", both.clone()).await;
    assert_eq!((ok.status, &ok.body[..]), (200, &b"hello files"[..]));
    assert_eq!(header(&ok, "accept-ranges"), "bytes");
    let missing = get("/files/svc/absent", both.clone()).await;
    assert_eq!(missing.status, 404, "authorized, then looked up");
    assert_eq!(get("/files/svc", both).await.status, 400);
    let log = server.log_text();
    assert!(
        log.contains("required label \"probe\" not among x-fleetspeak-labels"),
        "the refusal's reason is logged:\n{}",
        tail(&log, 30)
    );
}

#[tokio::test]
async fn range_requests_are_answered_as_go_serves_content() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Running::start(
        dir.path(),
        &format!(
            "https_config {{ listen_address: \"127.0.0.1:0\" \
             frontend_config {{ cleartext_header_config {{ client_certificate_header: \"{CERT_HEADER}\" }} }} }}\n\
             admin_config {{ listen_address: \"127.0.0.1:0\" }}\n"
        ),
    )
    .await;
    server.store("svc", "report.txt", b"hello files").await;
    let path = "/files/svc/report.txt";
    let addr = server.https;

    // Authorization off: no certificate needed.
    let one = send(addr, "GET", path, &[("Range", "bytes=6-10")])
        .await
        .expect("GET");
    assert_eq!((one.status, &one.body[..]), (206, &b"files"[..]));
    assert_eq!(header(&one, "content-range"), "bytes 6-10/11");
    assert_eq!(header(&one, "content-length"), "5");
    let suffix = send(addr, "GET", path, &[("Range", "bytes=-5")])
        .await
        .expect("GET");
    assert_eq!((suffix.status, &suffix.body[..]), (206, &b"files"[..]));
    let head = send(addr, "HEAD", path, &[("Range", "bytes=0-4")])
        .await
        .expect("HEAD");
    assert_eq!((head.status, head.body.len()), (206, 0));
    assert_eq!(header(&head, "content-range"), "bytes 0-4/11");

    let past = send(addr, "GET", path, &[("Range", "bytes=11-")])
        .await
        .expect("GET");
    assert_eq!(past.status, 416);
    assert_eq!(header(&past, "content-range"), "bytes */11");
    let bad = send(addr, "GET", path, &[("Range", "bytes=4-2")])
        .await
        .expect("GET");
    assert_eq!(bad.status, 416);
    assert_eq!(header(&bad, "content-range"), "");

    let two = send(addr, "GET", path, &[("Range", "bytes=0-0,6-6")])
        .await
        .expect("GET");
    assert_eq!(two.status, 206);
    assert!(header(&two, "content-type").starts_with("multipart/byteranges; boundary="));
    let body = String::from_utf8_lossy(&two.body);
    let part = |range: &str, byte: &str| {
        format!(
            "Content-Range: bytes {range}/11\r\nContent-Type: application/octet-stream\r\n\r\n{byte}\r\n"
        )
    };
    assert!(body.contains(&part("0-0", "h")), "{body}");
    assert!(body.contains(&part("6-6", "f")), "{body}");
    assert_eq!(header(&two, "content-length"), two.body.len().to_string());

    // More bytes asked than the file has: the whole file, as Go does.
    let greedy = send(addr, "GET", path, &[("Range", "bytes=0-10,0-10")])
        .await
        .expect("GET");
    assert_eq!(
        (greedy.status, &greedy.body[..]),
        (200, &b"hello files"[..])
    );
    // If-Range with a date before the file's: the range does not apply.
    let stale = send(
        addr,
        "GET",
        path,
        &[
            ("Range", "bytes=0-0"),
            ("If-Range", "Mon, 01 Jan 2001 00:00:00 GMT"),
        ],
    )
    .await
    .expect("GET");
    assert_eq!(stale.status, 200);
    let modified = header(&one, "last-modified").to_owned();
    let fresh = send(
        addr,
        "GET",
        path,
        &[("Range", "bytes=0-0"), ("If-Range", &modified)],
    )
    .await
    .expect("GET");
    assert_eq!((fresh.status, &fresh.body[..]), (206, &b"h"[..]));
}

/// The real Go client, over mTLS with authorization on: its start-up fetch of
/// `/files/system/RevokedCertificates` carries its certificate and labels and is served; a
/// request without a certificate is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_client_fetches_files_with_authorization_on() -> Result<()> {
    fleetgate_tests::env::peers_venv();
    let dir = tempfile::tempdir()?;
    let pki = Pki::generate();
    let server = Running::start(
        dir.path(),
        &format!(
            "https_config {{ listen_address: \"127.0.0.1:0\" certificates: {} key: {} \
             enable_file_server_authorization: true }}\nrequired_label: \"{LABEL}\"\n\
             admin_config {{ listen_address: \"127.0.0.1:0\" }}\n",
            quote(&pki.server_cert_pem),
            quote(&pki.server_key_pem)
        ),
    )
    .await;
    let empty = RevokedCertificateList::default().encode_to_vec();
    server.store("system", "RevokedCertificates", &empty).await;
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem)?;
    let anonymous = fleetgate_tests::tls::get_without_client_cert(
        server.https,
        &dir.path().join("ca.pem"),
        "/files/system/RevokedCertificates",
        None,
    )
    .await?;
    assert_eq!(anonymous.status, 401, "no client certificate");

    let client_dir = dir.path().join("client");
    std::fs::create_dir_all(&client_dir)?;
    let _client = FleetClient::start_with(
        &client_dir,
        &pki.ca_pem,
        &format!("localhost:{}", server.https.port()),
        &format!("client_label: \"{LABEL}\"\n"),
    );
    eventually(
        Duration::from_secs(60),
        "the client's authorized fetch of its revocation list",
        || async {
            let log = server.log_text();
            let served = log.lines().any(|l| {
                l.contains("file request")
                    && l.contains("/files/system/RevokedCertificates")
                    && l.contains("status=200")
            });
            if !served {
                bail!("no 200 for the client's fetch yet:\n{}", tail(&log, 10));
            }
            Ok(())
        },
    )
    .await;
    Ok(())
}
