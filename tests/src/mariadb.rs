//! A fresh MariaDB database per test (dropped afterwards), through the `mysql` command-line
//! client as root over TCP without a password (peers.md). No MariaDB is a failure with
//! instructions, never a skip.

use std::process::Command;
use std::time::Duration;

use crate::wait::eventually;

const SETUP: &str = "these tests need MariaDB on 127.0.0.1:3306 with root allowed in over TCP \
     without a password: `apt-get install -y mariadb-server && start-stop-daemon --start --oknodo \
     --background --exec /usr/sbin/mariadbd && mysql -uroot -e \"ALTER USER root@localhost \
     IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')\"` \
     (scripts/test-all.sh does this)";

/// Runs one SQL statement as root over TCP.
pub fn sql(statement: &str) -> Result<String, String> {
    let out = Command::new("mysql")
        .args([
            "-uroot",
            "-h127.0.0.1",
            "-P3306",
            "--batch",
            "--skip-column-names",
            "-e",
        ])
        .arg(statement)
        .output()
        .map_err(|e| format!("cannot run `mysql`: {e}. {SETUP}"))?;
    if !out.status.success() {
        return Err(format!(
            "`mysql -e {statement:?}` failed: {}. {SETUP}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A database that exists for the life of this value.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    /// Creates `fg_<prefix>_<random>`; panics with set-up instructions if MariaDB is not there.
    pub fn create(prefix: &str) -> TestDatabase {
        let name = format!("fg_{prefix}_{:08x}", rand::random::<u32>());
        if let Err(e) = sql(&format!("CREATE DATABASE {name}")) {
            panic!("{e}");
        }
        TestDatabase { name }
    }

    /// The go-sql-driver DSN both Fleetgate and the Go server read. The session variable keeps
    /// the Go server on READ-COMMITTED, as its own tests run (peers.md).
    pub fn dsn(&self) -> String {
        format!(
            "root@tcp(127.0.0.1:3306)/{}?tx_isolation=%27READ-COMMITTED%27",
            self.name
        )
    }

    /// Rows of a query in this database, tab-separated.
    pub fn query(&self, q: &str) -> Result<String, String> {
        sql(&format!("USE {}; {q}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let keep =
            std::env::var_os("FLEETGATE_E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        if keep || std::thread::panicking() {
            eprintln!("=== database {} kept", self.name);
            return;
        }
        if let Err(e) = sql(&format!("DROP DATABASE IF EXISTS {}", self.name)) {
            eprintln!("dropping {}: {e}", self.name);
        }
    }
}

/// Stops the MariaDB server (`mysqladmin shutdown`) and waits until it refuses connections.
pub async fn shutdown_server() {
    let st = Command::new("mysqladmin")
        .args(["-uroot", "-h127.0.0.1", "-P3306", "shutdown"])
        .status()
        .expect("running mysqladmin");
    assert!(st.success(), "mysqladmin shutdown failed: {st}");
    eventually(Duration::from_secs(60), "MariaDB to stop", || async {
        match sql("SELECT 1") {
            Ok(_) => anyhow::bail!("still answering"),
            Err(_) => Ok(()),
        }
    })
    .await;
}

/// Starts MariaDB again as `scripts/test-all.sh` does and waits until it answers.
pub async fn start_server() {
    let st = Command::new("start-stop-daemon")
        .args([
            "--start",
            "--oknodo",
            "--background",
            "--exec",
            "/usr/sbin/mariadbd",
        ])
        .status()
        .expect("running start-stop-daemon");
    assert!(st.success(), "starting mariadbd failed: {st}");
    eventually(Duration::from_secs(60), "MariaDB to answer", || async {
        sql("SELECT 1").map(|_| ()).map_err(anyhow::Error::msg)
    })
    .await;
}
