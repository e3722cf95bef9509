use super::*;
use fleetgate_pb::fleetspeak::grpcservice;

fn parse_str(text: &str) -> Result<TomlSettings, ConfigError> {
    parse(Path::new("/etc/fleetgate/fleetgate.toml"), text)
}

fn toml_error(r: Result<TomlSettings, ConfigError>) -> TomlError {
    match r {
        Err(ConfigError::Toml(e)) => *e,
        Err(other) => panic!("expected a TOML error, got {other}"),
        Ok(_) => panic!("expected a TOML error, got success"),
    }
}

#[test]
fn empty_file_is_all_defaults() {
    let s = parse_str("").expect("valid");
    assert_eq!(s, TomlSettings::default());
}

#[test]
fn full_mapping() {
    let s = parse_str(
        r#"
state_dir = "state"
broadcast_poll_time = "1m30s"
[database]
url = "sqlite://db/fleetgate.db"
[https]
listen_address = ":4443"
certificates = "CERT"
key = "KEY"
disable_streaming = true
proxy_protocol = true
required_label = "linux"
frontend = "https-header-checksum"
client_certificate_header = "ssl-client-cert"
client_certificate_checksum_header = "ssl-client-cert-checksum"
[admin]
listen_address = "localhost:4444"
[stats]
address = ":2112"
[health]
listen_address = ":8080"
[notifications]
listen_address = ":10000"
public_address = "10.0.0.5:10000"
use_http_notifier = true

[[services]]
name = "GRR"
max_parallelism = 7
[services.grpc]
target = "localhost:11111"
cert_file = "ca.pem"

[[services]]
name = "drop"
factory = "NOOP"

[[services]]
name = "pubsub"
cps = { project = "p", topic = "t" }

[[services]]
name = "saver"
[services.wasm]
path = "/usr/lib/fleetgate/saver.wasm"
config = "x=1"
"#,
    )
    .expect("valid");
    assert_eq!(s.state_dir, Some(PathBuf::from("/etc/fleetgate/state")));
    assert_eq!(
        s.database_url.as_deref(),
        Some("sqlite:///etc/fleetgate/db/fleetgate.db")
    );
    let c = &s.components;
    assert!(c.proxy_protocol);
    assert_eq!(c.required_label, "linux");
    assert_eq!(c.notification_listen_address, ":10000");
    assert_eq!(c.notification_public_address, "10.0.0.5:10000");
    assert!(c.notification_use_http_notifier);
    assert_eq!(
        c.admin_config.as_ref().map(|a| a.listen_address.as_str()),
        Some("localhost:4444")
    );
    assert_eq!(
        c.stats_config.as_ref().map(|a| a.address.as_str()),
        Some(":2112")
    );
    assert_eq!(
        c.health_check_config
            .as_ref()
            .map(|a| a.listen_address.as_str()),
        Some(":8080")
    );
    let h = c.https_config.as_ref().expect("https");
    assert_eq!(
        (
            h.listen_address.as_str(),
            h.certificates.as_str(),
            h.key.as_str()
        ),
        (":4443", "CERT", "KEY")
    );
    assert!(h.disable_streaming);
    assert_eq!(
        h.frontend_config
            .as_ref()
            .and_then(|f| f.frontend_mode.clone()),
        Some(FrontendMode::HttpsHeaderChecksumConfig(
            components::HttpsHeaderChecksumConfig {
                client_certificate_header: "ssl-client-cert".into(),
                client_certificate_checksum_header: "ssl-client-cert-checksum".into(),
            }
        ))
    );
    assert_eq!(
        s.services.broadcast_poll_time,
        Some(prost_types::Duration {
            seconds: 90,
            nanos: 0
        })
    );
    let svc = &s.services.services;
    let names: Vec<(&str, &str, u32)> = svc
        .iter()
        .map(|s| (s.name.as_str(), s.factory.as_str(), s.max_parallelism))
        .collect();
    assert_eq!(
        names,
        [
            ("GRR", "GRPC", 7),
            ("drop", "NOOP", 0),
            ("pubsub", "CPS", 0),
            ("saver", "WASM", 0)
        ]
    );
    let grpc: grpcservice::Config =
        fleetgate_pb::any::unpack(svc[0].config.as_ref().expect("config")).expect("grpc");
    assert_eq!(grpc.target, "localhost:11111");
    assert_eq!(grpc.cert_file, "/etc/fleetgate/ca.pem");
    assert_eq!(svc[1].config, None);
    let cps: cpsservice::Config =
        fleetgate_pb::any::unpack(svc[2].config.as_ref().expect("config")).expect("cps");
    assert_eq!((cps.project.as_str(), cps.topic.as_str()), ("p", "t"));
    let wasm_any = svc[3].config.as_ref().expect("config");
    assert_eq!(
        wasm_any.type_url,
        "type.googleapis.com/fleetgate.plugin.v1.WasmConfig"
    );
    let wasm: WasmConfig = fleetgate_pb::any::unpack(wasm_any).expect("wasm");
    assert_eq!(wasm.path, "/usr/lib/fleetgate/saver.wasm");
    assert_eq!(wasm.config, b"x=1");
}

