//! The operator guide (docs/GUIDE.md), run as written: the `sh` blocks of a section are taken
//! from the guide itself and run in order in one `bash`, so a step that stops working fails
//! a test.
//!
//! * §1 (quickstart) and §2–§3 (an installation the Fleetspeak way, in `/etc` and `/var/lib`)
//!   run unchanged in private mount, network and PID namespaces: `/etc`, `/var/lib` and `/tmp`
//!   are overlays whose changes vanish with the test, and port 4443 is the namespace's own.
//!   Commands an operator leaves running in a terminal (the server, the client) are started in
//!   the background, and `listclients` is retried until the client has enrolled.
//! * §5's walk-through (MariaDB, haproxy, three servers) needs the machine's MariaDB, so it runs
//!   in the normal namespaces with its directory, database name and ports replaced, so that
//!   parallel runs cannot collide.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fleetgate_tests::env::{fleetgate_bin, peers_venv, workspace_root};
use fleetgate_tests::mariadb;
use fleetgate_tests::ports::free_addr;

const WALKTHROUGH: &str = "### Walk-through on one machine";
/// Fixed values in the guide and what the test uses instead.
const WORK: &str = "/tmp/fleetgate-demo";
const DATABASE: &str = "fleetgate_demo";
const PORTS: [&str; 9] = [
    "14443", "14444", "14501", "14502", "14601", "14602", "14701", "14702", "14703",
];
/// The whole walk-through, client enrolment included, takes seconds; this bounds a hang.
const TIMEOUT: Duration = Duration::from_secs(240);

fn guide() -> String {
    std::fs::read_to_string(workspace_root().join("docs/GUIDE.md")).expect("reading docs/GUIDE.md")
}

/// The `sh` blocks from `heading` to the next `## ` heading, in order.
fn blocks(guide: &str, heading: &str) -> Vec<String> {
    let start = guide
        .find(heading)
        .unwrap_or_else(|| panic!("docs/GUIDE.md has no {heading:?} section"));
    let rest = &guide[start + heading.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        current.is_none(),
        "an unterminated code block in {heading:?}"
    );
    blocks
}

/// Kills what the walk-through started (its `*.pid` files) and drops its database, also when
/// the test fails half-way.
struct Cleanup {
    work: PathBuf,
    database: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.work)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid")
                && let Ok(pid) = std::fs::read_to_string(&path)
            {
                let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
            }
        }
        if let Err(e) = mariadb::sql(&format!("DROP DATABASE IF EXISTS {}", self.database)) {
            eprintln!("dropping {}: {e}", self.database);
        }
    }
}

fn logs(work: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(work).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out += &format!(
                "=== {}\n{}\n",
                path.display(),
                fleetgate_tests::tail(&text, 30)
            );
        }
    }
    out
}

/// Which `fleetgate` the guide's commands run.
#[derive(Clone, Copy, PartialEq)]
enum Fleetgate {
    /// The binary under test (`FLEETGATE_BIN`).
    Built,
    /// The one a package installed as `/usr/bin/fleetgate`.
    Installed,
}

