//! The distributed deployment of Fleetspeak's scaling guide, on one machine: MariaDB, client
//! frontends behind haproxy (PROXY v2 and v1), an admin-only server that notifies the frontends
//! over HTTP, and real Go clients. Each fleet gets its own temp dir and database.

use std::net::SocketAddr;
use std::path::PathBuf;

use tempfile::TempDir;

use crate::admin::Admin;
use crate::fleet_client::FleetClient;
use crate::haproxy::{Haproxy, ProxyVersion};
use crate::mariadb::TestDatabase;
use crate::node::{Flavor, Node};
use crate::pki::{Pki, quote};
use crate::ports::free_addr;

/// A client-facing server: mTLS behind haproxy, with a notification listener.
pub struct Frontend {
    pub node: Node,
    pub https: SocketAddr,
    /// Listen and advertised notification address (what its streams record).
    pub notify: SocketAddr,
}

/// Processes are declared before the database, so they are killed before it is dropped.
pub struct Fleet {
    pub clients: Vec<FleetClient>,
    pub proxies: Vec<Haproxy>,
    pub frontends: Vec<Frontend>,
    pub admin_node: Node,
    pub admin_addr: SocketAddr,
    pub pki: Pki,
    /// The services config every server of the fleet runs.
    services: String,
    pub db: TestDatabase,
    root: Option<TempDir>,
    pub dir: PathBuf,
}

impl Fleet {
    /// Starts a Fleetgate admin-only server (it creates the schema), `frontends` Fleetgate
    /// frontends, and two haproxies in front of all of them: [`ProxyVersion::V2`] first, then V1.
    pub async fn start(name: &str, frontends: usize) -> Fleet {
        Self::start_mixed(name, Flavor::Fleetgate, &vec![Flavor::Fleetgate; frontends]).await
    }

    /// As [`Fleet::start`], with each server's binary chosen: Fleetgate or the Go server.
    pub async fn start_mixed(name: &str, admin: Flavor, frontends: &[Flavor]) -> Fleet {
        Self::start_with_services(name, admin, frontends, "").await
    }

    /// As [`Fleet::start_mixed`], with `services` as every server's services config.
    pub async fn start_with_services(
        name: &str,
        admin: Flavor,
        frontends: &[Flavor],
        services: &str,
    ) -> Fleet {
        crate::env::fleetgate_bin();
        crate::env::peers_venv();
        let db = TestDatabase::create(name);
        let root = tempfile::Builder::new()
            .prefix("fleetgate-fleet-")
            .tempdir()
            .expect("temp dir");
        let dir = root.path().to_path_buf();
        let pki = Pki::generate();
        let admin_addr = free_addr();
        let admin_components = format!(
            "mysql_data_source_name: {}\nadmin_config {{ listen_address: \"{admin_addr}\" }}\nnotification_use_http_notifier: true\n",
            quote(&db.dsn())
        );
        let mut admin_node = Node::with_services(
            &dir,
            "admin",
            admin,
            &admin_components,
            services,
            vec![admin_addr],
        );
        admin_node.start().await;
        let mut fleet = Fleet {
            clients: vec![],
            proxies: vec![],
            frontends: vec![],
            admin_node,
            admin_addr,
            pki,
            services: services.into(),
            db,
            root: Some(root),
            dir,
        };
        for (i, flavor) in frontends.iter().enumerate() {
            fleet.add_frontend(&format!("frontend{i}"), *flavor).await;
        }
        let backends: Vec<SocketAddr> = fleet.frontends.iter().map(|f| f.https).collect();
        for (name, v) in [
            ("haproxy-v2", ProxyVersion::V2),
            ("haproxy-v1", ProxyVersion::V1),
        ] {
            let p = Haproxy::start(&fleet.dir, name, free_addr(), &backends, v).await;
            fleet.proxies.push(p);
        }
        fleet
    }

    /// The components config of a frontend (Fleetgate or Go read the same file).
    pub fn frontend_components(&self, https: SocketAddr, notify: SocketAddr) -> String {
        format!(
            "mysql_data_source_name: {}\nhttps_config {{\n  listen_address: \"{https}\"\n  certificates: {}\n  key: {}\n}}\nproxy_protocol: true\nnotification_listen_address: \"{notify}\"\nnotification_public_address: \"{notify}\"\n",
            quote(&self.db.dsn()),
            quote(&self.pki.server_cert_pem),
            quote(&self.pki.server_key_pem),
        )
    }

    /// Starts one more frontend; it is not in the haproxies started before it.
    pub async fn add_frontend(&mut self, name: &str, flavor: Flavor) -> usize {
        let (https, notify) = (free_addr(), free_addr());
        let text = self.frontend_components(https, notify);
        let mut node =
            Node::with_services(&self.dir, name, flavor, &text, &self.services, vec![notify]);
        node.start().await;
        self.frontends.push(Frontend {
            node,
            https,
            notify,
        });
        self.frontends.len() - 1
    }

    /// Starts a client through proxy `proxy` (index into [`Fleet::proxies`]).
    pub fn start_client(&mut self, proxy: usize) -> usize {
        let n = self.clients.len();
        let dir = self.dir.join(format!("clients/{n}"));
        std::fs::create_dir_all(&dir).expect("client dir");
        let server = format!("localhost:{}", self.proxies[proxy].listen.port());
        let c = FleetClient::start(&dir, &self.pki.ca_pem, &server);
        self.clients.push(c);
        n
    }

    /// An admin API connection to the admin-only server.
    pub async fn admin(&self) -> Admin {
        Admin::connect(self.admin_addr)
            .await
            .unwrap_or_else(|e| panic!("connecting to the admin server: {e:#}"))
    }

    /// Which frontend advertises `streaming_to`.
    pub fn frontend_by_address(&self, streaming_to: &str) -> Option<usize> {
        self.frontends
            .iter()
            .position(|f| f.notify.to_string() == streaming_to)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        crate::keep_if_failed(&mut self.root, "fleet configs, logs and client dirs");
    }
}
