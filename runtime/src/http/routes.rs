//! The routes the connector-manager calls: `GET /health`, `GET /manifest`,
//! `POST /sync`, `GET /sync/{id}`, `POST /cancel`, `POST /action`, with
//! Omni's bodies and status codes.
//!
//! A body that is not JSON is refused with 400, one of the wrong shape
//! with 422, one over the size limit with 413, each as `{"status":
//! "error", "message": ...}` naming the field at fault.

// A refused request is its answer: `Err(Response)` is returned once per
// request, where its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::manager::{ManagerClient, ManagerError};
use super::runs::{Reserve, Runs, SlotClass, Started, supervise};
use super::sink::OmniSink;
use super::sources::{MANAGER_CONFIG_KEYS, Sources};
use super::wire::{
    ActionRequest, CancelRequest, ServiceCredential, Source, StatusBody, SyncRequest,
};
use crate::connector::Input;
use crate::context::Context;
use crate::encoding::Encoding;
use crate::error::{ActionError, ErrorCode};
use crate::registry::ConnectorType;
use crate::sync::{self, StoredCheckpoint, SyncMode};

/// What every route shares.
#[derive(Debug)]
pub struct AppState {
    /// The connector served.
    pub ty: Arc<ConnectorType>,
    /// Its instances, by source.
    pub sources: Sources,
    /// The sync runs under way.
    pub runs: Arc<Runs>,
    /// The manager, when one is configured.
    pub manager: Option<ManagerClient>,
    /// The Omni manifest, as `GET /manifest` answers it.
    pub manifest: Value,
    /// Actions running at once.
    pub in_flight: Arc<Semaphore>,
    /// How often a running sync heartbeats.
    pub heartbeat_every: std::time::Duration,
}

/// The router of the connector's routes (no auth, no body limit: see
/// [`serve`](super::serve)).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/manifest", get(manifest))
        .route("/sync", post(start_sync))
        .route("/sync/{id}", get(sync_status))
        .route("/cancel", post(cancel))
        .route("/action", post(action))
        .with_state(state)
}

/// `{"status":"error","message":...}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(StatusBody {
            status: "error",
            message: Some(message.into()),
        }),
    )
        .into_response()
}

/// Decodes a JSON body, or the answer that refuses it.
fn decode<T: DeserializeOwned>(
    route: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Response> {
    let body = body.map_err(|e| {
        error(
            e.status(),
            format!("{route}: cannot read the body: {}", e.body_text()),
        )
    })?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let refuse = |at: String, e: &serde_json::Error| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        let at = if at.is_empty() || at == "." {
            String::new()
        } else {
            format!(" at `{at}`")
        };
        error(status, format!("{route}: invalid body{at}: {e}"))
    };
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => match de.end() {
            Ok(()) => Ok(value),
            Err(e) => Err(refuse(String::new(), &e)),
        },
        Err(e) => Err(refuse(e.path().to_string(), e.inner())),
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "status": "healthy",
        "service": format!("{}-connector", state.ty.name()),
    }))
    .into_response()
}

async fn manifest(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.manifest.clone()).into_response()
}

/// The HTTP status of a Spoke error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn action_error(e: &ActionError) -> Response {
    let body = super::wire::ActionResponse {
        status: "error",
        result: None,
        error: Some(e.to_string()),
        details: Some(match e.details() {
            Some(details) => json!({"code": e.code().as_str(), "details": details}),
            None => json!({"code": e.code().as_str()}),
        }),
    };
    (status_of(e.code()), axum::Json(body)).into_response()
}

