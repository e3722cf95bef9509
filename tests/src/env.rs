//! Where the binaries under test live. Missing pieces are a test failure with set-up
//! instructions, never a silent pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SETUP: &str = "set-up: `cd <workspace> && cargo build -p fleetgate-server && \
     export FLEETGATE_PEERS_VENV=$(.ci/peers.sh)` (peers.sh creates target/peers-venv with \
     fleetspeak==0.1.19, fleetspeak-client-bin==0.1.19, fleetspeak-server-bin==0.1.19)";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `fleetgate` binary: `$FLEETGATE_BIN`, else `<workspace>/target/debug/fleetgate`.
pub fn fleetgate_bin() -> PathBuf {
    let (path, from_env) = match std::env::var_os("FLEETGATE_BIN") {
        Some(p) => (PathBuf::from(p), true),
        None => (workspace_root().join("target/debug/fleetgate"), false),
    };
    if !path.is_file() {
        let origin = if from_env {
            "FLEETGATE_BIN points to"
        } else {
            "FLEETGATE_BIN is unset and the default is"
        };
        panic!(
            "{origin} {}, which does not exist. Build it with `cargo build -p fleetgate-server` or set FLEETGATE_BIN; {SETUP}",
            path.display()
        );
    }
    path
}

/// The virtualenv holding the Fleetspeak PyPI packages: `$FLEETGATE_PEERS_VENV`.
/// Checked once per process: the Go client binary, python, and the `fleetspeak` module.
pub fn peers_venv() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match CHECKED.get_or_init(check_venv) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn check_venv() -> Result<PathBuf, String> {
    let Some(venv) = std::env::var_os("FLEETGATE_PEERS_VENV").map(PathBuf::from) else {
        return Err(format!(
            "FLEETGATE_PEERS_VENV is not set; the end-to-end tests need the real Fleetspeak client. {SETUP}"
        ));
    };
    let client = venv.join("fleetspeak-client-bin/usr/bin/fleetspeak-client");
    if !client.is_file() {
        return Err(format!(
            "FLEETGATE_PEERS_VENV={}: no {} (fleetspeak-client-bin not installed?). {SETUP}",
            venv.display(),
            client.display()
        ));
    }
    check_imports(
        "FLEETGATE_PEERS_VENV",
        &venv,
        "import fleetspeak.client_connector.connector",
        SETUP,
    )?;
    Ok(venv)
}

/// Runs `import` with `venv`'s python; the error names the variable, the venv and the set-up.
fn check_imports(var: &str, venv: &Path, import: &str, setup: &str) -> Result<(), String> {
    let python = venv.join("bin/python");
    let out = Command::new(&python)
        .args(["-c", import])
        .output()
        .map_err(|e| {
            format!(
                "{var}={}: cannot run {}: {e}. {setup}",
                venv.display(),
                python.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "{var}={}: `{import}` failed: {}. {setup}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The real Go client.
pub fn client_bin() -> PathBuf {
    peers_venv().join("fleetspeak-client-bin/usr/bin/fleetspeak-client")
}

/// The venv's python, which can import `fleetspeak`.
pub fn python() -> PathBuf {
    peers_venv().join("bin/python")
}

/// The echo daemon service program.
pub fn echo_daemon() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("daemon/echo.py")
}

const GRR_SETUP: &str = "set-up: `export FLEETGATE_GRR_VENV=$(.ci/grr.sh)` (installs GRR \
     4.0.0.post0 from PyPI into a virtualenv cached under /var/cache/fleetgate; \
     scripts/test-all.sh does this)";

/// The virtualenv holding GRR from PyPI: `$FLEETGATE_GRR_VENV`. Checked once per process: its
/// python imports GRR's server, client and API client.
pub fn grr_venv() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match CHECKED.get_or_init(check_grr_venv) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn check_grr_venv() -> Result<PathBuf, String> {
    let Some(venv) = std::env::var_os("FLEETGATE_GRR_VENV").map(PathBuf::from) else {
        return Err(format!(
            "FLEETGATE_GRR_VENV is not set; the GRR end-to-end tests need GRR itself. {GRR_SETUP}"
        ));
    };
    check_imports(
        "FLEETGATE_GRR_VENV",
        &venv,
        "import grr_response_server, grr_response_client, grr_api_client",
        GRR_SETUP,
    )?;
    Ok(venv)
}

/// The GRR virtualenv's python.
pub fn grr_python() -> PathBuf {
    grr_venv().join("bin/python")
}
