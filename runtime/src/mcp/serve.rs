//! Serving: over stdio (one client, this process's stdin and stdout) or
//! Streamable HTTP (many clients, at `http://ADDR/mcp`), until the client
//! leaves (stdio), or SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, ServiceExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::auth::{Authorize, Tokens, authorize};
use super::handler::{Caller, McpServer};
use super::options::McpOptions;
use crate::instance::Instance;
use crate::signals::Signals;

/// Why `mcp` could not serve.
#[derive(Debug, thiserror::Error)]
pub enum McpServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving MCP failed: {0}")]
    Serve(String),
}

/// Serves `instance`'s actions as MCP tools, as `options` say, until the
/// client leaves (stdio) or a signal.
pub async fn run(instance: Instance, options: McpOptions) -> Result<(), McpServeError> {
    let signals = Signals::install();
    let server = McpServer::new(
        instance.clone(),
        Caller {
            admin: options.stdio_admin,
        },
        options.timeout,
        options.max_in_flight,
    );
    let served = match options.http {
        None => serve_stdio(server, &signals).await,
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| McpServeError::Bind { addr, source })?;
            let stop = CancellationToken::new();
            let stopping = stop.clone();
            tokio::spawn(async move {
                let signal = signals.next().await;
                tracing::info!(target: "spoke::mcp", "{signal}: stopping");
                stopping.cancel();
            });
            let tokens = Tokens {
                user: options.token.clone().map(Arc::new),
                admin: options.admin_token.clone().map(Arc::new),
            };
            let limits = HttpLimits {
                max_body: options.max_body,
                allowed_hosts: options.allowed_hosts.clone(),
            };
            serve_http(server, &limits, tokens, listener, stop).await
        }
    };
    instance.cancel_all_syncs();
    served
}

async fn serve_stdio(server: McpServer, signals: &Signals) -> Result<(), McpServeError> {
    tracing::info!(target: "spoke::mcp", "serving MCP over stdio");
    let running = match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => running,
        // A client that probes (`server/discover`) and leaves, or leaves
        // before its handshake, is no failure.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
        Err(e) => return Err(McpServeError::Serve(e.to_string())),
    };
    let cancel = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            quit.map(|_| ()).map_err(|e| McpServeError::Serve(e.to_string()))
        }
        signal = signals.next() => {
            tracing::info!(target: "spoke::mcp", "{signal}: stopping");
            cancel.cancel();
            Ok(())
        }
    }
}

/// What a Streamable HTTP endpoint accepts.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// The largest request body, in bytes (413 beyond).
    pub max_body: usize,
    /// The `Host` values accepted (against DNS rebinding); empty: any.
    pub allowed_hosts: Vec<String>,
}

/// Serves `server` over Streamable HTTP at `/mcp` on `listener` until
/// `stop`. Each request's `Authorization` header goes through `authorizer`
/// before its body is read (401 when refused); the caller it gives is in
/// the request's extensions, which the handler reads from the
/// `http::request::Parts` in its `RequestContext`.
pub async fn serve_http<S, A>(
    server: S,
    limits: &HttpLimits,
    authorizer: A,
    listener: TcpListener,
    stop: CancellationToken,
) -> Result<(), McpServeError>
where
    S: ServerHandler + Clone,
    A: Authorize,
{
    let local = listener
        .local_addr()
        .map_err(|e| McpServeError::Serve(e.to_string()))?;
    let mut config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(limits.max_body)
        .with_cancellation_token(stop.child_token());
    config = if limits.allowed_hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(limits.allowed_hosts.clone())
    };
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service).layer(
        axum::middleware::from_fn_with_state(authorizer, authorize::<A>),
    );
    tracing::info!(target: "spoke::mcp", "serving MCP at http://{local}/mcp");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|e| McpServeError::Serve(e.to_string()))
}
