//! Misbehaviour: panics (a trap: the plugins are built with `panic = "abort"`) on messages of type
//! `trap`, succeeds on others — so a test can show the host keeps serving after the trap.

use fleetgate_sdk::{Message, ProcessError, Service};

struct Trap;

impl Service for Trap {
    fn init(_config: &[u8]) -> Result<Self, String> {
        Ok(Trap)
    }

    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        if msg.message_type == "trap" {
            panic!("asked to trap");
        }
        Ok(())
    }
}

fleetgate_sdk::export_service!(Trap);
