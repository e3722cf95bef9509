//! Output of `fleetgate admin`: the layouts `fleetspeak-admin` prints, or JSON.

use fleetgate_pb::fleetspeak::server::{
    Broadcast, Client, ClientContact, GetMessageStatusResponse,
};
use fleetgate_pb::fleetspeak::{Label, Message};
use prost_types::Timestamp;
use serde_json::{Value, json};

/// `15:04:05.000 2006.01.02` in UTC, the original CLI's layout.
pub fn time(ts: Option<&Timestamp>) -> String {
    let Some(ts) = ts else { return "-".into() };
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:02}:{:02}:{:02}.{:03} {:04}.{:02}.{:02}",
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond(),
            t.year(),
            u8::from(t.month()),
            t.day()
        ),
        Err(_) => "-".into(),
    }
}

fn key(ts: Option<&Timestamp>) -> (i64, i32) {
    ts.map(|t| (t.seconds, t.nanos)).unwrap_or_default()
}

fn labels(ls: &[Label]) -> Vec<String> {
    ls.iter()
        .map(|l| format!("{}:{}", l.service_name, l.label))
        .collect()
}

fn pretty(v: Value) -> String {
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

pub fn clients(mut cs: Vec<Client>, json: bool) -> String {
    cs.sort_by_key(|c| key(c.last_contact_time.as_ref()));
    if json {
        return pretty(Value::Array(
            cs.iter()
                .map(|c| {
                    json!({
                        "client_id": hex::encode(&c.client_id),
                        "labels": labels(&c.labels),
                        "last_contact_time": time(c.last_contact_time.as_ref()),
                        "last_contact_address": c.last_contact_address,
                        "last_contact_streaming_to": c.last_contact_streaming_to,
                        "blacklisted": c.blacklisted,
                    })
                })
                .collect(),
        ));
    }
    if cs.is_empty() {
        return "No clients found.".into();
    }
    let mut out = format!("{:<16} {:<23} {}", "Client ID:", "Last Seen:", "Labels:");
    for c in &cs {
        out += &format!(
            "\n{:<16} {:<23} [{}]{}",
            hex::encode(&c.client_id),
            time(c.last_contact_time.as_ref()),
            labels(&c.labels).join(","),
            if c.blacklisted { " *blacklisted*" } else { "" }
        );
    }
    out
}

pub fn contacts(mut cs: Vec<ClientContact>, limit: Option<usize>, json: bool) -> String {
    cs.sort_by_key(|c| std::cmp::Reverse(key(c.timestamp.as_ref())));
    if let Some(l) = limit {
        cs.truncate(l);
    }
    if json {
        return pretty(Value::Array(
            cs.iter()
                .map(|c| {
                    json!({
                        "timestamp": time(c.timestamp.as_ref()),
                        "observed_address": c.observed_address,
                        "sent_nonce": c.sent_nonce,
                        "received_nonce": c.received_nonce,
                    })
                })
                .collect(),
        ));
    }
    if cs.is_empty() {
        return "No contacts found.".into();
    }
    let mut out = format!(
        "Found {} contacts.\n{:<23} {}",
        cs.len(),
        "Timestamp:",
        "Observed IP:"
    );
    for c in &cs {
        out += &format!(
            "\n{:<23} {}",
            time(c.timestamp.as_ref()),
            c.observed_address
        );
    }
    out
}

pub fn broadcasts(bs: Vec<Broadcast>, json: bool) -> String {
    let source = |b: &Broadcast| {
        b.source
            .as_ref()
            .map(|s| s.service_name.clone())
            .unwrap_or_default()
    };
    if json {
        return pretty(Value::Array(
            bs.iter()
                .map(|b| {
                    json!({
                        "broadcast_id": hex::encode(&b.broadcast_id),
                        "source_service": source(b),
                        "message_type": b.message_type,
                        "required_labels": labels(&b.required_labels),
                        "expiration_time": time(b.expiration_time.as_ref()),
                    })
                })
                .collect(),
        ));
    }
    if bs.is_empty() {
        return "No active broadcasts found.".into();
    }
    let mut out = format!(
        "Found {} active broadcasts.\n{:<20} {:<20} {}",
        bs.len(),
        "Broadcast ID:",
        "Source Service:",
        "Message Type:"
    );
    for b in &bs {
        out += &format!(
            "\n{:<20} {:<20} {}",
            hex::encode(&b.broadcast_id),
            source(b),
            b.message_type
        );
    }
    out
}

pub fn status(s: &GetMessageStatusResponse, json: bool) -> String {
    let state = match &s.result {
        None if s.creation_time.is_none() => "unknown",
        None => "pending",
        Some(r) if r.failed => "failed",
        Some(_) => "processed",
    };
    let reason = s
        .result
        .as_ref()
        .map(|r| r.failed_reason.clone())
        .unwrap_or_default();
    let processed = s.result.as_ref().and_then(|r| r.processed_time.as_ref());
    if json {
        return pretty(json!({
            "state": state,
            "creation_time": time(s.creation_time.as_ref()),
            "processed_time": time(processed),
            "failed_reason": reason,
        }));
    }
    let mut out = format!(
        "State: {state}\nCreated: {}",
        time(s.creation_time.as_ref())
    );
    if processed.is_some() {
        out += &format!("\nProcessed: {}", time(processed));
    }
    if !reason.is_empty() {
        out += &format!("\nFailed: {reason}");
    }
    out
}

pub fn messages(ms: Vec<Message>, json: bool) -> String {
    let dest = |m: &Message| {
        m.destination
            .as_ref()
            .map(|d| (hex::encode(&d.client_id), d.service_name.clone()))
            .unwrap_or_default()
    };
    if json {
        return pretty(Value::Array(
            ms.iter()
                .map(|m| {
                    let (client, service) = dest(m);
                    json!({
                        "message_id": hex::encode(&m.message_id),
                        "client_id": client,
                        "service": service,
                        "message_type": m.message_type,
                        "creation_time": time(m.creation_time.as_ref()),
                        "data_bytes": m.data.as_ref().map(|d| d.value.len()),
                    })
                })
                .collect(),
        ));
    }
    if ms.is_empty() {
        return "No pending messages.".into();
    }
    let mut out = format!(
        "{:<64} {:<16} {:<16} {:<20} {}",
        "Message ID:", "Client ID:", "Service:", "Type:", "Created:"
    );
    for m in &ms {
        let (client, service) = dest(m);
        out += &format!(
            "\n{:<64} {client:<16} {service:<16} {:<20} {}",
            hex::encode(&m.message_id),
            m.message_type,
            time(m.creation_time.as_ref())
        );
    }
    out
}

/// `insertbatch`: one row per message, `(client ID, message ID)`.
pub fn inserted(rows: &[(String, String)], json: bool) -> String {
    if json {
        return pretty(Value::Array(
            rows.iter()
                .map(|(c, m)| json!({"client_id": c, "message_id": m}))
                .collect(),
        ));
    }
    let mut out = format!(
        "Inserted {} messages.\n{:<16} {}",
        rows.len(),
        "Client ID:",
        "Message ID:"
    );
    for (c, m) in rows {
        out += &format!("\n{c:<16} {m}");
    }
    out
}

fn plugin_json(p: &fleetgate_pb::fleetgate::admin::v1::PluginStatus) -> Value {
    json!({
        "service": p.service,
        "factory": p.factory,
        "digest": p.digest,
        "generation": p.generation,
        "loaded_at": time(p.loaded_at.as_ref()),
        "calls": p.calls,
        "errors": p.errors,
        "traps": p.traps,
        "p50_ms": p.p50_ms,
        "p99_ms": p.p99_ms,
        "deployment": p.deployment,
        "candidate_digest": p.candidate_digest,
    })
}

/// `plugins list`: one row per service; the digest is shortened to 12 hex digits in the table.
pub fn plugins(ps: &[fleetgate_pb::fleetgate::admin::v1::PluginStatus], json: bool) -> String {
    if json {
        return pretty(Value::Array(ps.iter().map(plugin_json).collect()));
    }
    if ps.is_empty() {
        return "No plugins loaded.".into();
    }
    let mut out = format!(
        "{:<20} {:<8} {:<12} {:>4} {:<23} {:>8} {:>7} {:>6} {:>8} {:>8}",
        "Service:",
        "Factory:",
        "Digest:",
        "Gen:",
        "Loaded:",
        "Calls:",
        "Errors:",
        "Traps:",
        "p50 ms:",
        "p99 ms:"
    );
    for p in ps {
        out += &format!(
            "\n{:<20} {:<8} {:<12} {:>4} {:<23} {:>8} {:>7} {:>6} {:>8.2} {:>8.2}",
            p.service,
            p.factory,
            p.digest
                .get(..12)
                .unwrap_or(if p.digest.is_empty() { "-" } else { &p.digest }),
            p.generation,
            time(p.loaded_at.as_ref()),
            p.calls,
            p.errors,
            p.traps,
            p.p50_ms,
            p.p99_ms
        );
    }
    for p in ps.iter().filter(|p| p.deployment != 0) {
        out += &format!(
            "\n{}: deployment {} on top of the services config{} (`plugins status {}`)",
            p.service,
            p.deployment,
            if p.candidate_digest.is_empty() {
                ", promoted".to_owned()
            } else {
                format!(
                    ", canary {}",
                    p.candidate_digest.get(..12).unwrap_or(&p.candidate_digest)
                )
            },
            p.service
        );
    }
    out
}

/// `plugins reload`: the outcome, then the plugins running afterwards.
pub fn reload(r: &fleetgate_pb::fleetgate::admin::v1::ReloadPluginsResponse, json: bool) -> String {
    if json {
        return pretty(json!({
            "ok": r.ok,
            "error": r.error,
            "plugins": r.plugins.iter().map(plugin_json).collect::<Vec<_>>(),
        }));
    }
    let head = if r.ok {
        "Plugins reloaded.".to_owned()
    } else {
        format!("Reload refused: {}", r.error)
    };
    format!("{head}\n{}", plugins(&r.plugins, false))
}

/// `15:04:05.000000 2006.01.02` in UTC: the original CLI's layout to the microsecond, since a
/// message's steps often fall in one millisecond.
fn time_us(ts: Option<&Timestamp>) -> String {
    let Some(ts) = ts else { return "-".into() };
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:02}:{:02}:{:02}.{:06} {:04}.{:02}.{:02}",
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond(),
            t.year(),
            u8::from(t.month()),
            t.day()
        ),
        Err(_) => "-".into(),
    }
}

