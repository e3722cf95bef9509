//! A server is either serving or failing, and a configuration error names its file and the
//! line or field. Each case runs the real binary on a broken configuration and checks that it
//! exits 1 before saying it started, with the error text on stderr (once).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use fleetgate_tests::env::fleetgate_bin;
use fleetgate_tests::pki::{Pki, quote};

/// A temp dir holding `c.config`, `s.config` and the state directory.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(components: &str, services: &str) -> Case {
        let dir = tempfile::Builder::new()
            .prefix("fleetgate-startup-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("c.config"), components).expect("c.config");
        std::fs::write(dir.path().join("s.config"), services).expect("s.config");
        Case { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `fleetgate server` on the two files: the exit code and everything it printed.
    fn server(&self, extra: &[&str]) -> (i32, String) {
        let mut cmd = Command::new(fleetgate_bin());
        cmd.current_dir(self.dir.path())
            .args(["server", "--components_config", "c.config"])
            .args(["--services_config", "s.config", "--state_dir", "state"])
            .args(extra);
        run(cmd)
    }
}

fn run(mut cmd: Command) -> (i32, String) {
    let out = cmd.output().expect("running fleetgate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Exit 1, the `fleetgate: ` line holds `want` once, and the server never said it started.
#[track_caller]
fn assert_fails(outcome: (i32, String), want: &str) {
    let (code, text) = outcome;
    assert_eq!(code, 1, "exit code; output:\n{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("fleetgate: "))
        .unwrap_or_else(|| panic!("no `fleetgate: ` error line in:\n{text}"));
    assert!(line.contains(want), "want {want:?} in {line:?}");
    assert_eq!(
        text.matches(want).count(),
        1,
        "the error is reported once:\n{text}"
    );
    assert!(!text.contains("server started"), "{text}");
    assert!(!text.contains("listening"), "{text}");
}

fn https(listen: &str, cert: &str, key: &str) -> String {
    format!(
        "https_config {{ listen_address: \"{listen}\" certificates: {} key: {} }}\n\
         health_check_config {{ listen_address: \"127.0.0.1:0\" }}\n",
        quote(cert),
        quote(key)
    )
}

#[test]
fn garbage_certificates_fail_before_anything_listens() {
    let pki = Pki::generate();
    let case = Case::new(&https("127.0.0.1:0", "garbage", &pki.server_key_pem), "");
    assert_fails(
        case.server(&[]),
        "fleetgate: c.config: https_config.certificates: no PEM CERTIFICATE block found",
    );
}

#[test]
fn garbage_key_names_the_key() {
    let pki = Pki::generate();
    let case = Case::new(&https("127.0.0.1:0", &pki.server_cert_pem, "garbage"), "");
    assert_fails(
        case.server(&[]),
        "fleetgate: c.config: https_config.key: no PEM private key block found",
    );
}

#[test]
fn a_key_of_another_certificate_names_both() {
    let (a, b) = (Pki::generate(), Pki::generate());
    let case = Case::new(
        &https("127.0.0.1:0", &a.server_cert_pem, &b.server_key_pem),
        "",
    );
    assert_fails(
        case.server(&[]),
        "fleetgate: c.config: https_config.certificates and https_config.key: \
         the certificate and key do not make a usable pair",
    );
}

#[test]
fn an_invalid_listen_address_names_the_field() {
    let pki = Pki::generate();
    let case = Case::new(
        &https("not-an-address", &pki.server_cert_pem, &pki.server_key_pem),
        "",
    );
    assert_fails(
        case.server(&[]),
        "fleetgate: c.config: https_config.listen_address: \"not-an-address\" is not HOST:PORT: \
         missing port",
    );
}

#[test]
fn a_port_in_use_names_the_listener() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    for (components, field) in [
        (
            format!("admin_config {{ listen_address: \"127.0.0.1:{port}\" }}"),
            "admin_config.listen_address",
        ),
        (
            format!("health_check_config {{ listen_address: \"127.0.0.1:{port}\" }}"),
            "health_check_config.listen_address",
        ),
        (
            format!("stats_config {{ address: \"127.0.0.1:{port}\" }}"),
            "stats_config.address",
        ),
        (
            format!("notification_listen_address: \"127.0.0.1:{port}\""),
            "notification_listen_address",
        ),
    ] {
        let case = Case::new(&components, "");
        let (code, text) = case.server(&[]);
        assert_fails(
            (code, text.clone()),
            &format!("fleetgate: c.config: {field}: "),
        );
        assert!(
            text.contains(&format!("127.0.0.1:{port}")) && text.contains("in use"),
            "{text}"
        );
    }
}

#[test]
fn an_unknown_factory_names_the_file_the_service_and_its_place() {
    let case = Case::new(
        "",
        "services { name: \"Foo\" factory: \"NOOP\" }\nservices { name: \"Bar\" factory: \"NoSuch\" }\n",
    );
    assert_fails(
        case.server(&[]),
        "fleetgate: s.config: services[1] \"Bar\": factory \"NoSuch\" is not one of GRPC, WASM, NOOP",
    );
}

fn wasm_service(path: &Path) -> String {
    format!(
        "services {{ name: \"Foo\" factory: \"WASM\" config {{ \
         [type.googleapis.com/fleetgate.plugin.v1.WasmConfig] {{ path: {} }} }} }}\n",
        quote(&path.display().to_string())
    )
}

#[test]
fn a_missing_component_is_reported_once_with_its_path() {
    let case = Case::new("", "");
    let wasm = case.path("missing.wasm");
    std::fs::write(case.path("s.config"), wasm_service(&wasm)).expect("s.config");
    assert_fails(
        case.server(&[]),
        &format!(
            "fleetgate: s.config: services[0] \"Foo\": reading component {}: No such file",
            wasm.display()
        ),
    );
}

#[test]
fn a_corrupt_or_truncated_component_names_its_path_and_service() {
    let case = Case::new("", "");
    let wasm = case.path("bad.wasm");
    std::fs::write(case.path("s.config"), wasm_service(&wasm)).expect("s.config");
    // A component header cut short, then a section id that does not exist.
    for bytes in [&b"\0asm\x0d\0\x01\0\xff\xff"[..], &b"\0asm"[..]] {
        std::fs::write(&wasm, bytes).expect("wasm");
        assert_fails(
            case.server(&[]),
            &format!(
                "fleetgate: s.config: services[0] \"Foo\": compiling component {}: ",
                wasm.display()
            ),
        );
    }
}

#[test]
fn a_services_syntax_error_is_not_called_a_components_error() {
    let case = Case::new("", "services { name: \"Foo\" factory: \n");
    let (code, text) = case.server(&[]);
    assert_fails(
        (code, text.clone()),
        "fleetgate: s.config:2:1: services[0].factory: ",
    );
    assert!(!text.to_lowercase().contains("components"), "{text}");
}

#[test]
fn a_reserved_service_name_names_the_file_and_place() {
    let case = Case::new(
        "",
        "services { name: \"Foo\" factory: \"NOOP\" }\nservices { name: \"system\" factory: \"NOOP\" }\n",
    );
    assert_fails(
        case.server(&[]),
        "fleetgate: s.config: services[1]: illegal service name [system]",
    );
}

#[test]
fn an_incomplete_https_config_names_the_components_file() {
    let case = Case::new("https_config { listen_address: \"127.0.0.1:0\" }", "");
    assert_fails(
        case.server(&[]),
        "fleetgate: c.config: https_config requires listen_address, certificates and key",
    );
}

#[test]
fn toml_listen_addresses_name_the_key() {
    let case = Case::new("", "");
    std::fs::write(
        case.path("f.toml"),
        "[admin]\nlisten_address = \"localhost:http\"\n",
    )
    .expect("f.toml");
    let mut cmd = Command::new(fleetgate_bin());
    cmd.current_dir(case.dir.path())
        .args(["server", "--config", "f.toml", "--state_dir", "state"]);
    assert_fails(
        run(cmd),
        "fleetgate: f.toml: admin.listen_address: \"localhost:http\" is not HOST:PORT: \
         port \"http\" is not a number",
    );
}

#[test]
fn quickstart_names_the_flag() {
    let case = Case::new("", "");
    let mut cmd = Command::new(fleetgate_bin());
    cmd.current_dir(case.dir.path()).args([
        "quickstart",
        "--state_dir",
        "state",
        "--listen",
        "not-an-address",
        "--admin_listen",
        "127.0.0.1:0",
    ]);
    assert_fails(
        run(cmd),
        "fleetgate: quickstart: --listen: \"not-an-address\" is not HOST:PORT",
    );
}

#[test]
fn a_missing_router_names_its_path() {
    let case = Case::new("", "");
    let router = case.path("no-router.wasm");
    let r = router.display().to_string();
    assert_fails(
        case.server(&["--router", &r]),
        &format!("loading the router {r}: reading component {r}: No such file"),
    );
}
