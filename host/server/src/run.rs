//! Turning validated settings into running tasks, and stopping them in order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use fleetgate_config::{Field, Origin};
use fleetgate_engine::{Engine, EngineConfig};
use fleetgate_pb::fleetspeak::components;
use fleetgate_pb::fleetspeak::server::ServerConfig;
use fleetgate_store::{SeaOrmStore, Store};
use fleetgate_types::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Everything `run` needs, already loaded and validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub components: components::Config,
    pub services: ServerConfig,
    pub database_url: String,
    /// `SET name=value` on every MySQL connection: a Fleetspeak DSN's session variables.
    pub database_session: Vec<(String, String)>,
    /// If set, the bound addresses are written here once every listener is up (for tests and
    /// scripts that start the server on port 0).
    pub ready_file: Option<PathBuf>,
    /// Ages after which old rows are deleted; off by default.
    pub retention: fleetgate_engine::retention::RetentionConfig,
    /// Fleetgate's own state: the compiled-plugin cache lives here.
    pub state_dir: PathBuf,
    /// Where `services` came from, read again on a plugin reload, and `--watch_plugins`.
    pub plugins: crate::reload::Options,
    /// The router component in front of the services, if configured.
    pub router: Option<fleetgate_pb::fleetgate::plugin::v1::WasmConfig>,
    /// Where `components` and `services` came from, to name the file and field in errors.
    pub origin: Origin,
    /// The locked admin listener (TLS, client certificates, policy), beside `admin_config`'s.
    pub admin_lock: Option<fleetgate_config::admin_lock::AdminLockSettings>,
    /// The shared secret of notifications between servers; `None`: off, as in Go.
    pub notification_secret: Option<String>,
    /// The message trace: on or off, and this server's name in it.
    pub trace: TraceSettings,
}

/// The message trace's settings.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    pub enabled: bool,
    /// `None`: named after its addresses (see [`server_name`]).
    pub server_name: Option<String>,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            server_name: None,
        }
    }
}

/// How long the trace writer may take to write what is queued when the server stops.
const TRACE_DRAIN: Duration = Duration::from_secs(5);

/// This server's name in message traces, distinct for every server of an installation even when
/// several run on one host: the address other servers notify it at (notification public
/// address, else the bound notification address), else this host's name with the port of its
/// client listener, else of its admin listener.
pub(crate) fn server_name(
    streaming_to: &str,
    https: Option<SocketAddr>,
    admin: Option<SocketAddr>,
) -> String {
    if !streaming_to.is_empty() && streaming_to != fleetgate_engine::notifier::LOCAL {
        return streaming_to.to_owned();
    }
    let host = hostname();
    match https.or(admin) {
        Some(a) => format!("{host}:{}", a.port()),
        None => host,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "fleetgate".into())
}

/// Addresses actually bound.
#[derive(Debug, Default, Clone)]
pub struct Bound {
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The locked admin listener, when configured.
    pub admin_tls: Option<SocketAddr>,
    /// The notification listener, when `notification_listen_address` is set.
    pub notify: Option<SocketAddr>,
    /// `/metrics`, when `stats_config` is set.
    pub stats: Option<SocketAddr>,
    /// The health check, when `health_check_config` is set.
    pub health: Option<SocketAddr>,
}

/// How long in-flight work may take to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(35);
/// How long a stopping server still sends the notifications of inserts it has answered (one
/// notification gives up after 5 s).
const NOTIFY_DRAIN: Duration = Duration::from_secs(5);

