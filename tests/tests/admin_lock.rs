//! The locked admin listener beside the plaintext one, against the real binary: `fleetgate admin`
//! and a plain grpcio client with and without certificates on the TLS port, GRR's connector on the
//! plaintext port, the audit lines, the refusal metric, and the notification secret.

use std::time::Duration;

use fleetgate_tests::Admin;
use fleetgate_tests::grr::GrrConnector;
use fleetgate_tests::locked::{Ca, LockedServer};
use fleetgate_tests::ports::free_addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVICES: &str = "services { name: \"Allowed\" factory: \"NOOP\" }\n\
                        services { name: \"Forbidden\" factory: \"NOOP\" }\n";

fn policy(sender_spki: &str) -> String {
    format!(
        r#"
[[identity]]
name = "ops"
subject = "CN=ops"
rpcs = ["*"]
services = ["*"]

[[identity]]
name = "reader"
subject = "CN=reader"
rpcs = ["ListClients", "KeepAlive", "GetMessageStatus"]

[[identity]]
name = "sender"
spki_sha256 = "{sender_spki}"
rpcs = ["InsertMessage", "KeepAlive"]
services = ["Allowed"]
"#
    )
}

/// One HTTP/1.1 request on a fresh connection; the status code and the whole answer.
async fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

async fn notify(addr: std::net::SocketAddr, secret: Option<&str>) -> u16 {
    let header = secret
        .map(|s| format!("X-Fleetgate-Notification-Secret: {s}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /client/0102030405060708 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{header}Connection: close\r\n\r\n"
    );
    http(addr, &req).await.0
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn locked_port_admits_by_certificate_and_policy() {
    let root = LockedServer::dir();
    let ca = Ca::new(root.path(), "admin");
    let rogue = Ca::new(root.path(), "rogue");
    let (ops, reader, sender) = (ca.client("ops"), ca.client("reader"), ca.client("sender"));
    let stranger = ca.client("stranger");
    let impostor = rogue.client("ops");
    std::fs::write(root.path().join("secret"), "s3cret-between-servers\n").expect("secret");
    let secret_flag = vec![
        "-notification_secret_file".to_owned(),
        root.path().join("secret").display().to_string(),
    ];
    let server = LockedServer::start(
        root,
        &ca,
        SERVICES,
        &policy(&sender.spki_sha256),
        &secret_flag,
    )
    .await;

    // `fleetgate admin` with an allowed certificate, one not allowed that RPC, an unknown one, one
    // from another CA, and none.
    let out = server.admin_cli(Some(&ops), &["listclients"]);
    assert!(out.status.success(), "ops listclients: {}", stderr(&out));
    let out = server.admin_cli(Some(&reader), &["blacklistclients", "0102030405060708"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not have permission")
            && stderr(&out).contains("may not call BlacklistClient"),
        "{}",
        stderr(&out)
    );
    let out = server.admin_cli(Some(&stranger), &["listclients"]);
    assert!(
        !out.status.success() && stderr(&out).contains("is not in the admin policy"),
        "{}",
        stderr(&out)
    );
    for (what, cert) in [("another CA", Some(&impostor)), ("no certificate", None)] {
        let out = server.admin_cli(cert, &["listclients"]);
        assert!(!out.status.success(), "{what}: listclients succeeded");
    }

    // A plain grpcio client, as any gRPC tool would be.
    let arg = |c: Option<&fleetgate_tests::locked::ClientCert>, rpc: &str| match c {
        Some(c) => format!("{},{},{rpc}", c.cert.display(), c.key.display()),
        None => format!("-,-,{rpc}"),
    };
    let calls = [
        arg(Some(&ops), "ListClients"),
        arg(Some(&reader), "ListClients"),
        arg(Some(&reader), "InsertMessage,Allowed"),
        arg(Some(&stranger), "ListClients"),
        arg(None, "ListClients"),
        arg(Some(&impostor), "ListClients"),
        arg(Some(&sender), "InsertMessage,Allowed"),
        arg(Some(&sender), "InsertMessage,Forbidden"),
    ];
    let results: Vec<serde_json::Value> = server
        .python_calls(&calls)
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        codes,
        [
            "OK",
            "OK",
            "PERMISSION_DENIED",
            "UNAUTHENTICATED",
            "UNAUTHENTICATED",
            "UNAVAILABLE",
            "OK",
            "PERMISSION_DENIED",
        ],
        "{results:#?}"
    );
    assert!(
        results[7]["details"]
            .as_str()
            .is_some_and(|d| d.contains("may not send messages to service \"Forbidden\"")),
        "{results:#?}"
    );

    // The allowed insert is stored; the refused one is not.
    let plaintext = Admin::connect(server.admin).await.expect("plaintext admin");
    let id = |r: &serde_json::Value| hex::decode(r["id"].as_str().unwrap_or_default()).expect("id");
    let stored = plaintext
        .message_status(&id(&results[6]))
        .await
        .expect("status");
    assert!(stored.creation_time.is_some(), "allowed insert not stored");
    for refused in [&results[2], &results[7]] {
        let s = plaintext
            .message_status(&id(refused))
            .await
            .expect("status");
        assert!(s.creation_time.is_none(), "refused insert stored: {s:?}");
    }

    // Audit lines: who, what, outcome (the log line carries the time).
    let log = server.log_text();
    let audit = |needles: &[&str]| {
        log.lines()
            .any(|l| l.contains("fleetgate::audit") && needles.iter().all(|n| l.contains(n)))
    };
    assert!(
        audit(&[
            "admin call",
            "caller=sender",
            "rpc=\"InsertMessage\"",
            "what=client= service=\"Allowed\" type=\"Test\"",
            "outcome=Ok"
        ]),
        "{log}"
    );
    assert!(
        audit(&[
            "admin call refused",
            "caller=reader",
            "BlacklistClient",
            "PermissionDenied"
        ]),
        "{log}"
    );
    assert!(
        audit(&["caller=sender", "InsertMessage", "outcome=PermissionDenied"]),
        "{log}"
    );
    assert!(
        audit(&["admin call refused", "caller=no certificate"]),
        "{log}"
    );

    // The refusal metric, by RPC and code.
    let (code, metrics) = http(
        server.stats,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            "fleetgate_admin_calls_refused_total{rpc=\"InsertMessage\",code=\"permission_denied\"} 2"
        ) && metrics.contains("rpc=\"ListClients\",code=\"unauthenticated\""),
        "{metrics}"
    );

    // With a secret configured, a notification must carry it.
    assert_eq!(notify(server.notify, None).await, 401);
    assert_eq!(notify(server.notify, Some("wrong")).await, 401);
    assert_eq!(
        notify(server.notify, Some("s3cret-between-servers")).await,
        200
    );
}

#[tokio::test]
async fn grr_connector_keeps_the_plaintext_port() {
    let root = LockedServer::dir();
    let ca = Ca::new(root.path(), "admin");
    let sender = ca.client("sender");
    let server = LockedServer::start(root, &ca, SERVICES, &policy(&sender.spki_sha256), &[]).await;
    let grr =
        GrrConnector::start(&server.root().join("grr"), "GRR", free_addr(), server.admin).await;
    assert_eq!(grr.list_clients(&[]).await.expect("ListClients"), vec![]);
    // GRR may send anywhere on the plaintext port: the lock is the TLS port's.
    let (id, source) = grr
        .send(&[], "Forbidden", "Test", b"payload")
        .await
        .expect("Send");
    assert_eq!(source, "GRR");
    let admin = Admin::connect(server.admin).await.expect("plaintext admin");
    let status = admin.message_status(&id).await.expect("status");
    assert!(status.creation_time.is_some(), "GRR's message not stored");
    let log = server.log_text();
    assert!(
        log.lines().any(|l| l.contains("fleetgate::audit")
            && l.contains("caller=plaintext")
            && l.contains("InsertMessage")),
        "{log}"
    );
    // No secret configured: notifications are accepted as from a Go server.
    assert_eq!(notify(server.notify, None).await, 200);
}
