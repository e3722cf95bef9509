//! [`LifecycleStore`]: the dead-letter table, replay, expiry candidates and per-service back-off.
//!
//! A dead letter and the failed result of its message are written in one transaction, so a
//! message is never both pending and dead, and one that was acknowledged or processed meanwhile
//! (another server, a late ack) is never dead-lettered: its pending row is locked first and only
//! messages still pending, or not stored yet, move.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fleetgate_types::message::{destination_client, destination_service, failure};
use fleetgate_types::pb::fleetspeak::Message;
use fleetgate_types::time::unix_micros;
use fleetgate_types::{ClientId, MessageId};
use prost::Message as _;
use sea_orm::{DatabaseTransaction, Value};

use crate::StoreError;
use crate::api::{
    DeadLetter, DeadLetterInfo, DeadLetterQuery, DeadReason, LifecycleStore, OldestPending,
    Replayed, Result,
};
use crate::db::{CHUNK, Q, placeholders, row_placeholders, to_i64};
use crate::messages::rows::{self, MSG_COLS};
use crate::messages::write::{ResultUpdate, apply_results, corrupt, insert_pending, insert_rows};
use crate::store::SeaOrmStore;

type TxQ<'a> = Q<'a, DatabaseTransaction>;

/// Columns of a letter in [`decode_info`] order; `message` last, selected only when wanted.
const INFO_COLS: &str = "message_id, destination_service_name, destination_client_id, message_type, \
     reason, last_error, plugin, attempts, creation_time, dead_time, replays, replayed_time";
const LETTER_COLS: &str = "message_id, destination_service_name, destination_client_id, message_type, \
     reason, last_error, plugin, attempts, creation_time, dead_time, replays, replayed_time, message";
const LETTER_NCOLS: usize = 13;

fn from_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// The result a dead message carries in `messages`, which `GetMessageStatus` reports.
fn failed_reason(l: &DeadLetter) -> String {
    match l.reason {
        DeadReason::Permanent => l.last_error.clone(),
        reason => format!("dead letter ({reason}): {}", l.last_error),
    }
}

