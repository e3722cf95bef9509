//! Isolation: fails permanently if it finds anything an earlier call wrote, then writes
//! everywhere the next call will look. The host reuses pool slots and restores the pages an
//! instance wrote instead of unmapping them, so this is what shows the restore is complete:
//! initialised data (restored from the component's image), zero-initialised data, and memory
//! the guest grew at run time (which must read as zero again).

use core::arch::wasm32;
use core::sync::atomic::{AtomicU32, Ordering};

use fleetgate_sdk::{Message, ProcessError, Service};

/// In the data segment: must read as its initial value in every call.
static INITIALISED: AtomicU32 = AtomicU32::new(7);
/// In `.bss`: must read as zero in every call.
static ZEROED: AtomicU32 = AtomicU32::new(0);

const PAGE: usize = 64 << 10;
/// Pages grown and scribbled on per call.
const GROWN_PAGES: usize = 4;

struct Leftover;

impl Service for Leftover {
    fn init(_config: &[u8]) -> Result<Self, String> {
        Ok(Leftover)
    }

    fn process(&self, _msg: Message) -> Result<(), ProcessError> {
        let initialised = INITIALISED.swap(8, Ordering::Relaxed);
        let zeroed = ZEROED.swap(1, Ordering::Relaxed);
        if initialised != 7 || zeroed != 0 {
            return Err(ProcessError::permanent(format!(
                "statics left over: initialised {initialised}, zeroed {zeroed}"
            )));
        }
        let first = wasm32::memory_grow(0, GROWN_PAGES);
        if first == usize::MAX {
            return Err(ProcessError::permanent("memory.grow failed"));
        }
        let grown = first * PAGE..(first + GROWN_PAGES) * PAGE;
        // Memory the guest grew is outside anything Rust allocated, so it is read and written
        // through raw addresses; `grown` is within the memory `memory_grow` just returned.
        #[allow(unsafe_code)]
        let grown = unsafe { core::slice::from_raw_parts_mut(grown.start as *mut u8, grown.len()) };
        if let Some(i) = grown.iter().position(|&b| b != 0) {
            return Err(ProcessError::permanent(format!(
                "grown memory not zero at offset {i}"
            )));
        }
        grown.fill(0xAA);
        Ok(())
    }
}

fleetgate_sdk::export_service!(Leftover);
