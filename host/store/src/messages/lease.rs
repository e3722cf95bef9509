//! Leasing due messages: to a client (`ClientMessagesForProcessing`) and to the server's backlog
//! loop. Both pick candidates with a bounded, non-locking read, lock those rows by primary key
//! (re-checking that they are still due), and update only the locked rows, in one transaction.
//! A client lease also links what it leased to the contact in that transaction: one commit per
//! delivery instead of two, and each commit waits for the database's log flush.
//!
//! Candidates are picked by id only, and the rows (with their payload BLOBs) are read once
//! locked: MariaDB materialises the per-service derived tables of the candidate query, and a
//! temporary table holding a BLOB goes to disk, which under load made every lease cost a file.

use std::collections::{HashMap, HashSet};

use fleetgate_types::pb::fleetspeak::Message;
use fleetgate_types::time::{client_retry_time, server_retry_time, unix_micros};
use fleetgate_types::{ClientId, ContactId, MessageId};
use sea_orm::{DatabaseTransaction, Value};

use super::rows::{self, MSG_COLS};
use super::write::{corrupt, link};
use crate::api::{LeasedMessage, Result};
use crate::db::{Q, placeholders, to_i64};
use crate::store::SeaOrmStore;

type TxQ<'a> = Q<'a, DatabaseTransaction>;

pub(crate) async fn client_messages(
    s: &SeaOrmStore,
    client: ClientId,
    limit: usize,
    service_limits: Option<&HashMap<String, u64>>,
    contact: Option<ContactId>,
) -> Result<Vec<Message>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now = s.now();
    // A message stored "due now" must be deliverable by a fetch in the same microsecond: a stream
    // woken by its insert fetches at once and is not woken again. So the bound is `<= now`
    // (written `< now + 1 µs`), where the original's strict `<` could miss it.
    let (now_us, lease_us) = (unix_micros(now) + 1, unix_micros(client_retry_time(now)));
    s.tx("client_messages_for_processing", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let ids = client_candidates(&q, client, limit, service_limits, now_us).await?;
            let locked: HashSet<MessageId> =
                lock(&q, false, &ids, now_us).await?.into_keys().collect();
            if locked.is_empty() {
                return Ok(Vec::new());
            }
            let locked_ids: Vec<MessageId> =
                ids.into_iter().filter(|id| locked.contains(id)).collect();
            let sql = format!(
                "UPDATE pending_messages SET retry_count = retry_count + 1, scheduled_time = ? \
                 WHERE for_server = 0 AND message_id IN ({})",
                placeholders(locked_ids.len())
            );
            let mut vals: Vec<Value> = vec![lease_us.into()];
            vals.extend(locked_ids.iter().map(|id| id.to_vec().into()));
            q.exec(&sql, vals).await?;
            if let Some(c) = contact {
                // Duplicates ignored: a stream outliving the 15-minute lease hands the same
                // message out again under the same contact.
                link(&tx, c, locked_ids.iter().copied(), true).await?;
            }
            leased_rows(&q, false, &locked_ids).await
        })
    })
    .await
}

/// Ids of due messages of `client`, at most `limit`, at most `service_limits[svc]` per service (a
/// service missing from the map gets none), in id order.
async fn client_candidates(
    q: &TxQ<'_>,
    client: ClientId,
    limit: usize,
    service_limits: Option<&HashMap<String, u64>>,
    now_us: i64,
) -> Result<Vec<MessageId>> {
    let base = "SELECT m.message_id FROM messages m \
         JOIN pending_messages pm ON pm.for_server = 0 AND pm.message_id = m.message_id \
         WHERE m.destination_client_id = ? AND pm.scheduled_time < ?";
    let lim = to_i64(limit as u64);
    let (sql, vals): (String, Vec<Value>) = match service_limits {
        None => (
            format!("{base} ORDER BY m.message_id LIMIT ?"),
            vec![client.to_vec().into(), now_us.into(), lim.into()],
        ),
        Some(limits) => {
            let mut parts = Vec::new();
            let mut vals: Vec<Value> = Vec::new();
            for (i, (svc, n)) in limits.iter().filter(|(_, n)| **n > 0).enumerate() {
                parts.push(format!(
                    "SELECT * FROM ({base} AND m.destination_service_name = ? ORDER BY m.message_id LIMIT ?) AS s{i}"
                ));
                vals.extend([
                    client.to_vec().into(),
                    now_us.into(),
                    svc.clone().into(),
                    to_i64(*n).min(lim).into(),
                ]);
            }
            if parts.is_empty() {
                return Ok(Vec::new());
            }
            (parts.join(" UNION ALL "), vals)
        }
    };
    let mut ids = Vec::new();
    for r in q.all(&sql, vals).await? {
        ids.push(MessageId::from_bytes(&q.row(&r).bytes(0)?).map_err(|e| corrupt(q.op, e))?);
    }
    ids.sort();
    ids.truncate(limit);
    Ok(ids)
}

