//! `fleetspeak.Message` (prost) ↔ the WIT `message` record.

use fleetgate_pb::fleetspeak::{Address, Annotations, Message, ValidationInfo, annotations};
use prost_types::{Any, Timestamp};

use crate::bindings::{WitAddress, WitEntry, WitMessage, WitPayload, WitTimestamp};

pub(crate) fn to_wit(m: &Message) -> WitMessage {
    let mut tags: Vec<WitEntry> = m
        .validation_info
        .iter()
        .flat_map(|v| v.tags.iter())
        .map(|(k, v)| WitEntry {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    // A protobuf map has no order; give the guest a stable one.
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    WitMessage {
        id: m.message_id.clone(),
        source: address_to_wit(m.source.as_ref()),
        source_message_id: m.source_message_id.clone(),
        destination: address_to_wit(m.destination.as_ref()),
        message_type: m.message_type.clone(),
        creation_time: m.creation_time.as_ref().map(timestamp_to_wit),
        data: m.data.as_ref().map(|d| WitPayload {
            type_url: d.type_url.clone(),
            value: d.value.clone(),
        }),
        validation_tags: tags,
        annotations: m
            .annotations
            .iter()
            .flat_map(|a| a.entries.iter())
            .map(|e| WitEntry {
                key: e.key.clone(),
                value: e.value.clone(),
            })
            .collect(),
        is_blocklisted_source: m.is_blocklisted_source,
    }
}

pub(crate) fn from_wit(m: WitMessage) -> Message {
    Message {
        message_id: m.id,
        source: Some(address_from_wit(m.source)),
        source_message_id: m.source_message_id,
        destination: Some(address_from_wit(m.destination)),
        message_type: m.message_type,
        creation_time: m.creation_time.map(|t| Timestamp {
            seconds: t.seconds,
            nanos: t.nanos as i32,
        }),
        data: m.data.map(|d| Any {
            type_url: d.type_url,
            value: d.value,
        }),
        validation_info: (!m.validation_tags.is_empty()).then(|| ValidationInfo {
            tags: m
                .validation_tags
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect(),
        }),
        annotations: annotations_from_wit(m.annotations),
        is_blocklisted_source: m.is_blocklisted_source,
        ..Message::default()
    }
}

pub(crate) fn annotations_from_wit(entries: Vec<WitEntry>) -> Option<Annotations> {
    (!entries.is_empty()).then(|| Annotations {
        entries: entries
            .into_iter()
            .map(|e| annotations::Entry {
                key: e.key,
                value: e.value,
            })
            .collect(),
    })
}

fn address_to_wit(a: Option<&Address>) -> WitAddress {
    match a {
        Some(a) => WitAddress {
            client_id: (!a.client_id.is_empty()).then(|| a.client_id.clone()),
            service_name: a.service_name.clone(),
        },
        None => WitAddress {
            client_id: None,
            service_name: String::new(),
        },
    }
}

pub(crate) fn address_from_wit(a: WitAddress) -> Address {
    Address {
        client_id: a.client_id.unwrap_or_default(),
        service_name: a.service_name,
    }
}

pub(crate) fn timestamp_to_wit(t: &Timestamp) -> WitTimestamp {
    WitTimestamp {
        seconds: t.seconds,
        nanos: t.nanos.clamp(0, 999_999_999) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field_a_plugin_sees() {
        let m = Message {
            message_id: vec![7; 32],
            source: Some(Address {
                client_id: vec![1; 8],
                service_name: "GRR".into(),
            }),
            source_message_id: vec![9, 9],
            destination: Some(Address {
                client_id: vec![],
                service_name: "GRR".into(),
            }),
            message_type: "T".into(),
            creation_time: Some(Timestamp {
                seconds: 5,
                nanos: 6,
            }),
            data: Some(Any {
                type_url: "u".into(),
                value: vec![1, 2],
            }),
            validation_info: Some(ValidationInfo {
                tags: [("a".into(), "b".into())].into(),
            }),
            annotations: Some(Annotations {
                entries: vec![annotations::Entry {
                    key: "k".into(),
                    value: "v".into(),
                }],
            }),
            is_blocklisted_source: true,
            ..Message::default()
        };
        assert_eq!(from_wit(to_wit(&m)), m);
    }
}