/// `PATH` with `fleetspeak-client` (and `fleetgate`, unless installed) first, and `/usr/sbin`
/// (haproxy).
fn path_with_tools(bin: &Path, fleetgate: Fleetgate) -> String {
    if fleetgate == Fleetgate::Built {
        std::os::unix::fs::symlink(fleetgate_bin(), bin.join("fleetgate"))
            .expect("linking fleetgate");
    }
    std::os::unix::fs::symlink(
        peers_venv().join("fleetspeak-client-bin/usr/bin/fleetspeak-client"),
        bin.join("fleetspeak-client"),
    )
    .expect("linking fleetspeak-client");
    let old = std::env::var("PATH").unwrap_or_default();
    format!("{}:{old}:/usr/sbin", bin.display())
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_walkthrough_runs_as_written() {
    let blocks = blocks(&guide(), WALKTHROUGH);
    assert!(
        blocks.len() >= 6,
        "expected the walk-through's steps, got {blocks:?}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("demo");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("creating bin");
    let database = format!("fg_guide_{:08x}", rand::random::<u32>());
    let mut ports: HashMap<&str, String> = HashMap::new();
    for p in PORTS {
        // Distinct ports: two steps must never share one.
        let port = std::iter::repeat_with(|| free_addr().port().to_string())
            .find(|port| !ports.values().any(|v| v == port))
            .unwrap_or_default();
        ports.insert(p, port);
    }
    let substitute = |text: &str| {
        let mut text = text
            .replace(WORK, &work.display().to_string())
            .replace(DATABASE, &database);
        for (from, to) in &ports {
            text = text.replace(from, to);
        }
        text
    };
    let script = format!(
        "set -euo pipefail\n{}",
        blocks
            .iter()
            .map(|b| substitute(b))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _cleanup = Cleanup {
        work: work.clone(),
        database: database.clone(),
    };
    let path = path_with_tools(&bin, Fleetgate::Built);

    let run = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg(TIMEOUT.as_secs().to_string())
            .args(["bash", "-c", &script])
            .env("PATH", path)
            .output()
            .expect("running bash")
    })
    .await
    .expect("joining the walk-through");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    let context = || format!("stdout:\n{stdout}\nstderr:\n{stderr}\n{}", logs(&work));
    assert!(
        run.status.success(),
        "the walk-through failed ({}):\n{}",
        run.status,
        context()
    );

    // What the guide tells the reader to look at.
    assert!(
        stdout.contains("State: failed")
            && stdout.contains("Failed: unable to process message of type"),
        "the status should show the client's MessageError:\n{}",
        context()
    );
    let notification = |port: &str| format!("127.0.0.1:{}", ports[port]);
    assert!(
        stdout.contains(&notification("14601")) || stdout.contains(&notification("14602")),
        "the client's row should name a frontend's notification address:\n{}",
        context()
    );
    // PROXY worked: the recorded address is the client's end of its connection to haproxy
    // (as `ss` printed it), not haproxy's connection to the frontend.
    let recorded = stdout
        .lines()
        .skip_while(|l| !l.starts_with("HEX(client_id)"))
        .nth(1)
        .and_then(|row| row.split('\t').nth(1))
        .unwrap_or_else(|| panic!("no client row in the output:\n{}", context()));
    assert!(
        stdout
            .lines()
            .skip_while(|l| !l.starts_with("Recv-Q"))
            .any(|l| l.split_whitespace().nth(2) == Some(recorded)),
        "the recorded address {recorded} should be the client's own:\n{}",
        context()
    );
    let log = |name: &str| std::fs::read_to_string(work.join(name)).unwrap_or_default();
    assert!(
        log("admin.log").contains("notification sent"),
        "the admin server should have notified the frontend:\n{}",
        context()
    );
    assert!(
        log("fe1.log").contains("notification received")
            || log("fe2.log").contains("notification received"),
        "a frontend should have received the notification:\n{}",
        context()
    );
    // The last block stopped everything and dropped the database.
    assert!(
        mariadb::sql(&format!("USE {database}")).is_err(),
        "the walk-through's last step should drop its database"
    );
}

/// Commands an operator runs in a terminal of their own and leaves running.
const LONG_RUNNING: [&str; 3] = [
    "fleetgate quickstart",
    "fleetgate server",
    "fleetspeak-client ",
];

/// Turns the guide's blocks into one script: long-running commands go to the background (and
/// the next step waits for the server's client port), `listclients` first waits until a
/// client has enrolled.
fn as_script(blocks: &[String]) -> String {
    let mut out = String::new();
    for block in blocks {
        let mut continued: Option<&str> = None;
        for line in block.lines() {
            let starts = continued.unwrap_or(line);
            continued = line.ends_with('\\').then_some(starts);
            if line.contains("listclients") {
                out += &format!(
                    "until {} | grep -q client:linux; do sleep 1; done\n",
                    line.trim()
                );
            }
            out += line;
            if continued.is_none() && LONG_RUNNING.iter().any(|c| starts.starts_with(c)) {
                out += " &";
                if starts.starts_with("fleetgate") {
                    out += "\nuntil ss -ltn | grep -q ':4443 '; do sleep 0.2; done";
                }
            }
            out.push('\n');
        }
    }
    out
}

/// Runs `script` as root in fresh mount, network and PID namespaces, with `/etc`, `/usr`,
/// `/var` and `/tmp` as overlays on a tmpfs: the guide's paths are real (a package can even be
/// installed), nothing reaches the machine, and everything the script started dies with it.
fn run_isolated(script: &str, fleetgate: Fleetgate) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("creating bin");
    let path = path_with_tools(&bin, fleetgate);
    let preamble = "set -euo pipefail
mount -t tmpfs guide /mnt
for d in etc usr var tmp; do
  n=${d//\\//_}; mkdir -p /mnt/$n.up /mnt/$n.work
  mount -t overlay guide -o lowerdir=/$d,upperdir=/mnt/$n.up,workdir=/mnt/$n.work /$d
done
ip link set lo up
";
    let out = Command::new("timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .args([
            "unshare",
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
        ])
        .args(["bash", "-c", &format!("{preamble}{script}")])
        .env("PATH", path)
        .output()
        .expect("running unshare");
    let text = format!(
        "{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        fleetgate_tests::tail(&String::from_utf8_lossy(&out.stderr), 60)
    );
    (out.status.success(), text)
}

