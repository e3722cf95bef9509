//! The TOML `[router]` table.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use fleetgate_config::toml::parse;

#[test]
fn router_table_is_read_with_paths_relative_to_the_file() {
    let text = r#"
[router]
path = "plugins/router.wasm"
config = "GRR eu GRR-eu"
grants = ["clients", "log"]
"#;
    let s = parse(Path::new("/etc/fleetgate/fleetgate.toml"), text).unwrap();
    let r = s.router.unwrap();
    assert_eq!(r.path, "/etc/fleetgate/plugins/router.wasm");
    assert_eq!(r.config, b"GRR eu GRR-eu");
    assert_eq!(r.grants, ["clients", "log"]);

    let s = parse(Path::new("/x.toml"), "[router]\npath = \"bundled:r\"\n").unwrap();
    assert_eq!(s.router.unwrap().path, "bundled:r");
    assert!(parse(Path::new("/x.toml"), "").unwrap().router.is_none());
}

#[test]
fn unknown_router_keys_are_errors() {
    let err = parse(
        Path::new("/x.toml"),
        "[router]\npath = \"a\"\nfactory = \"WASM\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("factory"), "{err}");
}
