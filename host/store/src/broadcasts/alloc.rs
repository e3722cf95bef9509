//! Allocations and broadcast counters. Every read of a counter that a write depends on locks the
//! row (MySQL) or runs in SQLite's single-writer transaction, and counters that others may bump
//! concurrently are updated relatively, so no update is lost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetgate_types::pb::fleetspeak::Message;
use fleetgate_types::time::{client_retry_time, to_timestamp, unix_micros};
use fleetgate_types::{BroadcastId, ClientId};
use sea_orm::Value;

use super::arithmetic::{compute_allocation, compute_cleanup};
use crate::StoreError;
use crate::api::{AllocationInfo, Result};
use crate::db::to_i64;
use crate::messages::{rows, write};
use crate::store::SeaOrmStore;

fn disabled(what: String) -> StoreError {
    StoreError::BroadcastDisabled(what)
}

pub(super) async fn disable(s: &SeaOrmStore, ids: &[BroadcastId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    s.tx("disable_broadcasts", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            for id in ids {
                let sql = format!(
                    "SELECT sent, message_limit FROM broadcast_allocations WHERE broadcast_id = ?{}",
                    q.d.for_update()
                );
                let (mut sent, mut limit) = (0u64, 0u64);
                for r in q.all(&sql, vec![id.to_vec().into()]).await? {
                    let r = q.row(&r);
                    sent = sent.saturating_add(r.u64(0)?);
                    limit = limit.saturating_add(r.u64(1)?);
                }
                q.exec("DELETE FROM broadcast_allocations WHERE broadcast_id = ?", vec![id.to_vec().into()]).await?;
                let sql = "UPDATE broadcasts SET message_limit = 0, sent = sent + ?, \
                           allocated = CASE WHEN allocated >= ? THEN allocated - ? ELSE 0 END WHERE broadcast_id = ?";
                let (sent, limit) = (to_i64(sent), to_i64(limit));
                q.exec(sql, vec![sent.into(), limit.into(), limit.into(), id.to_vec().into()]).await?;
            }
            Ok(())
        })
    })
    .await
}

pub(super) async fn create(
    s: &SeaOrmStore,
    id: BroadcastId,
    frac: f32,
    expiry: SystemTime,
) -> Result<Option<AllocationInfo>> {
    let exp = to_timestamp(expiry);
    s.tx("create_allocation", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let sql = format!(
                "SELECT sent, allocated, message_limit FROM broadcasts WHERE broadcast_id = ?{}",
                q.d.for_update()
            );
            let row = q.one(&sql, vec![id.to_vec().into()]).await?;
            let row = row.ok_or_else(|| StoreError::NotFound(format!("broadcast {id}")))?;
            let r = q.row(&row);
            let (n, allocated) = compute_allocation(r.u64(2)?, r.u64(1)?, r.u64(0)?, frac);
            if n == 0 {
                return Ok(None);
            }
            let sql = "UPDATE broadcasts SET allocated = ? WHERE broadcast_id = ?";
            q.exec(sql, vec![to_i64(allocated).into(), id.to_vec().into()]).await?;
            let aid: [u8; 8] = rand::random();
            let sql = "INSERT INTO broadcast_allocations(broadcast_id, allocation_id, sent, message_limit, \
                       expiration_time_seconds, expiration_time_nanos) VALUES (?, ?, 0, ?, ?, ?)";
            let vals: Vec<Value> = vec![
                id.to_vec().into(),
                aid.to_vec().into(),
                to_i64(n).into(),
                exp.seconds.into(),
                i64::from(exp.nanos).into(),
            ];
            q.exec(sql, vals).await?;
            Ok(Some(AllocationInfo { id: aid, limit: n, expiry }))
        })
    })
    .await
}

pub(super) async fn save_message(
    s: &SeaOrmStore,
    msg: &Message,
    bid: BroadcastId,
    client: ClientId,
    aid: Option<[u8; 8]>,
) -> Result<()> {
    let row = rows::encode(msg)?;
    let row = &row;
    let now = s.now();
    let due = unix_micros(client_retry_time(now));
    s.tx("save_broadcast_message", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let exists = q
                .one(
                    "SELECT 1 FROM messages WHERE message_id = ?",
                    vec![row.id.to_vec().into()],
                )
                .await?;
            if exists.is_none() {
                rows::check_creation_time(msg)?;
                write::insert_rows(&q, &[row], &|_| due).await?;
            }
            match aid {
                None => check_broadcast(&q, bid).await?,
                Some(aid) => take_from_allocation(&q, bid, aid, now).await?,
            }
            let sql = "INSERT INTO broadcast_sent(broadcast_id, client_id) VALUES (?, ?)";
            q.exec(sql, vec![bid.to_vec().into(), client.to_vec().into()])
                .await?;
            Ok(())
        })
    })
    .await
}

