//! Compile once: components are compiled by Cranelift the first time and kept on disk,
//! serialized, keyed by the SHA-256 of the component and the engine's compatibility hash
//! (which covers the wasmtime version, target and every compilation setting). A stale or
//! corrupt entry is recompiled and replaced.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::RuntimeError;

/// The wasmtime major version this crate pins, part of every cache file name so entries of
/// different versions are easy to tell apart (the compatibility hash alone would suffice).
const WASMTIME_MAJOR: &str = "48";

pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// Loads `wasm` (whose SHA-256 is `digest`, hex) from the cache or compiles it.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
        origin: &str,
    ) -> Result<Component, RuntimeError> {
        let Some(dir) = &self.dir else {
            return compile(engine, wasm, origin);
        };
        let path = dir.join(file_name(engine, digest));
        if path.is_file() {
            match deserialize(engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "recompiling: bad cache entry: {e:#}")
                }
            }
        }
        let component = compile(engine, wasm, origin)?;
        if let Err(e) = store(&component, dir, &path) {
            tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
        }
        Ok(component)
    }
}

fn file_name(engine: &Engine, digest: &str) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!(
        "{digest}-wasmtime{WASMTIME_MAJOR}-{:016x}.cwasm",
        h.finish()
    )
}

fn compile(engine: &Engine, wasm: &[u8], origin: &str) -> Result<Component, RuntimeError> {
    Component::new(engine, wasm).map_err(|e| RuntimeError::Compile {
        origin: origin.to_owned(),
        reason: format!("{e:#}"),
    })
}

/// Only files this module wrote are ever deserialized: they live in the runtime's own cache
/// directory, are written whole (temp file + rename) and are named after the engine's
/// compatibility hash, which wasmtime checks again on load.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own serialized output; see
    // the function comment for why it is.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store(component: &Component, dir: &Path, path: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile_in(dir)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    let n: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(dir.join(format!(".tmp-{}-{n:x}", std::process::id())))
}
