//! Builds the plugins workspace (`../../plugins`) for `wasm32-wasip2` and copies the
//! components into `OUT_DIR/plugins`, where `src/bundled.rs` includes the bundled ones and the
//! tests find the rest (`FLEETGATE_PLUGINS_WASM_DIR`).
//!
//! The inner cargo gets its own target directory (`plugins/target`) and none of the outer
//! build's compiler settings. Set `FLEETGATE_PLUGINS_WASM_DIR` to a directory of prebuilt
//! `.wasm` files to skip the build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// Set in the inner cargo's environment; seeing it here means the build recursed.
const GUARD: &str = "FLEETGATE_PLUGINS_BUILD_ACTIVE";
const PREBUILT: &str = "FLEETGATE_PLUGINS_WASM_DIR";

/// Outer-build variables that would leak into the inner build and change or break it.
const SCRUB: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
];

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let plugins = root.join("plugins");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("plugins");

    println!("cargo:rerun-if-env-changed={PREBUILT}");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // Not the whole of plugins/: its target directory changes on every build.
    for item in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "sdk",
        "echo",
        "grpc-forwarder",
        "message-saver",
        "router-example",
        "testing",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(item).display());
    }

    let built = match env::var_os(PREBUILT) {
        Some(dir) => PathBuf::from(dir),
        None => build(&plugins),
    };
    copy_components(&built, &out);
    println!("cargo:rustc-env={PREBUILT}={}", out.display());
}

fn build(plugins: &Path) -> PathBuf {
    if env::var_os(GUARD).is_some() {
        panic!("{GUARD} is set: the plugins build is recursing into the host build");
    }
    let target_dir = plugins.join("target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(plugins)
        .args(["build", "--release", "--workspace", "--target", TARGET])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env(GUARD, "1");
    for var in SCRUB {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo for plugins/: {e}"));
    if !status.success() {
        panic!(
            "building the plugins in {} for {TARGET} failed (see above). If the target is \
             missing, run `rustup target add {TARGET}`; to use prebuilt components, set \
             {PREBUILT} to their directory.",
            plugins.display()
        );
    }
    target_dir.join(TARGET).join("release")
}

/// Copies so a later plugins build cannot change a file between `include_bytes!` and its use.
fn copy_components(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating OUT_DIR/plugins");
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let dest = to.join(entry.file_name());
            std::fs::copy(&path, &dest)
                .unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
        }
    }
}
