//! Writing messages: `StoreMessages` merge rules (datastore.md §2.1) and setting results.

use std::collections::HashMap;

use fleetgate_types::pb::fleetspeak::{Message, MessageResult};
use fleetgate_types::time::{server_retry_time, to_timestamp, unix_micros};
use fleetgate_types::{ContactId, MessageId};
use sea_orm::{DatabaseTransaction, Value};

use super::rows::{self, INSERT_COLS, INSERT_NCOLS, NewRow};
use crate::StoreError;
use crate::api::Result;
use crate::db::{CHUNK, Q, Tx, placeholders, row_placeholders, to_i64};
use crate::store::SeaOrmStore;

/// What the database already knows about a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Pending,
    Done,
    Failed,
}

/// A result to apply to an existing message.
pub(crate) struct ResultUpdate<'a> {
    pub(crate) for_server: bool,
    pub(crate) id: MessageId,
    pub(crate) result: &'a MessageResult,
}

pub(crate) async fn store_messages(
    s: &SeaOrmStore,
    msgs: &[Message],
    contact: Option<ContactId>,
) -> Result<()> {
    let rows = msgs
        .iter()
        .map(|m| rows::encode(m).map(|r| (r, m)))
        .collect::<Result<Vec<_>>>()?;
    let rows = &rows;
    let now = s.now();
    s.tx("store_messages", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let existing = statuses(&q, rows.iter().map(|(r, _)| r.id)).await?;
            let (inserts, results) = plan(rows, existing)?;
            let due = |for_server: bool| {
                if for_server {
                    unix_micros(server_retry_time(now, 0))
                } else {
                    unix_micros(now)
                }
            };
            insert_rows(&q, &inserts, &due).await?;
            apply_results(&q, &results, now).await?;
            if let Some(c) = contact {
                link(&tx, c, rows.iter().map(|(r, _)| r.id), true).await?;
            }
            Ok(())
        })
    })
    .await
}

/// Decides, message by message, what to insert and which results to apply.
fn plan<'a>(
    rows: &'a [(NewRow, &'a Message)],
    mut known: HashMap<MessageId, Status>,
) -> Result<(Vec<&'a NewRow>, Vec<ResultUpdate<'a>>)> {
    let mut inserts = Vec::new();
    let mut results = Vec::new();
    for (row, m) in rows {
        let status = known.get(&row.id).copied();
        let new_status = match (m.result.as_ref(), status) {
            (_, None) => {
                rows::check_creation_time(m)?;
                inserts.push(row);
                match &m.result {
                    None => Status::Pending,
                    Some(r) if r.failed => Status::Failed,
                    Some(_) => Status::Done,
                }
            }
            (Some(r), Some(_)) if !r.failed => {
                results.push(ResultUpdate {
                    for_server: row.for_server,
                    id: row.id,
                    result: r,
                });
                Status::Done
            }
            (Some(r), Some(Status::Pending)) => {
                results.push(ResultUpdate {
                    for_server: row.for_server,
                    id: row.id,
                    result: r,
                });
                Status::Failed
            }
            (_, Some(st)) => st,
        };
        known.insert(row.id, new_status);
    }
    Ok((inserts, results))
}

/// The processing status of those of `ids` that exist.
async fn statuses(
    q: &Q<'_, DatabaseTransaction>,
    ids: impl Iterator<Item = MessageId>,
) -> Result<HashMap<MessageId, Status>> {
    let ids: Vec<MessageId> = ids.collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT message_id, processed_time_seconds, failed FROM messages WHERE message_id IN ({})",
            placeholders(chunk.len())
        );
        for r in q
            .all(&sql, chunk.iter().map(|id| id.to_vec().into()).collect())
            .await?
        {
            let r = q.row(&r);
            let id = MessageId::from_bytes(&r.bytes(0)?).map_err(|e| corrupt(q.op, e))?;
            let st = match (r.opt_i64(1)?, r.opt_i64(2)?.unwrap_or(0)) {
                (None, _) => Status::Pending,
                (Some(_), 0) => Status::Done,
                (Some(_), _) => Status::Failed,
            };
            out.insert(id, st);
        }
    }
    Ok(out)
}

pub(crate) fn corrupt(op: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        op,
        message: format!("unexpected data in database: {e}"),
        retryable: false,
    }
}

/// Inserts rows known to be absent, with a pending row each when unfinished. `due` gives the
/// scheduled time (µs) from `for_server`. A row that appeared concurrently restarts the transaction,
/// so a pending row is never added to a message another server already finished.
pub(crate) async fn insert_rows(
    q: &Q<'_, DatabaseTransaction>,
    rows: &[&NewRow],
    due: &(dyn Fn(bool) -> i64 + Sync),
) -> Result<()> {
    for chunk in rows.chunks(CHUNK / INSERT_NCOLS) {
        let sql = format!(
            "{} INTO messages({INSERT_COLS}) VALUES {}",
            q.d.insert_ignore(),
            row_placeholders(chunk.len(), INSERT_NCOLS)
        );
        let vals = chunk
            .iter()
            .flat_map(|r| r.values.iter().cloned())
            .collect();
        let n = q.exec(&sql, vals).await?.rows_affected();
        if n != chunk.len() as u64 {
            return Err(StoreError::Backend {
                op: q.op,
                message: "message inserted concurrently".into(),
                retryable: true,
            });
        }
    }
    let pending: Vec<&NewRow> = rows
        .iter()
        .copied()
        .filter(|r| r.pending.is_some())
        .collect();
    insert_pending(q, &pending, due).await
}