/// Runs the server until `shutdown` fires, then stops it gracefully. A server is either serving
/// or failing: everything a listener needs is checked, and every listener bound, before it says
/// it started and `/readyz` answers 200; a task that ends before `shutdown` (a listener that
/// died) turns `/readyz` to 503, stops the server as SIGTERM does, and makes this return the
/// task's error.
pub async fn run(settings: RunSettings, shutdown: CancellationToken) -> Result<()> {
    let origin = &settings.origin;
    // Before any socket or the database: an address or a certificate that cannot work fails
    // here (`fleetgate server` checked the addresses at load; quickstart's come from flags).
    fleetgate_config::settings::check_listen_addresses(&settings.components, origin)?;
    let frontend = settings
        .components
        .https_config
        .as_ref()
        .map(|https| frontend_config(&settings.components, https, origin))
        .transpose()?;
    // Health and metrics first, as the original, so probes see the whole start-up.
    let mut telemetry = crate::observe::Telemetry::start(&settings.components, origin).await?;
    // The default SQLite database and the plugin cache live here; create it on first start.
    std::fs::create_dir_all(&settings.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            settings.state_dir.display()
        )
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = SeaOrmStore::open_with_session(
        &settings.database_url,
        &settings.database_session,
        clock.clone(),
    )
    .await
    .with_context(|| format!("failed to open database {}", redact(&settings.database_url)))?;
    for (name, _) in &settings.database_session {
        if let Ok(Some(value)) = store.mysql_session_variable(name).await {
            tracing::info!("database session: {name} = {value}");
        }
    }
    let store: Arc<dyn Store> = Arc::new(store);
    let store = telemetry.wrap_store(store);
    let c = &settings.components;
    let required_label = (!c.required_label.is_empty()).then(|| c.required_label.clone());
    // Bound before the engine exists: its address is what this server's streams record.
    let notifications =
        fleetgate_notify::Plan::from_config(c, settings.notification_secret.as_deref())
            .await
            .with_context(|| origin.place(Field::NotificationListen))?;
    // Bound before the engine too: their ports name this server in message traces.
    let https_listener = match &c.https_config {
        Some(https) => Some(bind(&https.listen_address, origin, Field::HttpsListen).await?),
        None => None,
    };
    let admin_listener = match &c.admin_config {
        Some(admin) => Some(bind(&admin.listen_address, origin, Field::AdminListen).await?),
        None => None,
    };
    let server_name = settings.trace.server_name.clone().unwrap_or_else(|| {
        server_name(
            &notifications.streaming_to,
            https_listener.as_ref().and_then(|l| l.local_addr().ok()),
            admin_listener.as_ref().and_then(|l| l.local_addr().ok()),
        )
    });
    tracing::info!(
        server_name,
        enabled = settings.trace.enabled,
        "message trace"
    );
    let engine = Engine::new(
        EngineConfig {
            required_label,
            streaming_to: notifications.streaming_to.clone(),
            server_name,
            trace: fleetgate_engine::trace::TraceConfig {
                enabled: settings.trace.enabled,
                ..Default::default()
            },
            broadcast_poll_time: settings
                .services
                .broadcast_poll_time
                .and_then(|d| std::time::Duration::try_from(d).ok())
                .unwrap_or(fleetgate_engine::broadcasts::DEFAULT_POLL_TIME),
            expiry: expiry(&settings.services),
            ..EngineConfig::default()
        },
        store.clone(),
        clock.clone(),
    );
    // Before the plugins are built, so their calls are counted (`attach` sets the same handle).
    engine.set_metrics(telemetry.metrics.clone());
    let mut plugins = crate::plugins::install(
        &engine,
        &settings.services,
        settings.plugins.source.clone(),
        &settings.state_dir,
        clock.clone(),
        &origin.services(),
    )
    .await?;
    plugins.set_router(crate::routing::install(
        &engine,
        settings.router.clone(),
        &settings.state_dir,
        clock,
    )?);
    let plugins = Arc::new(plugins);
    let rollout_plugins = plugins.clone();
    engine.set_notifier(notifications.notifier.clone());
    telemetry.attach(&engine);
    telemetry.count_notifications(notifications.stats.clone());

    let mut tasks = JoinSet::new();
    crate::reload::spawn(&plugins, settings.plugins.watch, &mut tasks, &shutdown);
    let mut bound = Bound::default();
    if let Some(listener) = notifications.listener {
        bound.notify = Some(listener.local_addr());
        let dispatch = fleetgate_notify::dispatch_to(engine.clone());
        let (stats, token) = (notifications.stats.clone(), shutdown.clone());
        tasks.spawn(async move {
            listener.serve(dispatch, stats, token.clone()).await;
            stopped_early("notification listener", &token)
        });
    }
    if let (Some(listener), Some(config)) = (https_listener, frontend) {
        bound.https = listener.local_addr().ok();
        let (engine, token) = (telemetry.handler(&engine), shutdown.clone());
        tasks.spawn(async move {
            fleetgate_frontend::serve(listener, config, engine, token.clone())
                .await
                .map_err(|e| anyhow!("client frontend: {e}"))?;
            stopped_early("client frontend", &token)
        });
    }
    if let Some(lock) = &settings.admin_lock {
        let built = crate::admin_lock::build(lock)?;
        let listener = bind_at(
            &lock.listen_address,
            "-admin_tls_addr ([admin.tls] listen_address)",
        )
        .await?;
        bound.admin_tls = listener.local_addr().ok();
        let (engine, token) = (engine.clone(), shutdown.clone());
        let plugins: Arc<dyn fleetgate_admin::PluginControl> = plugins.clone();
        tasks.spawn(async move {
            fleetgate_admin::serve_locked(listener, built, engine, Some(plugins), token.clone())
                .await
                .map_err(|e| anyhow!("locked admin API: {e}"))?;
            stopped_early("locked admin API", &token)
        });
    }
    if let Some(listener) = admin_listener {
        bound.admin = listener.local_addr().ok();
        let (engine, token) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            fleetgate_admin::serve(listener, engine, Some(plugins), token.clone())
                .await
                .map_err(|e| anyhow!("admin API: {e}"))?;
            stopped_early("admin API", &token)
        });
    }
    {
        let (engine, token) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            engine.run_backlog(token).await;
            Ok(())
        });
    }
    {
        // Returns at once when nothing can expire; then waits, as a task ending early is dead.
        let (engine, token) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            engine.run_expiry(token.clone()).await;
            token.cancelled().await;
            Ok(())
        });
    }
    {
        let (engine, token) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            engine.run_broadcasts(token).await;
            Ok(())
        });
    }
    // Its own token: it stops after every other task, so their last steps are written.
    let trace_stop = CancellationToken::new();
    let trace_writer = {
        let (engine, token) = (engine.clone(), trace_stop.clone());
        tokio::spawn(async move { engine.run_trace_writer(token).await })
    };
    {
        // Plugin deployments from the shared store, under this server's name.
        let name = crate::rollout::server_name(bound.https.or(bound.admin).or(bound.admin_tls));
        let rollout = crate::rollout::Rollout::new(engine.clone(), rollout_plugins, name);
        // Before the server says it is ready, so a restarted server never serves the file's
        // version of a service a deployment overrides.
        if let Err(e) = rollout.poll().await {
            tracing::warn!("plugin deployments: {e}");
        }
        let token = shutdown.clone();
        tasks.spawn(async move {
            rollout.run(token).await;
            Ok(())
        });
    }
    telemetry.spawn_engine_tasks(&engine, settings.retention, &mut tasks, &shutdown);
    (bound.stats, bound.health) = (telemetry.stats, telemetry.health);
    telemetry.readiness.set_listeners_bound();
    announce(&bound, settings.ready_file.as_ref())?;

    let died = supervise(&mut tasks, &mut telemetry, &shutdown).await;
    telemetry.readiness.set_stopping();
    if let Some(why) = &died {
        tracing::error!("{why}; stopping the server");
        shutdown.cancel();
    }
    tracing::info!("stopping: no new contacts, draining streams and in-flight messages");
    engine.begin_shutdown();
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Err(e)) => tracing::warn!(error = %e, "task ended with an error"),
                Err(e) => tracing::warn!(error = %e, "task panicked"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some tasks did not stop within {DRAIN:?}");
    }
    let unsent = engine.finish_notifications(NOTIFY_DRAIN).await;
    if unsent > 0 {
        tracing::warn!(
            "{unsent} notifications still unsent after {NOTIFY_DRAIN:?}; \
             those clients get their messages at their next contact"
        );
    }
    // Hands back broadcast allocations with their final counts, so other servers can use them.
    engine.stop_broadcasts().await;
    trace_stop.cancel();
    if tokio::time::timeout(TRACE_DRAIN, trace_writer)
        .await
        .is_err()
    {
        tracing::warn!(
            "the message trace writer did not finish within {TRACE_DRAIN:?}; its last steps are lost"
        );
    }
    store.close().await.ok();
    telemetry.stop().await;
    tracing::info!("stopped");
    match died {
        None => Ok(()),
        Some(why) => Err(anyhow!("{why}; the server stopped")),
    }
}

