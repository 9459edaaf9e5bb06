//! Where the hub's MCP view reads its catalog and sends its calls: the
//! hub it runs in (`spoke hub --mcp`), or a hub over gRPC (`spoke mcp`).
//! Either way the hub's own services decide, so an MCP call is checked,
//! routed and logged exactly like `spoke call`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::hub_server::Hub;
use spoke_proto::v1::{Catalog, InvokeRequest, InvokeStreamItem, WatchCatalogRequest};
use spoke_runtime::Secret;
use tokio::sync::watch;
use tonic::Status;

use crate::api::catalog::catalog_for;
use crate::api::client_api::ClientApi;
use crate::sessions::state::HubState;
use crate::wire::{Authorized, CALLER_HEADER};

/// What the hub names an MCP client in a call's `caller` metadata.
pub(crate) const MCP_CALLER: &str = "mcp";

/// The items of a streamed call.
pub(crate) type ItemStream = Pin<Box<dyn Stream<Item = Result<InvokeStreamItem, Status>> + Send>>;

/// Who calls, as the hub must hear it: the `authorization` header the MCP
/// client sent (in the hub's process); none for a remote hub, whose
/// channel adds `spoke mcp`'s token itself.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) authorization: Option<Arc<Secret<String>>>,
}

/// The hub behind the view.
#[derive(Clone)]
pub(crate) enum Backend {
    /// The hub this process runs.
    Local {
        state: Arc<HubState>,
        api: ClientApi,
    },
    /// A hub over gRPC, and the latest catalog it sent.
    Remote {
        client: HubClient<Authorized>,
        latest: watch::Receiver<Option<Catalog>>,
    },
}

/// Wakes on every change that may change a catalog.
pub(crate) enum Changes {
    Local(watch::Receiver<u64>),
    Remote(watch::Receiver<Option<Catalog>>),
}

impl Changes {
    /// Completes at the next change; `false` when there will be none.
    pub(crate) async fn changed(&mut self) -> bool {
        match self {
            Changes::Local(rx) => rx.changed().await.is_ok(),
            Changes::Remote(rx) => rx.changed().await.is_ok(),
        }
    }
}

impl Backend {
    /// What the caller may call now.
    pub(crate) fn catalog(&self, who: &Credentials) -> Result<Catalog, Status> {
        match self {
            Backend::Local { state, .. } => {
                let header = who.authorization.as_ref().map(|a| a.expose().as_bytes());
                let caller = state.access.caller_from(header)?;
                catalog_for(state, &caller)
            }
            Backend::Remote { latest, .. } => latest.borrow().clone().ok_or_else(|| {
                Status::unavailable("the hub has not sent what this client may call yet")
            }),
        }
    }

    /// The changes from now on.
    pub(crate) fn changes(&self) -> Changes {
        match self {
            Backend::Local { state, .. } => Changes::Local(state.lock().registry.watch_changes()),
            Backend::Remote { latest, .. } => {
                let mut rx = latest.clone();
                rx.mark_unchanged();
                Changes::Remote(rx)
            }
        }
    }

    /// Starts a call, streamed (events, chunks, then its result).
    pub(crate) async fn invoke(
        &self,
        who: &Credentials,
        call: InvokeRequest,
        timeout: Option<Duration>,
    ) -> Result<ItemStream, Status> {
        let mut request = tonic::Request::new(call);
        request
            .metadata_mut()
            .insert(CALLER_HEADER, MCP_CALLER.parse().expect("an ASCII value"));
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        match self {
            Backend::Local { api, .. } => {
                if let Some(authorization) = &who.authorization {
                    let value = authorization.expose().parse().map_err(|_| {
                        Status::unauthenticated("the authorization header is not `Bearer <token>`")
                    })?;
                    request.metadata_mut().insert("authorization", value);
                }
                let stream = Hub::invoke_stream(api, request).await?.into_inner();
                Ok(Box::pin(stream))
            }
            Backend::Remote { client, .. } => {
                let stream = client.clone().invoke_stream(request).await?.into_inner();
                Ok(Box::pin(stream))
            }
        }
    }
}

/// Keeps `latest` up to date from the hub's `WatchCatalog` stream, opening
/// it again (with backoff) when it ends or fails, until `latest` has no
/// receiver left. The first catalog, or the first failure, goes to `first`.
pub(crate) async fn follow(
    mut client: HubClient<Authorized>,
    latest: watch::Sender<Option<Catalog>>,
    first: tokio::sync::oneshot::Sender<Result<(), Status>>,
) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(200);
    loop {
        let outcome = async {
            let mut stream = client
                .watch_catalog(WatchCatalogRequest {})
                .await?
                .into_inner();
            while let Some(catalog) = stream.message().await? {
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
                backoff = Duration::from_millis(200);
                latest.send_if_modified(|old| {
                    let changed = old.as_ref() != Some(&catalog);
                    *old = Some(catalog);
                    changed
                });
            }
            Ok::<(), Status>(())
        }
        .await;
        if let Some(first) = first.take() {
            let _ = first.send(outcome.and(Err(Status::unavailable(
                "the hub ended the catalog stream before sending one",
            ))));
            return;
        }
        match outcome {
            Ok(()) => tracing::info!(
                target: "spoke::mcp",
                "the hub ended the catalog stream; opening it again"
            ),
            Err(status) => tracing::warn!(
                target: "spoke::mcp",
                "the catalog stream failed ({}: {}); opening it again in {backoff:?}",
                crate::wire::code_name(status.code()),
                status.message()
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = latest.closed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