async fn action(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: ActionRequest = match decode("POST /action", body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let instance = match &request.source {
        Some(source) => {
            state
                .sources
                .instance(source, request.credentials.as_ref())
                .await
        }
        None => state.sources.own().await,
    };
    let instance = match instance {
        Ok(i) => i,
        Err(e) => return action_error(&e),
    };
    let params = strip_merged_config(&state.ty, &request);
    let mut metadata = std::collections::BTreeMap::new();
    if let Some(email) = &request.actor_email {
        metadata.insert("actor_email".to_owned(), email.clone());
    }
    if let Some(source) = &request.source {
        metadata.insert("source_id".to_owned(), source.id.clone());
    }
    let request_id = format!("http-{:016x}", fastrand::u64(..));
    // Omni's contract is JSON.
    let ctx = Context::builder(request_id, request.action.as_str())
        .metadata(metadata)
        .accept([Encoding::Json])
        .build();
    let Ok(_permit) = state.in_flight.acquire().await else {
        return action_error(&ActionError::unavailable("the connector is shutting down"));
    };
    match instance
        .invoke(&request.action, Input::Value(&params), ctx)
        .await
    {
        Ok(output) => match output.require_json() {
            Ok(json) => {
                let body = super::wire::ActionResponse {
                    status: "success",
                    result: Some(&*json),
                    error: None,
                    details: None,
                };
                axum::Json(body).into_response()
            }
            Err(e) => action_error(&e),
        },
        Err(e) => action_error(&e),
    }
}

/// The action's parameters without the keys of the source's config that
/// the manager merged into them (Omni's `/action` does), unless the action
/// takes a parameter of that name.
fn strip_merged_config(ty: &ConnectorType, request: &ActionRequest) -> Value {
    let mut params = request.params.clone();
    let (Some(source), Some(map)) = (&request.source, params.as_object_mut()) else {
        return params;
    };
    let Some(config) = source.config.as_object() else {
        return params;
    };
    let takes = |key: &str| {
        ty.action(&request.action).is_some_and(|a| {
            (a.input_schema)()
                .as_object()
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .is_some_and(|p| p.contains_key(key))
        })
    };
    for key in config.keys().map(String::as_str).chain(MANAGER_CONFIG_KEYS) {
        if map.get(key) == config.get(key) && !takes(key) {
            map.remove(key);
        }
    }
    params
}

fn manager_failure(e: &ManagerError) -> Response {
    match e.status {
        Some(404) => error(StatusCode::NOT_FOUND, e.message.clone()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, e.message.clone()),
    }
}

async fn start_sync(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: SyncRequest = match decode("POST /sync", body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let Some(client) = state.manager.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no connector-manager is configured (CONNECTOR_MANAGER_URL): syncs need one",
        );
    };
    let class = SlotClass::of(request.sync_mode);
    match state
        .runs
        .reserve(&request.source_id, class, &request.sync_run_id)
    {
        Reserve::Reserved => {}
        // The manager sent it again (its own timeout): it is started.
        Reserve::Same => return started(),
        Reserve::Busy => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "{} sync already in progress for this source",
                    class.as_str()
                ),
            );
        }
    }
    // A task of its own: the slot is released (or the run started) even
    // when the manager gives up waiting and drops the request.
    let (source_id, run_id) = (request.source_id.clone(), request.sync_run_id.clone());
    let task_state = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let result = begin(&task_state, client, &request).await;
        if result.is_err() {
            task_state
                .runs
                .release(&request.source_id, class, &request.sync_run_id);
        }
        result
    });
    match task.await {
        Ok(Ok(())) => started(),
        Ok(Err(response)) => response,
        Err(e) => {
            state.runs.release(&source_id, class, &run_id);
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("starting the run failed: {e}"),
            )
        }
    }
}

fn started() -> Response {
    axum::Json(StatusBody {
        status: "started",
        message: None,
    })
    .into_response()
}

/// Fetches the source and its credential, builds its instance, starts the
/// run and its supervisor.
async fn begin(
    state: &Arc<AppState>,
    client: ManagerClient,
    request: &SyncRequest,
) -> Result<(), Response> {
    let source_id = &request.source_id;
    let source: Source = client
        .get(&format!("/sdk/source/{source_id}"))
        .await
        .map_err(|e| manager_failure(&e))?;
    let has_secrets = state
        .ty
        .registration()
        .config_fields
        .iter()
        .any(|f| f.secret);
    let credential: Option<ServiceCredential> = if has_secrets {
        match client.get(&format!("/sdk/credentials/{source_id}")).await {
            Ok(c) => Some(c),
            // No credential: the config says what is missing.
            Err(e) if e.status == Some(404) => None,
            Err(e) => return Err(manager_failure(&e)),
        }
    } else {
        None
    };
    let instance = state
        .sources
        .instance(&source, credential.as_ref())
        .await
        .map_err(|e| error(status_of(e.code()), e.message().to_owned()))?;
    let def = pick_sync(&state.ty, &source, request.sync_mode)
        .map_err(|e| error(status_of(e.code()), e.message().to_owned()))?;
    let checkpoint = request
        .checkpoint
        .clone()
        .or_else(|| source.checkpoint.clone())
        .filter(|c| !c.is_null())
        .map(stored_checkpoint);
    let sink = Arc::new(OmniSink::new(
        client.clone(),
        &request.sync_run_id,
        source_id,
    ));
    let mut sync_request = sync::SyncRequest::new(def)
        .source(source_id.clone())
        .mode(request.sync_mode)
        .run_id(request.sync_run_id.clone());
    if let Some(c) = &checkpoint {
        sync_request = sync_request.checkpoint(c.clone());
    }
    if request.is_resume {
        sync_request = sync_request.resume();
    }
    let run = instance
        .start_sync(sync_request, sink.clone())
        .map_err(|e| match e.code() {
            // The stored checkpoint does not decode as the sync's type.
            ErrorCode::FailedPrecondition
                if e.details().is_some_and(|d| d.get("sync").is_some()) =>
            {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to decode sync checkpoint: {}", e.message()),
                )
            }
            code => error(status_of(code), e.message().to_owned()),
        })?;
    let started = Started {
        run,
        instance,
        sink,
        start_checkpoint: checkpoint,
    };
    tokio::spawn(supervise(
        Arc::clone(&state.runs),
        client,
        started,
        state.heartbeat_every,
    ));
    Ok(())
}

