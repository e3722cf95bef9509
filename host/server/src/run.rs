//! Turning validated settings into running tasks, and stopping them in order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fleetgate_engine::{Engine, EngineConfig, NoopService, ServiceEntry};
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
    /// If set, the bound addresses are written here once every listener is up (for tests and
    /// scripts that start the server on port 0).
    pub ready_file: Option<PathBuf>,
}

/// Addresses actually bound.
#[derive(Debug, Default, Clone)]
pub struct Bound {
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// How long in-flight work may take to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(35);

/// Runs the server until `shutdown` fires, then stops it gracefully.
pub async fn run(settings: RunSettings, shutdown: CancellationToken) -> Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = SeaOrmStore::open(&settings.database_url, clock.clone())
        .await
        .with_context(|| format!("failed to open database {}", redact(&settings.database_url)))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let c = &settings.components;
    let required_label = (!c.required_label.is_empty()).then(|| c.required_label.clone());
    let engine = Engine::new(
        EngineConfig {
            required_label,
            streaming_to: "local".into(),
        },
        store.clone(),
        clock,
    );
    install_services(&engine, &settings.services)?;

    let mut tasks = JoinSet::new();
    let mut bound = Bound::default();
    if let Some(https) = &c.https_config {
        let listener = bind(&https.listen_address).await?;
        bound.https = listener.local_addr().ok();
        let config = frontend_config(c, https)?;
        let (engine, token) = (Arc::new(engine.clone()), shutdown.clone());
        tasks.spawn(async move {
            fleetgate_frontend::serve(listener, config, engine, token)
                .await
                .map_err(|e| anyhow!("client frontend: {e}"))
        });
    }
    if let Some(admin) = &c.admin_config {
        let listener = bind(&admin.listen_address).await?;
        bound.admin = listener.local_addr().ok();
        let (engine, token) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            fleetgate_admin::serve(listener, engine, token)
                .await
                .map_err(|e| anyhow!("admin API: {e}"))
        });
    }
    {
        let (engine, token) = (engine.clone(), shutdown.clone());
        tasks.spawn(async move {
            engine.run_backlog(token).await;
            Ok(())
        });
    }
    announce(&bound, settings.ready_file.as_ref())?;

    shutdown.cancelled().await;
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
    store.close().await.ok();
    tracing::info!("stopped");
    Ok(())
}

fn install_services(engine: &Engine, services: &ServerConfig) -> Result<()> {
    for s in &services.services {
        let service: Arc<dyn fleetgate_engine::Service> = match s.factory.as_str() {
            "NOOP" => Arc::new(NoopService),
            "GRPC" => bail!(
                "service [{}]: factory \"GRPC\" runs as a WebAssembly component, and this build has no plugin runtime yet",
                s.name
            ),
            other => bail!("service [{}]: unable to find factory [{other}]", s.name),
        };
        engine
            .set_service(&s.name, ServiceEntry::new(service, s.max_parallelism))
            .map_err(|e| anyhow!("service [{}]: {e}", s.name))?;
        tracing::info!(service = %s.name, factory = %s.factory, "service installed");
    }
    Ok(())
}

fn frontend_config(
    c: &components::Config,
    https: &components::HttpsConfig,
) -> Result<fleetgate_frontend::FrontendConfig> {
    if https.frontend_config.as_ref().is_some_and(|f| {
        !matches!(
            f.frontend_mode,
            None | Some(components::frontend_config::FrontendMode::MtlsConfig(_))
        )
    }) {
        bail!("https_config.frontend_config: only mTLS is supported by this build");
    }
    Ok(fleetgate_frontend::FrontendConfig {
        cert_chain_pem: https.certificates.clone(),
        key_pem: https.key.clone(),
        disable_streaming: https.disable_streaming,
        proxy_protocol: c.proxy_protocol,
        ..Default::default()
    })
}

async fn bind(addr: &str) -> Result<TcpListener> {
    // Go accepts ":port" for all interfaces.
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    };
    TcpListener::bind(&addr)
        .await
        .with_context(|| format!("failed to listen on [{addr}]"))
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
