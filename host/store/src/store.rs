//! [`SeaOrmStore`]: opening the pool, running the migrations, and the [`Store`] methods that are
//! not about one kind of data.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use fleetgate_types::Clock;
use fleetgate_types::time::unix_nanos;
use sea_orm::sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{self, ConnectOptions as _, Connection as _};
use sea_orm::{DatabaseConnection, SqlxMySqlConnector, SqlxSqliteConnector};
use sea_orm_migration::MigratorTrait;

use crate::StoreError;
use crate::api::{Result, Store};
use crate::db::{self, BoxFut, Dialect, Q, Tx};
use crate::migrations::Migrator;

/// Connections kept to a MySQL server (the original keeps 100; one Fleetgate process rarely needs
/// more than a few dozen at once).
const MYSQL_POOL: u32 = 32;
/// A pooled MySQL connection idle at least this long is pinged before use (see `open_mysql`).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);
/// Connections to an SQLite file: readers run in parallel under WAL, writers queue on the lock.
const SQLITE_FILE_POOL: u32 = 4;
/// How long SQLite waits for another connection's write lock before reporting SQLITE_BUSY.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The sea-orm store over SQLite or MySQL/MariaDB.
///
/// Cloning is cheap and shares the pool. Every "now" comes from `clock`, so tests can drive time.
#[derive(Clone, Debug)]
pub struct SeaOrmStore {
    pub(crate) db: DatabaseConnection,
    pub(crate) dialect: Dialect,
    pub(crate) clock: Arc<dyn Clock>,
    /// SQLite only: one transaction at a time. A deferred SQLite transaction that reads and then
    /// writes fails with SQLITE_BUSY_SNAPSHOT (which no busy timeout cures) whenever another
    /// connection committed in between; under load that exhausted the retries. Taking turns
    /// here costs little, because SQLite allows one writer anyway, and reads outside
    /// transactions still run in parallel (WAL).
    pub(crate) sqlite_tx: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl SeaOrmStore {
    /// Opens `sqlite://PATH?mode=rwc`, `sqlite::memory:` or `mysql://user:pass@host:port/db` and
    /// brings the schema up to date (idempotent; tolerates tables a Go Fleetspeak server created).
    pub async fn open(
        url: &str,
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<SeaOrmStore, StoreError> {
        Self::open_with_session(url, &[], clock).await
    }

    /// [`SeaOrmStore::open`], running `SET name=value, …` on every new MySQL connection: the
    /// session variables of a Fleetspeak `mysql_data_source_name` (for example
    /// `tx_isolation='READ-COMMITTED'`). Each value is SQL, passed as written, as the Go MySQL
    /// driver does; each name must be a plain identifier.
    pub async fn open_with_session(
        url: &str,
        session: &[(String, String)],
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<SeaOrmStore, StoreError> {
        let (db, dialect) = if url.starts_with("sqlite:") {
            if let Some((name, _)) = session.first() {
                return Err(StoreError::Invalid(format!(
                    "session variable {name}: session variables apply to MySQL only"
                )));
            }
            (open_sqlite(url).await?, Dialect::Sqlite)
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            (
                open_mysql(url, session_sql(session)?).await?,
                Dialect::MySql,
            )
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL scheme: {}",
                redact(url)
            )));
        };
        Migrator::up(&db, None)
            .await
            .map_err(|e| db::db_err("migrate", e))?;
        tracing::debug!(dialect = ?dialect, "store opened");
        let sqlite_tx = (dialect == Dialect::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(SeaOrmStore {
            db,
            dialect,
            clock,
            sqlite_tx,
        })
    }

    /// What a pooled connection's session variable `name` is set to, e.g. `tx_isolation`
    /// (MySQL only; `None` on SQLite): what `open_with_session` asked for, as the server applied
    /// it.
    pub async fn mysql_session_variable(&self, name: &str) -> Result<Option<String>> {
        if self.dialect != Dialect::MySql {
            return Ok(None);
        }
        variable_name(name)?;
        let q = self.q("session variable");
        let Some(row) = q.one(&format!("SELECT @@SESSION.{name}"), vec![]).await? else {
            return Ok(None);
        };
        q.row(&row).opt_string(0)
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub(crate) fn now_ns(&self) -> i64 {
        unix_nanos(self.now())
    }

    /// The pool, for single statements outside a transaction.
    pub(crate) fn q(&self, op: &'static str) -> Q<'_, DatabaseConnection> {
        Q {
            conn: &self.db,
            d: self.dialect,
            op,
        }
    }

    /// Runs `body` in a retried transaction (see [`db::transact`]).
    pub(crate) async fn tx<'x, T, F>(&'x self, op: &'static str, body: F) -> Result<T>
    where
        T: Send + 'x,
        F: Fn(Tx) -> BoxFut<'x, T> + Send + Sync + 'x,
    {
        let _turn = match &self.sqlite_tx {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        db::transact(&self.db, self.dialect, op, body).await
    }
}

fn conn_err(op: &'static str, e: sqlx::Error) -> StoreError {
    db::db_err(op, sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))
}

async fn open_sqlite(url: &str) -> Result<DatabaseConnection> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| conn_err("open", e))?
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .disable_statement_logging();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let (opts, max) = if in_memory {
        // Each connection to a private in-memory database would see its own empty database.
        (opts, 1)
    } else {
        // WAL with synchronous=NORMAL: before COMMIT returns, the transaction's pages are in
        // the -wal file (write(2), so in the kernel's page cache), and a killed process
        // (SIGKILL, a crash) loses nothing committed (tests/tests/crash.rs). The fsync is left
        // to checkpoints, so a power cut or kernel crash may roll back the last commits; the
        // database stays consistent. FULL would fsync every commit (4 ms here, see
        // docs/BENCHMARKS.md) while transactions take turns.
        (
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal),
            SQLITE_FILE_POOL,
        )
    };
    // An in-memory database dies with its last connection: never recycle it.
    let pool = SqlitePoolOptions::new()
        .max_connections(max)
        .min_connections(if in_memory { 1 } else { 0 })
        .idle_timeout(if in_memory {
            None
        } else {
            Some(Duration::from_secs(600))
        })
        .max_lifetime(if in_memory {
            None
        } else {
            Some(Duration::from_secs(1800))
        })
        .connect_with(opts)
        .await
        .map_err(|e| conn_err("open", e))?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

/// Names go into SQL as they are, so only plain identifiers are accepted.
fn variable_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if plain {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "session variable {name:?}: not a variable name"
        )))
    }
}

