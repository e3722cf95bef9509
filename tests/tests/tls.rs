//! A TLS peer without a client certificate is refused with a clear status.

use fleetgate_tests::tls::post_without_client_cert;
use fleetgate_tests::{Server, ServerOptions};

#[tokio::test]
async fn request_without_client_certificate_is_refused() {
    let server = Server::start(ServerOptions::default()).await;
    let resp = post_without_client_cert(
        server.https_addr(),
        &server.ca_pem_path(),
        "/message",
        b"\x0a\x00".to_vec(),
    )
    .await
    .unwrap_or_else(|e| {
        panic!("the request without a client certificate did not get an HTTP answer: {e:#}")
    });
    assert_eq!(
        resp.status, 400,
        "status for /message without a client certificate; body: {:?}",
        resp.body
    );
    assert!(
        resp.body.to_lowercase().contains("certificate"),
        "the 400 body should name the missing client certificate, got {:?}",
        resp.body
    );
    // Nobody enrolled.
    let clients = server
        .admin()
        .await
        .list_clients(&[])
        .await
        .expect("ListClients");
    assert!(
        clients.is_empty(),
        "a client was enrolled without a certificate: {clients:?}"
    );
}
