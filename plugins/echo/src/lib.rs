//! `echo`: sends every message's payload back to the client service that sent it.
//!
//! Needs the `messaging` capability. A message from a server service (no client ID) has nobody
//! to answer and fails permanently.

use fleetgate_sdk::{Message, ProcessError, Service, messaging};

struct Echo;

impl Service for Echo {
    fn init(_config: &[u8]) -> Result<Self, String> {
        Ok(Echo)
    }

    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        if msg.source.client_id.is_none() {
            return Err(ProcessError::permanent("echo answers client messages only"));
        }
        let reply = msg.reply(&msg.message_type, msg.data.clone());
        // The host could not queue it (e.g. store down): worth retrying.
        messaging::send_to_client(&reply).map_err(ProcessError::Temporary)
    }
}

fleetgate_sdk::export_service!(Echo);
