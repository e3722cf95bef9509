//! The dead-letter RPCs of `fleetgate.admin.v1.FleetgateAdmin`: request checks and conversions.
//! Unknown and malformed IDs are errors naming the ID; a replay naming a message that is not
//! dead changes nothing.

use fleetgate_engine::Engine;
use fleetgate_pb::fleetgate::admin::v1 as pb;
use fleetgate_store::{DeadLetterInfo, DeadLetterQuery};
use fleetgate_types::MessageId;
use fleetgate_types::time::{from_timestamp, to_timestamp};
use tonic::Status;

use crate::status::{from_engine, from_store, invalid, not_found};

/// Letters listed when the request gives no limit.
const DEFAULT_LIMIT: usize = 1000;

/// A message ID of a request; `what` names it in the error.
fn message_id(raw: &[u8], what: &str) -> Result<MessageId, Status> {
    MessageId::from_bytes(raw).map_err(|e| {
        invalid(format!(
            "{what}: {:?} is not a message ID ({e})",
            hex::encode(raw)
        ))
    })
}

fn since(ts: Option<&prost_types::Timestamp>) -> Result<Option<std::time::SystemTime>, Status> {
    ts.map(|t| {
        from_timestamp(t).ok_or_else(|| invalid(format!("since: {t:?} is not a valid time")))
    })
    .transpose()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

pub(crate) fn to_pb(l: DeadLetterInfo) -> pb::DeadLetter {
    pb::DeadLetter {
        message_id: l.id.to_vec(),
        service: l.service,
        client_id: l.client.map(|c| c.to_vec()).unwrap_or_default(),
        message_type: l.message_type,
        reason: l.reason.as_str().into(),
        last_error: l.last_error,
        plugin: l.plugin,
        attempts: l.attempts,
        created: Some(to_timestamp(l.created)),
        died: Some(to_timestamp(l.died)),
        replays: l.replays,
        replayed: l.replayed.map(to_timestamp),
        message: l.message,
    }
}

pub(crate) async fn list(
    engine: &Engine,
    r: pb::ListDeadLettersRequest,
) -> Result<pb::ListDeadLettersResponse, Status> {
    let query = DeadLetterQuery {
        service: non_empty(r.service),
        since: since(r.since.as_ref())?,
        include_replayed: r.include_replayed,
        limit: if r.limit == 0 {
            DEFAULT_LIMIT
        } else {
            r.limit as usize
        },
    };
    let letters = engine
        .dead_letters(&query)
        .await
        .map_err(|e| from_store("can't list dead letters", e))?;
    Ok(pb::ListDeadLettersResponse {
        dead_letters: letters.into_iter().map(to_pb).collect(),
    })
}

pub(crate) async fn get(
    engine: &Engine,
    r: pb::GetDeadLetterRequest,
) -> Result<pb::DeadLetter, Status> {
    let id = message_id(&r.message_id, "message_id")?;
    engine
        .dead_letter_info(id)
        .await
        .map_err(|e| from_store("can't read the dead letter", e))?
        .map(to_pb)
        .ok_or_else(|| not_found(format!("message {id} is not a dead letter")))
}

pub(crate) async fn replay(
    engine: &Engine,
    r: pb::ReplayDeadLettersRequest,
) -> Result<pb::ReplayDeadLettersResponse, Status> {
    let ids = if r.message_ids.is_empty() {
        let Some(service) = non_empty(r.service) else {
            return Err(invalid(
                "give message_ids, or a service whose dead letters to replay",
            ));
        };
        let query = DeadLetterQuery {
            service: Some(service),
            since: since(r.since.as_ref())?,
            include_replayed: false,
            limit: 0,
        };
        engine
            .dead_letters(&query)
            .await
            .map_err(|e| from_store("can't list dead letters", e))?
            .into_iter()
            .map(|l| l.id)
            .collect()
    } else {
        if !r.service.is_empty() || r.since.is_some() {
            return Err(invalid("give message_ids or service/since, not both"));
        }
        r.message_ids
            .iter()
            .enumerate()
            .map(|(i, b)| message_id(b, &format!("message_ids[{i}]")))
            .collect::<Result<Vec<_>, _>>()?
    };
    if ids.is_empty() {
        return Ok(pb::ReplayDeadLettersResponse::default());
    }
    let done = engine
        .replay_dead_letters(&ids)
        .await
        .map_err(|e| from_engine("can't replay dead letters", e))?;
    if let Some(first) = done.not_dead.first() {
        let why = match engine.dead_letter_info(*first).await {
            Ok(Some(l)) if l.replayed.is_some() => "was replayed already and has not died since",
            _ => "is not a dead letter",
        };
        let more = match done.not_dead.len() {
            1 => String::new(),
            n => format!(" (and {} more not dead)", n - 1),
        };
        return Err(Status::failed_precondition(format!(
            "message {first} {why}{more}; nothing was replayed"
        )));
    }
    Ok(pb::ReplayDeadLettersResponse {
        replayed: done.replayed.iter().map(|m| m.message_id.clone()).collect(),
    })
}

pub(crate) async fn purge(
    engine: &Engine,
    r: pb::PurgeDeadLettersRequest,
) -> Result<pb::PurgeDeadLettersResponse, Status> {
    let service = non_empty(r.service);
    if service.is_none() && !r.all {
        return Err(invalid(
            "give the service whose dead letters to purge, or all to purge every one",
        ));
    }
    if service.is_some() && r.all {
        return Err(invalid("give a service or all, not both"));
    }
    let query = DeadLetterQuery {
        service,
        since: since(r.since.as_ref())?,
        include_replayed: true,
        limit: 0,
    };
    let purged = engine
        .purge_dead_letters(&query)
        .await
        .map_err(|e| from_store("can't purge dead letters", e))?;
    Ok(pb::PurgeDeadLettersResponse { purged })
}
