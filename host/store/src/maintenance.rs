//! Housekeeping statements: pending-queue sizes and retention pruning (datastore.md §4).
//!
//! Pruning picks at most `limit` keys first and deletes exactly those, so on MySQL a pass locks a
//! bounded set of rows instead of range-locking a whole table. Links in
//! `client_contact_messages` and pending rows go with their parents through the schema's
//! `ON DELETE CASCADE` (SQLite connections enable foreign keys).

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fleetgate_types::time::unix_nanos;
use sea_orm::Value;

use crate::api::{MaintenanceStore, PendingCounts, Result};
use crate::db::{Dialect, placeholders, to_i64};
use crate::store::SeaOrmStore;

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A table pruned by an integer key: rows whose `time` column is before a cutoff, chosen in
/// `order`.
pub(crate) struct KeyedTable {
    pub(crate) op: &'static str,
    pub(crate) table: &'static str,
    pub(crate) key: &'static str,
    pub(crate) time: &'static str,
    pub(crate) order: &'static str,
}

const CONTACTS: KeyedTable = KeyedTable {
    op: "prune_contacts",
    table: "client_contacts",
    key: "client_contact_id",
    time: "time",
    order: "client_contact_id",
};

/// Deletes at most `limit` rows of `t` older than `cutoff` (in the time column's unit), in one
/// transaction: the keys are picked first, then exactly those rows are deleted.
pub(crate) async fn prune_by_key(
    s: &SeaOrmStore,
    t: &'static KeyedTable,
    cutoff: i64,
    limit: usize,
) -> Result<u64> {
    s.tx(t.op, move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let sql = format!(
                "SELECT {} FROM {} WHERE {} < ? ORDER BY {} LIMIT ?",
                t.key, t.table, t.time, t.order
            );
            let mut ids: Vec<Value> = Vec::new();
            for r in q
                .all(&sql, vec![cutoff.into(), to_i64(limit as u64).into()])
                .await?
            {
                ids.push(q.row(&r).i64(0)?.into());
            }
            if ids.is_empty() {
                return Ok(0);
            }
            let sql = format!(
                "DELETE FROM {} WHERE {} IN ({})",
                t.table,
                t.key,
                placeholders(ids.len())
            );
            Ok(q.exec(&sql, ids).await?.rows_affected())
        })
    })
    .await
}

#[async_trait]
impl MaintenanceStore for SeaOrmStore {
    async fn pending_counts(&self) -> Result<PendingCounts> {
        let q = self.q("pending_counts");
        let sql = "SELECT COUNT(*) FROM pending_messages WHERE for_server = ?";
        let mut counts = [0u64; 2];
        for (slot, for_server) in counts.iter_mut().zip([false, true]) {
            let row = q.one(sql, vec![for_server.into()]).await?;
            *slot = row.map(|r| q.row(&r).u64(0)).transpose()?.unwrap_or(0);
        }
        Ok(PendingCounts {
            to_clients: counts[0],
            to_servers: counts[1],
        })
    }

    async fn prune_contacts(&self, before: SystemTime, limit: usize) -> Result<u64> {
        prune_by_key(self, &CONTACTS, unix_nanos(before), limit).await
    }

    async fn prune_messages(&self, before: SystemTime, limit: usize) -> Result<u64> {
        let cutoff = unix_seconds(before);
        self.tx("prune_messages", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                let finished = "NOT EXISTS (SELECT 1 FROM pending_messages p WHERE p.message_id = m.message_id)";
                let sql = format!(
                    "SELECT m.message_id FROM messages m WHERE m.creation_time_seconds < ? AND {finished} LIMIT ?"
                );
                let mut ids: Vec<Value> = Vec::new();
                for r in q.all(&sql, vec![cutoff.into(), to_i64(limit as u64).into()]).await? {
                    ids.push(q.row(&r).bytes(0)?.into());
                }
                if ids.is_empty() {
                    return Ok(0);
                }
                // Checked again in the DELETE: a merge may have made one pending since the SELECT.
                let sql = format!(
                    "DELETE FROM messages WHERE message_id IN ({}) AND NOT EXISTS \
                     (SELECT 1 FROM pending_messages p WHERE p.message_id = messages.message_id)",
                    placeholders(ids.len())
                );
                Ok(q.exec(&sql, ids).await?.rows_affected())
            })
        })
        .await
    }

    async fn prune_resource_usage(&self, before: SystemTime, limit: usize) -> Result<u64> {
        let cutoff = unix_nanos(before);
        // The table has no key: MySQL bounds the DELETE itself; SQLite (built without
        // DELETE … LIMIT) goes through its implicit rowid.
        let sql = match self.dialect {
            Dialect::MySql => {
                "DELETE FROM client_resource_usage_records WHERE server_timestamp < ? LIMIT ?"
            }
            Dialect::Sqlite => {
                "DELETE FROM client_resource_usage_records WHERE rowid IN \
                 (SELECT rowid FROM client_resource_usage_records WHERE server_timestamp < ? LIMIT ?)"
            }
        };
        let vals: Vec<Value> = vec![cutoff.into(), to_i64(limit as u64).into()];
        let q = self.q("prune_resource_usage");
        Ok(q.exec(sql, vals).await?.rows_affected())
    }
}
