//! WASI preview 2, always linked but granting nothing by default: no environment, arguments,
//! network or clock beyond what `wasi:clocks` gives; files only through granted preopens.

use wasmtime::component::Linker;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use crate::spec::Preopen;
use crate::state::HostState;

/// Bytes of guest stderr kept per call (enough for a panic message).
const STDERR_CAPACITY: usize = 4096;

pub(crate) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
}

/// A call's WASI context, built on the guest's first WASI call when the service has no
/// preopens. Most calls make none (a Rust component's `std` reaches WASI for stderr, the
/// environment or randomness, not to process a message), and building a context seeds two
/// random number generators and boxes half a dozen handles, about 4 % of a whole echo call.
/// With preopens it is built with the store instead: opening a granted directory can fail,
/// and that must fail the call before the guest runs, not hide the directory from it.
pub(crate) struct CallWasi {
    ctx: Option<WasiCtx>,
    /// The guest's stderr (panic messages), quoted when it traps.
    stderr: Option<MemoryOutputPipe>,
}

impl CallWasi {
    pub fn new(preopens: &[Preopen]) -> wasmtime::Result<Self> {
        let mut wasi = Self {
            ctx: None,
            stderr: None,
        };
        if !preopens.is_empty() {
            let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
            wasi.ctx = Some(context(preopens, &stderr)?);
            wasi.stderr = Some(stderr);
        }
        Ok(wasi)
    }

    /// The context, built now if the guest had not used WASI yet in this call.
    pub fn ctx(&mut self) -> &mut WasiCtx {
        let stderr = &mut self.stderr;
        self.ctx.get_or_insert_with(|| {
            let pipe = MemoryOutputPipe::new(STDERR_CAPACITY);
            let mut b = WasiCtxBuilder::new();
            b.stderr(pipe.clone());
            *stderr = Some(pipe);
            b.build()
        })
    }

    /// What the guest wrote to stderr in this call, trimmed.
    pub fn stderr(&self) -> String {
        let Some(pipe) = &self.stderr else {
            return String::new();
        };
        String::from_utf8_lossy(&pipe.contents()).trim().to_owned()
    }
}

/// A context with the preopens, and stderr captured in `stderr`.
fn context(preopens: &[Preopen], stderr: &MemoryOutputPipe) -> wasmtime::Result<WasiCtx> {
    let mut b = WasiCtxBuilder::new();
    b.stderr(stderr.clone());
    for p in preopens {
        let perms = if p.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&p.host_path, &p.guest_path, perms)?;
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_preopens_nothing_is_built_until_the_guest_asks() {
        let mut wasi = CallWasi::new(&[]).unwrap();
        assert!(wasi.ctx.is_none() && wasi.stderr.is_none());
        assert_eq!(wasi.stderr(), "");
        wasi.ctx();
        assert!(wasi.ctx.is_some() && wasi.stderr.is_some());
    }

    #[test]
    fn a_preopen_that_cannot_be_opened_fails_before_the_guest_runs() {
        let missing = Preopen {
            host_path: "/nonexistent/fleetgate-preopen".into(),
            guest_path: "/state".into(),
            read_only: false,
        };
        assert!(CallWasi::new(&[missing]).is_err());
        let dir = std::env::temp_dir();
        let ok = Preopen {
            host_path: dir,
            guest_path: "/tmp".into(),
            read_only: true,
        };
        let wasi = CallWasi::new(&[ok]).unwrap();
        assert!(wasi.ctx.is_some(), "built with the store");
    }
}
