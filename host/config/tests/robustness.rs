//! Truncated and garbled configuration files produce errors, never panics.

use std::path::{Path, PathBuf};

use fleetgate_config::textproto::{parse_components, parse_services};
use fleetgate_config::{ConfigError, Overrides, Settings};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// Truncations at every byte, and single-byte replacements, deletions and
/// duplications at every fourth byte, of `original`.
fn mutations(original: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for end in 0..original.len() {
        out.push(original[..end].to_vec());
    }
    let replacements: &[&[u8]] = &[
        b"{",
        b"}",
        b"<",
        b">",
        b"[",
        b"]",
        b"\"",
        b"'",
        b":",
        b"\\",
        b"#",
        b"\n",
        b"/",
        b"-",
        b"0x",
        b"=",
        b"\xff",
        "é".as_bytes(),
        b"\0",
    ];
    for (i, _) in original.iter().enumerate().step_by(4) {
        for r in replacements {
            let mut m = original[..i].to_vec();
            m.extend_from_slice(r);
            m.extend_from_slice(&original[i + 1..]);
            out.push(m);
        }
        let mut deleted = original.to_vec();
        deleted.remove(i);
        out.push(deleted);
        let mut doubled = original.to_vec();
        doubled.insert(i, original[i]);
        out.push(doubled);
    }
    out
}

fn check_error(e: &ConfigError, what: &str) {
    let text = e.to_string();
    assert!(!text.is_empty(), "{what}");
    assert!(
        !matches!(e, ConfigError::Internal(_)) && !text.contains("parser failure"),
        "{what}: {text}"
    );
}

fn text_files_never_panic(name: &str, parse: fn(&Path, &[u8]) -> Result<(), ConfigError>) {
    let original = std::fs::read(configs().join(name)).expect("example file");
    let (mut ok, mut err) = (0, 0);
    for m in mutations(&original) {
        match parse(Path::new(name), &m) {
            Ok(()) => ok += 1,
            Err(e) => {
                check_error(&e, name);
                if let ConfigError::TextFormat(t) = &e {
                    assert!(t.line >= 1 && t.column >= 1, "{t}");
                    assert!(t.to_string().starts_with(&format!("{name}:")), "{t}");
                }
                err += 1;
            }
        }
    }
    // Most of each file is comments, so many mutations still parse.
    assert!(
        err > 1000,
        "{name}: {ok} mutations parsed, only {err} failed"
    );
}

#[test]
fn components_examples() {
    for name in [
        "server.components.config",
        "frontend.components.config",
        "admin-only.components.config",
    ] {
        text_files_never_panic(name, |p, t| parse_components(p, t).map(drop));
    }
}

#[test]
fn services_example() {
    text_files_never_panic("server.services.config", |p, t| {
        parse_services(p, t).map(drop)
    });
}

#[test]
fn toml_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("server.crt"), "CERT").expect("write");
    std::fs::write(dir.path().join("server.key"), "KEY").expect("write");
    let path = dir.path().join("fleetgate.toml");
    let original = std::fs::read(configs().join("fleetgate.toml")).expect("example file");
    let (mut ok, mut err) = (0, 0);
    for m in mutations(&original) {
        let Ok(text) = String::from_utf8(m) else {
            continue;
        };
        match Settings::from_toml(&path, &text, &Overrides::default()) {
            Ok(_) => ok += 1,
            Err(e) => {
                check_error(&e, "fleetgate.toml");
                err += 1;
            }
        }
    }
    assert!(ok + err > 1000);
}

#[test]
fn dsn_and_flags_never_panic() {
    let samples = [
        "us:er:p@ss@tcp([::1]:3306)/db?tls=skip-verify&charset=utf8mb4&sql_mode=%27T%27",
        "user:pw@unix(/var/run/mysqld/mysqld.sock)/fleetspeak?timeout=1.5s",
    ];
    for s in samples {
        for end in 0..=s.len() {
            let _ = fleetgate_config::dsn::parse(&s[..end]);
            let mut garbled = s.to_owned();
            garbled.insert_str(end, "é%(");
            let _ = fleetgate_config::dsn::parse(&garbled);
        }
    }
    for args in [
        vec!["-"],
        vec!["--"],
        vec!["-="],
        vec!["--="],
        vec!["-v"],
        vec!["-v="],
        vec!["-logtostderr="],
        vec!["-é"],
        vec!["---"],
    ] {
        let _ = fleetgate_config::parse_flags(args, fleetgate_config::flags::SERVER_FLAGS);
    }
}
