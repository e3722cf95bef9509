//! The command line as a new user meets it, on the real binary: every command and subcommand
//! answers `--help` and `-h` with usage, flags and an example; `--version` names the commit;
//! misspellings get a suggestion and exit 2; Go-style flags as Fleetspeak installations and
//! GRR pass them still work; completions and man pages come out; `fleetgate admin` finds a
//! quickstart's admin API, says which address it tried, and covers the batched insert and the
//! purge.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use fleetgate_tests::env::fleetgate_bin;
use fleetgate_tests::{ClientOptions, GoClient, Server, ServerOptions, checks};

fn fleetgate(args: &[&str]) -> Output {
    Command::new(fleetgate_bin())
        .args(args)
        .env_remove("FLEETGATE_ADMIN")
        .output()
        .expect("running fleetgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `(name, description)` rows of a help text's command list.
fn commands(help: &str) -> Vec<(String, String)> {
    help.lines()
        .skip_while(|l| !l.ends_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let l = l.trim();
            let (name, rest) = l.split_once(' ')?;
            Some((name.to_owned(), rest.trim().to_owned()))
        })
        .collect()
}

#[test]
fn every_command_answers_help_with_usage_flags_and_an_example() {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let mut long = None;
        for flag in ["--help", "-h"] {
            let args: Vec<&str> = path
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(flag))
                .collect();
            let out = fleetgate(&args);
            let text = stdout(&out);
            let shown = format!("`fleetgate {}`:\n{text}{}", args.join(" "), stderr(&out));
            assert_eq!(out.status.code(), Some(0), "{shown}");
            let usage = format!(
                "Usage: {}",
                ["fleetgate"]
                    .into_iter()
                    .chain(path.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            assert!(text.contains(&usage), "no {usage:?} in {shown}");
            assert!(text.contains("Options:"), "no flags in {shown}");
            assert!(text.contains("Examples:\n  "), "no example in {shown}");
            long.get_or_insert(text);
        }
        let text = long.unwrap_or_default();
        for (name, about) in commands(&text) {
            assert!(!about.is_empty(), "{name} has no description:\n{text}");
            if name == "help" {
                continue;
            }
            let mut sub = path.clone();
            sub.push(name);
            todo.push(sub);
        }
        seen.insert(path.join(" "));
    }
    for expected in [
        "",
        "quickstart",
        "server",
        "config",
        "admin",
        "admin listclients",
        "admin insert",
        "admin insertbatch",
        "admin purge",
        "admin plugins",
        "admin plugins reload",
        "loadgen",
        "plugin",
        "plugin new",
        "plugin check",
        "completions",
        "man",
    ] {
        assert!(
            seen.contains(expected),
            "`{expected}` was not listed: {seen:?}"
        );
    }
    // `help COMMAND` is the same text, also below `admin`.
    assert_eq!(
        stdout(&fleetgate(&["help", "admin"])),
        stdout(&fleetgate(&["admin", "--help"]))
    );
    let admin_help = fleetgate(&["admin", "help"]);
    assert_eq!(admin_help.status.code(), Some(0), "{}", stderr(&admin_help));
    assert!(
        commands(&stdout(&admin_help))
            .iter()
            .any(|(n, _)| n == "purge")
    );
}

#[test]
fn without_a_command_it_lists_the_commands() {
    for args in [&[][..], &["help"]] {
        let out = fleetgate(args);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        let names: Vec<String> = commands(&text).into_iter().map(|(n, _)| n).collect();
        for c in [
            "quickstart",
            "server",
            "config",
            "admin",
            "loadgen",
            "plugin",
            "completions",
        ] {
            assert!(
                names.iter().any(|n| n == c),
                "{c} missing from `fleetgate {args:?}`:\n{text}"
            );
        }
        // Nothing is listed twice (glog's flags once were).
        let options: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("--"))
            .collect();
        let unique: BTreeSet<&&str> = options.iter().collect();
        assert_eq!(unique.len(), options.len(), "{text}");
    }
    assert_eq!(fleetgate(&[]).status.code(), Some(2));
    assert_eq!(fleetgate(&["help"]).status.code(), Some(0));
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = fleetgate(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let rest = text
        .trim()
        .strip_prefix(&format!("fleetgate {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {text:?}"));
    // Built from this checkout, so the commit is one of its objects.
    assert_eq!(rest.len(), 12, "{text}");
    let known = Command::new("git")
        .args(["cat-file", "-e", &format!("{rest}^{{commit}}")])
        .current_dir(fleetgate_tests::env::workspace_root())
        .status()
        .expect("git");
    assert!(known.success(), "{rest} is not a commit of this repository");
}

#[test]
fn misspellings_get_a_suggestion_and_exit_2() {
    for (args, suggestion) in [
        (&["quickstrat"][..], "quickstart"),
        (&["admin", "listclient"], "listclients"),
        (&["admin", "plugins", "relaod"], "reload"),
        (
            &["server", "--components_confg", "x"],
            "--components_config",
        ),
        (&["server", "-services_confg=x"], "--services_config"),
        (&["quickstart", "--state-dir", "x"], "--state_dir"),
        (
            &["admin", "--admin_adr", "x", "listclients"],
            "--admin_addr",
        ),
        (&["loadgen", "--client", "3"], "--clients"),
    ] {
        let out = fleetgate(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "`fleetgate {args:?}`: {err}");
        assert!(
            err.contains("similar") && err.contains(&format!("'{suggestion}'")),
            "`fleetgate {args:?}` should suggest {suggestion}:\n{err}"
        );
    }
}

/// The services config is read first; an error naming it means every flag before was accepted.
fn assert_reaches_the_config(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(
        err.contains("/nonexistent/s.config: No such file or directory")
            && err.matches("No such file").count() == 1,
        "{what}: {err}"
    );
}

#[test]
fn go_style_flags_as_fleetspeak_installations_pass_them() {
    let go_style = [
        "-components_config",
        "/nonexistent/c.config",
        "-services_config=/nonexistent/s.config",
        "-logtostderr",
        "--alsologtostderr=false",
        "-v",
        "1",
        "-stderrthreshold=INFO",
        "--log_dir=/tmp",
        "-logbuflevel=-1",
        "-ready_file",
        "/nonexistent/ready",
    ];
    let with = |head: &[&str]| -> Vec<String> {
        head.iter()
            .chain(go_style.iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    let run = |bin: &Path, args: &[String]| {
        Command::new(bin)
            .args(args)
            .output()
            .expect("running fleetgate")
    };
    assert_reaches_the_config(
        &run(&fleetgate_bin(), &with(&["server"])),
        "fleetgate server",
    );
    // GRR's unit: bare flags mean `server`.
    assert_reaches_the_config(&run(&fleetgate_bin(), &with(&[])), "fleetgate -flags");
    // The compat package's /usr/bin/fleetspeak-server -> fleetgate.
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("fleetspeak-server");
    std::os::unix::fs::symlink(fleetgate_bin(), &link).expect("symlink");
    assert_reaches_the_config(&run(&link, &with(&[])), "fleetspeak-server -flags");
    let help = run(&link, &["--help".to_owned()]);
    assert!(
        stdout(&help).contains("--components_config"),
        "{}",
        stdout(&help)
    );
    // fleetspeak-config's form, and -help as Go spells it.
    let out = fleetgate(&["config", "-config", "/nonexistent/configurator.config"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/configurator.config"),
        "{}",
        stderr(&out)
    );
    let out = fleetgate(&["server", "-help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn completions_and_man_pages_come_from_the_same_definitions() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (shell, marker) in [
        ("bash", "complete -F _fleetgate"),
        ("zsh", "#compdef fleetgate"),
        ("fish", "complete -c fleetgate"),
    ] {
        let out = fleetgate(&["completions", shell]);
        let text = stdout(&out);
        assert!(
            out.status.success() && text.contains(marker),
            "{shell}: {text}"
        );
        assert!(
            text.contains("insertbatch") && text.contains("components_config"),
            "{shell}"
        );
    }
    // The bash script loads and registers itself.
    let script = dir.path().join("fleetgate.bash");
    std::fs::write(&script, stdout(&fleetgate(&["completions", "bash"]))).expect("write");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p fleetgate",
            script.display()
        ))
        .output()
        .expect("bash");
    assert!(out.status.success(), "{}", stderr(&out));

    let page = stdout(&fleetgate(&["man"]));
    assert!(
        page.starts_with(".ie") || page.contains(".TH fleetgate"),
        "{page}"
    );
    let pages = dir.path().join("man1");
    let out = fleetgate(&["man", "--out", pages.to_str().unwrap_or_default()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for p in [
        "fleetgate.1",
        "fleetgate-server.1",
        "fleetgate-admin.1",
        "fleetgate-admin-purge.1",
    ] {
        let text = std::fs::read_to_string(pages.join(p)).unwrap_or_default();
        assert!(text.contains(".TH"), "{p}: {text:?}");
    }
}

#[tokio::test]
async fn admin_finds_the_quickstart_and_names_the_address_it_tried() {
    let server = Server::start(ServerOptions::default()).await;
    // A quickstart run in this directory would have put its state here.
    let here = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(server.state_dir(), here.path().join(".fleetgate"))
        .expect("symlink");
    let admin = |dir: &Path, env: Option<&str>, args: &[&str]| {
        let mut c = Command::new(fleetgate_bin());
        c.arg("admin")
            .args(args)
            .current_dir(dir)
            .env_remove("FLEETGATE_ADMIN");
        if let Some(v) = env {
            c.env("FLEETGATE_ADMIN", v);
        }
        c.output().expect("fleetgate admin")
    };
    let out = admin(here.path(), None, &["plugins", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Echo"), "{}", stdout(&out));
    // From elsewhere, with --state_dir or $FLEETGATE_ADMIN.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let state = server.state_dir();
    let out = admin(
        elsewhere.path(),
        None,
        &[
            "--state_dir",
            state.to_str().unwrap_or_default(),
            "listclients",
        ],
    );
    assert_eq!(stdout(&out).trim(), "No clients found.", "{}", stderr(&out));
    let addr = server.admin_addr().to_string();
    let out = admin(elsewhere.path(), Some(&addr), &["listclients"]);
    assert_eq!(stdout(&out).trim(), "No clients found.", "{}", stderr(&out));

    // Nothing listens there: the error names the address and where it came from.
    let closed = fleetgate_tests::ports::free_addr().to_string();
    let out = admin(elsewhere.path(), Some(&closed), &["listclients"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&closed) && err.contains("$FLEETGATE_ADMIN"),
        "{err}"
    );
    let out = admin(elsewhere.path(), None, &["listclients"]);
    let err = stderr(&out);
    assert!(
        err.contains("localhost:6061") && err.contains("default"),
        "{err}"
    );
}

#[tokio::test]
async fn admin_inserts_in_batches_and_purges() {
    let server = Server::start(ServerOptions::default()).await;
    let client = GoClient::start(&server, ClientOptions::default()).await;
    let id = client.client_id().await;
    checks::enrolled(&server.admin().await, &id, Duration::from_secs(30)).await;
    // Offline from now on, so what is inserted stays pending.
    client.kill().await;
    let hex_id = hex::encode(&id);
    let addr = server.admin_addr().to_string();
    let admin = |args: &[&str]| {
        let out = fleetgate(&[&["admin", "--admin_addr", &addr][..], args].concat());
        assert!(out.status.success(), "`admin {args:?}`: {}", stderr(&out));
        stdout(&out)
    };
    let payload = server.root().join("payload.bin");
    std::fs::write(&payload, b"batched").expect("payload");
    let ids_file = server.root().join("clients.txt");
    std::fs::write(&ids_file, format!("{hex_id}\n\n{hex_id}\n")).expect("ids");
    let out = admin(&[
        "insertbatch",
        "TestService",
        "ping",
        &hex_id,
        "--clients_from",
        ids_file.to_str().unwrap_or_default(),
        "--payload",
        payload.to_str().unwrap_or_default(),
        "--batch=2",
    ]);
    assert!(out.starts_with("Inserted 3 messages."), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with(&hex_id)).count(),
        3,
        "{out}"
    );
    let json = admin(&["--json", "insertbatch", "Other", "pong", &hex_id]);
    assert!(json.contains("\"message_id\""), "{json}");
    assert_eq!(admin(&["pending", &hex_id, "--count"]).trim(), "4");

    assert_eq!(
        admin(&[
            "purge",
            &hex_id,
            "--service",
            "TestService",
            "--message_type",
            "other"
        ])
        .trim(),
        "Purged 0 pending messages."
    );
    assert_eq!(
        admin(&[
            "purge",
            &hex_id,
            "--service",
            "TestService",
            "--older_than",
            "0s"
        ])
        .trim(),
        "Purged 3 pending messages."
    );
    assert_eq!(admin(&["pending", &hex_id, "--count"]).trim(), "1");
    // Every client only when asked for in so many words.
    let out = fleetgate(&["admin", "--admin_addr", &addr, "purge"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        admin(&["--json", "purge", "--all_clients"]).trim(),
        "{\"purged\":1}"
    );
    assert_eq!(admin(&["pending", &hex_id, "--count"]).trim(), "0");
}
