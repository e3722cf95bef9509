//! Files stored through the admin API are served at `/files/<service>/<name>` with the
//! `Last-Modified` / `If-Modified-Since` behaviour the real client relies on, and the real
//! client's start-up fetch of its revoked-certificate list succeeds.

use std::time::Duration;

use fleetgate_pb::fleetspeak::RevokedCertificateList;
use fleetgate_pb::fleetspeak::server::{DeleteFileRequest, StoreFileRequest};
use fleetgate_tests::tls::get_without_client_cert;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks};
use prost::Message as _;

#[tokio::test]
async fn stored_files_are_served_with_conditional_get() {
    let server = Server::start(ServerOptions::default()).await;
    let mut admin = server.admin().await.raw();
    let (addr, ca) = (server.https_addr(), server.ca_pem_path());

    let missing = get_without_client_cert(addr, &ca, "/files/svc/report.txt", None)
        .await
        .expect("GET");
    assert_eq!(missing.status, 404);

    let store = StoreFileRequest {
        service_name: "svc".into(),
        file_name: "report.txt".into(),
        data: b"hello files".to_vec(),
    };
    admin.store_file(store).await.expect("StoreFile");
    let got = get_without_client_cert(addr, &ca, "/files/svc/report.txt", None)
        .await
        .expect("GET");
    assert_eq!((got.status, got.body.as_str()), (200, "hello files"));
    let modified = got
        .headers
        .get(http::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .expect("Last-Modified")
        .to_owned();

    let again = get_without_client_cert(addr, &ca, "/files/svc/report.txt", Some(&modified))
        .await
        .expect("GET");
    assert_eq!(
        again.status, 304,
        "not modified since its own Last-Modified"
    );
    assert!(again.body.is_empty());
    let old = get_without_client_cert(
        addr,
        &ca,
        "/files/svc/report.txt",
        Some("Mon, 01 Jan 2001 00:00:00 GMT"),
    )
    .await
    .expect("GET");
    assert_eq!((old.status, old.body.as_str()), (200, "hello files"));

    admin
        .delete_file(DeleteFileRequest {
            service_name: "svc".into(),
            file_name: "report.txt".into(),
        })
        .await
        .expect("DeleteFile");
    let gone = get_without_client_cert(addr, &ca, "/files/svc/report.txt", None)
        .await
        .expect("GET");
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn the_client_reads_its_revoked_certificate_list() {
    let server = Server::start(ServerOptions::default()).await;
    let list = RevokedCertificateList {
        serials: vec![vec![0x7f, 0x01]],
    };
    let store = StoreFileRequest {
        service_name: "system".into(),
        file_name: "RevokedCertificates".into(),
        data: list.encode_to_vec(),
    };
    server
        .admin()
        .await
        .raw()
        .store_file(store)
        .await
        .expect("StoreFile");

    let client = GoClient::start(&server, ClientOptions::default()).await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &client.client_id().await, Duration::from_secs(30)).await;
    // Without the file the client logs "Unable to get revoked certificate list" at start-up.
    let log = client.log_text();
    assert!(
        !log.contains("Unable to get revoked certificate list"),
        "client log:\n{log}"
    );
}
