//! Plumbing shared by every store module: the SQL dialect, statement helpers that turn database
//! errors into [`StoreError`]s naming the operation, typed row access, and the transaction retry
//! loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement, TransactionTrait, TryGetable, Value,
};

use crate::StoreError;
use crate::api::Result;

/// Attempts per transaction before a retryable error is handed to the caller.
const MAX_ATTEMPTS: u32 = 10;

/// IN lists are split into chunks of this many values (both backends allow far more; this keeps
/// single statements small).
pub(crate) const CHUNK: usize = 500;

/// The two SQL dialects we speak; most statements are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    MySql,
}

impl Dialect {
    pub(crate) fn backend(self) -> DbBackend {
        match self {
            Dialect::Sqlite => DbBackend::Sqlite,
            Dialect::MySql => DbBackend::MySql,
        }
    }

    /// `INSERT` that silently skips rows whose key already exists.
    pub(crate) fn insert_ignore(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INSERT OR IGNORE",
            Dialect::MySql => "INSERT IGNORE",
        }
    }

    /// Row-lock suffix for reads that precede a write. SQLite serialises writers instead (a stale
    /// snapshot fails with SQLITE_BUSY and the transaction is retried).
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::MySql => " FOR UPDATE",
        }
    }
}

/// `?, ?, ?` for `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// `(?, ?), (?, ?)` for `rows` rows of `cols` values.
pub(crate) fn row_placeholders(rows: usize, cols: usize) -> String {
    let one = format!("({})", placeholders(cols));
    vec![one; rows].join(", ")
}

/// Clamps an unsigned counter into the signed range both backends can bind.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A connection (pool or transaction) with the dialect and the name of the running operation, so
/// every failure says where it came from.
pub(crate) struct Q<'c, C: ConnectionTrait> {
    pub(crate) conn: &'c C,
    pub(crate) d: Dialect,
    pub(crate) op: &'static str,
}

impl<C: ConnectionTrait> Q<'_, C> {
    fn stmt(&self, sql: &str, vals: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.d.backend(), sql, vals)
    }

    /// Inserts `(owner, service_name, label)` rows into a label table (`client_labels` keyed by
    /// `client_id`, `broadcast_labels` keyed by `broadcast_id`), in chunks.
    pub(crate) async fn insert_labels(
        &self,
        table: &str,
        owner_col: &str,
        owner: &[u8],
        labels: &[fleetgate_types::pb::fleetspeak::Label],
    ) -> Result<()> {
        for chunk in labels.chunks(CHUNK / 3) {
            let sql = format!(
                "INSERT INTO {table}({owner_col}, service_name, label) VALUES {}",
                row_placeholders(chunk.len(), 3)
            );
            let vals = chunk
                .iter()
                .flat_map(|l| {
                    [
                        owner.to_vec().into(),
                        l.service_name.clone().into(),
                        l.label.clone().into(),
                    ]
                })
                .collect();
            self.exec(&sql, vals).await?;
        }
        Ok(())
    }

    pub(crate) async fn exec(&self, sql: &str, vals: Vec<Value>) -> Result<ExecResult> {
        self.conn
            .execute(self.stmt(sql, vals))
            .await
            .map_err(|e| db_err(self.op, e))
    }

    pub(crate) async fn all(&self, sql: &str, vals: Vec<Value>) -> Result<Vec<QueryResult>> {
        self.conn
            .query_all(self.stmt(sql, vals))
            .await
            .map_err(|e| db_err(self.op, e))
    }

    pub(crate) async fn one(&self, sql: &str, vals: Vec<Value>) -> Result<Option<QueryResult>> {
        self.conn
            .query_one(self.stmt(sql, vals))
            .await
            .map_err(|e| db_err(self.op, e))
    }

    /// Typed access to a row returned by this connection.
    pub(crate) fn row<'r>(&self, r: &'r QueryResult) -> Row<'r> {
        Row { r, op: self.op }
    }
}

/// Typed, error-mapped access to the columns of one result row (by position).
pub(crate) struct Row<'r> {
    r: &'r QueryResult,
    op: &'static str,
}

