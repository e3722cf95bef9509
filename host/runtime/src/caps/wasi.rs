//! WASI preview 2, always linked but granting nothing by default: no environment, arguments,
//! network or clock beyond what `wasi:clocks` gives; files only through granted preopens.

use wasmtime::component::Linker;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use crate::spec::Preopen;
use crate::state::HostState;

/// Bytes of guest stderr kept per call (enough for a panic message).
pub(crate) const STDERR_CAPACITY: usize = 4096;

pub(crate) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
}

/// A context for one call: the preopens, and stderr captured in `stderr`.
pub(crate) fn context(
    preopens: &[Preopen],
    stderr: &MemoryOutputPipe,
) -> wasmtime::Result<WasiCtx> {
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
