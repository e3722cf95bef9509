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

pub const USAGE: &str = "\
usage: fleetgate plugin <command> [args]
  check FILE                          validate a component; print its world, imports, exports,
                                      the capabilities it needs granted, and its digest
  new NAME [--dir DIR] [--sdk PATH]   write a new plugin crate in DIR/NAME (DIR: .); PATH is
                                      the SDK crate (plugins/sdk of a Fleetgate checkout; default:
                                      the one this binary was built from, if it still exists)";

/// The SDK this binary was built next to. It is not on crates.io, so a new plugin depends on
/// it by path.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/sdk");

/// Runs one plugin command; the returned text is printed by the caller.
pub fn run(args: &[String]) -> Result<String> {
    let Some((cmd, rest)) = args.split_first() else {
        bail!("a plugin command is required\n{USAGE}")
    };
    let (flags, positional) = split_flags(rest, &["dir", "sdk"])?;
    match (cmd.as_str(), positional.as_slice()) {
        ("check", [file]) if flags.is_empty() => {
            // wasmtime's own message for this dumps both headers as byte arrays.
            let head = std::fs::read(file).map(|b| b.get(..4).map(<[u8]>::to_vec));
            if let Ok(head) = head
                && head.as_deref() != Some(&b"\0asm"[..])
            {
                bail!(
                    "{file} is not a valid Fleetgate plugin: not a WebAssembly file (no \\0asm header)"
                );
            }
            let report = fleetgate_runtime::check(file)
                .map_err(|e| anyhow!("{file} is not a valid Fleetgate plugin: {e}"))?;
            Ok(format_report(file, &report))
        }
        ("new", [name]) => {
            let flag = |n: &str| flags.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let dir = flag("dir").map_or_else(|| PathBuf::from("."), PathBuf::from);
            let sdk = match flag("sdk") {
                Some(p) => PathBuf::from(p),
                None => PathBuf::from(BUILT_SDK),
            };
            let crate_dir = new_plugin(name, &dir, &sdk)?;
            Ok(format!(
                "created {dir}\nbuild it with:\n  cd {dir} && cargo build --release --target wasm32-wasip2\n\
                 then check it with:\n  fleetgate plugin check {dir}/target/wasm32-wasip2/release/{lib}.wasm",
                dir = crate_dir.display(),
                lib = lib_name(name),
            ))
        }
        _ => bail!("bad plugin command\n{USAGE}"),
    }
}

/// Splits `--name value` / `--name=value` (one or two dashes) from positional arguments.
/// `(name, value)` flags, then positional arguments.
type SplitArgs = (Vec<(String, String)>, Vec<String>);

fn split_flags(args: &[String], known: &[&str]) -> Result<SplitArgs> {
    let (mut flags, mut positional) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(f) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            positional.push(a.clone());
            continue;
        };
        let (name, value) = match f.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow!("flag -{f} needs a value"))?;
                (f.to_owned(), v.clone())
            }
        };
        if !known.contains(&name.as_str()) {
            bail!("unknown flag -{name}\n{USAGE}");
        }
        flags.push((name, value));
    }
    Ok((flags, positional))
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