#[async_trait]
impl LifecycleStore for SeaOrmStore {
    async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<Vec<MessageId>> {
        if letters.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut prepared = Vec::with_capacity(letters.len());
        for l in letters {
            let mut failed = l.message.clone();
            failed.result = Some(failure(now, &failed_reason(l)));
            failed.data = None;
            let row = rows::encode(&failed)?;
            let mut kept = l.message.clone();
            kept.result = None;
            prepared.push((l, row, failed, kept.encode_to_vec()));
        }
        let prepared = &prepared;
        self.tx("dead_letter", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                let ids: Vec<MessageId> = prepared.iter().map(|(_, r, _, _)| r.id).collect();
                let existing = existing(&q, &ids).await?;
                let pending = lock_pending(&q, &ids).await?;
                let mut inserts = Vec::new();
                let mut results = Vec::new();
                let mut moved = Vec::new();
                let mut seen = HashSet::new();
                for (_, row, failed, _) in prepared {
                    if !seen.insert(row.id) {
                        continue;
                    }
                    if !existing.contains(&row.id) {
                        rows::check_creation_time(failed)?;
                        inserts.push(row);
                    } else if pending.contains(&row.id) {
                        results.push(ResultUpdate {
                            for_server: row.for_server,
                            id: row.id,
                            result: failed.result.as_ref().ok_or_else(|| {
                                StoreError::Invalid("dead letter without a result".into())
                            })?,
                        });
                    } else {
                        continue;
                    }
                    moved.push(row.id);
                }
                insert_rows(&q, &inserts, &|_| 0).await?;
                apply_results(&q, &results, now).await?;
                let chosen: HashSet<MessageId> = moved.iter().copied().collect();
                let letters: Vec<_> = prepared
                    .iter()
                    .filter(|(_, r, _, _)| chosen.contains(&r.id))
                    .collect();
                delete_letters(&q, &moved).await?;
                for chunk in letters.chunks(CHUNK / LETTER_NCOLS) {
                    let sql = format!(
                        "INSERT INTO fleetgate_dead_letters({LETTER_COLS}) VALUES {}",
                        row_placeholders(chunk.len(), LETTER_NCOLS)
                    );
                    let mut vals: Vec<Value> = Vec::with_capacity(chunk.len() * LETTER_NCOLS);
                    for (l, row, _, blob) in chunk {
                        let m = &l.message;
                        let client = destination_client(m)
                            .map_err(|e| StoreError::Invalid(e.to_string()))?;
                        let created = m
                            .creation_time
                            .as_ref()
                            .and_then(fleetgate_types::time::from_timestamp)
                            .unwrap_or(now);
                        vals.extend([
                            row.id.to_vec().into(),
                            destination_service(m).to_string().into(),
                            client.map(|c| c.to_vec()).into(),
                            m.message_type.clone().into(),
                            l.reason.as_str().into(),
                            l.last_error.clone().into(),
                            l.plugin.clone().into(),
                            i64::from(l.attempts).into(),
                            unix_micros(created).into(),
                            unix_micros(now).into(),
                        ]);
                        vals.extend([0i64.into(), Value::BigInt(None), blob.clone().into()]);
                    }
                    q.exec(&sql, vals).await?;
                }
                Ok(moved)
            })
        })
        .await
    }

    async fn list_dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetterInfo>> {
        let q = self.q("list_dead_letters");
        let (filter, mut vals) = where_clause(query);
        let mut sql = format!(
            "SELECT {INFO_COLS} FROM fleetgate_dead_letters{filter} ORDER BY dead_time DESC, message_id"
        );
        if query.limit > 0 {
            sql.push_str(" LIMIT ?");
            vals.push(to_i64(query.limit as u64).into());
        }
        let mut out = Vec::new();
        for r in q.all(&sql, vals).await? {
            out.push(decode_info(&q, &r, false)?);
        }
        Ok(out)
    }

    async fn get_dead_letter(&self, id: MessageId) -> Result<Option<DeadLetterInfo>> {
        let q = self.q("get_dead_letter");
        let sql = format!("SELECT {LETTER_COLS} FROM fleetgate_dead_letters WHERE message_id = ?");
        q.one(&sql, vec![id.to_vec().into()])
            .await?
            .map(|r| decode_info(&q, &r, true))
            .transpose()
    }

    async fn replay_dead_letters(&self, ids: &[MessageId]) -> Result<Replayed> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let ids = &ids;
        let now = self.now();
        self.tx("replay_dead_letters", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                let mut dead: HashMap<MessageId, Message> = HashMap::new();
                for chunk in ids.chunks(CHUNK) {
                    let sql = format!(
                        "SELECT message_id, message FROM fleetgate_dead_letters \
                         WHERE replayed_time IS NULL AND message_id IN ({}){}",
                        placeholders(chunk.len()),
                        q.d.for_update()
                    );
                    let vals = chunk.iter().map(|id| id.to_vec().into()).collect();
                    for r in q.all(&sql, vals).await? {
                        let r = q.row(&r);
                        let id = MessageId::from_bytes(&r.bytes(0)?).map_err(|e| corrupt(q.op, e))?;
                        let m = Message::decode(r.bytes(1)?.as_slice())
                            .map_err(|e| corrupt(q.op, e))?;
                        dead.insert(id, m);
                    }
                }
                let (to_replay, not_dead): (Vec<MessageId>, Vec<MessageId>) =
                    ids.iter().partition(|id| dead.contains_key(id));
                // All or nothing: a request naming a message that is not dead changes nothing.
                if to_replay.is_empty() || !not_dead.is_empty() {
                    return Ok(Replayed {
                        replayed: Vec::new(),
                        not_dead,
                    });
                }
                let existing = existing(&q, &to_replay).await?;
                let mut fresh = Vec::new();
                let mut revived = Vec::new();
                for id in &to_replay {
                    let mut m = dead[id].clone();
                    m.result = None;
                    let row = rows::encode(&m)?;
                    if existing.contains(id) {
                        revived.push(row);
                    } else {
                        fresh.push(row);
                    }
                }
                let due = unix_micros(now);
                insert_rows(&q, &fresh.iter().collect::<Vec<_>>(), &|_| due).await?;
                revive(&q, &revived, due).await?;
                for chunk in to_replay.chunks(CHUNK) {
                    let sql = format!(
                        "UPDATE fleetgate_dead_letters SET replays = replays + 1, replayed_time = ? \
                         WHERE message_id IN ({})",
                        placeholders(chunk.len())
                    );
                    let mut vals: Vec<Value> = vec![due.into()];
                    vals.extend(chunk.iter().map(|id| id.to_vec().into()));
                    q.exec(&sql, vals).await?;
                }
                let replayed = to_replay
                    .iter()
                    .map(|id| {
                        let mut m = dead[id].clone();
                        m.data = None;
                        m
                    })
                    .collect();
                Ok(Replayed { replayed, not_dead })
            })
        })
        .await
    }

    async fn purge_dead_letters(&self, query: &DeadLetterQuery) -> Result<u64> {
        let q = self.q("purge_dead_letters");
        let (filter, vals) = where_clause(query);
        let sql = format!("DELETE FROM fleetgate_dead_letters{filter}");
        Ok(q.exec(&sql, vals).await?.rows_affected())
    }

    async fn prune_dead_letters(&self, before: SystemTime, limit: usize) -> Result<u64> {
        let cutoff = unix_micros(before);
        self.tx("prune_dead_letters", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                let sql = "SELECT message_id FROM fleetgate_dead_letters WHERE dead_time < ? \
                           ORDER BY dead_time LIMIT ?";
                let mut ids = Vec::new();
                for r in q
                    .all(sql, vec![cutoff.into(), to_i64(limit as u64).into()])
                    .await?
                {
                    let id = MessageId::from_bytes(&q.row(&r).bytes(0)?)
                        .map_err(|e| corrupt(q.op, e))?;
                    ids.push(id);
                }
                delete_letters(&q, &ids).await?;
                Ok(ids.len() as u64)
            })
        })
        .await
    }

    async fn expiring_client_messages(
        &self,
        service: Option<&str>,
        except: &[String],
        created_before: SystemTime,
        limit: usize,
    ) -> Result<Vec<Message>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let q = self.q("expiring_client_messages");
        let secs = created_before
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut sql = format!(
            "SELECT {MSG_COLS}, {} FROM messages m \
             JOIN pending_messages pm ON pm.for_server = 0 AND pm.message_id = m.message_id \
             WHERE m.creation_time_seconds < ?",
            rows::data_cols(true)
        );
        let mut vals: Vec<Value> = vec![secs.into()];
        match service {
            Some(s) => {
                sql.push_str(" AND m.destination_service_name = ?");
                vals.push(s.to_string().into());
            }
            None if !except.is_empty() => {
                sql.push_str(&format!(
                    " AND m.destination_service_name NOT IN ({})",
                    placeholders(except.len())
                ));
                vals.extend(except.iter().map(|s| s.clone().into()));
            }
            None => {}
        }
        sql.push_str(" ORDER BY m.creation_time_seconds LIMIT ?");
        vals.push(to_i64(limit as u64).into());
        let rows = q.all(&sql, vals).await?;
        rows.iter().map(|r| rows::decode(&q.row(r))).collect()
    }

    async fn reschedule_server_messages(&self, due: &[(MessageId, SystemTime)]) -> Result<()> {
        if due.is_empty() {
            return Ok(());
        }
        self.tx("reschedule_server_messages", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                for chunk in due.chunks(CHUNK / 3) {
                    let mut sql = String::from(
                        "UPDATE pending_messages SET scheduled_time = CASE message_id",
                    );
                    let mut vals: Vec<Value> = Vec::new();
                    for (id, t) in chunk {
                        sql.push_str(" WHEN ? THEN ?");
                        vals.extend([id.to_vec().into(), unix_micros(*t).into()]);
                    }
                    sql.push_str(&format!(
                        " END WHERE for_server = 1 AND message_id IN ({})",
                        placeholders(chunk.len())
                    ));
                    vals.extend(chunk.iter().map(|(id, _)| id.to_vec().into()));
                    q.exec(&sql, vals).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn oldest_pending(&self) -> Result<Vec<OldestPending>> {
        let q = self.q("oldest_pending");
        let sql = "SELECT m.destination_service_name, pm.for_server, \
                   MIN(m.creation_time_seconds) FROM pending_messages pm \
                   JOIN messages m ON m.message_id = pm.message_id \
                   GROUP BY m.destination_service_name, pm.for_server";
        let mut out = Vec::new();
        for r in q.all(sql, vec![]).await? {
            let r = q.row(&r);
            out.push(OldestPending {
                service: r.string(0)?,
                to_client: !r.bool(1)?,
                created: UNIX_EPOCH + Duration::from_secs(u64::try_from(r.i64(2)?).unwrap_or(0)),
            });
        }
        Ok(out)
    }
}

/// ` WHERE …` for a query (empty when it selects everything) and its values.
fn where_clause(query: &DeadLetterQuery) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut vals: Vec<Value> = Vec::new();
    if !query.include_replayed {
        conds.push("replayed_time IS NULL");
    }
    if let Some(s) = &query.service {
        conds.push("destination_service_name = ?");
        vals.push(s.clone().into());
    }
    if let Some(t) = query.since {
        conds.push("dead_time >= ?");
        vals.push(unix_micros(t).into());
    }
    if conds.is_empty() {
        (String::new(), vals)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), vals)
    }
}

