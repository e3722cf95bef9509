//! Helpers over `fleetspeak.Message`, the in-memory message type everywhere in the server.

use std::time::SystemTime;

use crate::pb::fleetspeak::{Address, Message, MessageResult};
use crate::time::to_timestamp;
use crate::{ClientId, IdError, MessageId};

/// `failed_reason` is cut to this many bytes, as in the original.
pub const MAX_FAILED_REASON: usize = 900;

pub fn destination_client(m: &Message) -> Result<Option<ClientId>, IdError> {
    ClientId::from_wire(
        m.destination
            .as_ref()
            .map(|a| a.client_id.as_slice())
            .unwrap_or_default(),
    )
}

pub fn source_client(m: &Message) -> Result<Option<ClientId>, IdError> {
    ClientId::from_wire(
        m.source
            .as_ref()
            .map(|a| a.client_id.as_slice())
            .unwrap_or_default(),
    )
}

pub fn destination_service(m: &Message) -> &str {
    m.destination
        .as_ref()
        .map(|a| a.service_name.as_str())
        .unwrap_or_default()
}

pub fn source_service(m: &Message) -> &str {
    m.source
        .as_ref()
        .map(|a| a.service_name.as_str())
        .unwrap_or_default()
}

pub fn message_id(m: &Message) -> Result<MessageId, IdError> {
    MessageId::from_bytes(&m.message_id)
}

pub fn address(client: Option<ClientId>, service: &str) -> Address {
    Address {
        client_id: client.map(|c| c.to_vec()).unwrap_or_default(),
        service_name: service.to_owned(),
    }
}

pub fn success(now: SystemTime) -> MessageResult {
    MessageResult {
        processed_time: Some(to_timestamp(now)),
        failed: false,
        failed_reason: String::new(),
    }
}

pub fn failure(now: SystemTime, reason: &str) -> MessageResult {
    MessageResult {
        processed_time: Some(to_timestamp(now)),
        failed: true,
        failed_reason: truncate_reason(reason),
    }
}

/// Cuts a reason longer than 900 bytes to 897 bytes plus "...", on a character boundary.
pub fn truncate_reason(reason: &str) -> String {
    if reason.len() <= MAX_FAILED_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_FAILED_REASON - 3;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut() {
        let r = "é".repeat(600);
        let t = truncate_reason(&r);
        assert!(t.len() <= MAX_FAILED_REASON && t.ends_with("..."));
        assert_eq!(truncate_reason("short"), "short");
    }
}
