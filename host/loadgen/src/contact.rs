//! Pure message and frame construction: what a stock client puts on the wire, and how it judges
//! what it receives (protocol.md §9, client-lifecycle.md §8). No I/O here.

use std::collections::HashMap;
use std::time::SystemTime;

use fleetgate_pb::fleetspeak::{Address, ContactData, Message, MessageAckData, WrappedContactData};
use fleetgate_pb::{any, wkt};
use fleetgate_types::ClientId;
use prost::Message as _;
use rand::RngCore;

/// Labels every simulated client reports: `GOARCH`, `GOOS`, then one configured label.
pub const LABELS: [&str; 3] = ["amd64", "linux", "loadgen"];
/// The stock client's inbox capacity per service: the absolute token count of frame 0.
pub const INBOX: u64 = 100;
/// At most this many messages per contact (protocol.md §9.3).
pub const MAX_MESSAGES: usize = 100;
/// The client's built-in service, which receives acks.
pub const SYSTEM: &str = "system";
/// The type URL of outbound filler payloads; the server passes `data` through untouched.
pub const FILLER_TYPE_URL: &str = "type.googleapis.com/fleetgate.loadgen.Filler";

/// Wraps a `ContactData` with the client labels.
pub fn wrap(cd: &ContactData) -> WrappedContactData {
    WrappedContactData {
        contact_data: cd.encode_to_vec(),
        signatures: vec![],
        client_labels: LABELS.iter().map(|l| (*l).to_owned()).collect(),
    }
}

/// Frame 0 and poll tokens: absolute free inbox slots. Messages are processed as soon as they
/// arrive, so the inbox is always empty.
pub fn initial_tokens(service: &str) -> HashMap<String, u64> {
    [(service.to_owned(), INBOX), (SYSTEM.to_owned(), INBOX)]
        .into_iter()
        .collect()
}

/// A `MessageAck` to `system` acknowledging `ids`, as the client's system service sends it.
pub fn ack_message(ids: Vec<Vec<u8>>) -> Message {
    Message {
        source_message_id: random_bytes(16),
        source: Some(service_address(SYSTEM)),
        destination: Some(service_address(SYSTEM)),
        message_type: "MessageAck".into(),
        data: Some(any::pack(&MessageAckData { message_ids: ids })),
        background: true,
        ..Default::default()
    }
}

/// An outbound message of `size` payload bytes from the client's `service` to the server's.
pub fn outbound_message(service: &str, size: usize) -> Message {
    Message {
        source_message_id: random_bytes(16),
        source: Some(service_address(service)),
        destination: Some(service_address(service)),
        message_type: "LoadgenData".into(),
        data: Some(wkt::Any {
            type_url: FILLER_TYPE_URL.into(),
            value: vec![0x5a; size],
        }),
        ..Default::default()
    }
}

/// The payload of a benchmark message: the moment it was handed to `InsertMessage`.
pub fn insert_payload(at: SystemTime) -> wkt::Any {
    any::pack(&wkt::Timestamp::from(at))
}

/// When a received message was inserted, if it carries an [`insert_payload`].
pub fn inserted_at(m: &Message) -> Option<SystemTime> {
    let ts = any::unpack::<wkt::Timestamp>(m.data.as_ref()?).ok()?;
    SystemTime::try_from(ts).ok()
}

/// What the client does with one received message (protocol.md §9.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the service and ack it; the token for `service` comes back once processed.
    Process { id: [u8; 32], service: String },
    /// `Die` to `system`: processed but never acked.
    Unacked { id: [u8; 32] },
    /// The stock client drops it silently (wrong client, bad ID, unknown service).
    Drop(&'static str),
}

