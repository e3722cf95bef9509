//! The connected-phase marker for scripts that measure the server while the clients sit idle
//! (e.g. `bench/compare.sh` sampling the server's RSS per streaming client).
//!
//! Once every client has contacted the server (or the connect timeout passed), [`announce`]
//! writes `<connected> <clients>\n` to the ready file. The run then holds the streams idle for
//! `settle` before inserting anything, so a script can poll for the file and take its
//! measurements of the server in that quiet window.

use std::path::Path;

/// Writes the ready file atomically (temp file + rename), so a poller never reads half of it.
pub fn announce(path: &Path, connected: u64, clients: usize) {
    let tmp = path.with_extension("tmp");
    let text = format!("{connected} {clients}\n");
    let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "writing the ready file failed");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("connected");
        super::announce(&path, 9, 10);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "9 10\n");
    }
}
