//! [`ClientStore`] over `clients`, `client_labels`, `client_contacts`, `client_contact_messages`
//! and `client_resource_usage_records`.

mod contacts;
mod resources;

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use fleetgate_types::pb::fleetspeak::Label;
use fleetgate_types::pb::fleetspeak::monitoring::ResourceUsageData;
use fleetgate_types::pb::fleetspeak::server::{Client, ClientContact, ClientResourceUsageRecord};
use fleetgate_types::time::unix_nanos;
use fleetgate_types::{ClientId, ContactId, MessageId};
use prost_types::Timestamp;
use sea_orm::{ConnectionTrait, Value};

use crate::StoreError;
use crate::api::{ClientData, ClientStore, ContactRecord, Result};
use crate::db::{self, CHUNK, Q, placeholders};
use crate::messages::write::corrupt;
use crate::store::SeaOrmStore;

/// A timestamp from nanoseconds since the epoch.
pub(crate) fn ts_from_nanos(n: i64) -> Timestamp {
    Timestamp {
        seconds: n.div_euclid(1_000_000_000),
        nanos: n.rem_euclid(1_000_000_000) as i32,
    }
}

fn client_id(op: &'static str, b: &[u8]) -> Result<ClientId> {
    ClientId::from_bytes(b).map_err(|e| corrupt(op, e))
}

const CLIENT_COLS: &str = "c.client_id, c.last_contact_time, c.last_contact_address, \
                           c.last_contact_streaming_to, c.last_clock_seconds, c.last_clock_nanos, \
                           c.blacklisted";

/// The clients of `ids` (every client when empty) with their labels. One statement per chunk,
/// with the labels joined in: InsertMessage reads its destination this way, and a transaction
/// around two statements cost four round trips where this costs one.
async fn list<C: ConnectionTrait>(q: &Q<'_, C>, ids: &[ClientId]) -> Result<Vec<Client>> {
    let mut clients: Vec<Client> = Vec::new();
    // A client's rows (one per label) need not be adjacent; this finds its entry.
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let chunks: Vec<&[ClientId]> = if ids.is_empty() {
        vec![&[]]
    } else {
        ids.chunks(CHUNK).collect()
    };
    for chunk in chunks {
        let filter = if chunk.is_empty() {
            String::new()
        } else {
            format!(" WHERE c.client_id IN ({})", placeholders(chunk.len()))
        };
        let sql = format!(
            "SELECT {CLIENT_COLS}, l.service_name, l.label FROM clients c \
             LEFT JOIN client_labels l ON l.client_id = c.client_id{filter}"
        );
        let vals: Vec<Value> = chunk.iter().map(|c| c.to_vec().into()).collect();
        for r in q.all(&sql, vals).await? {
            let r = q.row(&r);
            let id = r.bytes(0)?;
            let i = match index.get(&id) {
                Some(&i) => i,
                None => {
                    clients.push(client_row(&r)?);
                    index.insert(id, clients.len() - 1);
                    clients.len() - 1
                }
            };
            if let Some(service_name) = r.opt_string(7)? {
                clients[i].labels.push(Label {
                    service_name,
                    label: r.string(8)?,
                });
            }
        }
    }
    Ok(clients)
}

fn client_row(r: &crate::db::Row<'_>) -> Result<Client> {
    let last_clock = match r.opt_u64(4)? {
        Some(secs) => Some(Timestamp {
            seconds: i64::try_from(secs).unwrap_or(i64::MAX),
            nanos: r
                .opt_u64(5)?
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
        }),
        None => None,
    };
    Ok(Client {
        client_id: r.bytes(0)?,
        labels: Vec::new(),
        last_contact_time: Some(ts_from_nanos(r.i64(1)?)),
        last_contact_address: r.string(2)?,
        last_clock,
        blacklisted: r.bool(6)?,
        last_contact_streaming_to: r.string(3)?,
    })
}

#[async_trait]
impl ClientStore for SeaOrmStore {
    async fn list_clients(&self, ids: &[ClientId]) -> Result<Vec<Client>> {
        // One statement, so no transaction is needed for a consistent answer.
        db::retry("list_clients", || {
            Box::pin(async move { list(&self.q("list_clients"), ids).await })
        })
        .await
    }

