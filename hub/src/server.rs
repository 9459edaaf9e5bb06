//! Running a hub: the gRPC server with ConnectorHub, Hub, health and
//! reflection, the "listening" line, and a graceful shutdown on SIGINT or
//! SIGTERM.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spoke_proto::v1::admin_server::{self, AdminServer};
use spoke_proto::v1::connector_hub_server::{self, ConnectorHubServer};
use spoke_proto::v1::hub_server::{self, HubServer};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use spoke_proto::{MAX_ASSEMBLED_BYTES, MAX_MESSAGE_BYTES, RESPONSE_SLACK_BYTES};

use crate::api::admin_api::AdminApi;
use crate::api::client_api::ClientApi;
use crate::config::{self, HubConfig};
use crate::guard::{GuardLayer, GuardedIncoming, HeaderCheck};
use crate::ids::DEFAULT_TENANT;
use crate::sessions::attach::AttachService;
use crate::sessions::state::HubState;
use crate::sidecars::config::SidecarSpec;
use crate::sidecars::status::StatusMap;
use crate::sidecars::supervisor::Supervisor;
use crate::syncs::Syncs;
use crate::syncs::store::SyncStore;
use crate::trust::access::{Access, TokenCache};
use crate::trust::approval::Trust;
use crate::trust::store::{ClientGrant, Scope, Store, StoreError};

/// The most streams (calls) open at once on one connection; a client
/// with more waits for one to end.
const MAX_STREAMS_PER_CONNECTION: u32 = 200;

/// How long the hub waits, beyond the shutdown grace, for connections to
/// close before it exits anyway.
const CLOSE_MARGIN: Duration = Duration::from_secs(2);

/// Why a hub could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The reflection service could not be built from the descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The store of sync checkpoints could not be opened.
    #[error("{0}")]
    SyncStore(String),
    /// The operator token could not be written.
    #[error("cannot write the operator token to {path}: {source}")]
    OperatorToken {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A sidecar bridge's key could not be read or made.
    #[error("{0}")]
    SidecarKey(String),
    /// The TLS certificate or key is missing or bad.
    #[error("TLS: {0}")]
    Tls(String),
    /// The MCP endpoint cannot serve as configured.
    #[error("MCP: {0}")]
    Mcp(String),
    /// NATS (`--nats`) could not be reached.
    #[error("{0}")]
    Nats(String),
    /// The server failed while running.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Runs a hub until SIGINT or SIGTERM, printing
/// `spoke hub listening on http://<ip>:<port>` (`https://` with TLS) to
/// stdout once bound.
pub async fn run(config: HubConfig) -> Result<(), ServeError> {
    run_supervised(config, Vec::new()).await
}

/// Like [`run`], and supervises the stdio `sidecars` (`spoke hub --sidecars`):
/// each is started, attached to this hub as a connector, restarted when it
/// exits, and shut down with the hub.
pub async fn run_supervised(
    config: HubConfig,
    sidecars: Vec<SidecarSpec>,
) -> Result<(), ServeError> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    run_until_supervised(config, sidecars, shutdown_signal(), move |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "spoke hub listening on {scheme}://{addr}");
        let _ = out.flush();
    })
    .await
}

/// Runs a hub until `stop` completes; `on_bound` learns the bound address.
pub async fn run_until(
    config: HubConfig,
    stop: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    run_until_supervised(config, Vec::new(), stop, on_bound).await
}