/// The checkpoint Omni stored: `{"version": N, "checkpoint": ...}` as
/// Spoke writes it, or any other JSON (written by hand, or by another
/// connector before), taken as version 1.
fn stored_checkpoint(value: Value) -> StoredCheckpoint {
    if let Some(map) = value.as_object()
        && map.len() == 2
        && map.contains_key("checkpoint")
        && let Some(version) = map
            .get("version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
    {
        return StoredCheckpoint::new(version, map["checkpoint"].clone());
    }
    StoredCheckpoint::new(1, value)
}

/// The sync that serves `source` in `mode`: the one whose `source_type` is
/// the source's, else the connector's only one.
fn pick_sync(
    ty: &ConnectorType,
    source: &Source,
    mode: SyncMode,
) -> Result<&'static str, ActionError> {
    let syncs = ty.syncs();
    let matching: Vec<_> = syncs
        .iter()
        .filter(|s| s.source_type == Some(source.source_type.as_str()))
        .collect();
    let def = match (matching.as_slice(), syncs) {
        ([one], _) => *one,
        ([], [only]) => only,
        ([], []) => {
            return Err(ActionError::not_found(format!(
                "connector `{}` has no syncs",
                ty.name()
            )));
        }
        ([], _) => {
            return Err(ActionError::not_found(format!(
                "no sync of connector `{}` serves source type `{}`",
                ty.name(),
                source.source_type
            )));
        }
        (several, _) => *several
            .iter()
            .find(|s| s.modes.contains(&mode))
            .unwrap_or(&several[0]),
    };
    if !def.modes.contains(&mode) {
        let modes: Vec<&str> = def.modes.iter().map(|m| m.as_str()).collect();
        return Err(ActionError::invalid_input(format!(
            "sync `{}` has no {mode} mode; its modes: {}",
            def.name,
            modes.join(", ")
        )));
    }
    Ok(def.name)
}

async fn sync_status(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    axum::Json(json!({ "running": state.runs.is_running(&id) })).into_response()
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: CancelRequest = match decode("POST /cancel", body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    if state.runs.cancel(&request.sync_run_id) {
        axum::Json(json!({"status": "cancelled"})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"status": "not_found"})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_spoke_wrote_keep_their_version_and_others_are_version_1() {
        let spoke = stored_checkpoint(json!({"version": 2, "checkpoint": {"page": 3}}));
        assert_eq!(spoke, StoredCheckpoint::new(2, json!({"page": 3})));
        let other = stored_checkpoint(json!({"cursor": "c-17"}));
        assert_eq!(other, StoredCheckpoint::new(1, json!({"cursor": "c-17"})));
        let lookalike = stored_checkpoint(json!({"version": "x", "checkpoint": 1}));
        assert_eq!(lookalike.version, 1);
    }

    #[test]
    fn error_codes_map_onto_http_statuses() {
        assert_eq!(status_of(ErrorCode::InvalidInput), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(ErrorCode::Unauthorized), StatusCode::FORBIDDEN);
        assert_eq!(status_of(ErrorCode::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(ErrorCode::FailedPrecondition),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(ErrorCode::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(ErrorCode::DeadlineExceeded),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            status_of(ErrorCode::Panicked),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
