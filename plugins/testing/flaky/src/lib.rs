//! Misbehaviour, politely: fails each message temporarily once, then succeeds.
//!
//! Every call runs on a fresh instance, so the "seen it" state lives in a granted directory
//! (config: its guest path; empty means `/state`): one marker file per message ID.

use fleetgate_sdk::{Message, ProcessError, Service};

struct Flaky {
    dir: String,
}

impl Service for Flaky {
    fn init(config: &[u8]) -> Result<Self, String> {
        let dir = std::str::from_utf8(config)
            .map_err(|e| e.to_string())?
            .trim();
        Ok(Flaky {
            dir: if dir.is_empty() {
                "/state".into()
            } else {
                dir.into()
            },
        })
    }

    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        let marker = format!("{}/{}.seen", self.dir, msg.id_hex());
        if std::fs::metadata(&marker).is_ok() {
            return Ok(());
        }
        std::fs::write(&marker, b"")
            .map_err(|e| ProcessError::permanent(format!("state dir: {e}")))?;
        Err(ProcessError::temporary("first attempt always fails"))
    }
}

fleetgate_sdk::export_service!(Flaky);
