//! Serving the hub's MCP view: over Streamable HTTP beside the hub's gRPC
//! listener (`spoke hub --mcp ADDR`), where each caller presents a client
//! token; and over stdio for one desktop agent (`spoke mcp`), dialling a
//! hub with the CLI's `--hub` and token.

use std::sync::Arc;
use std::time::Duration;

use spoke_proto::v1::hub_client::HubClient;
use spoke_runtime::Secret;
use spoke_runtime::mcp::Authorize;
use spoke_runtime::mcp::rmcp::ServiceExt;
use spoke_runtime::mcp::serve::{HttpLimits, serve_http};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::backend::{self, Backend, Credentials};
use super::handler::HubMcp;
use crate::api::client_api::ClientApi;
use crate::sessions::state::HubState;
use crate::wire::Authorized;

/// The largest request body the hub's MCP endpoint reads: 4 MiB.
const MAX_BODY: usize = 4 << 20;
/// How long `spoke mcp` waits for the hub's first catalog.
const FIRST_CATALOG: Duration = Duration::from_secs(10);

/// The hub's client tokens, checked from the header before the body.
#[derive(Clone)]
struct ClientTokens {
    state: Arc<HubState>,
}

impl Authorize for ClientTokens {
    type Caller = Credentials;

    fn authorize(&self, authorization: Option<&str>) -> Result<Credentials, String> {
        self.state
            .access
            .caller_from(authorization.map(str::as_bytes))
            .map_err(|status| status.message().to_owned())?;
        Ok(Credentials {
            authorization: authorization.map(|a| Arc::new(Secret::new(a.to_owned()))),
        })
    }
}

/// Serves the hub's tools at `http://<listener>/mcp` until `stop`.
/// Callers present client tokens, as gRPC clients do (none with
/// `--no-auth`, which only serves loopback).
pub(crate) async fn serve_hub_http(
    state: Arc<HubState>,
    api: ClientApi,
    listener: TcpListener,
    stop: CancellationToken,
) -> Result<(), String> {
    let open = state.access.tokens().is_none();
    let limits = HttpLimits {
        max_body: MAX_BODY,
        // A token defeats DNS rebinding (a page cannot learn it); without
        // auth, only local names.
        allowed_hosts: if open {
            ["localhost", "127.0.0.1", "::1"]
                .map(str::to_owned)
                .to_vec()
        } else {
            Vec::new()
        },
    };
    let authorizer = ClientTokens {
        state: Arc::clone(&state),
    };
    let server = HubMcp::new(Backend::Local { state, api }, None);
    serve_http(server, &limits, authorizer, listener, stop)
        .await
        .map_err(|e| e.to_string())
}

/// Why `spoke mcp` stopped.
#[derive(Debug)]
pub enum StdioError {
    /// The hub did not send what this client may call.
    Hub(Status),
    /// Serving stdio failed.
    Serve(String),
}

/// Serves the tools of the hub behind `client` over this process's stdin
/// and stdout until the agent leaves (stdin closes) or `stop`.
pub(crate) async fn serve_stdio(
    client: HubClient<Authorized>,
    timeout: Option<Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), StdioError> {
    let (latest_tx, latest) = watch::channel(None);
    let (first_tx, first) = oneshot::channel();
    let following = tokio::spawn(backend::follow(client.clone(), latest_tx, first_tx));
    match tokio::time::timeout(FIRST_CATALOG, first).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(status))) => return Err(StdioError::Hub(status)),
        Ok(Err(_)) => {
            return Err(StdioError::Hub(Status::internal(
                "the catalog stream stopped",
            )));
        }
        Err(_) => {
            return Err(StdioError::Hub(Status::deadline_exceeded(format!(
                "the hub sent no catalog within {FIRST_CATALOG:?}"
            ))));
        }
    }
    let server = HubMcp::new(Backend::Remote { client, latest }, timeout);
    tracing::info!(target: "spoke::mcp", "serving the hub's tools over stdio");
    let served = match server
        .serve(spoke_runtime::mcp::rmcp::transport::stdio())
        .await
    {
        Ok(running) => {
            let cancel = running.cancellation_token();
            tokio::select! {
                quit = running.waiting() => quit.map(|_| ()).map_err(|e| StdioError::Serve(e.to_string())),
                () = stop => {
                    cancel.cancel();
                    Ok(())
                }
            }
        }
        Err(spoke_runtime::mcp::rmcp::service::ServerInitializeError::ConnectionClosed(_)) => {
            Ok(())
        }
        Err(e) => Err(StdioError::Serve(e.to_string())),
    };
    following.abort();
    served
}
