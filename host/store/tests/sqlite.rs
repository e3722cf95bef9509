//! The conformance suite on in-memory SQLite (every case on a fresh database) and on SQLite files
//! (several pooled connections, so concurrent writers meet SQLITE_BUSY and retry), plus
//! SQLite-file specifics: reopening runs the migrations again without harm.

use std::sync::Arc;

use fleetgate_store::conformance::{cases, run_case};
use fleetgate_store::{FileStore, SeaOrmStore, Store};
use fleetgate_types::FakeClock;

#[tokio::test]
async fn conformance_suite_on_sqlite_memory() {
    let mut failures = Vec::new();
    for case in cases() {
        let clock = Arc::new(FakeClock::at_seconds(0));
        let store = match SeaOrmStore::open("sqlite::memory:", clock.clone()).await {
            Ok(s) => s,
            Err(e) => panic!("open: {e}"),
        };
        if let Err(e) = run_case(&case, Arc::new(store), clock).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fleetgate-store-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_sqlite_files() {
    let dir = temp_dir("suite");
    let mut failures = Vec::new();
    for case in cases() {
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.join(format!("{}.db", case.name)).display()
        );
        let clock = Arc::new(FakeClock::at_seconds(0));
        let store = SeaOrmStore::open(&url, clock.clone())
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        let store = Arc::new(store);
        if let Err(e) = run_case(&case, store.clone(), clock).await {
            failures.push(e);
        }
        let _ = store.close().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn sqlite_file_reopens_with_data_intact() {
    let dir = temp_dir("reopen");
    let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    let clock = Arc::new(FakeClock::at_seconds(84));
    for round in 0..2 {
        let store = SeaOrmStore::open(&url, clock.clone())
            .await
            .unwrap_or_else(|e| panic!("open {round}: {e}"));
        if round == 0 {
            store
                .store_file("s", "f", b"data")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let (data, _) = store
            .read_file("s", "f")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data, b"data");
        store.ping().await.unwrap_or_else(|e| panic!("{e}"));
        store.close().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
