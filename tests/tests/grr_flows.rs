//! GRR itself over Fleetgate: GRR 4.0.0.post0 from PyPI (`FLEETGATE_GRR_VENV`, made by
//! `.ci/grr.sh`), installed by its own `grr_config_updater initialize --noprompt
//! --use_fleetspeak` with `fleetgate config` as `fleetspeak-config`, its Fleetspeak frontend,
//! admin UI (HTTP API) and worker, `fleetgate server` on the files the installer wrote, and the
//! real Go client running the GRR client as its daemon service. Through GRR's API the client
//! enrols, and Interrogate, ListProcesses, ClientFileFinder and FileFinder (files downloaded and
//! compared) finish with results.
//!
//! The same run over Go `fleetspeak-server` 0.1.19 (its configurator too) proves the harness
//! against the reference, and gives the benchmark page its other column; the distributed run
//! is the scaling guide's topology with GRR pointed at the admin-only server.
//!
//! The runs take one to two minutes each and are serialised: several GRR installations at once
//! on a small machine would time each other out.

use std::collections::BTreeMap;

use fleetgate_tests::fleet::Fleet;
use fleetgate_tests::grr::grpc_services_config;
use fleetgate_tests::grr_stack::{
    GrrClient, GrrInstall, GrrPorts, GrrServers, STEPS, Step, report, run_flows,
};
use fleetgate_tests::mariadb::{TestDatabase, sql};
use fleetgate_tests::node::{Flavor, Node};
use fleetgate_tests::pki::quote;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Every step reported, in order, each with results.
fn check_steps(label: &str, steps: &[Step]) {
    eprint!("{}", report(label, steps));
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, STEPS, "{label}: steps {steps:?}");
    for s in steps {
        assert!(s.results > 0, "{label}: {} has no results: {s:?}", s.name);
    }
}

/// One server, as GRR's installer sets it up: the configurator's components config
/// (MariaDB, HTTPS with streaming, the admin API on localhost) and services config (`GRPC`
/// service `GRR` forwarding to GRR's frontend).
async fn single_node(flavor: Flavor, label: &str) -> Vec<Step> {
    let _serial = SERIAL.lock().await;
    let fleetspeak_db = TestDatabase::create("grrfs");
    let ports = GrrPorts::free();
    let install = GrrInstall::initialize(flavor, ports, &fleetspeak_db.name).await;
    let mut server = Node::with_services(
        &install.dir,
        "fleetspeak-server",
        flavor,
        &install.fleetspeak_file("server.components.config"),
        &install.fleetspeak_file("server.services.config"),
        vec![ports.https, ports.admin],
    );
    server.start().await;
    let mut grr = GrrServers::start(&install).await;
    let mut client = GrrClient::prepare(
        &install,
        &install.dir.join("client"),
        &install.fleetspeak_file("linux_client.config"),
    )
    .await;
    let steps = run_flows(&install, &mut client).await;
    server.check_running();
    grr.check_running().unwrap_or_else(|e| panic!("{e:#}"));
    check_steps(label, &steps);
    // GRR stored what the Fleetspeak server delivered: the client, known under its
    // Fleetspeak id in both databases (GRR's as an integer).
    let id = hex::encode(client.client_id().await);
    let grr_clients = install
        .db
        .query("SELECT LPAD(HEX(client_id), 16, '0') FROM clients")
        .unwrap_or_else(|e| panic!("{e}"));
    let fs_clients = sql(&format!(
        "SELECT HEX(client_id) FROM {}.clients",
        fleetspeak_db.name
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    for (what, rows) in [("GRR's", &grr_clients), ("Fleetspeak's", &fs_clients)] {
        assert!(
            rows.to_lowercase().contains(&id),
            "{what} database has no client {id}: {rows}"
        );
    }
    steps
}

#[tokio::test]
async fn grr_flows_over_fleetgate() {
    single_node(Flavor::Fleetgate, "fleetgate").await;
}

#[tokio::test]
async fn grr_flows_over_go_fleetspeak() {
    single_node(Flavor::Go, "go").await;
}

/// The scaling guide's topology: two Fleetgate frontends behind haproxy (PROXY v2), an
/// admin-only Fleetgate with the HTTP notifier, one MariaDB; every server runs the `GRR`
/// service, GRR's `Server.fleetspeak_server` is the admin-only server, the client streams
/// through haproxy.
#[tokio::test]
async fn grr_flows_over_the_distributed_fleetgate() {
    let _serial = SERIAL.lock().await;
    let mut ports = GrrPorts::free();
    let services = grpc_services_config(&[("GRR", ports.grr)]);
    let mut fleet = Fleet::start_with_services(
        "grrdist",
        Flavor::Fleetgate,
        &[Flavor::Fleetgate, Flavor::Fleetgate],
        &services,
    )
    .await;
    ports.admin = fleet.admin_addr;
    // GRR's installer still runs the configurator; the fleet's own configs replace its files.
    let install = GrrInstall::initialize(Flavor::Fleetgate, ports, &fleet.db.name).await;
    let mut grr = GrrServers::start(&install).await;
    let config = format!(
        "trusted_certs: {}\nserver: \"localhost:{}\"\nfilesystem_handler {{\n  configuration_directory: \"\"\n  state_file: \"\"\n}}\nstreaming: true\n",
        quote(&fleet.pki.ca_pem),
        fleet.proxies[0].listen.port(),
    );
    let mut client = GrrClient::prepare(&install, &install.dir.join("client"), &config).await;
    let steps = run_flows(&install, &mut client).await;
    fleet.admin_node.check_running();
    for f in &mut fleet.frontends {
        f.node.check_running();
    }
    grr.check_running().unwrap_or_else(|e| panic!("{e:#}"));
    check_steps("distributed", &steps);
    // The client's messages went through the frontends, GRR's to it through the admin
    // server's notification: the logs say which frontend held the stream and was told.
    let id = hex::encode(client.client_id().await);
    let mut notified: BTreeMap<String, usize> = BTreeMap::new();
    for f in &fleet.frontends {
        notified.insert(
            f.node.name.clone(),
            f.node.log_lines("notification received").len(),
        );
    }
    let sent = fleet.admin_node.log_lines("notification sent").len();
    assert!(
        sent > 0 && notified.values().sum::<usize>() > 0,
        "client {id}: {sent} notifications sent by the admin server, received: {notified:?}"
    );
}
