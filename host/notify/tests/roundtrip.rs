//! The HTTP notifier against the listener, and the listener's answers to bad requests
//! (notifications.md §3), over real sockets on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetgate_engine::Notifier;
use fleetgate_notify::{Dispatch, HttpNotifier, Listener, Stats};
use fleetgate_types::ClientId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Running {
    addr: String,
    seen: Arc<Mutex<Vec<ClientId>>>,
    stats: Arc<Stats>,
    stop: CancellationToken,
}

async fn listener() -> Running {
    listener_with_secret(None).await
}

async fn listener_with_secret(secret: Option<&str>) -> Running {
    let l = Listener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .with_secret(secret.map(str::to_owned));
    let addr = l.local_addr().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let held = ClientId::new([0xc0, 0xff, 0xee, 1, 0x23, 0x45, 0x67, 0x89]);
    let dispatch: Dispatch = {
        let seen = seen.clone();
        Arc::new(move |c| {
            seen.lock().expect("lock").push(c);
            c == held
        })
    };
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    tokio::spawn(l.serve(dispatch, stats.clone(), stop.clone()));
    Running {
        addr,
        seen,
        stats,
        stop,
    }
}

/// Sends a raw HTTP/1.1 request and returns the whole response text.
async fn raw(addr: &str, method: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn notifier_reaches_listener() {
    let l = listener().await;
    let sender_stats = Arc::new(Stats::default());
    let n = HttpNotifier::new(Duration::from_secs(2), sender_stats.clone());
    let held = ClientId::from_hex("c0ffee0123456789").expect("hex");
    let other = ClientId::from_hex("0000000000000001").expect("hex");
    n.new_message_for_client(&l.addr, held).await;
    n.new_message_for_client(&l.addr, other).await;
    assert_eq!(*l.seen.lock().expect("lock"), vec![held, other]);
    assert_eq!((sender_stats.sent(), sender_stats.failed()), (2, 0));
    assert_eq!((l.stats.received(), l.stats.dispatched()), (2, 1));
    l.stop.cancel();
}

/// With a secret, only notifications carrying it wake anything; the notifier given the same
/// secret gets through, one without it (a Go server) is refused with 401.
#[tokio::test]
async fn a_secret_is_required_when_set() {
    let l = listener_with_secret(Some("between-us")).await;
    let held = ClientId::from_hex("c0ffee0123456789").expect("hex");
    let stats = Arc::new(Stats::default());
    let without = HttpNotifier::new(Duration::from_secs(2), stats.clone());
    without.new_message_for_client(&l.addr, held).await;
    let wrong = HttpNotifier::new(Duration::from_secs(2), stats.clone()).with_secret(Some("nope"));
    wrong.new_message_for_client(&l.addr, held).await;
    assert!(l.seen.lock().expect("lock").is_empty());
    assert_eq!((l.stats.received(), l.stats.unauthorized()), (0, 2));
    let reply = raw(&l.addr, "POST", "/client/c0ffee0123456789").await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    let with = HttpNotifier::new(Duration::from_secs(2), stats).with_secret(Some("between-us"));
    with.new_message_for_client(&l.addr, held).await;
    assert_eq!(*l.seen.lock().expect("lock"), vec![held]);
    l.stop.cancel();
}

/// A target that is not a listener and streams an endless body: the notifier stops reading at
/// its small limit and counts a failure, instead of buffering whatever arrives for 5 s.
#[tokio::test]
async fn an_endless_answer_is_not_read_into_memory() {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let (mut s, _) = socket.accept().await.expect("accept");
        let mut request = [0u8; 1024];
        let _ = s.read(&mut request).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let chunk = format!("{:x}\r\n{}\r\n", 1 << 16, "x".repeat(1 << 16));
        while s.write_all(chunk.as_bytes()).await.is_ok() {}
    });
    let stats = Arc::new(Stats::default());
    let n = HttpNotifier::new(Duration::from_secs(5), stats.clone());
    let sent = n.send(&addr, ClientId::new([1; 8])).await;
    let err = sent.expect_err("an oversized answer is an error");
    assert!(err.contains("reading the response"), "{err}");
}

