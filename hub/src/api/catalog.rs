//! What one client may call (`Hub.WatchCatalog`): the connectors of its
//! tenant in its token's scope that have an approved instance, with their
//! manifests as `Describe` gives them to it and its write and admin grants;
//! sent at once, then again each time it changes.
//!
//! The registry bumps a counter on every change of its instances; each
//! watcher computes its caller's catalog again and sends it when it
//! differs from the last one sent. The token is checked again at each
//! change: a revoked or expired token ends the stream with
//! `UNAUTHENTICATED`. The stream ends when the hub shuts down or the
//! client goes away.

use std::sync::Arc;

use spoke_proto::v1::{Catalog, CatalogConnector, InstanceState};
use tokio::sync::mpsc;
use tonic::Status;

use crate::routing::registry::{ConnectorType, InstanceStatus};
use crate::sessions::state::HubState;
use crate::trust::access::Caller;

/// How many catalogs may wait for a slow watcher (each supersedes the last).
const WAITING: usize = 4;

/// The manifest of `ty` as `caller` may read it: without hidden actions
/// unless it is an administrator.
pub(crate) fn manifest_for(ty: &ConnectorType, caller: &Caller) -> Result<String, Status> {
    if caller.is_admin() || !ty.manifest.actions.iter().any(|a| a.hidden) {
        return Ok(ty.manifest_json.to_string());
    }
    let mut manifest = (*ty.manifest).clone();
    manifest.actions.retain(|a| !a.hidden);
    serde_json::to_string(&manifest)
        .map_err(|e| Status::internal(format!("cannot encode the manifest: {e}")))
}

/// What `caller` may call now.
pub(crate) fn catalog_for(state: &HubState, caller: &Caller) -> Result<Catalog, Status> {
    let tables = state.lock();
    let tenant = caller.tenant();
    let mut connectors = Vec::new();
    for (name, ty) in tables.registry.connectors(tenant) {
        if caller.check_connector(name).is_err() {
            continue;
        }
        let instances: Vec<InstanceState> = tables
            .registry
            .instances_of(tenant, name)
            .filter(|(_, i)| i.status != InstanceStatus::Pending)
            .map(|(_, i)| InstanceState {
                info: Some(i.info.clone()),
                state: i.status.as_str().to_owned(),
                tenant: i.tenant.clone(),
                // What changes with every call or reconnection is left
                // out: a catalog changes when what may be called does.
                ..InstanceState::default()
            })
            .collect();
        if instances.is_empty() {
            continue;
        }
        connectors.push(CatalogConnector {
            name: name.to_owned(),
            manifest_json: manifest_for(ty, caller)?,
            instances,
        });
    }
    Ok(Catalog {
        write: caller.may_write(),
        admin: caller.is_admin(),
        connectors,
    })
}

/// The catalogs of the caller presenting `authorization`: its catalog now,
/// then each new one, until the hub shuts down or the receiver is dropped.
/// The first item is the refusal when the token is not good.
pub(crate) fn watch(
    state: &Arc<HubState>,
    authorization: Option<Vec<u8>>,
) -> mpsc::Receiver<Result<Catalog, Status>> {
    let (tx, rx) = mpsc::channel(WAITING);
    let state = Arc::clone(state);
    // Subscribed before the first catalog is made: no change is missed.
    let mut changes = state.lock().registry.watch_changes();
    tokio::spawn(async move {
        let current = |state: &HubState| {
            let caller = state.access.caller_from(authorization.as_deref())?;
            catalog_for(state, &caller)
        };
        let mut last = None;
        loop {
            let next = match current(&state) {
                Ok(next) => next,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            if last.as_ref() != Some(&next) {
                if tx.send(Ok(next.clone())).await.is_err() {
                    return;
                }
                last = Some(next);
            }
            tokio::select! {
                () = state.shutdown_token().cancelled() => return,
                () = tx.closed() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}