impl Row<'_> {
    pub(crate) fn get<T: TryGetable>(&self, i: usize) -> Result<T> {
        self.r
            .try_get_by_index::<T>(i)
            .map_err(|e| db_err(self.op, e))
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64> {
        self.get(i)
    }

    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        self.get(i)
    }

    /// An unsigned column: MySQL reports BIGINT UNSIGNED, SQLite a plain integer.
    pub(crate) fn u64(&self, i: usize) -> Result<u64> {
        Ok(self.opt_u64(i)?.unwrap_or(0))
    }

    pub(crate) fn opt_u64(&self, i: usize) -> Result<Option<u64>> {
        match self.r.try_get_by_index::<Option<i64>>(i) {
            Ok(v) => Ok(v.map(|v| u64::try_from(v).unwrap_or(0))),
            Err(_) => self.get::<Option<u64>>(i),
        }
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.i64(i)? != 0)
    }

    pub(crate) fn bytes(&self, i: usize) -> Result<Vec<u8>> {
        Ok(self.opt_bytes(i)?.unwrap_or_default())
    }

    pub(crate) fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        self.get(i)
    }

    pub(crate) fn string(&self, i: usize) -> Result<String> {
        Ok(self.opt_string(i)?.unwrap_or_default())
    }

    pub(crate) fn opt_string(&self, i: usize) -> Result<Option<String>> {
        self.get(i)
    }

    pub(crate) fn f64(&self, i: usize) -> Result<f64> {
        Ok(self.get::<Option<f64>>(i)?.unwrap_or(0.0))
    }
}

/// Converts a database error, deciding whether a retry may help.
pub(crate) fn db_err(op: &'static str, e: DbErr) -> StoreError {
    let retryable = is_retryable(&e);
    StoreError::Backend {
        op,
        message: e.to_string(),
        retryable,
    }
}

fn is_retryable(e: &DbErr) -> bool {
    match e {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(RuntimeErr::SqlxError(s))
        | DbErr::Exec(RuntimeErr::SqlxError(s))
        | DbErr::Query(RuntimeErr::SqlxError(s)) => sqlx_retryable(s),
        DbErr::Conn(_) => true,
        _ => false,
    }
}

fn sqlx_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            if let Some(m) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                // Lock wait timeout, deadlock, too many concurrent transactions.
                return matches!(m.number(), 1205 | 1213 | 1637);
            }
            if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY and SQLITE_LOCKED with all their extended codes.
                let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
                return matches!(code & 0xff, 5 | 6);
            }
            false
        }
        _ => false,
    }
}

/// A boxed future borrowing data for `'x`, as transaction bodies return.
pub(crate) type BoxFut<'x, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'x>>;

/// Runs `f` until it succeeds, fails for good, or the attempts run out; sleeps a little longer
/// after each retryable failure. Each attempt starts from scratch.
pub(crate) async fn retry<'x, T, F>(op: &'static str, f: F) -> Result<T>
where
    F: Fn() -> BoxFut<'x, T> + Send + Sync,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                tracing::debug!(op, attempt, error = %e, "retrying");
                let jitter = u64::from(rand::random::<u8>() % 20);
                tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 50 + jitter)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// An open transaction handed to a transaction body; cheap to clone into the body's future.
#[derive(Clone)]
pub(crate) struct Tx {
    txn: Arc<DatabaseTransaction>,
    pub(crate) d: Dialect,
    pub(crate) op: &'static str,
}

impl Tx {
    pub(crate) fn q(&self) -> Q<'_, DatabaseTransaction> {
        Q {
            conn: &self.txn,
            d: self.d,
            op: self.op,
        }
    }
}

/// Runs `body` in a transaction, committing on success, rolling back on error and retrying the
/// whole transaction on retryable errors.
pub(crate) async fn transact<'x, C, T, F>(
    conn: &'x C,
    d: Dialect,
    op: &'static str,
    body: F,
) -> Result<T>
where
    C: TransactionTrait + Sync,
    T: Send + 'x,
    F: Fn(Tx) -> BoxFut<'x, T> + Send + Sync + 'x,
{
    let body = &body;
    retry(op, move || {
        Box::pin(async move {
            let txn = conn.begin().await.map_err(|e| db_err(op, e))?;
            let tx = Tx {
                txn: Arc::new(txn),
                d,
                op,
            };
            let res = body(tx.clone()).await;
            let txn = Arc::try_unwrap(tx.txn).map_err(|_| StoreError::Backend {
                op,
                message: "transaction still in use at commit".into(),
                retryable: false,
            })?;
            match res {
                Ok(v) => {
                    txn.commit().await.map_err(|e| db_err(op, e))?;
                    Ok(v)
                }
                Err(e) => {
                    if let Err(re) = txn.rollback().await {
                        tracing::debug!(op, error = %re, "rollback failed");
                    }
                    Err(e)
                }
            }
        })
    })
    .await
}