#[tokio::test]
async fn unreachable_target_is_counted_not_fatal() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let stats = Arc::new(Stats::default());
    let n = HttpNotifier::new(Duration::from_secs(2), stats.clone());
    n.new_message_for_client(&format!("127.0.0.1:{port}"), ClientId::new([1; 8]))
        .await;
    n.new_message_for_client("local", ClientId::new([1; 8]))
        .await;
    assert_eq!((stats.sent(), stats.failed()), (0, 2));
}

#[tokio::test]
async fn listener_answers_like_go() {
    let l = listener().await;
    let cases = [
        ("POST", "/client/C0FFEE0123456789", "200 OK", ""),
        (
            "POST",
            "/other/c0ffee0123456789",
            "404 Not Found",
            "not found\n",
        ),
        (
            "POST",
            "/client/x/c0ffee0123456789",
            "404 Not Found",
            "not found\n",
        ),
        (
            "POST",
            "/client/",
            "400 Bad Request",
            "Client id is required.\n",
        ),
        (
            "POST",
            "/client/nil",
            "400 Bad Request",
            "Client id is required.\n",
        ),
        (
            "POST",
            "/client/abc",
            "400 Bad Request",
            "Failed to parse client id [abc]: ClientID must be 16 characters\n",
        ),
        (
            "POST",
            "/client/g0ffee0123456789",
            "400 Bad Request",
            "Failed to parse client id [g0ffee0123456789]: encoding/hex: invalid byte: U+0067 'g'\n",
        ),
        (
            "GET",
            "/client/c0ffee0123456789",
            "400 Bad Request",
            "Unexpected method: GET\n",
        ),
    ];
    for (method, path, status, body) in cases {
        let reply = raw(&l.addr, method, path).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{method} {path}: {reply}"
        );
        assert!(
            reply.ends_with(&format!("\r\n\r\n{body}")),
            "{method} {path}: {reply}"
        );
        if !body.is_empty() {
            assert!(reply.contains("text/plain; charset=utf-8"), "{reply}");
        }
    }
    // Only the valid POST was dispatched.
    assert_eq!(l.stats.received(), 1);
    l.stop.cancel();
}

#[tokio::test]
async fn wildcard_listen_address_reports_dual_stack_form() {
    let l = Listener::bind(":0").await.expect("bind :0");
    let shown = l.local_addr().to_string();
    assert!(
        shown.starts_with("[::]:") || shown.starts_with("0.0.0.0:"),
        "{shown}"
    );
}

/// A peer that never finishes its request head loses the connection after the header timeout
/// (hyper alone would hold it forever), and a whole request on another connection is answered.
#[tokio::test]
async fn an_unfinished_request_head_is_cut_after_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let dispatch: Dispatch = Arc::new(|_| false);
    let stats = Arc::new(Stats::default());
    let (mut slow, ours) = tokio::io::duplex(4096);
    let served = tokio::spawn(fleetgate_notify::listener::serve_connection(
        ours,
        dispatch.clone(),
        stats.clone(),
        None,
        CancellationToken::new(),
        timeout,
    ));
    slow.write_all(b"POST /client/0123456789abcdef HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(timeout * 20, slow.read_to_end(&mut answer))
        .await
        .expect("the connection is closed after the header timeout")
        .expect("read");
    assert!(
        tokio::time::timeout(timeout * 20, served).await.is_ok(),
        "the connection task ended"
    );
    assert_eq!(stats.received(), 0);

    let (mut fast, ours) = tokio::io::duplex(4096);
    tokio::spawn(fleetgate_notify::listener::serve_connection(
        ours,
        dispatch,
        stats.clone(),
        None,
        CancellationToken::new(),
        timeout,
    ));
    fast.write_all(
        b"POST /client/0123456789abcdef HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    fast.read_to_end(&mut answer).await.expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    assert_eq!(stats.received(), 1);
}