fn decode_info(
    q: &Q<'_, impl sea_orm::ConnectionTrait>,
    r: &sea_orm::QueryResult,
    with_message: bool,
) -> Result<DeadLetterInfo> {
    let r = q.row(r);
    let id = MessageId::from_bytes(&r.bytes(0)?).map_err(|e| corrupt(q.op, e))?;
    let client = r
        .opt_bytes(2)?
        .map(|b| ClientId::from_bytes(&b))
        .transpose()
        .map_err(|e| corrupt(q.op, e))?;
    let reason = r.string(4)?;
    let reason = DeadReason::parse(&reason)
        .ok_or_else(|| corrupt(q.op, format!("dead letter reason {reason:?}")))?;
    let message = if with_message {
        Some(Message::decode(r.bytes(12)?.as_slice()).map_err(|e| corrupt(q.op, e))?)
    } else {
        None
    };
    Ok(DeadLetterInfo {
        id,
        service: r.string(1)?,
        client,
        message_type: r.string(3)?,
        reason,
        last_error: r.string(5)?,
        plugin: r.string(6)?,
        attempts: u32::try_from(r.i64(7)?).unwrap_or(0),
        created: from_micros(r.i64(8)?),
        died: from_micros(r.i64(9)?),
        replays: u32::try_from(r.i64(10)?).unwrap_or(0),
        replayed: r.opt_i64(11)?.map(from_micros),
        message,
    })
}