/// Queues `rows` (their pending payload) with no attempts yet, due at `due(for_server)` (µs). A
/// row already queued is left as it is.
pub(crate) async fn insert_pending(
    q: &Q<'_, DatabaseTransaction>,
    pending: &[&NewRow],
    due: &(dyn Fn(bool) -> i64 + Sync),
) -> Result<()> {
    for chunk in pending.chunks(CHUNK / 6) {
        let sql = format!(
            "{} INTO pending_messages(for_server, message_id, retry_count, scheduled_time, data_type_url, data_value) \
             VALUES {}",
            q.d.insert_ignore(),
            row_placeholders(chunk.len(), 6)
        );
        let mut vals: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        for r in chunk {
            let (url, value) = r.pending.clone().unwrap_or_default();
            vals.extend([
                r.for_server.into(),
                r.id.to_vec().into(),
                0i64.into(),
                due(r.for_server).into(),
            ]);
            vals.extend([url.into(), value.into()]);
        }
        q.exec(&sql, vals).await?;
    }
    Ok(())
}

/// Sets results and removes the pending rows. Identical results (a batch of acks) share one UPDATE.
/// Gives every client-bound message in `ids` the same `result` (which carries its own time) and
/// removes it from the pending queue: how admin deletions and purges fail messages.
pub(crate) async fn fail_client_messages(
    q: &Q<'_, DatabaseTransaction>,
    ids: &[MessageId],
    result: &MessageResult,
) -> Result<()> {
    let updates: Vec<ResultUpdate<'_>> = ids
        .iter()
        .map(|id| ResultUpdate {
            for_server: false,
            id: *id,
            result,
        })
        .collect();
    apply_results(q, &updates, std::time::UNIX_EPOCH).await
}

pub(crate) async fn apply_results(
    q: &Q<'_, DatabaseTransaction>,
    items: &[ResultUpdate<'_>],
    now: std::time::SystemTime,
) -> Result<()> {
    let mut groups: HashMap<(bool, String, i64, i32), Vec<MessageId>> = HashMap::new();
    for it in items {
        let pt = it
            .result
            .processed_time
            .unwrap_or_else(|| to_timestamp(now));
        let key = (
            it.result.failed,
            it.result.failed_reason.clone(),
            pt.seconds,
            pt.nanos,
        );
        groups.entry(key).or_default().push(it.id);
    }
    for ((failed, reason, secs, nanos), ids) in groups {
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "UPDATE messages SET failed = ?, failed_reason = ?, processed_time_seconds = ?, \
                 processed_time_nanos = ? WHERE message_id IN ({})",
                placeholders(chunk.len())
            );
            let mut vals: Vec<Value> = vec![
                failed.then_some(1i64).into(),
                failed.then_some(reason.clone()).into(),
                secs.into(),
                i64::from(nanos).into(),
            ];
            vals.extend(chunk.iter().map(|id| id.to_vec().into()));
            q.exec(&sql, vals).await?;
        }
    }
    for for_server in [false, true] {
        let ids: Vec<MessageId> = items
            .iter()
            .filter(|i| i.for_server == for_server)
            .map(|i| i.id)
            .collect();
        delete_pending(q, for_server, &ids).await?;
    }
    Ok(())
}

pub(crate) async fn delete_pending(
    q: &Q<'_, DatabaseTransaction>,
    for_server: bool,
    ids: &[MessageId],
) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM pending_messages WHERE for_server = ? AND message_id IN ({})",
            placeholders(chunk.len())
        );
        let mut vals: Vec<Value> = vec![for_server.into()];
        vals.extend(chunk.iter().map(|id| id.to_vec().into()));
        q.exec(&sql, vals).await?;
    }
    Ok(())
}

/// Links messages to a contact; `ignore_duplicates` decides whether an existing link is an error.
pub(crate) async fn link(
    tx: &Tx,
    contact: ContactId,
    ids: impl Iterator<Item = MessageId>,
    ignore_duplicates: bool,
) -> Result<()> {
    let q = tx.q();
    let mut ids: Vec<MessageId> = ids.collect();
    if ignore_duplicates {
        ids.sort();
        ids.dedup();
    }
    let verb = if ignore_duplicates {
        q.d.insert_ignore()
    } else {
        "INSERT"
    };
    for chunk in ids.chunks(CHUNK / 2) {
        let sql = format!(
            "{verb} INTO client_contact_messages(client_contact_id, message_id) VALUES {}",
            row_placeholders(chunk.len(), 2)
        );
        let vals = chunk
            .iter()
            .flat_map(|id| [to_i64(contact.0).into(), id.to_vec().into()])
            .collect();
        q.exec(&sql, vals).await?;
    }
    Ok(())
}