/// Runs a hub supervising `sidecars` until `stop` completes; `on_bound`
/// learns the bound address.
pub async fn run_until_supervised(
    config: HubConfig,
    sidecars: Vec<SidecarSpec>,
    stop: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let incoming = TcpIncoming::bind(config.listen)
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let grace = config.shutdown_grace;
    tracing::info!(
        "hub on {addr}: heartbeat every {:?}, resume window {:?}, shutdown grace {grace:?}",
        config.heartbeat_interval,
        config.resume_window
    );
    let (trust, access) = match &config.data_dir {
        None => (None, Access::Open),
        Some(dir) => {
            let store = Arc::new(Store::open(dir)?);
            ensure_operator_token(&store, dir)?;
            let cache = TokenCache::load(&store)?;
            tracing::info!("auth on: store {}", store.path().display());
            (Some(Arc::new(Trust::new(store))), Access::Tokens(cache))
        }
    };
    if trust.is_none() {
        tracing::warn!(
            "auth is off: any instance is approved and clients need no token (development only)"
        );
    }
    let bridge_tls = match &config.tls {
        Some(files) if !sidecars.is_empty() => Some(Arc::new(
            crate::trust::tls::bridge_tls(files).map_err(ServeError::Tls)?,
        )),
        _ => None,
    };
    let tls = match &config.tls {
        Some(files) => Some(crate::trust::tls::server_config(files).map_err(ServeError::Tls)?),
        None => {
            tracing::warn!("serving without TLS: traffic to and from this hub is not encrypted");
            None
        }
    };
    let bridge_keys = match (&trust, &config.data_dir) {
        (Some(trust), Some(dir)) => sidecar_keys(trust, dir, &sidecars)?,
        _ => std::collections::HashMap::new(),
    };
    let limits = config.connections.clone();
    let mcp_listener = match config.mcp {
        None => None,
        Some(addr) => {
            if matches!(access, Access::Open) && !addr.ip().is_loopback() {
                return Err(ServeError::Mcp(format!(
                    "--mcp {addr} listens beyond this machine on a hub without auth: any caller there could call every action; serve MCP on a loopback address, or turn auth on (callers then present client tokens)"
                )));
            }
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            Some(listener)
        }
    };
    let nats = match &config.nats {
        None => None,
        Some(connect) => Some(
            spoke_runtime::nats::connect::connect(connect, &format!("spoke hub {addr}"))
                .await
                .map_err(|e| ServeError::Nats(e.to_string()))?,
        ),
    };
    let syncs = open_sync_store(&config)?;
    let state = HubState::with_auth(config, trust, access, syncs);
    let statuses = StatusMap::default();

    let (mut health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::Serving).await;
    let reflection_v1 = crate::reflection::v1::service()?;
    let reflection_v1alpha = crate::reflection::v1alpha::service()?;

    let mut builder = Server::builder()
        // tonic leaves streams per connection unbounded (hyper's own
        // default is 200): a peer could open any number on one connection.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_frame_size(Some(spoke_proto::MAX_FRAME_BYTES));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServeError::Tls(format!("the certificate or key is not usable: {e}")))?;
    }
    let router = builder
        .layer(GuardLayer::new(
            header_check(Arc::clone(&state)),
            limits.request_budget,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            ConnectorHubServer::new(AttachService::new(Arc::clone(&state)))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            HubServer::new(ClientApi::with_sidecars(
                Arc::clone(&state),
                statuses.clone(),
            ))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_ASSEMBLED_BYTES + RESPONSE_SLACK_BYTES),
        )
        .add_service(AdminServer::new(AdminApi::new(Arc::clone(&state))));

    if let Some(listener) = mcp_listener {
        let api = ClientApi::with_sidecars(Arc::clone(&state), statuses.clone());
        let stop = state.shutdown_token().child_token();
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            if let Err(e) = crate::mcp::serve::serve_hub_http(state, api, listener, stop).await {
                tracing::error!("the MCP endpoint stopped: {e}");
            }
        });
    }

    let exporting = nats.map(|client| {
        let link = Arc::new(crate::routing::nats_link::NatsLink::new(client.clone()));
        state.set_nats(link);
        tracing::info!(
            "on NATS: serving the attached connectors there, reaching the others through it"
        );
        let api = ClientApi::with_sidecars(Arc::clone(&state), statuses.clone());
        let stop = state.shutdown_token().clone();
        tokio::spawn(crate::nats::export::run(
            Arc::clone(&state),
            api,
            client,
            stop,
        ))
    });

    on_bound(addr);

    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = GuardedIncoming::new(incoming, &limits);
    let serving = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stopped_rx.await;
    }));
    tokio::pin!(serving);
    let supervisor = (!sidecars.is_empty())
        .then(|| Supervisor::start(sidecars, addr, grace, statuses, &bridge_keys, bridge_tls));
    tokio::select! {
        finished = &mut serving => return finish(finished),
        () = stop => {}
    }

    tracing::info!("shutting down: draining connectors (grace {grace:?})");
    set_health(&health, ServingStatus::NotServing).await;
    end_health_watches(&mut health).await;
    let stopping_sidecars = supervisor.map(|s| tokio::spawn(s.stop(grace + CLOSE_MARGIN)));
    state.begin_shutdown();
    let _ = stopped_tx.send(());
    let served = tokio::time::timeout(grace + CLOSE_MARGIN, &mut serving).await;
    if let Some(exporting) = exporting {
        let _ = tokio::time::timeout(grace + CLOSE_MARGIN, exporting).await;
    }
    if let Some(stopping) = stopping_sidecars {
        let _ = stopping.await;
    }
    match served {
        Ok(finished) => finish(finished),
        Err(_) => {
            tracing::warn!(
                "some connections did not close within {:?}; exiting anyway",
                grace + CLOSE_MARGIN
            );
            serving.abort();
            Ok(())
        }
    }
}