/// Those of `ids` that have a `messages` row.
async fn existing(q: &TxQ<'_>, ids: &[MessageId]) -> Result<HashSet<MessageId>> {
    let mut out = HashSet::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT message_id FROM messages WHERE message_id IN ({})",
            placeholders(chunk.len())
        );
        for r in q
            .all(&sql, chunk.iter().map(|id| id.to_vec().into()).collect())
            .await?
        {
            out.insert(MessageId::from_bytes(&q.row(&r).bytes(0)?).map_err(|e| corrupt(q.op, e))?);
        }
    }
    Ok(out)
}

/// Locks the pending rows of `ids` (either direction); returns the IDs that have one.
async fn lock_pending(q: &TxQ<'_>, ids: &[MessageId]) -> Result<HashSet<MessageId>> {
    let mut out = HashSet::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT message_id FROM pending_messages WHERE message_id IN ({}){}",
            placeholders(chunk.len()),
            q.d.for_update()
        );
        for r in q
            .all(&sql, chunk.iter().map(|id| id.to_vec().into()).collect())
            .await?
        {
            out.insert(MessageId::from_bytes(&q.row(&r).bytes(0)?).map_err(|e| corrupt(q.op, e))?);
        }
    }
    Ok(out)
}

async fn delete_letters(q: &TxQ<'_>, ids: &[MessageId]) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM fleetgate_dead_letters WHERE message_id IN ({})",
            placeholders(chunk.len())
        );
        q.exec(&sql, chunk.iter().map(|id| id.to_vec().into()).collect())
            .await?;
    }
    Ok(())
}

/// Clears the result of stored messages and queues them again, due at `due` (µs), with the
/// payload of `rows` and no attempts.
async fn revive(q: &TxQ<'_>, rows: &[rows::NewRow], due: i64) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "UPDATE messages SET failed = NULL, failed_reason = NULL, processed_time_seconds = NULL, \
             processed_time_nanos = NULL WHERE message_id IN ({})",
            placeholders(chunk.len())
        );
        q.exec(&sql, chunk.iter().map(|r| r.id.to_vec().into()).collect())
            .await?;
    }
    insert_pending(q, &rows.iter().collect::<Vec<_>>(), &|_| due).await
}
