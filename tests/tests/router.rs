//! The router world through the binary, with the issue's own example: GRR messages from clients
//! labelled `eu` go to another GRR upstream. `quickstart --router` loads the `router-example`
//! component (rule `GRR eu GRR-eu`) in front of two `GRPC` services, each forwarding to its
//! own GRR Python connector; two real Go clients, one labelled `eu`, send GRR messages.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use fleetgate_pb::fleetgate::admin::v1::fleetgate_admin_client::FleetgateAdminClient;
use fleetgate_pb::fleetgate::admin::v1::{ReloadPluginsRequest, ReloadPluginsResponse};
use fleetgate_tests::env::workspace_root;
use fleetgate_tests::grr::{self, GrrConnector, Processed};
use fleetgate_tests::tag_plugins::{digest, plugin_status};
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks, eventually, ports};

const M: usize = 4;

fn router_component() -> String {
    let path = workspace_root().join("plugins/target/wasm32-wasip2/release/router_example.wasm");
    assert!(
        path.is_file(),
        "{} is missing (built with the host: cargo build -p fleetgate-server)",
        path.display()
    );
    path.display().to_string()
}

async fn start_server(
    upstreams: &[(&str, SocketAddr)],
    router: &str,
) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = dir.path().join("server.services.config");
    std::fs::write(&services, grr::grpc_services_config(upstreams)).expect("writing services");
    let server = Server::start(ServerOptions {
        extra_args: vec![
            "--services_config".into(),
            services.display().to_string(),
            "--router".into(),
            router.into(),
            "--router_config".into(),
            "GRR eu GRR-eu".into(),
        ],
        ..Default::default()
    })
    .await;
    (server, dir)
}

/// GRR's connector as the Processor of `service`, which it must be named after: it refuses
/// (INVALID_ARGUMENT) messages for another service.
async fn upstream(server: &Server, service: &str, listen: SocketAddr) -> GrrConnector {
    let dir = server.root().join(format!("grr-{service}"));
    GrrConnector::start(&dir, service, listen, server.admin_addr()).await
}

/// `ReloadPlugins`, and the router's generation and digest after it.
async fn reload(
    server: &Server,
    ext: &mut FleetgateAdminClient<tonic::transport::Channel>,
) -> (ReloadPluginsResponse, u64, String) {
    let r = ext
        .reload_plugins(ReloadPluginsRequest {})
        .await
        .expect("ReloadPlugins")
        .into_inner();
    let status = plugin_status(server, "(router)").await;
    (r, status.generation, status.digest)
}

async fn grr_client(server: &Server, label: &str) -> GoClient {
    GoClient::start(
        server,
        ClientOptions {
            services: vec!["GRR".into()],
            labels: vec![label.into()],
            program: grr::sender(&[("GRR", "GrrMessage", M)]),
            ..Default::default()
        },
    )
    .await
}

/// What `connector` received from `client`, once it has `n`.
async fn received_from(connector: &GrrConnector, client: &[u8], n: usize) -> Vec<Processed> {
    eventually(
        Duration::from_secs(60),
        "the upstream to receive the client's messages",
        || async {
            connector.check_running()?;
            let got: Vec<Processed> = connector
                .received()
                .into_iter()
                .filter(|m| m.client_id == client)
                .collect();
            if got.len() < n {
                bail!("{} of {n}", got.len());
            }
            Ok(got)
        },
    )
    .await
}

