//! [`TraceStore`] over `fleetgate_message_trace`: batches of steps in, one message's steps out,
//! retention in bounded batches. Times are kept in µs.

use std::time::SystemTime;

use async_trait::async_trait;
use fleetgate_types::MessageId;
use fleetgate_types::time::{from_unix_micros, unix_micros};
use sea_orm::Value;

use crate::api::{Result, TraceRecord, TraceStore};
use crate::db::{CHUNK, row_placeholders};
use crate::maintenance::{KeyedTable, prune_by_key};
use crate::store::SeaOrmStore;

/// Columns per row of an insert.
const COLS: usize = 5;

#[async_trait]
impl TraceStore for SeaOrmStore {
    async fn record_trace(&self, steps: &[TraceRecord]) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        self.tx("record_trace", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                for chunk in steps.chunks(CHUNK / COLS) {
                    let sql = format!(
                        "INSERT INTO fleetgate_message_trace(message_id, time_micros, server, step, detail) \
                         VALUES {}",
                        row_placeholders(chunk.len(), COLS)
                    );
                    let vals = chunk
                        .iter()
                        .flat_map(|s| -> [Value; COLS] {
                            [
                                s.message_id.to_vec().into(),
                                unix_micros(s.time).into(),
                                s.server.clone().into(),
                                s.step.clone().into(),
                                s.detail.clone().into(),
                            ]
                        })
                        .collect();
                    q.exec(&sql, vals).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn message_trace(&self, id: MessageId) -> Result<Vec<TraceRecord>> {
        let q = self.q("message_trace");
        let sql = "SELECT time_micros, server, step, detail FROM fleetgate_message_trace \
                   WHERE message_id = ? ORDER BY time_micros, id";
        let mut out = Vec::new();
        for r in q.all(sql, vec![id.to_vec().into()]).await? {
            let r = q.row(&r);
            out.push(TraceRecord {
                message_id: id,
                time: from_unix_micros(r.i64(0)?),
                server: r.string(1)?,
                step: r.string(2)?,
                detail: r.string(3)?,
            });
        }
        Ok(out)
    }

    async fn prune_trace(&self, before: SystemTime, limit: usize) -> Result<u64> {
        const TRACE: KeyedTable = KeyedTable {
            op: "prune_trace",
            table: "fleetgate_message_trace",
            key: "id",
            time: "time_micros",
            order: "time_micros",
        };
        prune_by_key(self, &TRACE, unix_micros(before), limit).await
    }
}
