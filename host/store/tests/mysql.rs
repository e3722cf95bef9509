//! The conformance suite against MySQL/MariaDB, when `FLEETGATE_TEST_MYSQL` holds a server URL
//! such as `mysql://root@127.0.0.1:3306`. Every case gets a fresh, uniquely named database that is
//! dropped afterwards. Without the variable the test reports that it was skipped.

use std::sync::Arc;

use fleetgate_store::conformance::{cases, run_case};
use fleetgate_store::{FileStore, SeaOrmStore, Store};
use fleetgate_types::FakeClock;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

fn server_url() -> Option<String> {
    match std::env::var("FLEETGATE_TEST_MYSQL") {
        Ok(u) if !u.is_empty() => Some(u.trim_end_matches('/').to_owned()),
        _ => {
            eprintln!("FLEETGATE_TEST_MYSQL is not set: MySQL conformance test skipped");
            None
        }
    }
}

/// A database that exists for one test case.
struct TempDb {
    admin: DatabaseConnection,
    name: String,
    url: String,
}

impl TempDb {
    async fn create(server: &str, tag: &str) -> TempDb {
        let admin = Database::connect(server)
            .await
            .unwrap_or_else(|e| panic!("connect {server}: {e}"));
        let name = format!(
            "fleetgate_test_{}_{}_{:08x}",
            std::process::id(),
            tag,
            rand::random::<u32>()
        );
        let sql = format!("CREATE DATABASE `{name}`");
        admin
            .execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let url = format!("{server}/{name}");
        TempDb { admin, name, url }
    }

    async fn drop(self) {
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        if let Err(e) = self.admin.execute_unprepared(&sql).await {
            eprintln!("{sql}: {e}");
        }
        let _ = self.admin.close().await;
    }
}

#[tokio::test]
async fn conformance_suite_on_mysql() {
    let Some(server) = server_url() else { return };
    let mut failures = Vec::new();
    for case in cases() {
        let db = TempDb::create(&server, case.name).await;
        let clock = Arc::new(FakeClock::at_seconds(0));
        let result = match SeaOrmStore::open(&db.url, clock.clone()).await {
            Ok(store) => {
                let store = Arc::new(store);
                let r = run_case(&case, store.clone(), clock).await;
                let _ = store.close().await;
                r
            }
            Err(e) => Err(format!("{}: open: {e}", case.name)),
        };
        db.drop().await;
        if let Err(e) = result {
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

/// Opening twice (as a second server would) is harmless, and the tables are Fleetspeak's.
#[tokio::test]
async fn mysql_schema_is_fleetspeaks_and_idempotent() {
    let Some(server) = server_url() else { return };
    let db = TempDb::create(&server, "schema").await;
    let clock = Arc::new(FakeClock::at_seconds(84));
    let a = SeaOrmStore::open(&db.url, clock.clone())
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    a.store_file("s", "f", b"x")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = SeaOrmStore::open(&db.url, clock)
        .await
        .unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_eq!(
        b.read_file("s", "f")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .0,
        b"x"
    );
    let sql = format!(
        "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}' \
         AND TABLE_NAME = 'pending_messages' AND COLUMN_NAME = 'message_id'",
        db.name
    );
    let row = db
        .admin
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DbBackend::MySql,
            sql,
        ))
        .await;
    let row = row
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no pending_messages.message_id"));
    let ty: String = row.try_get_by_index(0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ty.to_lowercase(), "binary(32)");
    for s in [a, b] {
        let _ = s.close().await;
    }
    db.drop().await;
}

/// A DSN's session variables (`tx_isolation='READ-COMMITTED'` in Fleetspeak's example) are set
/// on every connection; an unknown one fails the open and is named.
#[tokio::test]
async fn mysql_session_variables_are_applied() {
    let Some(server) = server_url() else { return };
    let db = TempDb::create(&server, "session").await;
    let clock = Arc::new(FakeClock::at_seconds(0));
    let session = vec![("tx_isolation".to_owned(), "'READ-COMMITTED'".to_owned())];
    let store = SeaOrmStore::open_with_session(&db.url, &session, clock.clone())
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    let isolation = store
        .mysql_session_variable("tx_isolation")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(isolation.as_deref(), Some("READ-COMMITTED"));
    let _ = store.close().await;

    let unknown = vec![("no_such_variable".to_owned(), "1".to_owned())];
    let err = SeaOrmStore::open_with_session(&db.url, &unknown, clock.clone())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no_such_variable"), "{err}");

    let hostile = vec![("x=1; DROP DATABASE y; SET a".to_owned(), "1".to_owned())];
    let err = SeaOrmStore::open_with_session(&db.url, &hostile, clock)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("not a variable name"), "{err}");
    db.drop().await;
}