/// The messages of `ids` with their pending payload, in id order: the rows a lease just took.
async fn leased_rows(q: &TxQ<'_>, for_server: bool, ids: &[MessageId]) -> Result<Vec<Message>> {
    let sql = format!(
        "SELECT {MSG_COLS}, pm.data_type_url, pm.data_value FROM messages m \
         JOIN pending_messages pm ON pm.for_server = ? AND pm.message_id = m.message_id \
         WHERE m.message_id IN ({}) ORDER BY m.message_id",
        placeholders(ids.len())
    );
    let mut vals: Vec<Value> = vec![for_server.into()];
    vals.extend(ids.iter().map(|id| id.to_vec().into()));
    let rows = q.all(&sql, vals).await?;
    rows.iter().map(|r| rows::decode(&q.row(r))).collect()
}

/// Locks the pending rows of `ids` that are still due; returns their retry counts.
async fn lock(
    q: &TxQ<'_>,
    for_server: bool,
    ids: &[MessageId],
    now_us: i64,
) -> Result<HashMap<MessageId, i64>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT message_id, retry_count FROM pending_messages \
         WHERE for_server = ? AND message_id IN ({}) AND scheduled_time < ?{}",
        placeholders(ids.len()),
        q.d.for_update()
    );
    let mut vals: Vec<Value> = vec![for_server.into()];
    vals.extend(ids.iter().map(|id| id.to_vec().into()));
    vals.push(now_us.into());
    let mut out = HashMap::new();
    for r in q.all(&sql, vals).await? {
        let r = q.row(&r);
        let id = MessageId::from_bytes(&r.bytes(0)?).map_err(|e| corrupt(q.op, e))?;
        out.insert(id, r.i64(1)?);
    }
    Ok(out)
}

pub(crate) async fn server_messages(s: &SeaOrmStore, limit: usize) -> Result<Vec<LeasedMessage>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now = s.now();
    let now_us = unix_micros(now);
    s.tx("lease_server_messages", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let ids = server_candidates(&q, limit, now_us).await?;
            let locked = lock(&q, true, &ids, now_us).await?;
            if locked.is_empty() {
                return Ok(Vec::new());
            }
            let mut ids: Vec<MessageId> = locked.keys().copied().collect();
            ids.sort();
            let mut sql = String::from("UPDATE pending_messages SET retry_count = retry_count + 1, scheduled_time = CASE message_id");
            let mut vals: Vec<Value> = Vec::new();
            for id in &ids {
                let next = u32::try_from(locked[id] + 1).unwrap_or(u32::MAX);
                sql.push_str(" WHEN ? THEN ?");
                vals.extend([id.to_vec().into(), unix_micros(server_retry_time(now, next)).into()]);
            }
            sql.push_str(&format!(" END WHERE for_server = 1 AND message_id IN ({})", placeholders(ids.len())));
            vals.extend(ids.iter().map(|id| id.to_vec().into()));
            q.exec(&sql, vals).await?;
            let rows = leased_rows(&q, true, &ids).await?;
            rows.into_iter()
                .map(|message| {
                    let id = MessageId::from_bytes(&message.message_id)
                        .map_err(|e| corrupt(q.op, e))?;
                    let before = locked.get(&id).copied().unwrap_or(0);
                    Ok(LeasedMessage {
                        message,
                        // The inline attempt, the earlier leases, and this one.
                        attempts: u32::try_from(before.saturating_add(2)).unwrap_or(u32::MAX),
                    })
                })
                .collect()
        })
    })
    .await
}

/// Up to `limit` due server-bound ids, starting at a random key so that several servers draining
/// one backlog rarely contend for the same rows.
async fn server_candidates(q: &TxQ<'_>, limit: usize, now_us: i64) -> Result<Vec<MessageId>> {
    let start: [u8; 2] = rand::random();
    let mut ids = Vec::new();
    for cmp in [">=", "<"] {
        let want = limit - ids.len();
        if want == 0 {
            break;
        }
        let sql = format!(
            "SELECT message_id FROM pending_messages WHERE for_server = 1 AND message_id {cmp} ? \
             AND scheduled_time < ? ORDER BY message_id LIMIT ?"
        );
        let vals: Vec<Value> = vec![
            start.to_vec().into(),
            now_us.into(),
            to_i64(want as u64).into(),
        ];
        for r in q.all(&sql, vals).await? {
            ids.push(MessageId::from_bytes(&q.row(&r).bytes(0)?).map_err(|e| corrupt(q.op, e))?);
        }
    }
    Ok(ids)
}
