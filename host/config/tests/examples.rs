//! Every file under `configs/` loads and means what its comments say.

use std::path::{Path, PathBuf};

use fleetgate_config::{DatabaseSetting, Origin, Overrides, Settings};
use fleetgate_pb::fleetspeak::components::frontend_config::FrontendMode;
use fleetgate_pb::fleetspeak::grpcservice;

pub const CERT_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nREPLACE-WITH-THE-SERVER-CERTIFICATE\n-----END CERTIFICATE-----\n";
pub const KEY_PEM: &str =
    "-----BEGIN EC PRIVATE KEY-----\nREPLACE-WITH-THE-SERVER-KEY\n-----END EC PRIVATE KEY-----\n";

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn text(components: &str) -> Settings {
    let c = configs().join(components);
    let s = configs().join("server.services.config");
    Settings::from_text_files(&c, &s, &Overrides::default())
        .unwrap_or_else(|e| panic!("{components}: {e}"))
}

fn grr_service_is_installers(settings: &Settings) {
    let services = &settings.services.services;
    assert_eq!(services.len(), 1);
    let grr = &services[0];
    assert_eq!((grr.name.as_str(), grr.factory.as_str()), ("GRR", "GRPC"));
    assert_eq!(grr.max_parallelism, 100, "0 becomes 100");
    let any = grr.config.as_ref().expect("GRPC config");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/fleetspeak.grpcservice.Config"
    );
    let config: grpcservice::Config = fleetgate_pb::any::unpack(any).expect("grpcservice.Config");
    assert_eq!(config.target, "localhost:11111");
    assert!(config.insecure);
    assert_eq!(
        settings.broadcast_poll_time(),
        std::time::Duration::from_secs(1)
    );
}

#[test]
fn single_node_text_format() {
    let s = text("server.components.config");
    let c = &s.components;
    let https = c.https_config.as_ref().expect("https_config");
    assert_eq!(https.listen_address, "0.0.0.0:4443");
    assert_eq!(https.certificates, CERT_PEM, "adjacent strings concatenate");
    assert_eq!(https.key, KEY_PEM);
    assert!(!https.disable_streaming);
    assert!(matches!(
        https
            .frontend_config
            .as_ref()
            .and_then(|f| f.frontend_mode.as_ref()),
        Some(FrontendMode::MtlsConfig(_))
    ));
    assert_eq!(
        c.admin_config.as_ref().map(|a| a.listen_address.as_str()),
        Some("localhost:4444")
    );
    assert_eq!(
        s.database,
        DatabaseSetting::Mysql {
            url: "mysql://fleetspeak:change-me@127.0.0.1:3306/fleetspeak?ssl-mode=DISABLED".into(),
            session_variables: vec![],
        }
    );
    assert!(matches!(s.origin, Origin::TextFormat { .. }));
    grr_service_is_installers(&s);
}

#[test]
fn distributed_frontend_text_format() {
    let s = text("frontend.components.config");
    let c = &s.components;
    assert!(c.proxy_protocol);
    assert_eq!(c.notification_listen_address, "192.168.1.83:10000");
    assert_eq!(c.notification_public_address, "192.168.1.83:10000");
    assert!(c.admin_config.is_none());
    let https = c.https_config.as_ref().expect("https_config");
    assert!(https.disable_streaming);
    assert_eq!(https.listen_address, "192.168.1.83:4443");
}

#[test]
fn admin_only_text_format() {
    let s = text("admin-only.components.config");
    let c = &s.components;
    assert!(c.https_config.is_none());
    assert!(c.notification_use_http_notifier);
    assert_eq!(
        c.admin_config.as_ref().map(|a| a.listen_address.as_str()),
        Some("192.168.1.83:4444")
    );
    assert!(
        matches!(&s.database, DatabaseSetting::Mysql { url, .. } if url.contains("@db.internal:3306/"))
    );
}

#[test]
fn toml_matches_the_text_format_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("fleetgate.toml");
    std::fs::copy(configs().join("fleetgate.toml"), &toml).expect("copy");
    std::fs::write(dir.path().join("server.crt"), CERT_PEM).expect("write cert");
    std::fs::write(dir.path().join("server.key"), KEY_PEM).expect("write key");

    let from_toml = Settings::from_toml_file(&toml, &Overrides::default()).expect("fleetgate.toml");
    let from_text = text("server.components.config");

    let mut text_components = from_text.components.clone();
    text_components.mysql_data_source_name.clear();
    assert_eq!(from_toml.components, text_components);
    assert_eq!(from_toml.services, from_text.services);
    assert_eq!(
        from_toml.database,
        DatabaseSetting::Mysql {
            url: "mysql://fleetspeak:change-me@127.0.0.1:3306/fleetspeak".into(),
            session_variables: vec![],
        }
    );
    assert_eq!(from_toml.state_dir, PathBuf::from("/var/lib/fleetgate"));
    assert_eq!(from_toml.trace.enabled, Some(true));
    assert_eq!(from_toml.trace.server_name, None);
    grr_service_is_installers(&from_toml);

    // --database and --state_dir win.
    let overrides = Overrides {
        database: Some("sqlite:///tmp/fg.db".into()),
        state_dir: Some("/srv/fg".into()),
    };
    let s = Settings::from_toml_file(&toml, &overrides).expect("fleetgate.toml");
    assert_eq!(s.database, DatabaseSetting::Sqlite("/tmp/fg.db".into()));
    assert_eq!(s.state_dir, PathBuf::from("/srv/fg"));
}

#[test]
fn binary_entry_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = configs().join("admin-only.components.config");
    let s = configs().join("server.services.config");
    let args = [
        "--logtostderr".to_owned(),
        format!("--components_config={}", c.display()),
        "--services_config".to_owned(),
        s.display().to_string(),
        "-state_dir".to_owned(),
        dir.path().display().to_string(),
        "-v=1".to_owned(),
    ];
    let flags = fleetgate_config::ServerFlags::parse(args).expect("flags");
    assert!(flags.log.logtostderr);
    assert_eq!(flags.log.v, 1);
    let settings = Settings::load(&flags).expect("settings");
    assert_eq!(settings.state_dir, dir.path());
}

#[test]
fn admin_policy_example() {
    use fleetgate_config::admin_lock::{PolicyMatcher, parse_policy};
    let path = configs().join("admin-policy.toml");
    let text = std::fs::read_to_string(&path).expect("admin-policy.toml");
    let p = parse_policy(&path, &text).expect("admin-policy.toml");
    let names: Vec<&str> = p.identities.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["ops", "dashboard", "deployer"]);
    assert_eq!(
        (&p.identities[0].rpcs, &p.identities[0].services),
        (&None, &None)
    );
    let dashboard = &p.identities[1];
    assert!(
        dashboard
            .rpcs
            .as_ref()
            .is_some_and(|r| r.contains("ListPlugins"))
    );
    assert_eq!(dashboard.services.as_ref().map(|s| s.len()), Some(0));
    let deployer = &p.identities[2];
    assert!(matches!(deployer.matcher, PolicyMatcher::SpkiSha256(_)));
    assert_eq!(
        deployer
            .services
            .as_ref()
            .map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["Deploy".to_owned()])
    );
}
