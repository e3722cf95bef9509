//! `Message` → `fleetspeak.Message` protobuf bytes, by hand so plugins need no protobuf crate.
//! Field numbers are those of `fleetspeak/src/common/proto/fleetspeak/common.proto`.

use super::{Address, Entry, Message};

/// Encodes `m` as a `fleetspeak.Message` (fields the plugin sees; no result or priority).
pub fn encode_message(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1, &m.id);
    message_field(&mut out, 2, &address(&m.source));
    bytes_field(&mut out, 3, &m.source_message_id);
    message_field(&mut out, 4, &address(&m.destination));
    bytes_field(&mut out, 5, m.message_type.as_bytes());
    if let Some(t) = &m.creation_time {
        let mut ts = Vec::new();
        varint_field(&mut ts, 1, t.seconds as u64);
        varint_field(&mut ts, 2, u64::from(t.nanos));
        message_field(&mut out, 6, &ts);
    }
    if let Some(d) = &m.data {
        let mut any = Vec::new();
        bytes_field(&mut any, 1, d.type_url.as_bytes());
        bytes_field(&mut any, 2, &d.value);
        message_field(&mut out, 7, &any);
    }
    if !m.validation_tags.is_empty() {
        // ValidationInfo { map<string, string> tags = 1 }
        let mut info = Vec::new();
        for e in &m.validation_tags {
            message_field(&mut info, 1, &entry(e));
        }
        message_field(&mut out, 8, &info);
    }
    if !m.annotations.is_empty() {
        // Annotations { repeated Entry entries = 1 }
        let mut ann = Vec::new();
        for e in &m.annotations {
            message_field(&mut ann, 1, &entry(e));
        }
        message_field(&mut out, 12, &ann);
    }
    if m.is_blocklisted_source {
        varint_field(&mut out, 13, 1);
    }
    out
}

fn address(a: &Address) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(id) = &a.client_id {
        bytes_field(&mut out, 1, id);
    }
    bytes_field(&mut out, 2, a.service_name.as_bytes());
    out
}

fn entry(e: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1, e.key.as_bytes());
    bytes_field(&mut out, 2, e.value.as_bytes());
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_field(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        varint(out, u64::from(tag) << 3);
        varint(out, v);
    }
}

fn bytes_field(out: &mut Vec<u8>, tag: u32, v: &[u8]) {
    if !v.is_empty() {
        message_field(out, tag, v);
    }
}

/// Length-delimited field, written even when empty (an empty sub-message is still present).
fn message_field(out: &mut Vec<u8>, tag: u32, v: &[u8]) {
    varint(out, (u64::from(tag) << 3) | 2);
    varint(out, v.len() as u64);
    out.extend_from_slice(v);
}