/// Refuses a Hub or Admin call without a valid client token from its
/// headers, before its body is read (the services check what the token
/// grants once they have the request).
/// The store of sync checkpoints: `syncs.db` in the data directory (or,
/// without auth, the directory given with `--data`), else in memory. Runs
/// a previous hub process left running are marked failed.
fn open_sync_store(config: &HubConfig) -> Result<Syncs, ServeError> {
    let store = match config.data_dir.as_ref().or(config.syncs_dir.as_ref()) {
        Some(dir) => {
            let store = SyncStore::open(dir).map_err(|e| ServeError::SyncStore(e.to_string()))?;
            if let Some(path) = store.path() {
                tracing::info!("sync checkpoints: {}", path.display());
            }
            store
        }
        None => {
            tracing::warn!(
                "no data directory: sync checkpoints are kept in memory and lost when the hub stops (pass --data DIR)"
            );
            SyncStore::in_memory().map_err(|e| ServeError::SyncStore(e.to_string()))?
        }
    };
    let failed = store
        .fail_running("the hub stopped during the run")
        .map_err(|e| ServeError::SyncStore(e.to_string()))?;
    if failed > 0 {
        tracing::warn!(
            "{failed} sync run(s) were running when the hub last stopped: marked failed; their next runs resume from their last checkpoints"
        );
    }
    Ok(Syncs::new(store))
}

fn header_check(state: Arc<HubState>) -> HeaderCheck {
    Arc::new(move |path, headers| {
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if service == hub_server::SERVICE_NAME || service == admin_server::SERVICE_NAME {
            let authorization = headers.get("authorization").map(|v| v.as_bytes());
            state.access.caller_from(authorization).map(drop)
        } else {
            Ok(())
        }
    })
}

/// The keys of the supervised sidecars' bridges, made on first use under
/// `<data>/keys/`, each trusted by the hub.
fn sidecar_keys(
    trust: &Trust,
    dir: &std::path::Path,
    sidecars: &[SidecarSpec],
) -> Result<
    std::collections::HashMap<String, Arc<spoke_runtime::grpc::identity::InstanceKey>>,
    ServeError,
> {
    let mut keys = std::collections::HashMap::new();
    for spec in sidecars {
        let path = crate::sidecars::identity::key_path(dir, &spec.name);
        let key =
            crate::sidecars::identity::load_or_create(&path).map_err(ServeError::SidecarKey)?;
        trust.trust_key(key.public_key());
        keys.insert(spec.name.clone(), Arc::new(key));
    }
    Ok(keys)
}

/// On first start (no operator token in the store), makes one (tenant
/// "default", every connector, write, admin, operator) and writes it to
/// `<data>/operator.token` with mode 0600, logging the path, never the token.
fn ensure_operator_token(store: &Store, dir: &std::path::Path) -> Result<(), ServeError> {
    let path = config::operator_token_path(dir);
    if store.has_operator_token()? {
        if !path.exists() {
            tracing::warn!(
                "the operator token file {} is gone; the token in the store still works",
                path.display()
            );
        }
        return Ok(());
    }
    let grant = ClientGrant {
        id: String::new(),
        tenant: DEFAULT_TENANT.to_owned(),
        connectors: Scope::All,
        write: true,
        admin: true,
        operator: true,
        label: "operator".to_owned(),
        expires_unix_ms: None,
        revoked: false,
    };
    let (made, _) = store.create_client_token(&grant)?;
    write_private(&path, &format!("{}\n", made.token)).map_err(|source| {
        ServeError::OperatorToken {
            path: path.clone(),
            source,
        }
    })?;
    tracing::info!(
        "first start: wrote the operator token (every tenant, admin) to {}",
        path.display()
    );
    Ok(())
}

/// Writes `text` to a new file readable only by its owner.
pub(crate) fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn finish(
    joined: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), ServeError> {
    match joined {
        Ok(result) => result.map_err(ServeError::from),
        Err(err) => {
            tracing::error!("the server task failed: {err}");
            Ok(())
        }
    }
}

/// The names health is reported under: the server as a whole (`""`) and
/// each service.
const HEALTH_NAMES: [&str; 4] = [
    "",
    connector_hub_server::SERVICE_NAME,
    hub_server::SERVICE_NAME,
    admin_server::SERVICE_NAME,
];

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in HEALTH_NAMES {
        health.set_service_status(service, status).await;
    }
}

/// Ends every `Health/Watch` stream (their watchers have seen
/// `NOT_SERVING`): an open watch would otherwise hold its connection, and
/// the hub's exit, until the grace ran out.
async fn end_health_watches(health: &mut HealthReporter) {
    for service in HEALTH_NAMES {
        health.clear_service_status(service).await;
    }
}

/// Completes on SIGINT or (on Unix) SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM ({err}); only SIGINT stops the hub");
                ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

/// Completes on SIGINT; never if SIGINT cannot be listened for.
async fn ctrl_c() {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::warn!("cannot listen for SIGINT ({err})");
        std::future::pending::<()>().await;
    }
}