#[test]
fn quickstart_section_runs_as_written() {
    let blocks = blocks(&guide(), "## 1. Single machine: quickstart");
    assert_eq!(blocks.len(), 2, "expected the server and the client blocks");
    let (ok, out) = run_isolated(&as_script(&blocks), Fleetgate::Built);
    println!("{out}");
    assert!(ok, "§1 failed:\n{out}");
    assert!(
        out.contains("Fleetgate quickstart"),
        "no quickstart banner:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("[client:amd64,client:linux]")),
        "listclients should show the enrolled client:\n{out}"
    );
}

#[test]
fn installation_sections_run_as_written() {
    let guide = guide();
    let mut blocks = blocks(&guide, "## 2. Single machine, the Fleetspeak way");
    blocks.extend(self::blocks(&guide, "## 3. Running the Go client"));
    assert!(
        blocks.len() >= 5,
        "expected §2 and §3's steps, got {blocks:?}"
    );
    let (ok, out) = run_isolated(&as_script(&blocks), Fleetgate::Built);
    println!("{out}");
    assert!(ok, "§2–§3 failed:\n{out}");
    assert!(
        out.contains("wrote Linux client config /etc/fleetspeak-server/linux.client.configuration"),
        "the configurator's output should match the guide's:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("[client:amd64,client:linux]")),
        "listclients should show the enrolled client:\n{out}"
    );
}

/// Stands in for systemd, which does not run here: `systemctl enable --now fleetgate` starts
/// the installed unit's `ExecStart` as the unit's `User`, as systemd would.
const SYSTEMCTL: &str = r#"
systemctl() {
  [ "$*" = "enable --now fleetgate" ] || { echo "systemctl $* is not emulated" >&2; return 1; }
  local unit=/usr/lib/systemd/system/fleetgate.service
  local user exec_start
  user=$(sed -n 's/^User=//p' $unit)
  exec_start=$(sed -n 's/^ExecStart=//p' $unit)
  runuser -u "$user" -- $exec_start > /tmp/fleetgate.log 2>&1 &
  local pid=$!
  until ss -ltn | grep -q ':4443 '; do
    kill -0 $pid 2>/dev/null || { cat /tmp/fleetgate.log >&2; return 1; }
    sleep 0.2
  done
}
"#;

/// §7: the packages built by the documented script install, create the service user and
/// directories, ship man pages and completions, provide the `fleetspeak-server` names, and
/// the unit's command line, run as its user on §2's configuration, serves a real client (§3).
#[test]
fn packages_install_and_the_unit_serves_a_client() {
    let debs = tempfile::tempdir().expect("temp dir");
    let build = Command::new("bash")
        .arg(workspace_root().join("packaging/build-deb.sh"))
        .args(["--compat", "--fast", "--bin"])
        .arg(fleetgate_bin())
        .arg("--out")
        .arg(debs.path())
        .output()
        .expect("running build-deb.sh");
    assert!(
        build.status.success(),
        "build-deb.sh failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );

    let guide = guide();
    let configurator_input = blocks(&guide, "## 2. Single machine, the Fleetspeak way")
        .into_iter()
        .find(|b| b.contains("configurator.config <<"))
        .expect("§2's configurator input");
    let enable = blocks(&guide, "## 7. Packages and systemd")
        .into_iter()
        .find(|b| b.contains("systemctl enable"))
        .expect("§7's systemctl block");
    let client = blocks(&guide, "## 3. Running the Go client");
    let install = format!(
        "dpkg -i {dir}/fleetgate_*.deb {dir}/fleetgate-fleetspeak-compat_*.deb
getent passwd fleetspeak
stat -c '%U %a %n' /var/lib/fleetgate /etc/fleetspeak-server/server.services.config
echo \"fleetspeak-server -> $(readlink /usr/bin/fleetspeak-server)\"
ls /usr/share/man/man1/fleetgate.1.gz /usr/share/man/man1/fleetgate-admin.1.gz \
  /usr/share/bash-completion/completions/fleetgate /usr/share/zsh/vendor-completions/_fleetgate \
  /usr/share/fish/vendor_completions.d/fleetgate.fish
{SYSTEMCTL}
",
        dir = debs.path().display()
    );
    let mut steps = vec![install, configurator_input, enable];
    steps.extend(client);
    let (ok, out) = run_isolated(&as_script(&steps), Fleetgate::Installed);
    println!("{out}");
    assert!(ok, "§7 failed:\n{out}");
    for expected in [
        "fleetspeak 750 /var/lib/fleetgate",
        "root 644 /etc/fleetspeak-server/server.services.config",
        "fleetspeak-server -> fleetgate",
        "/usr/share/man/man1/fleetgate-admin.1.gz",
        "/usr/share/bash-completion/completions/fleetgate",
    ] {
        assert!(out.contains(expected), "expected {expected:?}:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.contains("[client:amd64,client:linux]")),
        "the packaged server should have enrolled the client:\n{out}"
    );
}
