//! `fleetgate plugin check FILE`: does a component fit one of our worlds, and what does it
//! import and export?

use std::path::{Path, PathBuf};

use crate::bindings::{RouterWorldPre, ServiceWorldPre};
use crate::call;
use crate::caps::{self, Capability};
use crate::error::RuntimeError;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::spec::Grants;

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// `service` or `router`.
    pub world: &'static str,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The capabilities the component needs granted.
    pub capabilities: Vec<Capability>,
    /// SHA-256 of the file, hex.
    pub digest: String,
}

/// Validates the component at `path` against the `service` and `router` worlds: every import
/// must be one the host can provide, with the right types, and the exports must be a world's.
pub fn check(path: impl AsRef<Path>) -> Result<CheckReport, RuntimeError> {
    let path = path.as_ref();
    let wasm = std::fs::read(path).map_err(|source| RuntimeError::Read {
        path: PathBuf::from(path),
        source,
    })?;
    check_bytes(&path.display().to_string(), &wasm)
}

/// [`check`] for a component in memory; `name` appears in errors.
pub fn check_bytes(name: &str, wasm: &[u8]) -> Result<CheckReport, RuntimeError> {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 1,
        ..RuntimeConfig::default()
    })?;
    check_on(&runtime, name, wasm)
}

/// [`check_bytes`] on an existing runtime: a server checking a deployment compiles the
/// component once, into its compile cache, for the check and for the build after it.
pub fn check_on(runtime: &Runtime, name: &str, wasm: &[u8]) -> Result<CheckReport, RuntimeError> {
    let engine = runtime.engine();
    let (component, digest) = runtime.compile(wasm, name)?;
    let imports = call::import_names(engine, &component);
    let exports = call::export_names(engine, &component);
    let world = if exports.iter().any(|e| e == "route") {
        "router"
    } else {
        "service"
    };
    let fail = |reason: String| RuntimeError::World {
        service: name.to_owned(),
        world,
        reason,
    };

    let all = Grants {
        capabilities: Capability::ALL.into_iter().collect(),
        upstreams: [("check".to_owned(), Default::default())]
            .into_iter()
            .collect(),
        preopens: Vec::new(),
    };
    let linker = caps::link(engine, &all).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| fail(format!("{e:#}")))?;
    match world {
        "router" => RouterWorldPre::new(pre).map(drop),
        _ => ServiceWorldPre::new(pre).map(drop),
    }
    .map_err(|e| fail(format!("{e:#}")))?;

    let mut capabilities: Vec<Capability> = imports
        .iter()
        .filter_map(|i| Capability::from_import(i))
        .collect();
    capabilities.sort();
    capabilities.dedup();
    Ok(CheckReport {
        world,
        imports,
        exports,
        capabilities,
        digest,
    })
}