/// `admin trace`: one line per step, oldest first; JSON has RFC 3339 times.
pub fn trace(
    id: &str,
    steps: &[fleetgate_pb::fleetgate::admin::v1::TraceStep],
    json: bool,
) -> String {
    if json {
        return pretty(json!({
            "message_id": id,
            "steps": steps.iter().map(|s| json!({
                "time": s.time.as_ref().map(ToString::to_string),
                "server": s.server,
                "step": s.step,
                "detail": s.detail,
            })).collect::<Vec<_>>(),
        }));
    }
    if steps.is_empty() {
        return format!(
            "No trace recorded for message {id} (it was stored while tracing was off, or its steps were pruned)."
        );
    }
    let width = steps
        .iter()
        .map(|s| s.server.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let mut out = format!(
        "{:<26} {:<width$} {:<13} {}",
        "Time:", "Server:", "Step:", "Detail:"
    );
    for s in steps {
        out += &format!(
            "\n{:<26} {:<width$} {:<13} {}",
            time_us(s.time.as_ref()),
            s.server,
            s.step,
            s.detail
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_uses_the_original_layout() {
        let ts = Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_000_000,
        };
        assert_eq!(time(Some(&ts)), "22:13:20.123 2023.11.14");
    }

    #[test]
    fn client_table_matches_fleetspeak_admin() {
        let c = Client {
            client_id: vec![0xe9, 0xba, 0xa7, 0x15, 0xf1, 0x7e, 0xe7, 0xc0],
            labels: vec![Label {
                service_name: "client".into(),
                label: "linux".into(),
            }],
            last_contact_time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            blacklisted: true,
            ..Default::default()
        };
        let out = clients(vec![c], false);
        assert_eq!(
            out,
            "Client ID:       Last Seen:              Labels:\ne9baa715f17ee7c0 22:13:20.000 2023.11.14 [client:linux] *blacklisted*"
        );
        assert_eq!(clients(vec![], false), "No clients found.");
    }
}
