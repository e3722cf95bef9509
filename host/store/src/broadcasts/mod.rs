//! [`BroadcastStore`] over `broadcasts`, `broadcast_labels`, `broadcast_allocations` and
//! `broadcast_sent`.

mod alloc;
pub mod arithmetic;

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use fleetgate_types::pb::fleetspeak::server::Broadcast;
use fleetgate_types::pb::fleetspeak::{Address, Label, Message};
use fleetgate_types::time::to_timestamp;
use fleetgate_types::{BroadcastId, ClientId};
use prost_types::{Any, Timestamp};
use sea_orm::Value;

use crate::StoreError;
use crate::api::{AllocationInfo, BroadcastInfo, BroadcastStore, Result};
use crate::db::{CHUNK, Row, placeholders, to_i64};
use crate::messages::write::corrupt;
use crate::store::SeaOrmStore;

const BROADCAST_COLS: &str = "broadcast_id, source_service_name, destination_service_name, message_type, \
     expiration_time_seconds, expiration_time_nanos, data_type_url, data_value, sent, message_limit";

fn decode(r: &Row<'_>) -> Result<BroadcastInfo> {
    let expiration = match (r.opt_i64(4)?, r.opt_i64(5)?) {
        (Some(seconds), Some(nanos)) => Some(Timestamp {
            seconds,
            nanos: i32::try_from(nanos).unwrap_or(0),
        }),
        _ => None,
    };
    let data = match r.opt_string(6)? {
        Some(type_url) => Some(Any {
            type_url,
            value: r.bytes(7)?,
        }),
        None => None,
    };
    let broadcast = Broadcast {
        broadcast_id: r.bytes(0)?,
        source: Some(Address {
            client_id: Vec::new(),
            service_name: r.string(1)?,
        }),
        message_type: r.string(3)?,
        required_labels: Vec::new(),
        expiration_time: expiration,
        data,
        destination: r.opt_string(2)?.map(|service_name| Address {
            client_id: Vec::new(),
            service_name,
        }),
        group_name: String::new(),
    };
    Ok(BroadcastInfo {
        broadcast,
        sent: r.u64(8)?,
        limit: r.u64(9)?,
    })
}

async fn create(s: &SeaOrmStore, b: &Broadcast, limit: u64) -> Result<()> {
    if !b.group_name.is_empty() {
        return Err(StoreError::NotSupported(
            "broadcast replacement (group_name) is not supported".into(),
        ));
    }
    let id =
        BroadcastId::from_bytes(&b.broadcast_id).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let source = b
        .source
        .as_ref()
        .ok_or_else(|| StoreError::Invalid("Broadcast must have Source".into()))?;
    let exp = b.expiration_time;
    let vals: Vec<Value> = vec![
        id.to_vec().into(),
        source.service_name.clone().into(),
        b.destination
            .as_ref()
            .map(|d| d.service_name.clone())
            .into(),
        b.message_type.clone().into(),
        exp.map(|t| t.seconds).into(),
        exp.map(|t| i64::from(t.nanos)).into(),
        b.data.as_ref().map(|d| d.type_url.clone()).into(),
        b.data.as_ref().map(|d| d.value.clone()).into(),
        to_i64(limit).into(),
    ];
    let vals = &vals;
    s.tx("create_broadcast", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let sql = "INSERT INTO broadcasts(broadcast_id, source_service_name, destination_service_name, message_type, \
                       expiration_time_seconds, expiration_time_nanos, data_type_url, data_value, sent, allocated, \
                       message_limit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)";
            q.exec(sql, vals.clone()).await?;
            q.insert_labels("broadcast_labels", "broadcast_id", &id.to_vec(), &b.required_labels)
                .await?;
            Ok(())
        })
    })
    .await
}

async fn list_active(s: &SeaOrmStore) -> Result<Vec<BroadcastInfo>> {
    let now = to_timestamp(s.now());
    s.tx("list_active_broadcasts", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let sql = format!(
                "SELECT {BROADCAST_COLS} FROM broadcasts WHERE sent < message_limit AND (expiration_time_seconds IS NULL \
                 OR expiration_time_seconds > ? OR (expiration_time_seconds = ? AND expiration_time_nanos > ?))"
            );
            let vals: Vec<Value> = vec![now.seconds.into(), now.seconds.into(), i64::from(now.nanos).into()];
            let mut infos = q.all(&sql, vals).await?.iter().map(|r| decode(&q.row(r))).collect::<Result<Vec<_>>>()?;
            let mut labels: HashMap<Vec<u8>, Vec<Label>> = HashMap::new();
            let ids: Vec<Vec<u8>> = infos.iter().map(|i| i.broadcast.broadcast_id.clone()).collect();
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "SELECT broadcast_id, service_name, label FROM broadcast_labels WHERE broadcast_id IN ({})",
                    placeholders(chunk.len())
                );
                for r in q.all(&sql, chunk.iter().map(|id| id.clone().into()).collect()).await? {
                    let r = q.row(&r);
                    let l = Label { service_name: r.string(1)?, label: r.string(2)? };
                    labels.entry(r.bytes(0)?).or_default().push(l);
                }
            }
            for i in &mut infos {
                i.broadcast.required_labels = labels.remove(&i.broadcast.broadcast_id).unwrap_or_default();
            }
            Ok(infos)
        })
    })
    .await
}

#[async_trait]
impl BroadcastStore for SeaOrmStore {
    async fn create_broadcast(&self, b: &Broadcast, limit: u64) -> Result<()> {
        create(self, b, limit).await
    }

    async fn disable_broadcasts(&self, ids: &[BroadcastId]) -> Result<()> {
        alloc::disable(self, ids).await
    }

    async fn list_active_broadcasts(&self) -> Result<Vec<BroadcastInfo>> {
        list_active(self).await
    }

    async fn list_sent_broadcasts(&self, client: ClientId) -> Result<Vec<BroadcastId>> {
        let q = self.q("list_sent_broadcasts");
        let sql =
            "SELECT broadcast_id FROM broadcast_sent WHERE client_id = ? ORDER BY broadcast_id";
        q.all(sql, vec![client.to_vec().into()])
            .await?
            .iter()
            .map(|r| BroadcastId::from_bytes(&q.row(r).bytes(0)?).map_err(|e| corrupt(q.op, e)))
            .collect()
    }

    async fn create_allocation(
        &self,
        id: BroadcastId,
        frac: f32,
        expiry: SystemTime,
    ) -> Result<Option<AllocationInfo>> {
        alloc::create(self, id, frac, expiry).await
    }

    async fn save_broadcast_message(
        &self,
        msg: &Message,
        broadcast: BroadcastId,
        client: ClientId,
        allocation: Option<[u8; 8]>,
    ) -> Result<()> {
        alloc::save_message(self, msg, broadcast, client, allocation).await
    }

    async fn cleanup_allocation(
        &self,
        broadcast: BroadcastId,
        allocation: Option<[u8; 8]>,
        final_sent: u64,
    ) -> Result<()> {
        alloc::cleanup(self, broadcast, allocation, final_sent).await
    }
}
