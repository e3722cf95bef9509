//! `message-saver`: writes each message to its own file, `<dir>/<message id hex>.pb`, as an
//! encoded `fleetspeak.Message` (`protoc --decode fleetspeak.Message` reads it).
//!
//! Needs a directory granted as a WASI preopen. The plugin config is that directory's path as
//! the guest sees it (UTF-8); empty means `/out`. A write that fails is temporary: the message
//! is retried once the directory is writable again.

use fleetgate_sdk::{Message, ProcessError, Service, encode_message};

struct Saver {
    dir: String,
}

impl Service for Saver {
    fn init(config: &[u8]) -> Result<Self, String> {
        let dir = std::str::from_utf8(config)
            .map_err(|e| format!("directory: {e}"))?
            .trim();
        let dir = if dir.is_empty() { "/out" } else { dir };
        Ok(Saver {
            dir: dir.trim_end_matches('/').to_owned(),
        })
    }

    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        if msg.id.is_empty() {
            return Err(ProcessError::permanent(
                "message has no ID to name its file",
            ));
        }
        let path = format!("{}/{}.pb", self.dir, msg.id_hex());
        // Write then rename so a reader never sees half a message.
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, encode_message(&msg))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| ProcessError::temporary(format!("writing {path}: {e}")))
    }
}

fleetgate_sdk::export_service!(Saver);
