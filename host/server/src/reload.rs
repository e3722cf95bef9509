//! Hot reload of plugins: where the services come from, and what triggers a reload.
//!
//! Triggers, all ending in [`Plugins::reload_now`](crate::plugins::Plugins::reload_now):
//!
//! * `SIGHUP`;
//! * with `--watch_plugins`, a change (mtime or size) of the services config file(s), of any
//!   `.wasm` file they reference or of the router's component, checked every 100 ms by polling a few `stat`s (no watcher dependency): fast enough that a
//!   change serves within the 200 ms target, and a half-written file is simply refused and
//!   retried when it changes again;
//! * the admin RPC `ReloadPlugins` (`fleetgate admin plugins reload`).
//!
//! Each re-reads the [`Source`] the server started from, builds every service, and only then
//! swaps the engine's entries (see `fleetgate_runtime::generation`). A failed reload leaves the
//! running plugins in place and is logged and counted. No connection is touched.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use fleetgate_pb::fleetspeak::server::ServerConfig;
use fleetgate_runtime::WasmConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::plugins::Plugins;

/// How often `--watch_plugins` looks at the files.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Where the services come from: re-read on every reload, exactly as at start-up.
#[derive(Clone)]
pub struct Source {
    /// Configuration files read by `read`, watched with `--watch_plugins`.
    files: Vec<PathBuf>,
    read: Arc<dyn Fn() -> Result<ServerConfig> + Send + Sync>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Source {
    pub fn new(
        files: Vec<PathBuf>,
        read: impl Fn() -> Result<ServerConfig> + Send + Sync + 'static,
    ) -> Self {
        Self {
            files,
            read: Arc::new(read),
        }
    }

    pub fn read(&self) -> Result<ServerConfig> {
        (self.read)()
    }

    /// The config files, plus the component files `services` references.
    fn watched(&self, services: &ServerConfig) -> Vec<PathBuf> {
        let mut paths = self.files.clone();
        for s in &services.services {
            let Some(any) = s.config.as_ref().filter(|_| s.factory == "WASM") else {
                continue;
            };
            if let Ok(w) = fleetgate_pb::any::unpack::<WasmConfig>(any)
                && !w.path.is_empty()
                && !w.path.starts_with("bundled:")
            {
                paths.push(PathBuf::from(w.path));
            }
        }
        paths
    }
}

/// The plugin settings of a run.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// `--watch_plugins`.
    pub watch: bool,
}

/// Spawns the reload triggers (SIGHUP always, the file watch if asked); both stop with
/// `shutdown`.
pub fn spawn(
    plugins: &Arc<Plugins>,
    watch: bool,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) {
    let (p, token) = (plugins.clone(), shutdown.clone());
    tasks.spawn(async move {
        on_sighup(p, token).await;
        Ok(())
    });
    if watch {
        let (p, token) = (plugins.clone(), shutdown.clone());
        tasks.spawn(async move {
            watch_files(p, token).await;
            Ok(())
        });
    }
}

async fn on_sighup(plugins: Arc<Plugins>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler; reload plugins through the admin API");
        // Ending early would read as a dead task and stop the server.
        return shutdown.cancelled().await;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => {}
        }
        // The outcome is logged by `reload_now`.
        plugins.reload_now("SIGHUP").await.ok();
    }
}

/// Size and modification time of each path (`None` if missing), in order.
type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let stamp = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.clone(), stamp)
        })
        .collect()
}

async fn watch_files(plugins: Arc<Plugins>, shutdown: CancellationToken) {
    let source = plugins.source().clone();
    let watched = |services: &ServerConfig| {
        let mut paths = source.watched(services);
        paths.extend(plugins.router_file());
        paths
    };
    let mut paths = watched(&source.read().unwrap_or_default());
    tracing::info!(files = ?paths, "watching plugin files for changes");
    let mut seen = fingerprint(&paths);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let now = fingerprint(&paths);
        if now == seen {
            continue;
        }
        // Taken before reading, so a write that lands during the reload is seen next time.
        seen = now;
        plugins.reload_now("file change").await.ok();
        // The new config may reference other components; watch those from now on.
        if let Ok(services) = source.read() {
            let next = watched(&services);
            if next != paths {
                paths = next;
                seen = fingerprint(&paths);
            }
        }
    }
}