/// One `SET` for all of `session`, or `None` if it is empty.
fn session_sql(session: &[(String, String)]) -> Result<Option<String>> {
    if session.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::with_capacity(session.len());
    for (name, value) in session {
        variable_name(name)?;
        if value.is_empty() {
            return Err(StoreError::Invalid(format!(
                "session variable {name}: no value"
            )));
        }
        parts.push(format!("{name}={value}"));
    }
    Ok(Some(format!("SET {}", parts.join(", "))))
}

async fn open_mysql(url: &str, session: Option<String>) -> Result<DatabaseConnection> {
    let url = url
        .strip_prefix("mariadb:")
        .map(|rest| format!("mysql:{rest}"))
        .unwrap_or_else(|| url.to_owned());
    let opts = MySqlConnectOptions::from_str(&url)
        .map_err(|e| conn_err("open", e))?
        .disable_statement_logging();
    if let Some(sql) = &session {
        // The pool retries a connection whose set-up fails until its acquire timeout, which
        // would hide the server's answer; one connection first reports it.
        let mut conn = opts.connect().await.map_err(|e| conn_err("open", e))?;
        let applied = sqlx::Executor::execute(&mut conn, sql.as_str()).await;
        let _ = conn.close().await;
        applied.map_err(|e| StoreError::Invalid(format!("{sql}: {e}")))?;
    }
    let pool = MySqlPoolOptions::new()
        .max_connections(MYSQL_POOL)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every pooled connection when it is returned, and by default again before
        // handing it out: a round trip added to every statement and transaction. A connection
        // returned moments ago was just proven alive, so only one idle for a while is pinged.
        // One that died in between (the server restarted) fails its first statement with a
        // retryable error; the transaction is retried on another connection, and sqlx drops
        // the dead one when its release ping fails.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| {
            let session = session.clone();
            Box::pin(async move {
                if let Some(sql) = session {
                    sqlx::Executor::execute(&mut *conn, sql.as_str()).await?;
                }
                Ok(())
            })
        })
        .connect_with(opts)
        .await
        .map_err(|e| conn_err("open", e))?;
    Ok(SqlxMySqlConnector::from_sqlx_mysql_pool(pool))
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

#[async_trait]
impl Store for SeaOrmStore {
    async fn ping(&self) -> Result<()> {
        self.q("ping").one("SELECT 1", vec![]).await.map(|_| ())
    }

    async fn close(&self) -> Result<()> {
        self.db
            .close_by_ref()
            .await
            .map_err(|e| db::db_err("close", e))
    }
}