#[test]
fn unknown_keys_are_rejected_with_position_and_key() {
    let e = toml_error(parse_str(
        "[https]\nlisten_address = \":1\"\nlisten_adress = \":2\"\n",
    ));
    assert_eq!((e.line, e.column), (3, 1));
    assert_eq!(e.key.as_deref(), Some("https.listen_adress"));
    assert!(e.message.contains("unknown field `listen_adress`"), "{e}");
    assert!(
        e.to_string()
            .starts_with("/etc/fleetgate/fleetgate.toml:3:1: https.listen_adress: unknown field"),
        "{e}"
    );

    let e = toml_error(parse_str(
        "[[services]]\nname = \"a\"\nfactory = \"NOOP\"\n[[services]]\nname = \"b\"\n[services.grpc]\ntarget = \"t\"\ninsecur = true\n",
    ));
    assert_eq!(e.line, 8);
    assert_eq!(e.key.as_deref(), Some("services[1].grpc.insecur"));

    let e = toml_error(parse_str("databse = 1\n"));
    assert_eq!((e.line, e.key.as_deref()), (1, Some("databse")));
}

#[test]
fn type_errors_name_the_key() {
    let e = toml_error(parse_str(
        "[https]\nlisten_address = \":1\"\ndisable_streaming = \"yes\"\n",
    ));
    assert_eq!(e.line, 3);
    assert_eq!(e.key.as_deref(), Some("https.disable_streaming"));
    let e = toml_error(parse_str("[admin]\n"));
    assert!(e.message.contains("listen_address"), "{e}");
    let e = toml_error(parse_str(
        "[https]\nlisten_address = \":1\"\nfrontend = \"tls\"\n",
    ));
    assert_eq!(e.key.as_deref(), Some("https.frontend"));
    let e = toml_error(parse_str("broadcast_poll_time = \"1\"\n"));
    assert_eq!((e.line, e.column), (1, 23));
    assert_eq!(e.key.as_deref(), Some("broadcast_poll_time"));
    let e = toml_error(parse_str("[https\n"));
    assert_eq!(e.line, 1);
}

