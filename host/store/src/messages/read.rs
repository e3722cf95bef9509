//! Reading messages by id, and the admin views of the pending queue.

use std::collections::HashMap;

use fleetgate_types::pb::fleetspeak::{Message, MessageResult};
use fleetgate_types::{ClientId, MessageId};
use prost_types::Timestamp;
use sea_orm::{ConnectionTrait, Value};

use super::rows::{self, MSG_COLS, data_cols};
use super::write::{corrupt, fail_client_messages};
use crate::StoreError;
use crate::api::Result;
use crate::db::{CHUNK, Q, placeholders, to_i64};
use crate::store::SeaOrmStore;

/// The messages among `ids` that exist, keyed by id.
async fn by_id<C: ConnectionTrait>(
    q: &Q<'_, C>,
    ids: &[MessageId],
    want_data: bool,
) -> Result<HashMap<MessageId, Message>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT {MSG_COLS}, {} FROM messages m LEFT JOIN pending_messages pm ON pm.message_id = m.message_id \
             WHERE m.message_id IN ({})",
            data_cols(want_data),
            placeholders(chunk.len())
        );
        for r in q
            .all(&sql, chunk.iter().map(|id| id.to_vec().into()).collect())
            .await?
        {
            let m = rows::decode(&q.row(&r))?;
            let id = MessageId::from_bytes(&m.message_id).map_err(|e| corrupt(q.op, e))?;
            out.insert(id, m);
        }
    }
    Ok(out)
}

pub(crate) async fn get_messages(
    s: &SeaOrmStore,
    ids: &[MessageId],
    want_data: bool,
    strict: bool,
) -> Result<Vec<Message>> {
    let op = if strict {
        "get_messages"
    } else {
        "get_existing_messages"
    };
    let found = by_id(&s.q(op), ids, want_data).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match found.get(id) {
            Some(m) => out.push(m.clone()),
            None if strict => return Err(StoreError::NotFound(format!("message {id}"))),
            None => {}
        }
    }
    Ok(out)
}

pub(crate) async fn status(
    s: &SeaOrmStore,
    id: MessageId,
) -> Result<Option<(Timestamp, Option<MessageResult>)>> {
    let q = s.q("get_message_status");
    let sql = "SELECT creation_time_seconds, creation_time_nanos, processed_time_seconds, processed_time_nanos, \
               failed, failed_reason FROM messages WHERE message_id = ?";
    let Some(r) = q.one(sql, vec![id.to_vec().into()]).await? else {
        return Ok(None);
    };
    let r = q.row(&r);
    let nanos = |v: i64| i32::try_from(v).unwrap_or(0);
    let created = Timestamp {
        seconds: r.i64(0)?,
        nanos: nanos(r.i64(1)?),
    };
    let result = match r.opt_i64(2)? {
        None => None,
        Some(seconds) => Some(MessageResult {
            processed_time: Some(Timestamp {
                seconds,
                nanos: nanos(r.opt_i64(3)?.unwrap_or(0)),
            }),
            failed: r.opt_i64(4)?.unwrap_or(0) != 0,
            failed_reason: r.string(5)?,
        }),
    };
    Ok(Some((created, result)))
}

/// Pending client-bound messages of `clients`, by message id.
fn pending_query(clients: &[ClientId], select: &str) -> (String, Vec<Value>) {
    let sql = format!(
        "SELECT {select} FROM messages m JOIN pending_messages pm ON pm.for_server = 0 AND pm.message_id = m.message_id \
         WHERE m.destination_client_id IN ({})",
        placeholders(clients.len())
    );
    (sql, clients.iter().map(|c| c.to_vec().into()).collect())
}

pub(crate) async fn pending(
    s: &SeaOrmStore,
    clients: &[ClientId],
    offset: u64,
    limit: u64,
    want_data: bool,
) -> Result<Vec<Message>> {
    if offset > 0 && limit == 0 {
        return Err(StoreError::Invalid(
            "if offset is provided, a limit must be provided as well".into(),
        ));
    }
    if clients.is_empty() {
        return Ok(Vec::new());
    }
    let q = s.q("get_pending_messages");
    let (mut sql, mut vals) =
        pending_query(clients, &format!("{MSG_COLS}, {}", data_cols(want_data)));
    sql.push_str(" ORDER BY m.message_id");
    if limit > 0 {
        sql.push_str(" LIMIT ? OFFSET ?");
        vals.extend([to_i64(limit).into(), to_i64(offset).into()]);
    }
    q.all(&sql, vals)
        .await?
        .iter()
        .map(|r| rows::decode(&q.row(r)))
        .collect()
}

pub(crate) async fn pending_count(s: &SeaOrmStore, clients: &[ClientId]) -> Result<u64> {
    if clients.is_empty() {
        return Ok(0);
    }
    let q = s.q("get_pending_message_count");
    let (sql, vals) = pending_query(clients, "COUNT(*)");
    let row = q.one(&sql, vals).await?;
    Ok(row.map(|r| q.row(&r).u64(0)).transpose()?.unwrap_or(0))
}

pub(crate) async fn delete_pending_messages(s: &SeaOrmStore, clients: &[ClientId]) -> Result<()> {
    if clients.is_empty() {
        return Ok(());
    }
    let result = fleetgate_types::message::failure(s.now(), "Removed by admin action.");
    let result = &result;
    s.tx("delete_pending_messages", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let (mut sql, vals) = pending_query(clients, "m.message_id");
            sql.push_str(q.d.for_update());
            let mut ids = Vec::new();
            for r in q.all(&sql, vals).await? {
                ids.push(
                    MessageId::from_bytes(&q.row(&r).bytes(0)?).map_err(|e| corrupt(q.op, e))?,
                );
            }
            fail_client_messages(&q, &ids, result).await
        })
    })
    .await
}
