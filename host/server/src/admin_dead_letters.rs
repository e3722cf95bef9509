//! `fleetgate admin deadletters …`: the dead-letter RPCs of the extension API, as tables for
//! people or JSON for scripts.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_client::FleetgateAdminClient;
use fleetgate_pb::fleetgate::admin::v1::{
    DeadLetter, GetDeadLetterRequest, ListDeadLettersRequest, PurgeDeadLettersRequest,
    ReplayDeadLettersRequest,
};
use fleetgate_types::MessageId;
use fleetgate_types::time::to_timestamp;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::admin_format::time;
use crate::args::DeadLettersCommand;

pub async fn run(
    ext: &mut FleetgateAdminClient<Channel>,
    c: DeadLettersCommand,
    json: bool,
) -> Result<String> {
    match c {
        DeadLettersCommand::List {
            service,
            since: within,
            replayed,
            limit,
        } => {
            let req = ListDeadLettersRequest {
                service: service.unwrap_or_default(),
                since: since(within.as_deref())?,
                include_replayed: replayed,
                limit,
            };
            let letters = ext
                .list_dead_letters(req)
                .await
                .map_err(|s| anyhow!("ListDeadLetters failed: {}", s.message()))?
                .into_inner()
                .dead_letters;
            Ok(list(&letters, json))
        }
        DeadLettersCommand::Show { message_id } => {
            let id = message_id_arg(&message_id)?;
            let l = ext
                .get_dead_letter(GetDeadLetterRequest {
                    message_id: id.to_vec(),
                })
                .await
                .map_err(|s| anyhow!("GetDeadLetter failed: {}", s.message()))?
                .into_inner();
            Ok(show(&l, json))
        }
        DeadLettersCommand::Replay {
            message_ids,
            service,
            since: within,
        } => {
            let ids = message_ids
                .iter()
                .map(|s| message_id_arg(s).map(|id| id.to_vec()))
                .collect::<Result<Vec<_>>>()?;
            let req = ReplayDeadLettersRequest {
                message_ids: ids,
                service: service.unwrap_or_default(),
                since: since(within.as_deref())?,
            };
            let r = ext
                .replay_dead_letters(req)
                .await
                .map_err(|s| anyhow!("ReplayDeadLetters failed: {}", s.message()))?
                .into_inner();
            let ids: Vec<String> = r.replayed.iter().map(hex::encode).collect();
            Ok(if json {
                pretty(json!({ "replayed": ids }))
            } else {
                let mut out = format!("Replayed {} dead letters.", ids.len());
                for id in ids {
                    out += &format!("\n{id}");
                }
                out
            })
        }
        DeadLettersCommand::Purge {
            service,
            since: within,
            all,
        } => {
            let req = PurgeDeadLettersRequest {
                service: service.unwrap_or_default(),
                since: since(within.as_deref())?,
                all,
            };
            let n = ext
                .purge_dead_letters(req)
                .await
                .map_err(|s| anyhow!("PurgeDeadLetters failed: {}", s.message()))?
                .into_inner()
                .purged;
            Ok(if json {
                format!("{{\"purged\":{n}}}")
            } else {
                format!("Purged {n} dead letters.")
            })
        }
    }
}

fn message_id_arg(s: &str) -> Result<MessageId> {
    MessageId::from_hex(s).with_context(|| format!("{s:?} is not a message ID (64 hex digits)"))
}

/// `--since 24h`: letters that died within that duration before now.
fn since(within: Option<&str>) -> Result<Option<prost_types::Timestamp>> {
    let Some(d) = within else { return Ok(None) };
    let d: Duration = fleetgate_config::duration::parse_go_duration(d)
        .map_err(|e| anyhow!("--since {d:?}: {e}"))?;
    let at = SystemTime::now()
        .checked_sub(d)
        .ok_or_else(|| anyhow!("--since {d:?} reaches before 1970"))?;
    Ok(Some(to_timestamp(at)))
}

fn pretty(v: Value) -> String {
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn letter_json(l: &DeadLetter) -> Value {
    let mut v = json!({
        "message_id": hex::encode(&l.message_id),
        "service": l.service,
        "client_id": hex::encode(&l.client_id),
        "message_type": l.message_type,
        "reason": l.reason,
        "last_error": l.last_error,
        "plugin": l.plugin,
        "attempts": l.attempts,
        "created": time(l.created.as_ref()),
        "died": time(l.died.as_ref()),
        "replays": l.replays,
        "replayed": l.replayed.as_ref().map(|t| time(Some(t))),
    });
    if let Some(m) = &l.message {
        v["source_service"] = json!(m.source.as_ref().map(|a| a.service_name.clone()));
        v["data_type_url"] = json!(m.data.as_ref().map(|d| d.type_url.clone()));
        v["data_bytes"] = json!(m.data.as_ref().map_or(0, |d| d.value.len()));
    }
    v
}

fn list(letters: &[DeadLetter], json: bool) -> String {
    if json {
        return pretty(Value::Array(letters.iter().map(letter_json).collect()));
    }
    if letters.is_empty() {
        return "No dead letters.".into();
    }
    let mut out = format!(
        "{:<64} {:<16} {:<10} {:>8} {:<23} Last error:",
        "Message ID:", "Service:", "Reason:", "Attempts:", "Died:"
    );
    for l in letters {
        let mut reason = l.reason.clone();
        if l.replayed.is_some() {
            reason += "*";
        }
        out += &format!(
            "\n{:<64} {:<16} {:<10} {:>8} {:<23} {}",
            hex::encode(&l.message_id),
            l.service,
            reason,
            l.attempts,
            time(l.died.as_ref()),
            l.last_error
        );
    }
    if letters.iter().any(|l| l.replayed.is_some()) {
        out += "\n(* replayed since it died)";
    }
    out
}

fn show(l: &DeadLetter, json: bool) -> String {
    if json {
        return pretty(letter_json(l));
    }
    let v = letter_json(l);
    let mut out = String::new();
    if let Value::Object(map) = v {
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s,
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            out += &format!("{k:<16} {v}\n");
        }
    }
    out.trim_end().to_string()
}