#[test]
fn https_rules() {
    let e = toml_error(parse_str(
        "[https]\nlisten_address = \":1\"\ncertificates = \"x\"\ncertificates_file = \"y\"\n",
    ));
    assert_eq!(e.key.as_deref(), Some("https.certificates"));
    assert_eq!(e.line, 1);
    let e = toml_error(parse_str(
        "[https]\nlisten_address = \":1\"\nfrontend = \"cleartext-xfcc\"\n",
    ));
    assert_eq!(e.key.as_deref(), Some("https.client_certificate_header"));
    let e = toml_error(parse_str(
        "[https]\nlisten_address = \":1\"\nfrontend = \"https-header-checksum\"\nclient_certificate_header = \"h\"\n",
    ));
    assert_eq!(
        e.key.as_deref(),
        Some("https.client_certificate_checksum_header")
    );
    let e = toml_error(parse_str(
        "[https]\nlisten_address = \":1\"\nclient_certificate_header = \"h\"\n",
    ));
    assert!(e.message.contains("not used"), "{e}");
    match parse_str("[https]\nlisten_address = \":1\"\nkey_file = \"/nonexistent/k.pem\"\n") {
        Err(ConfigError::Read { path, .. }) => assert_eq!(path, Path::new("/nonexistent/k.pem")),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn service_factory_rules() {
    let e = toml_error(parse_str("[[services]]\nname = \"a\"\n"));
    assert_eq!(e.key.as_deref(), Some("services[0].factory"));
    let e = toml_error(parse_str(
        "[[services]]\nname = \"a\"\nfactory = \"NOOP\"\n\n[[services]]\nname = \"b\"\nfactory = \"CPS\"\ngrpc = { target = \"t\" }\n",
    ));
    assert_eq!(e.key.as_deref(), Some("services[1].factory"));
    assert_eq!(e.line, 5);
    let e = toml_error(parse_str(
        "[[services]]\nname = \"a\"\ngrpc = { target = \"t\" }\ncps = { project = \"p\", topic = \"t\" }\n",
    ));
    assert!(e.message.contains("only one factory table"), "{e}");
    // A custom factory without a table is passed through for the runtime.
    let s = parse_str("[[services]]\nname = \"a\"\nfactory = \"CUSTOM\"\n").expect("valid");
    assert_eq!(s.services.services[0].factory, "CUSTOM");
}

#[test]
fn key_at_tracks_headers() {
    let text = "a = 1\n[x]\nb = 2\n[[s]]\n[[s]]\n[s.g]\nc = 3\n";
    let at = |needle: &str| text.find(needle).map(|o| key_at(text, o)).expect("needle");
    assert_eq!(at("a ="), Some("a".into()));
    assert_eq!(at("b ="), Some("x.b".into()));
    assert_eq!(at("c ="), Some("s[1].g.c".into()));
    assert_eq!(at("[s.g]"), Some("s[1].g".into()));
}

#[test]
fn retention_ages() {
    let s = parse_str(
        "[retention]\ncontacts = \"720h\"\nresource_usage = \"0\"\ndead_letters = \"1h\"\n",
    )
    .expect("valid");
    assert_eq!(
        s.retention,
        Retention {
            contacts: Duration::from_secs(720 * 3600),
            messages: Duration::ZERO,
            resource_usage: Duration::ZERO,
            dead_letters: Duration::from_secs(3600),
            traces: Duration::ZERO,
        }
    );
    let s = parse_str("[retention]\ntraces = \"72h\"\n").expect("valid");
    assert_eq!(s.retention.traces, Duration::from_secs(72 * 3600));
    let e = toml_error(parse_str("[retention]\nmessages = \"30d\"\n"));
    assert_eq!(e.line, 2);
    assert_eq!(e.key.as_deref(), Some("retention.messages"));
    let e = toml_error(parse_str("[retention]\nclients = \"1h\"\n"));
    assert_eq!(e.key.as_deref(), Some("retention.clients"));
}

#[test]
fn retry_policies_and_expiry() {
    let s = parse_str(
        "[expiry]\ndefault = \"168h\"\nservices = { GRR = \"24h\", Keep = \"0\" }\n\
         [[services]]\nname = \"GRR\"\nfactory = \"NOOP\"\n\
         [services.retry]\nmax_attempts = 3\ninitial_backoff = \"1s\"\nbackoff_multiplier = 2.0\n",
    )
    .expect("valid");
    let p = s.services.services[0].retry_policy.expect("a policy");
    assert_eq!(p.max_attempts, Some(3));
    assert_eq!(p.initial_backoff.map(|d| d.seconds), Some(1));
    assert_eq!(p.backoff_multiplier, Some(2.0));
    assert_eq!(p.max_age, None);
    let expiry: Vec<(String, i64)> = s
        .services
        .client_message_expiry
        .iter()
        .map(|e| (e.service.clone(), e.max_age.map_or(-1, |d| d.seconds)))
        .collect();
    assert_eq!(
        expiry,
        [
            (String::new(), 168 * 3600),
            ("GRR".into(), 24 * 3600),
            ("Keep".into(), 0)
        ]
    );
    for (text, line, key) in [
        (
            "[[services]]\nname = \"A\"\nfactory = \"NOOP\"\n[services.retry]\nmax_attempts = 0\n",
            5,
            "services[0].retry.max_attempts",
        ),
        (
            "[[services]]\nname = \"A\"\nfactory = \"NOOP\"\n[services.retry]\nmax_attempts = -2\n",
            5,
            "services[0].retry.max_attempts",
        ),
        (
            "[[services]]\nname = \"A\"\nfactory = \"NOOP\"\n[services.retry]\nbackoff_multiplier = 0.5\n",
            5,
            "services[0].retry.backoff_multiplier",
        ),
        (
            "[[services]]\nname = \"A\"\nfactory = \"NOOP\"\n[services.retry]\nmax_age = \"soon\"\n",
            5,
            "services[0].retry.max_age",
        ),
        ("[expiry]\ndefault = \"-1h\"\n", 2, "expiry.default"),
    ] {
        let e = toml_error(parse_str(text));
        assert_eq!((e.line, e.key.as_deref()), (line, Some(key)), "{text}: {e}");
    }
}

#[test]
fn trace_table() {
    let s = parse_str("").expect("valid");
    assert_eq!(s.trace, super::Trace::default());
    let s = parse_str("[trace]\nenabled = false\nserver_name = \"fe-1\"\n").expect("valid");
    assert_eq!(
        s.trace,
        super::Trace {
            enabled: Some(false),
            server_name: Some("fe-1".into()),
        }
    );
    let e = toml_error(parse_str("[trace]\nserver_name = \" \"\n"));
    assert_eq!((e.line, e.key.as_deref()), (2, Some("trace.server_name")));
    assert!(e.message.contains("must not be empty"), "{}", e.message);
    let e = toml_error(parse_str(&format!(
        "[trace]\nserver_name = \"{}\"\n",
        "x".repeat(300)
    )));
    assert!(e.message.contains("at most 255 bytes"), "{}", e.message);
    let e = toml_error(parse_str("[trace]\nenable = true\n"));
    assert_eq!(e.key.as_deref(), Some("trace.enable"));
}