/// Waits for `shutdown`, or for a task to end before it: every task of `tasks` and every
/// telemetry listener runs until shutdown, so one that ends early has died (an error, a panic,
/// or a listener that stopped). Returns what died, and why.
pub(crate) async fn supervise(
    tasks: &mut JoinSet<Result<()>>,
    telemetry: &mut crate::observe::Telemetry,
    shutdown: &CancellationToken,
) -> Option<String> {
    tokio::select! {
        // After shutdown, tasks ending is the normal course.
        biased;
        () = shutdown.cancelled() => None,
        Some(ended) = tasks.join_next() => Some(match ended {
            Ok(Ok(())) => "a server task ended unexpectedly".to_owned(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) if e.is_panic() => format!("a server task panicked: {e}"),
            Err(e) => format!("a server task was cancelled: {e}"),
        }),
        why = telemetry.died() => Some(why),
    }
}

/// A listener's end without an error: normal after shutdown, a death before.
fn stopped_early(what: &str, shutdown: &CancellationToken) -> Result<()> {
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err(anyhow!("{what} stopped accepting connections"))
    }
}

/// The client frontend's settings, its certificate and key checked: an error names the field.
fn frontend_config(
    c: &components::Config,
    https: &components::HttpsConfig,
    origin: &Origin,
) -> Result<fleetgate_frontend::FrontendConfig> {
    let mode = https
        .frontend_config
        .as_ref()
        .and_then(|f| f.frontend_mode.as_ref());
    let (cert_source, cleartext) = fleetgate_frontend::certsource::from_mode(mode);
    let config = fleetgate_frontend::FrontendConfig {
        cert_source,
        cleartext,
        cert_chain_pem: https.certificates.clone(),
        key_pem: https.key.clone(),
        disable_streaming: https.disable_streaming,
        proxy_protocol: c.proxy_protocol,
        file_server_authorization: https.enable_file_server_authorization,
        required_label: (!c.required_label.is_empty()).then(|| c.required_label.clone()),
        ..Default::default()
    };
    use fleetgate_frontend::FrontendError as E;
    config.validate().map_err(|e| {
        let place = match &e {
            E::Certificates(_) => origin.place(Field::Certificates),
            E::Key(_) => origin.place(Field::Key),
            E::Tls(_) | E::Io(_) => format!(
                "{} and {}",
                origin.place(Field::Certificates),
                origin.name(Field::Key)
            ),
        };
        anyhow!("{place}: {e}")
    })?;
    Ok(config)
}