/// Judges a message the server sent to client `me`, whose only service besides `system` is
/// `service`.
pub fn judge(m: &Message, me: ClientId, service: &str) -> Verdict {
    let Some(dest) = m.destination.as_ref() else {
        return Verdict::Drop("no destination");
    };
    if dest.client_id.as_slice() != me.as_bytes() {
        return Verdict::Drop("destination is another client");
    }
    let Ok(id) = <[u8; 32]>::try_from(m.message_id.as_slice()) else {
        return Verdict::Drop("message_id is not 32 bytes");
    };
    if dest.service_name == SYSTEM && m.message_type == "Die" {
        return Verdict::Unacked { id };
    }
    if dest.service_name != SYSTEM && dest.service_name != service {
        return Verdict::Drop("service not installed");
    }
    Verdict::Process {
        id,
        service: dest.service_name.clone(),
    }
}

/// Client → server data messages have a source other than `system`; only those count as sent.
pub fn is_data(m: &Message) -> bool {
    m.source.as_ref().is_some_and(|s| s.service_name != SYSTEM)
}

/// The current time as the client clock of a contact.
pub fn clock() -> wkt::Timestamp {
    wkt::Timestamp::from(SystemTime::now())
}

fn service_address(service: &str) -> Address {
    Address {
        client_id: vec![],
        service_name: service.to_owned(),
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn to(client: ClientId, service: &str, id_len: usize) -> Message {
        Message {
            message_id: vec![7; id_len],
            destination: Some(Address {
                client_id: client.to_vec(),
                service_name: service.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn judges_like_the_stock_client() {
        let me = ClientId::from_public_key(b"me");
        let other = ClientId::from_public_key(b"other");
        let ok = Verdict::Process {
            id: [7; 32],
            service: "svc".into(),
        };
        assert_eq!(judge(&to(me, "svc", 32), me, "svc"), ok);
        assert!(matches!(
            judge(&to(me, "system", 32), me, "svc"),
            Verdict::Process { .. }
        ));
        assert!(matches!(
            judge(&to(other, "svc", 32), me, "svc"),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            judge(&to(me, "svc", 16), me, "svc"),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            judge(&to(me, "nope", 32), me, "svc"),
            Verdict::Drop(_)
        ));
        assert!(matches!(
            judge(&Message::default(), me, "svc"),
            Verdict::Drop(_)
        ));
        let mut die = to(me, "system", 32);
        die.message_type = "Die".into();
        assert_eq!(judge(&die, me, "svc"), Verdict::Unacked { id: [7; 32] });
    }

    #[test]
    fn ack_is_a_background_system_message() {
        let m = ack_message(vec![vec![1; 32], vec![2; 32]]);
        assert!(m.background);
        assert_eq!(m.source_message_id.len(), 16);
        assert_eq!(
            m.destination.as_ref().map(|d| d.service_name.as_str()),
            Some(SYSTEM)
        );
        assert!(!is_data(&m));
        let data: MessageAckData = any::unpack(m.data.as_ref().expect("data")).expect("unpack");
        assert_eq!(data.message_ids.len(), 2);
    }

    #[test]
    fn outbound_is_data_of_the_requested_size() {
        let m = outbound_message("svc", 300);
        assert!(is_data(&m));
        assert_eq!(m.data.map(|d| d.value.len()), Some(300));
        assert_ne!(
            outbound_message("svc", 0).source_message_id,
            m.source_message_id
        );
    }

    #[test]
    fn insert_time_round_trips() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let m = Message {
            data: Some(insert_payload(at)),
            ..Default::default()
        };
        assert_eq!(inserted_at(&m), Some(at));
        assert_eq!(inserted_at(&Message::default()), None);
        let filler = outbound_message("svc", 4);
        assert_eq!(inserted_at(&filler), None);
    }

    #[test]
    fn wrap_carries_labels_and_contact() {
        let cd = ContactData {
            sequencing_nonce: 42,
            allowed_messages: initial_tokens("svc"),
            ..Default::default()
        };
        let wcd = wrap(&cd);
        assert_eq!(wcd.client_labels, LABELS);
        let back = ContactData::decode(wcd.contact_data.as_slice()).expect("decode");
        assert_eq!(back, cd);
        assert_eq!(back.allowed_messages.get("system"), Some(&INBOX));
    }
}
