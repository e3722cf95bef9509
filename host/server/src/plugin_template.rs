//! The files `fleetgate plugin new` writes: a crate of its own (its own `[workspace]`, so it
//! builds wherever it is created) implementing the SDK's `Service` trait.

use std::path::Path;

/// `(path inside the crate, contents)` for a plugin called `name` using the SDK at `sdk`.
pub fn files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let lib = super::plugin_cli::lib_name(name);
    let ty = type_name(name);
    // TOML basic strings need `\` and `"` escaped.
    let sdk = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    vec![
        ("Cargo.toml", cargo_toml(name, &lib, &sdk)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (".gitignore", "/target\n".to_owned()),
        ("README.md", readme(name, &lib)),
        ("src/lib.rs", lib_rs(name, &ty)),
    ]
}

/// `my-plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn cargo_toml(name: &str, lib: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
name = "{lib}"
# A WebAssembly component: `cargo build --release --target wasm32-wasip2`.
crate-type = ["cdylib"]

[dependencies]
# The Fleetgate plugin SDK is not published on crates.io: depend on `plugins/sdk` of a
# Fleetgate checkout by path (or by git, pinned to the release your server runs).
fleetgate-sdk = {{ path = "{sdk}" }}

# The server runs a fresh instance per message: optimise for speed, as one unit.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A crate of its own, even when created inside another workspace.
[workspace]
"#
    )
}

const CARGO_CONFIG: &str =
    "# Plain `cargo build` here builds a component.\n[build]\ntarget = \"wasm32-wasip2\"\n";

fn readme(name: &str, lib: &str) -> String {
    format!(
        "# {name}\n\n\
         A Fleetgate server service, written as a WebAssembly component with the Fleetgate SDK.\n\n\
         Build it with `cargo build --release --target wasm32-wasip2` (needs \
         `rustup target add wasm32-wasip2`); the component is \
         `target/wasm32-wasip2/release/{lib}.wasm`.\n\n\
         Check it with `fleetgate plugin check target/wasm32-wasip2/release/{lib}.wasm`, then \
         install it in the services configuration:\n\n\
         ```\n\
         services {{\n  name: \"{name}\"\n  factory: \"WASM\"\n  config {{\n    \
         [type.googleapis.com/fleetgate.plugin.v1.WasmConfig] {{\n      \
         path: \"/path/to/{lib}.wasm\"\n      grants: \"log\"\n    }}\n  }}\n}}\n\
         ```\n"
    )
}

fn lib_rs(name: &str, ty: &str) -> String {
    format!(
        r#"//! `{name}`: a Fleetgate server service.
//!
//! The host instantiates a fresh component for every message: `init` gets the plugin config
//! from the services configuration, then `process` gets one message. Each capability used
//! here (`log`) must be granted in the service's configuration.

use fleetgate_sdk::{{Message, ProcessError, Service, log}};

struct {ty} {{
    /// The plugin config, as UTF-8 (empty if none was given).
    greeting: String,
}}

impl Service for {ty} {{
    fn init(config: &[u8]) -> Result<Self, String> {{
        let greeting = String::from_utf8(config.to_vec()).map_err(|e| e.to_string())?;
        Ok({ty} {{ greeting }})
    }}

    fn process(&self, msg: Message) -> Result<(), ProcessError> {{
        if msg.message_type.is_empty() {{
            // Permanent: the message is marked failed. Temporary errors are retried later.
            return Err(ProcessError::Permanent("a message type is required".into()));
        }}
        log::info(&format!(
            "{{}}: {{}} from {{}}",
            self.greeting, msg.message_type, msg.source.service_name
        ));
        Ok(())
    }}
}}

fleetgate_sdk::export_service!({ty});
"#
    )
}
