//! `fleetgate plugin`: tools for plugin authors.
//!
//! * `check FILE` — does a component fit the `service` or `router` world; what it imports,
//!   exports and needs granted; its digest (the one `admin plugins list` shows).
//! * `new NAME [--dir DIR] [--sdk PATH]` — a plugin crate from a template, ready for
//!   `cargo build --release --target wasm32-wasip2`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use fleetgate_runtime::CheckReport;

use crate::args::{NewPlugin, PluginCommand};

/// The SDK this binary was built next to. It is not on crates.io, so a new plugin depends on
/// it by path.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/sdk");

/// Runs one plugin command; the returned text is printed by the caller.
pub fn run(command: PluginCommand) -> Result<String> {
    match command {
        PluginCommand::Check { file } => {
            // wasmtime's own message for this dumps both headers as byte arrays.
            let head = std::fs::read(&file).map(|b| b.get(..4).map(<[u8]>::to_vec));
            if let Ok(head) = head
                && head.as_deref() != Some(&b"\0asm"[..])
            {
                bail!(
                    "{file} is not a valid Fleetgate plugin: not a WebAssembly file (no \\0asm header)"
                );
            }
            let report = fleetgate_runtime::check(&file)
                .map_err(|e| anyhow!("{file} is not a valid Fleetgate plugin: {e}"))?;
            Ok(format_report(&file, &report))
        }
        PluginCommand::New(NewPlugin { name, dir, sdk }) => {
            let sdk = sdk.unwrap_or_else(|| PathBuf::from(BUILT_SDK));
            let crate_dir = new_plugin(&name, &dir, &sdk)?;
            Ok(format!(
                "created {dir}\nbuild it with:\n  cd {dir} && cargo build --release --target wasm32-wasip2\n\
                 then check it with:\n  fleetgate plugin check {dir}/target/wasm32-wasip2/release/{lib}.wasm",
                dir = crate_dir.display(),
                lib = lib_name(&name),
            ))
        }
    }
}

fn format_report(file: &str, r: &CheckReport) -> String {
    let caps: Vec<String> = r.capabilities.iter().map(ToString::to_string).collect();
    let caps = if caps.is_empty() {
        "(none)".to_owned()
    } else {
        caps.join(", ")
    };
    let mut out = format!(
        "{file}: OK\nworld:        {}\ndigest:       sha256:{}\ncapabilities: {caps}\nimports:\n",
        r.world, r.digest
    );
    for i in &r.imports {
        let _ = writeln!(out, "  {i}");
    }
    out.push_str("exports:");
    for e in &r.exports {
        let _ = write!(out, "\n  {e}");
    }
    out
}

/// Writes the crate `dir/name`; refuses to overwrite an existing directory.
pub fn new_plugin(name: &str, dir: &Path, sdk: &Path) -> Result<PathBuf> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "plugin name {name:?}: use lower-case letters, digits, '-' and '_', starting with a letter"
        );
    }
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the Fleetgate SDK is not at {}; pass --sdk PATH to the plugins/sdk directory of a \
             Fleetgate checkout",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!("{} has no Cargo.toml: not the SDK crate", sdk.display());
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    for (path, text) in crate::plugin_template::files(name, &sdk) {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

/// The Rust library name, which is also the `.wasm` file's stem.
pub fn lib_name(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
#[path = "plugin_cli_tests.rs"]
mod tests;
