//! The operator endpoints: `/metrics` counts a real client's contacts and messages, and the
//! health listener answers `/healthz`, `/readyz` and (like the original) any other path.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An address the server wrote to its ready file (`stats=`, `health=`).
fn ready_addr(server: &Server, key: &str) -> SocketAddr {
    let path = server.root().join("ready");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key}= line in the ready file:\n{text}"))
}

/// A plain HTTP/1.1 GET; returns the status code and body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP header in {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The value of the sample whose line starts with `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let server = Server::start(ServerOptions {
        extra_args: [
            "--stats_listen",
            "127.0.0.1:0",
            "--health_listen",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    let stats = ready_addr(&server, "stats");
    let health = ready_addr(&server, "health");

    assert_eq!(get(health, "/healthz").await.expect("GET /healthz").0, 200);
    let (status, body) = get(health, "/readyz").await.expect("GET /readyz");
    assert_eq!(status, 200, "/readyz: {body}");
    // Existing probes of the original's health check hit other paths and expect 200.
    assert_eq!(get(health, "/").await.expect("GET /"), (200, String::new()));
    assert_eq!(get(stats, "/other").await.expect("GET /other").0, 404);

    let client = GoClient::start(&server, ClientOptions::default()).await;
    let id = client.client_id().await;
    let admin = server.admin().await;
    checks::enrolled(&admin, &id, Duration::from_secs(30)).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let payload = format!("metrics {i}").into_bytes();
        ids.push(
            admin
                .insert(&id, "TestService", "plain", &payload)
                .await
                .expect("InsertMessage"),
        );
    }
    checks::delivered(&client, &ids, Duration::from_secs(30)).await;
    checks::acked(&admin, &ids, Duration::from_secs(30)).await;

    let text = eventually(Duration::from_secs(30), "counters to move", || async {
        let (status, text) = get(stats, "/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let want = [
            ("fleetgate_client_contacts_total{kind=\"stream\"}", 1.0),
            ("fleetgate_client_streams_active", 1.0),
            (
                "fleetgate_messages_to_clients_total{service=\"TestService\",type=\"plain\"}",
                3.0,
            ),
            (
                "fleetgate_messages_from_clients_total{service=\"system\",type=\"MessageAck\"}",
                1.0,
            ),
            (
                "fleetgate_messages_processed_total{service=\"system\",outcome=\"processed\"}",
                1.0,
            ),
            (
                "fleetgate_store_operation_seconds_count{operation=\"record_client_contact\",errored=\"false\"}",
                1.0,
            ),
        ];
        for (series, min) in want {
            match sample(&text, series) {
                Some(v) if v >= min => {}
                other => bail!("{series} = {other:?}, want ≥ {min}"),
            }
        }
        Ok(text)
    })
    .await;
    assert!(
        text.contains("# TYPE fleetgate_store_operation_seconds histogram"),
        "{text}"
    );
    assert!(sample(&text, "fleetgate_pending_messages{destination=\"client\"}").is_some());
}
