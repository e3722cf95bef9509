//! Plugin hot reload through the real binary: each trigger (SIGHUP, `--watch_plugins`, the
//! admin RPC through `fleetgate admin plugins reload`) swaps the `tag-a` / `tag-b` test
//! components, and a broken component is refused while the old one keeps running. The
//! exactly-once guarantees under traffic are tested at the engine level
//! (host/runtime/tests/reload.rs).
#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::{Duration, Instant};

use fleetgate_tests::tag_plugins::{TagPlugins, build, digest, tag_status};
use fleetgate_tests::{Server, ServerOptions, env};

async fn start(p: &TagPlugins, watch: bool) -> Server {
    let mut extra_args = vec!["--services_config".into(), p.config().display().to_string()];
    if watch {
        extra_args.push("--watch_plugins".into());
    }
    Server::start(ServerOptions {
        extra_args,
        ..ServerOptions::default()
    })
    .await
}

/// Waits until the `Tag` service runs `wasm` as generation `generation`.
async fn wait_for(server: &Server, wasm: &[u8], generation: u64, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let s = tag_status(server).await;
        if s.generation == generation && s.digest == digest(wasm) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still generation {} after {within:?}, want {generation}; log:\n{}",
            s.generation,
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn admin_cli(server: &Server, args: &[&str]) -> Output {
    std::process::Command::new(env::fleetgate_bin())
        .args(["admin", "--admin_addr", &server.admin_addr().to_string()])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn sighup_and_admin_reload_swap_plugins_and_refuse_broken_ones() {
    let p = TagPlugins::new(&build("a"));
    let mut server = start(&p, false).await;
    let (a, b) = (build("a"), build("b"));
    wait_for(&server, &a, 1, Duration::ZERO).await;

    p.install(&b);
    let pid = server.pid().unwrap().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(hup.unwrap().success());
    wait_for(&server, &b, 2, Duration::from_secs(10)).await;

    p.install(&a);
    let out = admin_cli(&server, &["plugins", "reload"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Plugins reloaded.") && text.contains("Tag"),
        "{text}"
    );
    wait_for(&server, &a, 3, Duration::ZERO).await;

    p.install(b"not a component");
    let out = admin_cli(&server, &["plugins", "reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Reload refused") && err.contains("services[2] \"Tag\": compiling component"),
        "{err}"
    );
    wait_for(&server, &a, 3, Duration::ZERO).await;

    let out = admin_cli(&server, &["--json", "plugins", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains(r#""generation": 3"#), "{text}");
    assert!(text.contains(&digest(&a)), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn watch_plugins_reloads_on_a_component_change() {
    let p = TagPlugins::new(&build("a"));
    let mut server = start(&p, true).await;
    let (a, b) = (build("a"), build("b"));
    wait_for(&server, &a, 1, Duration::ZERO).await;
    p.install(&b);
    let took = wait_for(&server, &b, 2, Duration::from_secs(10)).await;
    println!("file change -> generation 2 listed: {took:?}");
    // A broken file is refused; the watch keeps going and picks up the fix.
    p.install(b"\0asm broken");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    wait_for(&server, &b, 2, Duration::ZERO).await;
    assert!(server.log_text().contains("reload refused"));
    p.install(&a);
    wait_for(&server, &a, 3, Duration::from_secs(10)).await;
    server.stop().await;
}
