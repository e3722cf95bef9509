//! The `tag-a` / `tag-b` test components behind a `Tag` service, for the hot-reload tests: a temp
//! dir holding the services config, the live component file and the directory the plugin
//! records each processed message in.

use std::path::PathBuf;

use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_client::FleetgateAdminClient;
use fleetgate_pb::fleetgate::admin::v1::{ListPluginsRequest, PluginStatus};
use sha2::{Digest, Sha256};

use crate::{Server, env};

pub struct TagPlugins {
    dir: tempfile::TempDir,
}

impl TagPlugins {
    /// A `Tag` service of factory `WASM` running `initial`, recording into [`Self::tags`].
    pub fn new(initial: &[u8]) -> Self {
        let p = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        std::fs::create_dir(p.tags()).expect("tags dir");
        p.install(initial);
        let config = format!(
            r#"services {{
  name: "Tag"
  factory: "WASM"
  config {{
    [type.googleapis.com/fleetgate.plugin.v1.WasmConfig] {{
      path: "{}"
      config: "/tags"
      preopens {{ host_path: "{}" guest_path: "/tags" }}
    }}
  }}
}}
"#,
            p.live().display(),
            p.tags().display()
        );
        std::fs::write(p.config(), config).expect("services config");
        p
    }

    /// The services config to pass as quickstart's `--services_config`.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("services.config")
    }

    /// The component file the config names.
    pub fn live(&self) -> PathBuf {
        self.dir.path().join("tag.wasm")
    }

    /// One file per processed message ID holding the build's tag (`<id>.dup` for a second one).
    pub fn tags(&self) -> PathBuf {
        self.dir.path().join("tags")
    }

    /// Replaces the live component atomically, as a deployment would.
    pub fn install(&self, wasm: &[u8]) {
        let tmp = self.dir.path().join("tag.wasm.tmp");
        std::fs::write(&tmp, wasm).expect("writing the component");
        std::fs::rename(&tmp, self.live()).expect("installing the component");
    }
}

/// A tag build (`a` or `b`), as the plugins workspace left it.
pub fn build(tag: &str) -> Vec<u8> {
    let path = env::workspace_root().join(format!(
        "plugins/target/wasm32-wasip2/release/test_tag_{tag}.wasm"
    ));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build it: cd plugins && cargo build --release --target wasm32-wasip2)",
            path.display()
        )
    })
}

/// The digest `plugins list` shows for a component.
pub fn digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// The `Tag` service's status from the extension admin API.
pub async fn tag_status(server: &Server) -> PluginStatus {
    plugin_status(server, "Tag").await
}

/// A service's status (or the router's, as `(router)`) from the extension admin API.
pub async fn plugin_status(server: &Server, service: &str) -> PluginStatus {
    let mut ext = FleetgateAdminClient::connect(format!("http://{}", server.admin_addr()))
        .await
        .expect("connecting to the admin API");
    let list = ext
        .list_plugins(ListPluginsRequest {})
        .await
        .expect("ListPlugins");
    list.into_inner()
        .plugins
        .into_iter()
        .find(|p| p.service == service)
        .unwrap_or_else(|| panic!("no {service} listed"))
}
