//! Request checks shared by both services: IDs, times, and messages to insert (admin.md §2).
//!
//! Empty ID bytes are the nil ID, as in the original: no error, and it matches nothing.

use std::collections::HashSet;
use std::time::SystemTime;

use fleetgate_engine::Engine;
use fleetgate_pb::fleetspeak::Message;
use fleetgate_pb::fleetspeak::server::Client;
use fleetgate_types::time::{from_timestamp, to_timestamp};
use fleetgate_types::{BroadcastId, ClientId, MessageId};
use prost::Message as _;
use tonic::Status;

use crate::lock::Grant;
use crate::status::{from_store, invalid, not_found};

/// A message for one client may not exceed this size, as in the original.
pub const MAX_CLIENT_MESSAGE: usize = 2 * 1024 * 1024;

/// Client IDs of a request, nil ones dropped. `None` when the request named only nil IDs, which
/// must match nothing rather than fall back to "every client".
pub(crate) fn client_ids(raw: &[Vec<u8>]) -> Result<Option<Vec<ClientId>>, Status> {
    let mut ids = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        let id = ClientId::from_wire(b)
            .map_err(|e| invalid(format!("unable to parse id [{i}]: {e}")))?;
        ids.extend(id);
    }
    Ok((raw.is_empty() || !ids.is_empty()).then_some(ids))
}

pub(crate) fn client_id(raw: &[u8]) -> Result<Option<ClientId>, Status> {
    ClientId::from_wire(raw).map_err(|e| invalid(format!("unable to parse client ID: {e}")))
}

pub(crate) fn broadcast_ids(raw: &[Vec<u8>]) -> Result<Vec<BroadcastId>, Status> {
    let mut ids = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        let id = BroadcastId::from_wire(b)
            .map_err(|e| invalid(format!("unable to parse broadcast id [{i}]: {e}")))?;
        ids.extend(id);
    }
    Ok(ids)
}

pub(crate) fn time(ts: Option<&prost_types::Timestamp>, what: &str) -> Result<SystemTime, Status> {
    ts.and_then(from_timestamp)
        .ok_or_else(|| invalid(format!("{what} is missing or invalid")))
}

/// Checks a message to insert, that `grant` may address its service, and completes it (ID and
/// creation time, so its size is final). Returns its destination client, if any.
pub(crate) fn message(
    m: &mut Message,
    engine: &Engine,
    grant: &Grant,
) -> Result<Option<ClientId>, Status> {
    let Some(service) = m
        .destination
        .as_ref()
        .map(|d| d.service_name.as_str())
        .filter(|s| !s.is_empty())
    else {
        return Err(invalid("message must have Destination"));
    };
    grant.may_send_to(service)?;
    if m.source.as_ref().is_none_or(|s| s.service_name.is_empty()) {
        return Err(invalid("message must have Source"));
    }
    if m.message_id.is_empty() {
        m.message_id = MessageId::random().to_vec();
    }
    if m.creation_time.is_none() {
        m.creation_time = Some(to_timestamp(engine.clock().now()));
    }
    let raw = m
        .destination
        .as_ref()
        .map(|d| d.client_id.as_slice())
        .unwrap_or_default();
    let dest = ClientId::from_wire(raw).map_err(|e| {
        invalid(format!(
            "error parsing destination.client_id ({}): {e}",
            hex::encode(raw)
        ))
    })?;
    if let Some(client) = dest {
        let size = m.encoded_len();
        if size > MAX_CLIENT_MESSAGE {
            return Err(invalid(format!(
                "message intended for client {client} is of size {size}, which exceeds the {MAX_CLIENT_MESSAGE}-byte limit"
            )));
        }
    }
    Ok(dest)
}

/// Every destination client must exist: a message to a never-seen client is refused, as in the
/// original. One store read for the whole batch; returns the records, which also say where each
/// client streams, so the engine need not read them again to notify that server.
pub(crate) async fn clients_exist(
    engine: &Engine,
    clients: &[ClientId],
) -> Result<Vec<Client>, Status> {
    let wanted: HashSet<ClientId> = clients.iter().copied().collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let ask: Vec<ClientId> = wanted.iter().copied().collect();
    let found = engine
        .store()
        .list_clients(&ask)
        .await
        .map_err(|e| from_store("error listing destination client", e))?;
    let ids: HashSet<&[u8]> = found.iter().map(|c| c.client_id.as_slice()).collect();
    for c in clients {
        if !ids.contains(c.as_bytes().as_slice()) {
            return Err(not_found(format!(
                "expected 1 destination client result, got 0 ({c})"
            )));
        }
    }
    Ok(found)
}