/// Binds the listener of `field`; an error names the file and field.
pub(crate) async fn bind(addr: &str, origin: &Origin, field: Field) -> Result<TcpListener> {
    bind_at(addr, origin.place(field)).await
}

/// Binds `addr`; an error names `place`, the setting the address came from.
async fn bind_at(addr: &str, place: impl std::fmt::Display) -> Result<TcpListener> {
    // Go accepts ":port" for all interfaces.
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    };
    TcpListener::bind(&addr)
        .await
        .with_context(|| format!("{place}: failed to listen on [{addr}]"))
}

fn announce(bound: &Bound, ready_file: Option<&PathBuf>) -> Result<()> {
    let mut text = String::new();
    if let Some(a) = bound.https {
        tracing::info!(address = %a, "client frontend listening");
        text += &format!("https={a}\n");
    }
    if let Some(a) = bound.admin {
        text += &format!("admin={a}\n");
    }
    if let Some(a) = bound.admin_tls {
        text += &format!("admin_tls={a}\n");
    }
    if let Some(a) = bound.notify {
        text += &format!("notify={a}\n");
    }
    for (key, addr) in [("stats", bound.stats), ("health", bound.health)] {
        if let Some(a) = addr {
            tracing::info!(address = %a, "{key} listening");
            text += &format!("{key}={a}\n");
        }
    }
    if let Some(path) = ready_file {
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!("Fleetgate server started.");
    Ok(())
}

/// Hides a password in a database URL for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

/// The services config's `client_message_expiry` (validated) as the engine's: the entry without a
/// service is the default, a zero age never expires.
fn expiry(services: &ServerConfig) -> fleetgate_engine::Expiry {
    let mut e = fleetgate_engine::Expiry::default();
    for x in &services.client_message_expiry {
        let age = x
            .max_age
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .filter(|d| !d.is_zero());
        if x.service.is_empty() {
            e.default = age;
        } else {
            e.services.insert(x.service.clone(), age);
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Servers on one host differ by port; a server other servers notify is named by that
    /// address.
    #[test]
    fn server_names_come_from_addresses() {
        let at = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        let host = hostname();
        assert_eq!(
            server_name("10.0.0.5:10000", at(4443), at(4444)),
            "10.0.0.5:10000"
        );
        assert_eq!(
            server_name("local", at(4443), at(4444)),
            format!("{host}:4443")
        );
        assert_eq!(server_name("local", None, at(4444)), format!("{host}:4444"));
        assert_eq!(server_name("", None, None), host);
    }

    /// Every task runs until shutdown: one that fails, panics or just returns before it is a
    /// death, reported with its error; after shutdown nothing is.
    #[tokio::test]
    async fn a_task_that_ends_before_shutdown_is_a_death() {
        let origin = Origin::Quickstart { services: None };
        let mut telemetry = crate::observe::Telemetry::start(&Default::default(), &origin)
            .await
            .expect("no listeners to bind");
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let token = shutdown.clone();
        tasks.spawn(async move {
            token.cancelled().await;
            Ok(())
        });
        tasks.spawn(async { Err(anyhow!("admin API: boom")) });
        let why = supervise(&mut tasks, &mut telemetry, &shutdown).await;
        assert_eq!(why.as_deref(), Some("admin API: boom"));
        tasks.spawn(async { panic!("a bug in a listener") });
        let why = supervise(&mut tasks, &mut telemetry, &shutdown).await;
        assert!(
            why.as_deref().is_some_and(|w| w.contains("panicked")),
            "{why:?}"
        );
        let token = shutdown.clone();
        tasks.spawn(async move { stopped_early("client frontend", &token) });
        let why = supervise(&mut tasks, &mut telemetry, &shutdown).await;
        assert_eq!(
            why.as_deref(),
            Some("client frontend stopped accepting connections")
        );
        shutdown.cancel();
        assert_eq!(supervise(&mut tasks, &mut telemetry, &shutdown).await, None);
    }
}