    async fn stream_client_ids(
        &self,
        include_blacklisted: bool,
        last_contact_after: Option<SystemTime>,
    ) -> Result<Vec<ClientId>> {
        let q = self.q("stream_client_ids");
        let mut sql = String::from("SELECT client_id FROM clients WHERE last_contact_time > ?");
        if !include_blacklisted {
            sql.push_str(" AND blacklisted = 0");
        }
        let after = last_contact_after.map(unix_nanos).unwrap_or(i64::MIN);
        q.all(&sql, vec![after.into()])
            .await?
            .iter()
            .map(|r| client_id(q.op, &q.row(r).bytes(0)?))
            .collect()
    }

    async fn get_client_data(&self, id: ClientId) -> Result<ClientData> {
        self.tx("get_client_data", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                let sql = "SELECT client_key, blacklisted FROM clients WHERE client_id = ?";
                let row = q.one(sql, vec![id.to_vec().into()]).await?;
                let Some(row) = row else {
                    return Err(StoreError::NotFound(format!("client {id}")));
                };
                let (key, blacklisted) = (q.row(&row).bytes(0)?, q.row(&row).bool(1)?);
                let sql = "SELECT service_name, label FROM client_labels WHERE client_id = ?";
                let labels = q
                    .all(sql, vec![id.to_vec().into()])
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(Label {
                            service_name: q.row(r).string(0)?,
                            label: q.row(r).string(1)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(ClientData {
                    key,
                    labels,
                    blacklisted,
                })
            })
        })
        .await
    }

    async fn add_client(&self, id: ClientId, data: &ClientData) -> Result<()> {
        let now = self.now_ns();
        self.tx("add_client", move |tx| {
            Box::pin(async move {
                let q = tx.q();
                let sql = "INSERT INTO clients(client_id, client_key, blacklisted, last_contact_time) VALUES (?, ?, ?, ?)";
                let vals = vec![id.to_vec().into(), data.key.clone().into(), data.blacklisted.into(), now.into()];
                q.exec(sql, vals).await?;
                q.insert_labels("client_labels", "client_id", &id.to_vec(), &data.labels).await?;
                Ok(())
            })
        })
        .await
    }

    async fn add_client_label(&self, id: ClientId, label: &Label) -> Result<()> {
        let sql = "INSERT INTO client_labels(client_id, service_name, label) VALUES (?, ?, ?)";
        let vals: Vec<Value> = vec![
            id.to_vec().into(),
            label.service_name.clone().into(),
            label.label.clone().into(),
        ];
        let q = self.q("add_client_label");
        crate::db::retry(q.op, || Box::pin(q.exec(sql, vals.clone())))
            .await
            .map(|_| ())
    }

    async fn remove_client_label(&self, id: ClientId, label: &Label) -> Result<()> {
        let sql =
            "DELETE FROM client_labels WHERE client_id = ? AND service_name = ? AND label = ?";
        let vals: Vec<Value> = vec![
            id.to_vec().into(),
            label.service_name.clone().into(),
            label.label.clone().into(),
        ];
        let q = self.q("remove_client_label");
        crate::db::retry(q.op, || Box::pin(q.exec(sql, vals.clone())))
            .await
            .map(|_| ())
    }

    async fn blacklist_client(&self, id: ClientId) -> Result<()> {
        let sql = "UPDATE clients SET blacklisted = ? WHERE client_id = ?";
        let vals: Vec<Value> = vec![true.into(), id.to_vec().into()];
        let q = self.q("blacklist_client");
        crate::db::retry(q.op, || Box::pin(q.exec(sql, vals.clone())))
            .await
            .map(|_| ())
    }

    async fn record_client_contact(&self, contact: &ContactRecord) -> Result<ContactId> {
        contacts::record(self, contact).await
    }

    async fn list_client_contacts(&self, id: ClientId) -> Result<Vec<ClientContact>> {
        contacts::list(self, id).await
    }

    async fn link_messages_to_contact(&self, contact: ContactId, ids: &[MessageId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.tx("link_messages_to_contact", move |tx| {
            Box::pin(async move {
                crate::messages::write::link(&tx, contact, ids.iter().copied(), false).await
            })
        })
        .await
    }

    async fn record_resource_usage_data(
        &self,
        id: ClientId,
        rud: &ResourceUsageData,
    ) -> Result<()> {
        resources::record(self, id, rud).await
    }

    async fn fetch_resource_usage_records(
        &self,
        id: ClientId,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Vec<ClientResourceUsageRecord>> {
        resources::fetch(self, id, start, end).await
    }
}