#[tokio::test]
async fn router_sends_eu_clients_grr_messages_to_another_upstream() {
    let (main, eu) = (ports::free_addr(), ports::free_addr());
    let (server, _config) =
        start_server(&[("GRR", main), ("GRR-eu", eu)], &router_component()).await;
    let main_grr = upstream(&server, "GRR", main).await;
    let eu_grr = upstream(&server, "GRR-eu", eu).await;
    let us_client = grr_client(&server, "us").await;
    let eu_client = grr_client(&server, "eu").await;
    let (us_id, eu_id) = (us_client.client_id().await, eu_client.client_id().await);

    let at_main = received_from(&main_grr, &us_id, M).await;
    let at_eu = received_from(&eu_grr, &eu_id, M).await;
    // Re-addressed, not copied: each message reached exactly one upstream, once.
    assert_eq!(
        at_main.len(),
        M,
        "duplicates at the main upstream: {at_main:?}"
    );
    assert_eq!(at_eu.len(), M, "duplicates at the eu upstream: {at_eu:?}");
    assert!(
        main_grr.received().iter().all(|m| m.client_id == us_id),
        "an eu message reached the main upstream: {:?}",
        main_grr.received()
    );
    assert!(
        eu_grr.received().iter().all(|m| m.client_id == eu_id),
        "a non-eu message reached the eu upstream: {:?}",
        eu_grr.received()
    );
    for m in &at_eu {
        assert_eq!(
            m.dest_service, "GRR-eu",
            "the forwarded message names its new service"
        );
    }
    for m in &at_main {
        assert_eq!(m.dest_service, "GRR");
    }
    // Both services answered OK, so every message is stored processed under its own ID.
    let admin = server.admin().await;
    let ids = |client: &[u8], got: &[Processed]| -> Vec<Vec<u8>> {
        got.iter()
            .map(|m| {
                assert_eq!(m.client_id, client);
                m.id.clone()
            })
            .collect()
    };
    let mut all = ids(&us_id, &at_main);
    all.extend(ids(&eu_id, &at_eu));
    checks::acked(&admin, &all, Duration::from_secs(30)).await;
    assert!(
        server.log_text().contains("router installed"),
        "the server log should say the router is installed"
    );
}

/// The router is reloaded with the services: a broken file is refused and the running router
/// keeps routing; a new build is swapped in and routes the messages that follow.
#[tokio::test]
async fn router_reloads_with_the_plugins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let live = dir.path().join("router.wasm");
    let install = |bytes: &[u8]| {
        let tmp = dir.path().join("router.wasm.tmp");
        std::fs::write(&tmp, bytes).expect("writing the router");
        std::fs::rename(&tmp, &live).expect("installing the router");
    };
    let first = std::fs::read(router_component()).expect("reading the router component");
    install(&first);
    let eu = ports::free_addr();
    let (server, _config) = start_server(&[("GRR-eu", eu)], &live.display().to_string()).await;
    let mut ext = FleetgateAdminClient::connect(format!("http://{}", server.admin_addr()))
        .await
        .expect("connecting to the admin API");
    let status = plugin_status(&server, "(router)").await;
    assert_eq!((status.generation, status.digest), (1, digest(&first)));

    install(b"not a component");
    let (r, generation, serving) = reload(&server, &mut ext).await;
    assert!(!r.ok, "a broken router must be refused: {r:?}");
    assert!(
        r.error.contains("router"),
        "the error should name the router: {}",
        r.error
    );
    assert_eq!((generation, serving), (1, digest(&first)));

    // The same router with a custom section appended: another build, same behaviour.
    let mut second = first.clone();
    let name = b"fleetgate-test";
    second.extend([0, (1 + name.len() + 2) as u8, name.len() as u8]);
    second.extend(name);
    second.extend(b"v2");
    install(&second);
    let (r, generation, serving) = reload(&server, &mut ext).await;
    assert!(r.ok, "the new router build should load: {}", r.error);
    assert_eq!((generation, serving), (2, digest(&second)));

    // Routed by the new build: the eu client's GRR messages reach GRR-eu.
    let eu_grr = upstream(&server, "GRR-eu", eu).await;
    let client = grr_client(&server, "eu").await;
    let id = client.client_id().await;
    let got = received_from(&eu_grr, &id, M).await;
    assert!(got.iter().all(|m| m.dest_service == "GRR-eu"), "{got:?}");
    assert!(
        plugin_status(&server, "(router)").await.calls >= M as u64,
        "the new router's calls should be counted"
    );
}
