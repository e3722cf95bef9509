//! A `cleartext_header_checksum_config` frontend behind haproxy terminating TLS (protocol.md
//! §4.2–4.3): the real Go client sends its certificate in a header (`client_certificate_header`),
//! haproxy adds the checksum of the certificate it saw in the TLS handshake, and Fleetgate serves
//! plain HTTP/1.1. The same process also runs the admin API (both roles).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use fleetgate_tests::fleet_client::FleetClient;
use fleetgate_tests::haproxy::Haproxy;
use fleetgate_tests::mariadb::TestDatabase;
use fleetgate_tests::node::{Flavor, Node};
use fleetgate_tests::pki::{Pki, quote};
use fleetgate_tests::ports::free_addr;
use fleetgate_tests::{Admin, eventually};

const CERT_HEADER: &str = "ssl-client-cert";
const SUM_HEADER: &str = "x-client-cert-checksum";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_through_tls_terminating_haproxy_to_a_cleartext_checksum_frontend() {
    fleetgate_tests::env::fleetgate_bin();
    fleetgate_tests::env::peers_venv();
    let db = TestDatabase::create("hdr");
    let root = tempfile::Builder::new()
        .prefix("fleetgate-header-")
        .tempdir()
        .expect("temp dir");
    let dir = root.path();
    let pki = Pki::generate();
    let combined = dir.join("server-combined.pem");
    std::fs::write(
        &combined,
        format!("{}{}", pki.server_cert_pem, pki.server_key_pem),
    )
    .expect("pem");
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).expect("ca");

    let (http, admin_addr, tls) = (free_addr(), free_addr(), free_addr());
    let components = format!(
        "mysql_data_source_name: {}\nhttps_config {{\n  listen_address: \"{http}\"\n  frontend_config {{\n    cleartext_header_checksum_config {{\n      client_certificate_header: \"{CERT_HEADER}\"\n      client_certificate_checksum_header: \"{SUM_HEADER}\"\n    }}\n  }}\n}}\nadmin_config {{ listen_address: \"{admin_addr}\" }}\n",
        quote(&db.dsn())
    );
    let mut server = Node::new(
        dir,
        "server",
        Flavor::Fleetgate,
        &components,
        vec![admin_addr],
    );
    server.start().await;

    // The checksum is computed by the proxy from the TLS session: a client cannot forge it.
    let haproxy_cfg = format!(
        "global\n  maxconn 200\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 15m\n  timeout server 15m\nfrontend tls\n  bind {tls} ssl crt {} verify optional ca-file {} ca-ignore-err all crt-ignore-err all alpn http/1.1\n  http-request del-header {SUM_HEADER}\n  http-request set-header {SUM_HEADER} %[ssl_c_der,sha2(256),base64,regsub(\"=\",\"\",g)] if {{ ssl_c_used }}\n  default_backend fleetgate\nbackend fleetgate\n  server fg {http}\n",
        combined.display(),
        dir.join("ca.pem").display()
    );
    let mut proxy = Haproxy::start_config(dir, "haproxy-tls", tls, &haproxy_cfg).await;

    let client_dir = dir.join("client");
    std::fs::create_dir_all(&client_dir).expect("client dir");
    let mut client = FleetClient::start_with(
        &client_dir,
        &pki.ca_pem,
        &format!("localhost:{}", tls.port()),
        &format!("client_certificate_header: \"{CERT_HEADER}\"\n"),
    );
    let id = client.client_id().await;
    let admin = Admin::connect(admin_addr).await.expect("admin API");
    // Enrolled under the id the client derived from its own key: the header identity is right.
    eventually(
        Duration::from_secs(60),
        "a streaming contact through the header frontend",
        || async {
            let all = admin.list_clients(&[]).await?;
            let c = all
                .iter()
                .find(|c| c.client_id == id)
                .ok_or_else(|| anyhow!("not enrolled"))?;
            if c.last_contact_streaming_to != "local" {
                bail!("streaming_to {:?}", c.last_contact_streaming_to);
            }
            Ok(())
        },
    )
    .await;
    let start = Instant::now();
    let m = admin
        .insert(&id, "TestService", "plain", b"through the header frontend")
        .await
        .expect("InsertMessage");
    client.wait_delivered(&[m], Duration::from_secs(20)).await;
    eprintln!(
        "delivered through the header frontend in {:?}",
        start.elapsed()
    );
    proxy.check_running();
    server.check_running();
    assert!(
        server.log_lines("client certificate checksum").is_empty(),
        "no checksum mismatch expected"
    );
}
