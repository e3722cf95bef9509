//! Misbehaving plugins are contained: each failure is a temporary error counted as a trap,
//! and the host keeps serving other calls (on the same and other services) afterwards.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use fleetgate_engine::{Service, ServiceError};
use fleetgate_runtime::{CallError, Capability, ComponentService, Grants, Preopen};
use support::{client_message, host, runtime, service, spec};

async fn echo(rt: &fleetgate_runtime::Runtime) -> ComponentService {
    let (host, _) = host();
    ComponentService::load(
        rt,
        spec("Echo", "echo", Grants::basic().with(Capability::Messaging)),
        host,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_infinite_loop_hits_the_cpu_budget() {
    let rt = runtime();
    let spin = service(&rt, spec("Spin", "test_spin", Grants::basic())).await;
    let m = client_message("Spin", "x", 1);
    let t = Instant::now();
    let err = spin.call(&m).await.unwrap_err();
    assert!(
        matches!(err, CallError::Timeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let err = spin.process(&m).await.unwrap_err();
    assert!(
        matches!(&err, ServiceError::Temporary(e) if e.contains("CPU budget")),
        "{err:?}"
    );
    assert_eq!(spin.stats().traps, 1);

    echo(&rt)
        .await
        .process(&client_message("Echo", "Ping", 2))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_spinning_plugin_does_not_starve_other_tasks() {
    let rt = runtime();
    let mut spinner = spec("Spin", "test_spin", Grants::basic());
    spinner.limits.cpu_budget = Duration::from_secs(2);
    let spin = service(&rt, spinner).await;
    let echo = echo(&rt).await;
    // Both on this current-thread runtime: the spinner yields at every epoch tick, so echo
    // finishes while the spinner is still spinning.
    let spin_message = client_message("Spin", "x", 3);
    let spinning = async {
        let r = spin.call(&spin_message).await;
        (r, Instant::now())
    };
    let echoing = async {
        echo.process(&client_message("Echo", "Ping", 4))
            .await
            .unwrap();
        Instant::now()
    };
    let ((spun, spin_done), echo_done) = tokio::join!(spinning, echoing);
    assert!(matches!(spun, Err(CallError::Timeout(_))), "{spun:?}");
    assert!(echo_done < spin_done, "echo waited for the spinner");
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_cap() {
    let rt = runtime();
    let mut bomb = spec("Bomb", "test_memory_bomb", Grants::basic());
    // Growing 32 MiB takes CPU time; on a loaded machine the tests' 300 ms budget could run out
    // first. This test is about the memory cap, so give the CPU room.
    bomb.limits.cpu_budget = Duration::from_secs(10);
    let bomb = service(&rt, bomb).await;
    let m = client_message("Bomb", "x", 5);
    let err = bomb.call(&m).await.unwrap_err();
    assert!(
        matches!(err, CallError::OutOfMemory(n) if n == 32 << 20),
        "{err:?}"
    );
    let err = bomb.process(&m).await.unwrap_err();
    assert!(
        matches!(&err, ServiceError::Temporary(e) if e.contains("memory limit")),
        "{err:?}"
    );
    assert_eq!(bomb.stats().traps, 1);
    echo(&rt)
        .await
        .process(&client_message("Echo", "Ping", 6))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_trap_fails_that_call_only() {
    let rt = runtime();
    let trap = service(&rt, spec("Trap", "test_trap", Grants::basic())).await;
    let err = trap
        .call(&client_message("Trap", "trap", 7))
        .await
        .unwrap_err();
    match &err {
        CallError::Trap(text) => assert!(text.contains("asked to trap"), "stderr quoted: {text}"),
        other => panic!("unexpected {other:?}"),
    }
    let err = trap
        .process(&client_message("Trap", "trap", 7))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Temporary(_)), "{err:?}");
    // The same service, next message: a fresh instance, nothing poisoned.
    trap.process(&client_message("Trap", "fine", 8))
        .await
        .unwrap();
    let stats = trap.stats();
    assert_eq!((stats.calls, stats.errors, stats.traps), (2, 1, 1));
}

#[tokio::test]
async fn temporary_then_success() {
    let rt = runtime();
    let state = tempfile::tempdir().unwrap();
    let grants = Grants::basic().with_preopen(Preopen {
        host_path: state.path().to_owned(),
        guest_path: "/state".into(),
        read_only: false,
    });
    let flaky = service(&rt, spec("Flaky", "test_flaky", grants)).await;
    let m = client_message("Flaky", "x", 9);
    let err = flaky.process(&m).await.unwrap_err();
    assert_eq!(
        err,
        ServiceError::Temporary("first attempt always fails".into())
    );
    flaky.process(&m).await.unwrap();
    let stats = flaky.stats();
    assert_eq!((stats.calls, stats.errors, stats.traps), (2, 1, 0));
}
