//! Hot reload under live traffic, over real connections to the real binary: streaming
//! loadgen clients upload to the `Tag` service while the admin CLI swaps `tag-a` / `tag-b`
//! twenty times. No stream may drop, every upload must be acked, and the tag plugin must
//! record each acked message exactly once (one `<id>` file, no `<id>.dup`), by both builds.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fleetgate_loadgen::{LoadgenConfig, Mode, Outbound};
use fleetgate_tests::tag_plugins::{TagPlugins, build, digest, tag_status};
use fleetgate_tests::{Server, ServerOptions, env};

const CLIENTS: usize = 20;
const RELOADS: u64 = 20;

/// `fleetgate admin ... <args>`, without blocking the runtime the loadgen runs on.
async fn admin_cli(server: &Server, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env::fleetgate_bin())
        .args(["admin", "--admin_addr", &server.admin_addr().to_string()])
        .args(args)
        .output()
        .await
        .unwrap()
}

/// Tag files by name: `<id>` holds the tag of the build that processed the message,
/// `<id>.dup` the tags of any later processing.
fn tag_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(e.path()).unwrap_or_default())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_live_traffic_drop_no_connection() {
    let (a, b) = (build("a"), build("b"));
    let p = TagPlugins::new(&a);
    let mut server = Server::start(ServerOptions {
        extra_args: vec!["--services_config".into(), p.config().display().to_string()],
        ..ServerOptions::default()
    })
    .await;
    let first = tag_status(&server).await;
    assert_eq!(
        (first.generation, first.digest.as_str()),
        (1, digest(&a).as_str())
    );

    let mut config = LoadgenConfig::new(server.https_addr(), server.ca_pem_path());
    config.clients = CLIENTS;
    config.mode = Mode::Streaming;
    // Long enough for twenty reloads of a debug build on a loaded 2-core machine (they took
    // over 30 s there); the loadgen cannot be stopped early, so this is the test's length.
    config.duration = Duration::from_secs(90);
    config.drain = Duration::from_secs(15);
    config.outbound = Some(Outbound {
        rate: 5.0,
        size: 100,
        service: "Tag".into(),
    });
    let loadgen = tokio::spawn(fleetgate_loadgen::run(config));

    // Let every client connect and traffic flow before the first reload.
    let warmup = Instant::now();
    while tag_files(&p.tags()).len() < CLIENTS {
        assert!(
            warmup.elapsed() < Duration::from_secs(30),
            "no traffic reached the tag plugin; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut reload_times = Vec::new();
    for i in 1..=RELOADS {
        let wasm = if i % 2 == 1 { &b } else { &a };
        p.install(wasm);
        let started = Instant::now();
        let out = admin_cli(&server, &["plugins", "reload"]).await;
        reload_times.push(started.elapsed());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Plugins reloaded."),
            "reload {i}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = tag_status(&server).await;
        assert_eq!(s.generation, 1 + i, "reload {i}");
        assert_eq!(s.digest, digest(wasm), "reload {i}");
        assert!(
            !loadgen.is_finished(),
            "the loadgen finished before reload {i}: the run must cover every reload"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = admin_cli(&server, &["--json", "plugins", "list"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(r#""generation": {}"#, 1 + RELOADS)),
        "{text}"
    );
    assert!(
        !loadgen.is_finished(),
        "the loadgen finished during the reloads"
    );

    let report = loadgen.await.unwrap().unwrap();
    println!("{report}");
    println!("reload CLI round trips: {reload_times:?}");
    assert_eq!(report.connected, CLIENTS as u64, "{report}");
    assert_eq!(report.failures, 0, "failed contacts:\n{report}");
    assert_eq!(report.stream_drops, 0, "dropped streams:\n{report}");
    assert_eq!(
        report.done_sending, 0,
        "streams ended by the server:\n{report}"
    );
    assert_eq!(
        report.contacts, CLIENTS as u64,
        "reconnects happened:\n{report}"
    );
    assert!(report.sent > 0, "{report}");
    assert_eq!(report.delivered, report.sent, "unacked uploads:\n{report}");

    // Processing follows the ack; wait for the plugin to catch up, then check nothing more
    // arrives.
    let acked = usize::try_from(report.delivered).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tag_files(&p.tags()).len() < acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let files = tag_files(&p.tags());
    let dups: Vec<_> = files.keys().filter(|f| f.ends_with(".dup")).collect();
    assert!(dups.is_empty(), "processed more than once: {dups:?}");
    assert_eq!(
        files.len(),
        acked,
        "tag files vs acked messages; log:\n{}",
        server.log_text()
    );
    let count = |tag: &str| files.values().filter(|t| t.trim() == tag).count();
    let (by_a, by_b) = (count("a"), count("b"));
    println!("{acked} messages: {by_a} tagged a, {by_b} tagged b");
    assert_eq!(by_a + by_b, acked, "unexpected tag contents");
    assert!(by_a > 0 && by_b > 0, "a: {by_a}, b: {by_b}");
    server.stop().await;
}
