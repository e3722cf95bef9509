//! Misbehaviour: allocates without bound. The host's memory cap must stop it.

use fleetgate_sdk::{Message, ProcessError, Service};

struct Bomb;

impl Service for Bomb {
    fn init(_config: &[u8]) -> Result<Self, String> {
        Ok(Bomb)
    }

    fn process(&self, _msg: Message) -> Result<(), ProcessError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so the memory is really used.
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

fleetgate_sdk::export_service!(Bomb);
