//! `/readyz` logic: ready only with a reachable database, bound listeners and loaded plugins,
//! and not while stopping. The store is the real SQLite store; closing it makes it unreachable.
#![cfg(feature = "serve")]

use std::sync::Arc;

use fleetgate_store::{SeaOrmStore, Store};
use fleetgate_telemetry::Readiness;
use fleetgate_types::SystemClock;

#[tokio::test]
async fn ready_only_with_database_listeners_and_plugins() {
    let r = Readiness::new();
    let err = r.check().await.unwrap_err();
    for part in [
        "database: not open",
        "listeners: not bound",
        "plugins: not loaded",
    ] {
        assert!(err.contains(part), "{err}");
    }

    let store: Arc<dyn Store> = Arc::new(
        SeaOrmStore::open("sqlite::memory:", Arc::new(SystemClock))
            .await
            .unwrap(),
    );
    r.set_store(store.clone());
    r.set_listeners_bound();
    r.set_plugins_loaded();
    assert_eq!(r.check().await, Ok(()));

    // The database goes away: not ready, and the answer says why.
    store.close().await.unwrap();
    let err = r.check().await.unwrap_err();
    assert!(err.starts_with("database: "), "{err}");

    r.set_stopping();
    assert!(r.check().await.unwrap_err().contains("stopping"));
}
