//! Filtered removal of pending client-bound messages (Fleetgate's `PurgePendingMessages`).
//!
//! Purged messages end exactly as `delete_pending_messages` leaves them: failed with "Removed by
//! admin action." and without a pending row, so `GetMessageStatus` explains where they went.

use std::time::{Duration, UNIX_EPOCH};

use fleetgate_types::time::to_timestamp;
use fleetgate_types::{ClientId, MessageId};
use sea_orm::Value;

use super::write::{corrupt, fail_client_messages};
use crate::api::Result;
use crate::db::{CHUNK, placeholders};
use crate::store::SeaOrmStore;

/// Which pending messages to purge; `None` matches anything.
pub(crate) struct Filter<'a> {
    pub(crate) service: Option<&'a str>,
    pub(crate) message_type: Option<&'a str>,
    pub(crate) older_than: Option<Duration>,
}

/// The selecting statement for one chunk of clients (all clients when `clients` is empty).
fn select(
    clients: &[ClientId],
    f: &Filter<'_>,
    cutoff: Option<(i64, i32)>,
    for_update: &str,
) -> (String, Vec<Value>) {
    let mut sql = String::from(
        "SELECT m.message_id FROM messages m JOIN pending_messages pm \
         ON pm.for_server = 0 AND pm.message_id = m.message_id WHERE m.destination_client_id IS NOT NULL",
    );
    let mut vals: Vec<Value> = Vec::new();
    if !clients.is_empty() {
        sql.push_str(&format!(
            " AND m.destination_client_id IN ({})",
            placeholders(clients.len())
        ));
        vals.extend(clients.iter().map(|c| c.to_vec().into()));
    }
    if let Some(s) = f.service {
        sql.push_str(" AND m.destination_service_name = ?");
        vals.push(s.into());
    }
    if let Some(t) = f.message_type {
        sql.push_str(" AND m.message_type = ?");
        vals.push(t.into());
    }
    if let Some((secs, nanos)) = cutoff {
        sql.push_str(
            " AND (m.creation_time_seconds < ? OR (m.creation_time_seconds = ? AND m.creation_time_nanos < ?))",
        );
        vals.extend([secs.into(), secs.into(), i64::from(nanos).into()]);
    }
    sql.push_str(for_update);
    (sql, vals)
}

pub(crate) async fn purge(s: &SeaOrmStore, clients: &[ClientId], f: &Filter<'_>) -> Result<u64> {
    let cutoff = match f.older_than {
        None => None,
        // Nothing was created before the epoch.
        Some(d) => match s.now().checked_sub(d).filter(|t| *t > UNIX_EPOCH) {
            Some(t) => Some(to_timestamp(t)),
            None => return Ok(0),
        },
    };
    let cutoff = cutoff.map(|t| (t.seconds, t.nanos));
    let result = fleetgate_types::message::failure(s.now(), "Removed by admin action.");
    let result = &result;
    let chunks: Vec<&[ClientId]> = if clients.is_empty() {
        vec![&[]]
    } else {
        clients.chunks(CHUNK).collect()
    };
    let chunks = &chunks;
    s.tx("purge_pending_messages", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let mut ids = Vec::new();
            for chunk in chunks {
                let (sql, vals) = select(chunk, f, cutoff, q.d.for_update());
                for r in q.all(&sql, vals).await? {
                    let raw = q.row(&r).bytes(0)?;
                    ids.push(MessageId::from_bytes(&raw).map_err(|e| corrupt(q.op, e))?);
                }
            }
            fail_client_messages(&q, &ids, result).await?;
            Ok(ids.len() as u64)
        })
    })
    .await
}
