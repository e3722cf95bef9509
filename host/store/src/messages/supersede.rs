//! A client's new stream supersedes its earlier contacts: what they were handed and never
//! acknowledged becomes due again (ARCHITECTURE.md, "Redelivery after a lost stream").
//!
//! Only the lease is shortened. The message, its payload, its retry count and its contact links
//! stay as they are, so a Go server sharing the database sees an ordinary pending message whose
//! lease ran out early; no table of Fleetspeak's changes shape.

use std::time::Duration;

use fleetgate_types::time::unix_micros;
use fleetgate_types::{ClientId, ContactId, MessageId};
use sea_orm::Value;

use super::write::corrupt;
use crate::api::Result;
use crate::db::{CHUNK, placeholders, to_i64};
use crate::store::SeaOrmStore;

pub(crate) async fn redeliver(
    s: &SeaOrmStore,
    client: ClientId,
    contact: ContactId,
    grace: Duration,
) -> Result<u64> {
    let due_us = unix_micros(s.now() + grace);
    let contact = to_i64(contact.0);
    s.tx("redeliver_superseded", move |tx| {
        Box::pin(async move {
            let q = tx.q();
            // Driven by the client's pending rows (few), not by its contact links (every message
            // it ever sent or got while contacts are retained). A row due sooner is not a lease
            // any more, or already released: it is left alone. A message whose latest lease went
            // to `contact` or a later contact belongs to a live stream, not a superseded one.
            let sql = "SELECT pm.message_id FROM messages m \
                 JOIN pending_messages pm ON pm.for_server = 0 AND pm.message_id = m.message_id \
                 WHERE m.destination_client_id = ? AND pm.scheduled_time > ? \
                 AND EXISTS (SELECT 1 FROM client_contact_messages ccm \
                   JOIN client_contacts cc ON cc.client_contact_id = ccm.client_contact_id \
                   WHERE ccm.message_id = m.message_id AND cc.client_id = ? \
                   AND ccm.client_contact_id < ?) \
                 AND NOT EXISTS (SELECT 1 FROM client_contact_messages ccm \
                   WHERE ccm.message_id = m.message_id AND ccm.client_contact_id >= ?) \
                 ORDER BY m.message_id";
            let vals: Vec<Value> = vec![
                client.to_vec().into(),
                due_us.into(),
                client.to_vec().into(),
                contact.into(),
                contact.into(),
            ];
            let mut ids = Vec::new();
            for r in q.all(sql, vals).await? {
                ids.push(
                    MessageId::from_bytes(&q.row(&r).bytes(0)?).map_err(|e| corrupt(q.op, e))?,
                );
            }
            // The update re-checks the schedule: a row acked (deleted) or released by another
            // server since the read is not touched, and the count is what really changed.
            let mut n = 0;
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "UPDATE pending_messages SET scheduled_time = ? \
                     WHERE for_server = 0 AND scheduled_time > ? AND message_id IN ({})",
                    placeholders(chunk.len())
                );
                let mut vals: Vec<Value> = vec![due_us.into(), due_us.into()];
                vals.extend(chunk.iter().map(|id| id.to_vec().into()));
                n += q.exec(&sql, vals).await?.rows_affected();
            }
            Ok(n)
        })
    })
    .await
}
