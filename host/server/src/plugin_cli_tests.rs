#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use super::*;

/// A fresh directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "fleetgate-plugin-cli-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// `fleetgate plugin ARGS`, parsed as the binary parses it.
fn run(a: &[String]) -> anyhow::Result<String> {
    let argv = ["fleetgate", "plugin"]
        .into_iter()
        .map(String::from)
        .chain(a.iter().cloned())
        .map(std::ffi::OsString::from);
    match crate::cli::parse(argv).map_err(|e| anyhow!("{e}"))? {
        crate::args::Command::Plugin(p) => super::run(p.command),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn check_describes_a_bundled_component() {
    let dir = Scratch::new("check");
    let file = dir.0.join("echo.wasm");
    std::fs::write(&file, fleetgate_runtime::bundled::ECHO).unwrap();
    let out = run(&args(&["check", file.to_str().unwrap()])).unwrap();
    assert!(out.contains("world:        service"), "{out}");
    assert!(out.contains("capabilities: messaging"), "{out}");
    assert!(out.contains("fleetgate:plugin/messaging@0.1.0"), "{out}");
    assert!(out.contains("\n  process"), "{out}");
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("digest:       sha256:"))
        .unwrap();
    assert_eq!(digest.len(), 64, "{out}");
}

#[test]
fn check_refuses_garbage_with_a_clear_error() {
    let dir = Scratch::new("garbage");
    let file = dir.0.join("garbage.wasm");
    std::fs::write(&file, b"definitely not a component").unwrap();
    let err = run(&args(&["check", file.to_str().unwrap()])).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("is not a valid Fleetgate plugin"), "{text}");
    assert!(text.contains("not a WebAssembly file"), "{text}");
    // A WebAssembly header but no component behind it.
    std::fs::write(&file, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let err = run(&args(&["check", file.to_str().unwrap()])).unwrap_err();
    assert!(
        format!("{err:#}").contains("compiling component"),
        "{err:#}"
    );

    let err = run(&args(&["check", "/nonexistent/x.wasm"])).unwrap_err();
    assert!(format!("{err:#}").contains("reading component"), "{err:#}");
}

#[test]
fn new_writes_a_crate_that_uses_the_sdk() {
    let dir = Scratch::new("new");
    let out = run(&args(&[
        "new",
        "geo-tagger",
        "--dir",
        dir.0.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(out.contains("geo_tagger.wasm"), "{out}");
    let root = dir.0.join("geo-tagger");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();

    let cargo = read("Cargo.toml");
    assert!(cargo.contains("name = \"geo-tagger\""), "{cargo}");
    assert!(cargo.contains("crate-type = [\"cdylib\"]"), "{cargo}");
    let sdk = PathBuf::from(BUILT_SDK).canonicalize().unwrap();
    assert!(
        cargo.contains(&format!(
            "fleetgate-sdk = {{ path = \"{}\" }}",
            sdk.display()
        )),
        "{cargo}"
    );
    assert!(cargo.contains("[workspace]"), "{cargo}");

    let lib = read("src/lib.rs");
    assert!(lib.contains("impl Service for GeoTagger"), "{lib}");
    assert!(
        lib.contains("fleetgate_sdk::export_service!(GeoTagger);"),
        "{lib}"
    );
    assert!(read("README.md").contains("cargo build --release --target wasm32-wasip2"));
    assert!(read(".cargo/config.toml").contains("wasm32-wasip2"));

    // Never overwrites.
    let err = run(&args(&[
        "new",
        "geo-tagger",
        "--dir",
        dir.0.to_str().unwrap(),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn new_refuses_bad_names_and_a_missing_sdk() {
    let dir = Scratch::new("bad");
    let d = dir.0.to_str().unwrap();
    for name in ["Geo", "9lives", "a/b", ""] {
        assert!(run(&args(&["new", name, "--dir", d])).is_err(), "{name}");
    }
    let err = run(&args(&["new", "ok", "--dir", d, "--sdk=/nonexistent/sdk"])).unwrap_err();
    assert!(err.to_string().contains("pass --sdk PATH"), "{err}");
    assert!(run(&args(&["new", "ok", "--colour", "red"])).is_err());
}

/// Builds the generated crate for `wasm32-wasip2` and checks the component. About a minute on
/// a cold cargo cache, so opt-in: `FLEETGATE_TEST_PLUGIN_BUILD=1 cargo test -p fleetgate-server
/// plugin_new_builds`.
#[test]
fn plugin_new_builds_and_passes_check() {
    if std::env::var_os("FLEETGATE_TEST_PLUGIN_BUILD").is_none() {
        eprintln!("skipped: set FLEETGATE_TEST_PLUGIN_BUILD=1 to build the generated crate");
        return;
    }
    let dir = Scratch::new("build");
    run(&args(&[
        "new",
        "hello-plugin",
        "--dir",
        dir.0.to_str().unwrap(),
    ]))
    .unwrap();
    let root = dir.0.join("hello-plugin");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    // The outer test build's settings must not leak into the guest build.
    for var in ["RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
        cargo.env_remove(var);
    }
    let status = cargo.status().unwrap();
    assert!(status.success());
    let wasm = root.join("target/wasm32-wasip2/release/hello_plugin.wasm");
    let out = run(&args(&["check", wasm.to_str().unwrap()])).unwrap();
    assert!(out.contains("world:        service"), "{out}");
    assert!(out.contains("capabilities: log"), "{out}");
}
