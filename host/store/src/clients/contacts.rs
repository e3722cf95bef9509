//! Client contacts: one row per poll or stream start, and the client's "last contact" columns.

use fleetgate_types::ClientId;
use fleetgate_types::pb::fleetspeak::server::ClientContact;
use sea_orm::Value;

use super::ts_from_nanos;
use crate::StoreError;
use crate::api::{ContactRecord, Result};
use crate::messages::write::corrupt;
use crate::store::SeaOrmStore;
use fleetgate_types::ContactId;

/// `client_contacts.address` is VARCHAR(64); a longer address must not make the contact fail.
const MAX_ADDRESS: usize = 64;

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(super) async fn record(s: &SeaOrmStore, c: &ContactRecord) -> Result<ContactId> {
    let id = c
        .client_id
        .ok_or_else(|| StoreError::Invalid("a contact needs a client ID".into()))?;
    let now = s.now_ns();
    s.tx("record_client_contact", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            let sql = "INSERT INTO client_contacts(client_id, time, sent_nonce, received_nonce, address) VALUES (?, ?, ?, ?, ?)";
            let vals: Vec<Value> = vec![
                id.to_vec().into(),
                now.into(),
                c.sent_nonce.to_le_bytes().to_vec().into(),
                c.received_nonce.to_le_bytes().to_vec().into(),
                truncate(&c.address, MAX_ADDRESS).to_owned().into(),
            ];
            let contact = q.exec(sql, vals).await?.last_insert_id();
            let streaming_to = (!c.streaming_to.is_empty()).then(|| c.streaming_to.clone());
            let clock = c.client_clock.filter(|t| t.seconds >= 0);
            let sql = "UPDATE clients SET last_contact_time = ?, last_contact_streaming_to = ?, last_contact_address = ?, \
                       last_clock_seconds = ?, last_clock_nanos = ? WHERE client_id = ?";
            let vals: Vec<Value> = vec![
                now.into(),
                streaming_to.into(),
                c.address.clone().into(),
                clock.map(|t| t.seconds).into(),
                clock.map(|t| i64::from(t.nanos.max(0))).into(),
                id.to_vec().into(),
            ];
            q.exec(sql, vals).await?;
            Ok(ContactId(contact))
        })
    })
    .await
}

fn nonce(op: &'static str, b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| corrupt(op, format!("nonce of {} bytes", b.len())))?;
    Ok(u64::from_le_bytes(arr))
}

pub(super) async fn list(s: &SeaOrmStore, id: ClientId) -> Result<Vec<ClientContact>> {
    let q = s.q("list_client_contacts");
    let sql = "SELECT time, sent_nonce, received_nonce, address FROM client_contacts WHERE client_id = ? \
               ORDER BY client_contact_id";
    q.all(sql, vec![id.to_vec().into()])
        .await?
        .iter()
        .map(|r| {
            let r = q.row(r);
            Ok(ClientContact {
                sent_nonce: nonce(q.op, &r.bytes(1)?)?,
                received_nonce: nonce(q.op, &r.bytes(2)?)?,
                observed_address: r.string(3)?,
                timestamp: Some(ts_from_nanos(r.i64(0)?)),
            })
        })
        .collect()
}
