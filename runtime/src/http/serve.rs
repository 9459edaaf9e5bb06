//! The `http` command: checks the manifest against Omni's rules, binds,
//! registers with the connector-manager (at once, then every 30 s), serves
//! until SIGINT/SIGTERM, then cancels the runs under way and gives them
//! the shutdown grace to end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use reqwest::Method;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::auth::{Token, require_token};
use super::manager::ManagerClient;
use super::manifest::{manifest_schema_problems, omni_manifest};
use super::options::HttpOptions;
use super::routes::{AppState, router};
use super::runs::Runs;
use super::sources::Sources;
use crate::registry::ConnectorType;

/// Why `http` could not serve.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The manifest cannot go to Omni: an action's input schema breaks the
    /// manager's rules (it would refuse every registration), or two syncs
    /// give a document field different schemas.
    #[error(
        "this connector's manifest cannot be served to Omni:\n  - {}",
        .0.join("\n  - ")
    )]
    Manifest(Vec<String>),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("{0}")]
    Client(String),
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
}

/// Serves `ty` over Omni's contract until SIGINT or SIGTERM.
pub async fn run(ty: Arc<ConnectorType>, options: HttpOptions) -> Result<(), HttpError> {
    let signals = crate::signals::Signals::install();
    let listener = bind(&ty, &options).await?;
    run_until(ty, options, listener, async move {
        let name = signals.next().await;
        tracing::info!(target: "spoke::http", "{name}: shutting down");
    })
    .await
}

/// Checks the manifest and binds `options.listen`.
pub async fn bind(ty: &ConnectorType, options: &HttpOptions) -> Result<TcpListener, HttpError> {
    let problems = manifest_schema_problems(ty.manifest());
    if !problems.is_empty() {
        return Err(HttpError::Manifest(problems));
    }
    TcpListener::bind(options.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: options.listen,
            source,
        })
}

/// Serves `ty` on `listener` until `shutdown` resolves.
pub async fn run_until(
    ty: Arc<ConnectorType>,
    options: HttpOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let local = listener.local_addr().map_err(HttpError::Serve)?;
    let manager = match &options.manager {
        Some(m) => Some(ManagerClient::new(m).map_err(HttpError::Client)?),
        None => None,
    };
    let connector_url = match &options.manager {
        Some(m) => m.advertise.url(local.port()),
        None => format!("http://{local}"),
    };
    let manifest = omni_manifest(ty.manifest(), &connector_url);
    let state = Arc::new(AppState {
        ty: Arc::clone(&ty),
        sources: Sources::new(Arc::clone(&ty)),
        runs: Arc::new(Runs::default()),
        manager: manager.clone(),
        manifest: manifest.clone(),
        in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
        heartbeat_every: options.heartbeat_every,
    });
    let mut app = router(Arc::clone(&state)).layer(DefaultBodyLimit::max(options.max_body));
    if let Some(token) = &options.token {
        app = app.layer(axum::middleware::from_fn_with_state(
            Token(Arc::new(token.clone())),
            require_token,
        ));
    }
    let registration = match (&manager, &options.manager) {
        (Some(client), Some(m)) => Some(tokio::spawn(register_loop(
            client.clone(),
            manifest,
            m.register_every,
        ))),
        _ => None,
    };
    tracing::info!(target: "spoke::http", connector = ty.name(), "listening on http://{local}");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(task) = registration {
        task.abort();
    }
    // Runs under way are cancelled; they end (and free their slots) within
    // the cancel grace, reported to the manager within the shutdown grace.
    for instance in state.sources.instances() {
        instance.cancel_all_syncs();
    }
    let deadline = tokio::time::Instant::now() + options.shutdown_grace;
    while !state.runs.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served.map_err(HttpError::Serve)
}

/// Registers the manifest now and then every `every`, one attempt each
/// time; a change of outcome is logged once.
async fn register_loop(client: ManagerClient, manifest: Value, every: Duration) {
    let body = serde_json::to_vec(&manifest).unwrap_or_default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ok: Option<bool> = None;
    loop {
        tick.tick().await;
        let result = client
            .call_once(Method::POST, "/sdk/register", Some(&body))
            .await;
        let ok = result.is_ok();
        if last_ok != Some(ok) {
            match result {
                Ok(_) => {
                    tracing::info!(target: "spoke::http", "registered with the connector-manager")
                }
                Err(e) => {
                    tracing::warn!(target: "spoke::http", "registering with the connector-manager failed: {e}; trying again every {every:?}")
                }
            }
        }
        last_ok = Some(ok);
    }
}
