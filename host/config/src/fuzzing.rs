//! Entry points for the configuration fuzz targets (`host/frontend/fuzz`: `config_text`,
//! `config_toml`, `config_values`). Configuration is operator input, not peer input, but a
//! mistyped file must get an error, never a panic: the same files are read again on reload.

use std::path::Path;

use crate::settings::{DatabaseSetting, Overrides, Settings};
use crate::{ServerFlags, dsn, duration};

/// `data` up to the first NUL as a components config, the rest as a services config, both
/// parsed and validated.
pub fn config_text(data: &[u8]) {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (components, services) = data.split_at(cut);
    let services = services.get(1..).unwrap_or_default();
    if let Err(e) = Settings::from_text(
        Path::new("fuzz.components.config"),
        components,
        Path::new("fuzz.services.config"),
        services,
        &Overrides::default(),
    ) {
        assert!(!e.to_string().is_empty());
    }
}

/// `data` as a Fleetgate TOML file. Certificate paths in it are read relative to a directory
/// that does not exist.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/fleetgate-fuzz/fleetgate.toml");
    if let Err(e) = Settings::from_toml(path, text, &Overrides::default()) {
        assert!(!e.to_string().is_empty());
    }
}

/// `data` as each single value an operator types: a MySQL DSN, a database URL, a Go duration,
/// and (split on whitespace) the command line of `fleetgate server`.
pub fn config_values(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = dsn::parse(text) {
        let _ = parsed.to_url();
    }
    let _ = DatabaseSetting::from_dsn(text, "fuzz");
    let _ = DatabaseSetting::from_url(text, "fuzz");
    let _ = duration::parse_go_duration(text);
    let _ = ServerFlags::parse(text.split_whitespace());
}
