//! Misbehaviour: never returns. The host's CPU deadline (epoch interruption) must stop it.

use fleetgate_sdk::{Message, ProcessError, Service};

struct Spin;

impl Service for Spin {
    fn init(_config: &[u8]) -> Result<Self, String> {
        Ok(Spin)
    }

    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        let mut n: u64 = msg.id.len() as u64;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

fleetgate_sdk::export_service!(Spin);
