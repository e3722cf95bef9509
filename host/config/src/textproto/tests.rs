use super::*;
use fleetgate_pb::fleetspeak::components::frontend_config::FrontendMode;
use fleetgate_pb::fleetspeak::grpcservice;

fn components(text: &str) -> Result<components::Config, ConfigError> {
    parse_components(Path::new("c.config"), text.as_bytes())
}

fn services(text: &str) -> Result<ServerConfig, ConfigError> {
    parse_services(Path::new("s.config"), text.as_bytes())
}

fn ok_components(text: &str) -> components::Config {
    components(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn ok_services(text: &str) -> ServerConfig {
    services(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn text_error(r: Result<impl std::fmt::Debug, ConfigError>) -> TextFormatError {
    match r {
        Err(ConfigError::TextFormat(e)) => *e,
        other => panic!("expected a text-format error, got {other:?}"),
    }
}

fn grpc(any: &prost_types::Any) -> grpcservice::Config {
    fleetgate_pb::any::unpack(any).expect("grpcservice.Config")
}

#[test]
fn empty_and_comment_only_files() {
    assert_eq!(ok_components(""), components::Config::default());
    assert_eq!(
        ok_services("# nothing\n\n  # here"),
        ServerConfig::default()
    );
}

#[test]
fn colon_braces_and_angle_brackets() {
    for text in [
        r#"https_config { listen_address: "a:1" }"#,
        r#"https_config: { listen_address: "a:1" }"#,
        r#"https_config < listen_address: "a:1" >"#,
        r#"https_config: < listen_address: "a:1" >"#,
    ] {
        let c = ok_components(text);
        assert_eq!(
            c.https_config.map(|h| h.listen_address).as_deref(),
            Some("a:1"),
            "{text}"
        );
    }
}

#[test]
fn separators_and_comments() {
    let c = ok_components(
        "required_label: \"x\", proxy_protocol: true; # trailing\n\
         admin_config { listen_address: \"l:1\"; } stats_config{address:\"s\",}",
    );
    assert_eq!(c.required_label, "x");
    assert!(c.proxy_protocol);
    assert_eq!(
        c.admin_config.map(|a| a.listen_address).as_deref(),
        Some("l:1")
    );
    assert_eq!(c.stats_config.map(|s| s.address).as_deref(), Some("s"));
}

#[test]
fn strings_escapes_and_concatenation() {
    let c = ok_components(
        r#"required_label: 'single "quoted"'
           notification_listen_address: "a" 'b' "c"
           notification_public_address: "\n\r\t\"\'\\\a\b\f\v\?\101\x41\u00e9\U0001F600"
           https_config { certificates: "-----BEGIN CERTIFICATE-----\n"
                                        "MIIB\n"
                                        "-----END CERTIFICATE-----\n" }"#,
    );
    assert_eq!(c.required_label, "single \"quoted\"");
    assert_eq!(c.notification_listen_address, "abc");
    assert_eq!(
        c.notification_public_address,
        "\n\r\t\"'\\\x07\x08\x0c\x0b?AAé😀"
    );
    assert_eq!(
        c.https_config.map(|h| h.certificates).as_deref(),
        Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    );
}

#[test]
fn raw_newline_in_string_is_an_error() {
    let e = text_error(components("required_label: \"a\nb\""));
    // Reported at the raw newline.
    assert_eq!((e.line, e.column), (1, 19), "{e}");
}

#[test]
fn invalid_utf8_string_value_is_an_error() {
    let e = text_error(components(r#"required_label: "\xff""#));
    assert!(matches!(e.kind, TextErrorKind::InvalidValue(_)), "{e}");
    assert_eq!(e.field.as_deref(), Some("required_label"));
}

#[test]
fn invalid_utf8_file_is_an_error() {
    let e = text_error(parse_components(
        Path::new("c"),
        b"required_label: \"\xff\"",
    ));
    assert_eq!(e.kind, TextErrorKind::InvalidUtf8);
    assert_eq!((e.line, e.column), (1, 18));
}

#[test]
fn booleans_in_every_go_spelling() {
    for (v, want) in [
        ("true", true),
        ("True", true),
        ("t", true),
        ("1", true),
        ("0x1", true),
        ("false", false),
        ("False", false),
        ("f", false),
        ("0", false),
        ("0x0", false),
    ] {
        let c = ok_components(&format!("proxy_protocol: {v}"));
        assert_eq!(c.proxy_protocol, want, "{v}");
    }
    for bad in ["yes", "2", "TRUE", "\"true\""] {
        let e = text_error(components(&format!("proxy_protocol: {bad}")));
        assert_eq!(e.field.as_deref(), Some("proxy_protocol"), "{bad}: {e}");
        assert_eq!((e.line, e.column), (1, 17), "{bad}: {e}");
    }
}

#[test]
fn integers() {
    for (v, want) in [("10", 10), ("0x10", 16), ("010", 8)] {
        let s = ok_services(&format!("services {{ name: \"a\" max_parallelism: {v} }}"));
        assert_eq!(s.services.first().map(|s| s.max_parallelism), Some(want));
    }
    let e = text_error(services("services { max_parallelism: -1 }"));
    assert_eq!(
        e.field.as_deref(),
        Some("services[0].max_parallelism"),
        "{e}"
    );
    let e = text_error(services("services { max_parallelism: 4294967296 }"));
    assert!(matches!(e.kind, TextErrorKind::InvalidValue(_)), "{e}");
    let s = ok_services("broadcast_poll_time { seconds: -3 nanos: 0x10 }");
    assert_eq!(
        s.broadcast_poll_time,
        Some(prost_types::Duration {
            seconds: -3,
            nanos: 16
        })
    );
}

#[test]
fn repeated_fields_and_list_syntax() {
    let expect = ["a", "b", "c"];
    for text in [
        r#"services { name: "a" } services { name: "b" } services { name: "c" }"#,
        r#"services: [ { name: "a" }, { name: "b" } ] services { name: "c" }"#,
        r#"services [ { name: "a" }, < name: "b" > ] services: [{ name: "c" }]"#,
        r#"services: [] services { name: "a" } services [] services: [{name:"b"},{name:"c"}]"#,
    ] {
        let s = ok_services(text);
        let names: Vec<&str> = s.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, expect, "{text}");
    }
}

#[test]
fn list_syntax_errors_are_located() {
    let e = text_error(services("services: [ { name: \"a\" }\n { name: \"b\" } ]"));
    assert_eq!((e.line, e.column), (2, 2), "{e}");
    // With an inserted colon, positions still refer to the original text.
    let e = text_error(services("services [ { name: \"a\" },\n  { nme: \"b\" } ]"));
    assert_eq!((e.line, e.column), (2, 5), "{e}");
    assert_eq!(
        e.to_string(),
        "s.config:2:5: unknown field \"nme\" in fleetspeak.server.ServiceConfig"
    );
    let e = text_error(services("services [ { name: \"a\" },\n  { name: 5 } ]"));
    assert_eq!((e.line, e.column), (2, 11), "{e}");
    assert_eq!(e.field.as_deref(), Some("services[1].name"));
}

#[test]
fn any_expansion_grr_installer_output() {
    let s = ok_services(
        "services {\n  name: \"GRR\"\n  factory: \"GRPC\"\n  config {\n    \
         [type.googleapis.com/fleetspeak.grpcservice.Config] {\n      \
         target: \"localhost:11111\"\n      insecure: true\n    }\n  }\n}\n\
         broadcast_poll_time {\n  seconds: 1\n}\n",
    );
    let svc = s.services.first().expect("one service");
    let any = svc.config.as_ref().expect("config");
    assert_eq!(
        any.type_url,
        "type.googleapis.com/fleetspeak.grpcservice.Config"
    );
    assert_eq!(
        grpc(any),
        grpcservice::Config {
            target: "localhost:11111".into(),
            insecure: true,
            cert_file: String::new()
        }
    );
    assert_eq!(s.broadcast_poll_time.map(|d| d.seconds), Some(1));
}

#[test]
fn any_expansion_keeps_prefix_and_allows_angle_brackets() {
    let s = ok_services(
        "services < name: 'x' config: < [example.com/fleetspeak.cpsservice.Config] < project: 'p' > > >",
    );
    let any = s
        .services
        .first()
        .and_then(|s| s.config.clone())
        .expect("config");
    assert_eq!(any.type_url, "example.com/fleetspeak.cpsservice.Config");
}

#[test]
fn any_raw_form() {
    // grpcservice.Config { target: "t" insecure: true } = 0a 01 74 10 01
    let s = ok_services(
        r#"services { name: "x" config { type_url: "type.googleapis.com/fleetspeak.grpcservice.Config" value: "\n\001t\020\001" } }"#,
    );
    let any = s
        .services
        .first()
        .and_then(|s| s.config.clone())
        .expect("config");
    assert_eq!(grpc(&any).target, "t");
    assert!(grpc(&any).insecure);
}

#[test]
fn any_errors() {
    // The Debian template's misspelling.
    let e = text_error(services(
        "services {\n  config {\n    [type.googleapis.com/fleetspeak.grpcservce.Config] {}\n  }\n}",
    ));
    assert_eq!(
        e.kind,
        TextErrorKind::UnknownAnyType {
            type_url: "type.googleapis.com/fleetspeak.grpcservce.Config".into()
        }
    );
    assert_eq!((e.line, e.column), (3, 5));
    let e = text_error(services(
        "services { config { [type.googleapis.com/fleetspeak.grpcservice.Config] { targt: 'x' } } }",
    ));
    assert_eq!(
        e.to_string(),
        "s.config:1:75: unknown field \"targt\" in fleetspeak.grpcservice.Config"
    );
    let e = text_error(services(
        "services { [type.googleapis.com/fleetspeak.grpcservice.Config] {} }",
    ));
    assert!(matches!(e.kind, TextErrorKind::BadExpansion { .. }), "{e}");
    let e = text_error(services(
        "services { config { type_url: 'a/b' [type.googleapis.com/fleetspeak.cpsservice.Config] {} } }",
    ));
    assert!(
        matches!(e.kind, TextErrorKind::DuplicateField { .. }),
        "{e}"
    );
    let e = text_error(services(
        "services { config { [type.googleapis.com/fleetspeak.cpsservice.Config] {} value: '' } }",
    ));
    assert!(
        matches!(e.kind, TextErrorKind::DuplicateField { .. }),
        "{e}"
    );
}

#[test]
fn unknown_field_names_file_line_column_and_message() {
    let text = "mysql_data_source_name: \"x\"\n\
                # comment\n\
                https_config {\n\
                \x20 certificates: \"c\"\n\
                \x20 key: \"k\"\n\
                \n\
                \x20 listen_adress: \"0.0.0.0:4443\"\n\
                }\n";
    let e = text_error(parse_components(
        Path::new("server.components.config"),
        text.as_bytes(),
    ));
    assert_eq!(
        e.to_string(),
        "server.components.config:7:3: unknown field \"listen_adress\" in fleetspeak.components.HttpsConfig"
    );
    assert_eq!(e.field.as_deref(), Some("https_config.listen_adress"));
    // JSON (camelCase) names are not accepted.
    let e = text_error(components("requiredLabel: \"x\""));
    assert!(matches!(e.kind, TextErrorKind::UnknownField { .. }));
}

#[test]
fn singular_field_twice_is_an_error_even_with_default_value() {
    for text in [
        "required_label: 'a' required_label: 'b'",
        "proxy_protocol: false\nproxy_protocol: false",
        "https_config {} https_config {}",
        "https_config { disable_streaming: false disable_streaming: true }",
    ] {
        let e = text_error(components(text));
        assert!(
            matches!(e.kind, TextErrorKind::DuplicateField { .. }),
            "{text}: {e}"
        );
    }
    let e = text_error(components("proxy_protocol: false\nproxy_protocol: false"));
    assert_eq!(
        e.to_string(),
        "c.config:2:1: proxy_protocol: non-repeated field \"proxy_protocol\" is set twice"
    );
}

#[test]
fn oneof_members_conflict() {
    let text = "https_config { frontend_config { mtls_config {}\n cleartext_xfcc_config { client_certificate_header: 'h' } } }";
    let e = text_error(components(text));
    assert_eq!(
        e.kind,
        TextErrorKind::OneofConflict {
            oneof: "frontend_mode".into(),
            first: "mtls_config".into(),
            second: "cleartext_xfcc_config".into()
        }
    );
    assert_eq!((e.line, e.column), (2, 2));
    let c = ok_components(
        "https_config { frontend_config { cleartext_xfcc_config { client_certificate_header: 'h' } } }",
    );
    let mode = c
        .https_config
        .and_then(|h| h.frontend_config)
        .and_then(|f| f.frontend_mode);
    assert!(matches!(mode, Some(FrontendMode::CleartextXfccConfig(_))));
}

#[test]
fn syntax_errors_are_located() {
    for (text, line, column) in [
        ("https_config {\n listen_address: \"x\"\n", 3, 1),
        ("https_config {\n listen_address \"x\"\n}", 2, 17),
        ("required_label: \"x\" }", 1, 21),
        ("https_config { listen_address: \"x\" >", 1, 36),
        ("required_label: \"unterminated", 1, 17),
        ("required_label: @", 1, 17),
        ("stats_config: 5", 1, 15),
        ("required_label: 'x' ,, proxy_protocol: t", 1, 22),
    ] {
        let e = text_error(components(text));
        assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
    }
}

#[test]
fn value_errors_name_the_field() {
    let text = "https_config {\n  listen_address: 4443\n}";
    let e = text_error(components(text));
    assert_eq!(e.field.as_deref(), Some("https_config.listen_address"));
    assert_eq!((e.line, e.column), (2, 19));
    assert!(
        e.to_string()
            .starts_with("c.config:2:19: https_config.listen_address: expected a string"),
        "{e}"
    );
}

#[test]
fn durations_are_messages_not_strings() {
    let e = text_error(services("broadcast_poll_time: \"1s\""));
    assert_eq!(e.field.as_deref(), Some("broadcast_poll_time"), "{e}");
}

#[test]
fn known_gaps_versus_go() {
    // As in Go, a scalar list needs the colon (only message lists may omit
    // it). Shown on the client config, which has a repeated scalar.
    let pool = descriptor_pool().expect("pool");
    let desc = pool
        .get_message_by_name("fleetspeak.client.generic.Config")
        .expect("client config");
    let parsed = parse_dynamic(Path::new("client"), b"server [\"a:1\", \"b:2\"]", &desc);
    assert!(
        parsed.is_err(),
        "prost-reflect still requires ':' for scalars"
    );
    // Type-URL prefixes with characters other than identifiers and dots are
    // not accepted (Go accepts `[my-host.example/x/fleetspeak.cpsservice.Config]`).
    let e = text_error(services(
        "services { config { [my-host.example/fleetspeak.cpsservice.Config] {} } }",
    ));
    assert!(matches!(e.kind, TextErrorKind::Syntax(_)), "{e}");
}

#[test]
fn describe_reads_prost_reflect_errors() {
    let pool = descriptor_pool().expect("pool");
    let desc = pool
        .get_message_by_name("fleetspeak.components.Config")
        .expect("desc");
    let err =
        DynamicMessage::parse_text_format(desc, "proxy_protocol: maybe").expect_err("invalid bool");
    let (variant, span) = describe(&err);
    assert_eq!(variant, "UnexpectedToken");
    assert_eq!(span, Some(16));
}

#[test]
fn offsets_map_back_across_inserted_colons() {
    // Original "ab[c[d": colons inserted before offsets 2 and 4 → "ab:[c:[d".
    let ins = [2, 4];
    assert_eq!(insert_colons("ab[c[d", &ins), "ab:[c:[d");
    for (patched, original) in [(0, 0), (2, 2), (3, 2), (4, 3), (6, 4), (7, 5)] {
        assert_eq!(original_offset(patched, &ins), original, "{patched}");
    }
}