type TxQ<'a> = crate::db::Q<'a, sea_orm::DatabaseTransaction>;

/// Without an allocation (unlimited broadcasts) the broadcast only has to be enabled.
async fn check_broadcast(q: &TxQ<'_>, bid: BroadcastId) -> Result<()> {
    let row = q
        .one(
            "SELECT message_limit FROM broadcasts WHERE broadcast_id = ?",
            vec![bid.to_vec().into()],
        )
        .await?;
    match row {
        None => Err(disabled(format!("broadcast {bid} does not exist"))),
        Some(r) if q.row(&r).u64(0)? == 0 => Err(disabled(format!("broadcast {bid} is disabled"))),
        Some(_) => Ok(()),
    }
}

/// Counts one message against allocation `aid`, which must exist, have room and not be expired.
async fn take_from_allocation(
    q: &TxQ<'_>,
    bid: BroadcastId,
    aid: [u8; 8],
    now: SystemTime,
) -> Result<()> {
    let aid_hex = hex::encode(aid);
    let sql = format!(
        "SELECT sent, message_limit, expiration_time_seconds, expiration_time_nanos FROM broadcast_allocations \
         WHERE broadcast_id = ? AND allocation_id = ?{}",
        q.d.for_update()
    );
    let row = q
        .one(&sql, vec![bid.to_vec().into(), aid.to_vec().into()])
        .await?;
    let row =
        row.ok_or_else(|| disabled(format!("allocation [{aid_hex}, {bid}] does not exist")))?;
    let r = q.row(&row);
    let (sent, limit) = (r.u64(0)?, r.u64(1)?);
    if sent >= limit {
        return Err(disabled(format!(
            "allocation [{aid_hex}, {bid}] is full: sent {sent}, limit {limit}"
        )));
    }
    let secs = u64::try_from(r.opt_i64(2)?.unwrap_or(0)).unwrap_or(0);
    let nanos = u32::try_from(r.opt_i64(3)?.unwrap_or(0)).unwrap_or(0);
    let expiry = UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999));
    if now > expiry {
        return Err(disabled(format!("allocation [{aid_hex}, {bid}] expired")));
    }
    let sql = "UPDATE broadcast_allocations SET sent = sent + 1 WHERE broadcast_id = ? AND allocation_id = ?";
    q.exec(sql, vec![bid.to_vec().into(), aid.to_vec().into()])
        .await?;
    Ok(())
}

pub(super) async fn cleanup(
    s: &SeaOrmStore,
    bid: BroadcastId,
    aid: Option<[u8; 8]>,
    final_sent: u64,
) -> Result<()> {
    s.tx("cleanup_allocation", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let sql = format!("SELECT allocated FROM broadcasts WHERE broadcast_id = ?{}", q.d.for_update());
            let row = q.one(&sql, vec![bid.to_vec().into()]).await?;
            let row = row.ok_or_else(|| StoreError::NotFound(format!("broadcast {bid}")))?;
            let allocated = q.row(&row).u64(0)?;
            let sent = to_i64(final_sent);
            let Some(aid) = aid else {
                let sql = "UPDATE broadcasts SET sent = sent + ? WHERE broadcast_id = ?";
                q.exec(sql, vec![sent.into(), bid.to_vec().into()]).await?;
                return Ok(());
            };
            let sql = format!(
                "SELECT message_limit FROM broadcast_allocations WHERE broadcast_id = ? AND allocation_id = ?{}",
                q.d.for_update()
            );
            let Some(row) = q.one(&sql, vec![bid.to_vec().into(), aid.to_vec().into()]).await? else {
                return Ok(());
            };
            let allocated = compute_cleanup(q.row(&row).u64(0)?, allocated)?;
            let sql = "UPDATE broadcasts SET sent = sent + ?, allocated = ? WHERE broadcast_id = ?";
            q.exec(sql, vec![sent.into(), to_i64(allocated).into(), bid.to_vec().into()]).await?;
            let sql = "DELETE FROM broadcast_allocations WHERE broadcast_id = ? AND allocation_id = ?";
            q.exec(sql, vec![bid.to_vec().into(), aid.to_vec().into()]).await?;
            Ok(())
        })
    })
    .await
}
