//! The calls on syncs: `Hub.Sync`, `Hub.ListSyncs`, `Hub.CancelSync` and
//! the Admin checkpoint calls (`GetCheckpoint`, `SetCheckpoint`,
//! `ResetCheckpoint`).
//!
//! Starting and cancelling a run needs a token with the connector in scope
//! made with `--write` (a run changes the checkpoint the hub keeps);
//! listing needs the connector in scope; the checkpoint calls need an
//! admin token. Tenants are isolated as for calls: another tenant's run or
//! checkpoint is reported like one that does not exist.
//!
//! Where a run starts: unless the request says `fresh`, a run that did not
//! complete and stored a checkpoint past the last completed run's is
//! resumed from it, in its mode (if the request names no other); any other
//! run starts from the checkpoint of the last completed run, incremental
//! when the sync has that mode, else in the sync's first mode.

use std::sync::Arc;

use spoke_proto::v1::{
    AdminResponse, CancelSyncRequest, CancelSyncResponse, CheckpointInfo, CheckpointRef,
    ListSyncsRequest, ListSyncsResponse, SetCheckpointRequest, StartSync, SyncRequest, SyncRunInfo,
    SyncStreamItem,
};
use spoke_runtime::manifest::SyncManifest;
use spoke_runtime::suggest;
use spoke_runtime::sync::SyncMode;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::deadline;
use crate::ids::{hex, random_bytes, unix_ms};
use crate::routing::route::{self, Selection, Target};
use crate::sessions::register::tenant_name;
use crate::sessions::state::HubState;
use crate::syncs::run::{self, RunPlan, counters_from_json};
use crate::syncs::store::{CheckpointRecord, RunRecord, SyncKey, SyncStore, SyncStoreError};
use crate::trust::access::Caller;

/// How many items may wait for the caller of a run.
const CALLER_ITEMS: usize = 16;
/// How many ended runs `ListSyncs` lists by default, and at most.
const DEFAULT_RECENT: usize = 20;
const MAX_RECENT: usize = 500;

/// The stream `Hub.Sync` answers with.
pub(crate) type SyncStream = ReceiverStream<Result<SyncStreamItem, Status>>;

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<SyncStore>,
    call: impl FnOnce(&SyncStore) -> Result<T, SyncStoreError> + Send + 'static,
) -> Result<T, Status> {
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || call(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Status::internal(e.to_string())),
        Err(e) => Err(Status::internal(format!("the store call failed: {e}"))),
    }
}

/// `PERMISSION_DENIED` unless the caller may start and cancel runs of `connector`.
fn check_write(caller: &Caller, connector: &str) -> Result<(), Status> {
    caller.check_connector(connector)?;
    if !caller.may_write() {
        return Err(Status::permission_denied(format!(
            "starting or cancelling a sync of connector `{connector}` changes its stored checkpoint: it needs a token made with --write"
        )));
    }
    Ok(())
}

/// The sync `name` of a manifest's syncs (`""`: the only one); errors name
/// what exists.
fn find_sync<'a>(
    syncs: &'a [SyncManifest],
    connector: &str,
    name: &str,
) -> Result<&'a SyncManifest, Status> {
    let names: Vec<&str> = syncs.iter().map(|s| s.name.as_str()).collect();
    if name.is_empty() {
        return match syncs {
            [] => Err(Status::failed_precondition(format!(
                "connector `{connector}` has no syncs"
            ))),
            [only] => Ok(only),
            _ => Err(Status::invalid_argument(format!(
                "connector `{connector}` has several syncs: name one of {}",
                suggest::list(&names)
            ))),
        };
    }
    syncs.iter().find(|s| s.name == name).ok_or_else(|| {
        Status::not_found(format!(
            "connector `{connector}` has no sync `{name}`{}; its syncs: {}",
            suggest::hint(name, names.iter().copied()),
            suggest::list(&names)
        ))
    })
}

/// The mode a request names, if it names one the sync has.
fn requested_mode(sync: &SyncManifest, mode: &str) -> Result<Option<SyncMode>, Status> {
    if mode.is_empty() {
        return Ok(None);
    }
    let modes: Vec<String> = sync.modes.iter().map(ToString::to_string).collect();
    match SyncMode::parse(mode) {
        Some(m) if sync.modes.contains(&m) => Ok(Some(m)),
        _ => Err(Status::invalid_argument(format!(
            "sync `{}` has no mode `{mode}`; its modes: {}",
            sync.name,
            modes.join(", ")
        ))),
    }
}

/// Where a run starts: its mode, whether it resumes, and its checkpoint.
pub(crate) fn plan_start(
    sync: &SyncManifest,
    requested: Option<SyncMode>,
    stored: Option<&CheckpointRecord>,
    fresh: bool,
) -> (SyncMode, bool, Option<String>) {
    let interrupted = stored.filter(|r| {
        !fresh
            && r.last_status.as_deref().is_some_and(|s| s != "completed")
            && r.checkpoint.is_some()
            && r.checkpoint != r.completed
    });
    let interrupted_mode = interrupted
        .and_then(|r| r.last_mode.as_deref())
        .and_then(SyncMode::parse)
        .filter(|m| sync.modes.contains(m));
    let completed = stored.and_then(|r| r.completed.clone());
    let mode = requested.or(interrupted_mode).unwrap_or_else(|| {
        if completed.is_some() && sync.modes.contains(&SyncMode::Incremental) {
            SyncMode::Incremental
        } else {
            sync.modes.first().copied().unwrap_or(SyncMode::Full)
        }
    });
    if interrupted_mode == Some(mode) {
        let checkpoint = interrupted.and_then(|r| r.checkpoint.clone());
        (mode, true, checkpoint)
    } else {
        (mode, false, completed)
    }
}

/// `Hub.Sync`: checks the request, picks the instance and the checkpoint,
/// takes the slot, and starts the run's task.
pub(crate) async fn sync(
    state: &Arc<HubState>,
    request: Request<SyncRequest>,
) -> Result<Response<SyncStream>, Status> {
    let grpc_deadline = deadline::of_request(&request);
    let caller = state.access.caller(request.metadata())?;
    let request = request.into_inner();
    let refused = |status: Status| {
        tracing::info!(
            connector = request.connector,
            sync = request.sync,
            "sync refused: {}: {}",
            crate::wire::code_name(status.code()),
            status.message()
        );
        status
    };
    check_write(&caller, &request.connector).map_err(refused)?;
    let target = match Target::from_route(request.route.clone()).map_err(refused)? {
        Target::Tag(_) => {
            return Err(refused(Status::invalid_argument(
                "a sync run goes to one instance: route it by instance or display name, not by tag",
            )));
        }
        target => target,
    };
    let tenant = caller.tenant().to_owned();
    let (sync, instance) = {
        let mut tables = state.lock();
        let Some(ty) = tables.registry.connector(&tenant, &request.connector) else {
            return Err(refused(crate::api::client_api::no_connector(
                &tables.registry,
                &caller,
                &request.connector,
            )));
        };
        let sync = find_sync(&ty.manifest.syncs, &request.connector, &request.sync)
            .map_err(refused)?
            .clone();
        let selection = route::select(
            &mut tables.registry,
            &tenant,
            &request.connector,
            &target,
            None,
        )
        .map_err(refused)?;
        let Selection::One(instance) = selection else {
            return Err(refused(Status::internal(
                "a sync was routed to several instances",
            )));
        };
        (sync, instance)
    };
    let requested = requested_mode(&sync, &request.mode).map_err(refused)?;
    let key = SyncKey {
        tenant: tenant.clone(),
        connector: request.connector.clone(),
        sync: sync.name.clone(),
        source: request.source_id.clone(),
    };
    let run_id = format!("run-{}", hex(&random_bytes::<8>()));
    let timeout_ms = match request.timeout_ms {
        0 => deadline::timeout_ms(grpc_deadline),
        ms => ms,
    };
    let mut info = SyncRunInfo {
        run_id: run_id.clone(),
        tenant: tenant.clone(),
        connector: request.connector.clone(),
        sync: sync.name.clone(),
        source_id: request.source_id.clone(),
        instance_id: instance.id.clone(),
        status: "starting".to_owned(),
        started_unix_ms: unix_ms(),
        ..SyncRunInfo::default()
    };
    // The slot first, then the checkpoint: a checkpoint set or reset by an
    // administrator is refused from here on, so the run starts from what
    // the store holds while it runs.
    let handles = state
        .syncs
        .runs
        .reserve(key.clone(), instance.clone(), info.clone())
        .map_err(refused)?;
    let lookup = key.clone();
    let stored = match blocking(&state.syncs.store, move |s| s.checkpoint(&lookup)).await {
        Ok(stored) => stored,
        Err(status) => {
            state.syncs.runs.finish(&run_id);
            return Err(status);
        }
    };
    let (mode, resume, checkpoint) = plan_start(&sync, requested, stored.as_ref(), request.fresh);
    info.mode = mode.to_string();
    info.resume = resume;
    state.syncs.runs.update(&run_id, |i| *i = info.clone());
    tracing::info!(
        run_id,
        connector = key.connector,
        sync = key.sync,
        source = key.source,
        instance = instance.id,
        %mode,
        resume,
        "starting a sync run"
    );
    let plan = RunPlan {
        key,
        instance,
        start: StartSync {
            run_id,
            sync: sync.name.clone(),
            mode: mode.to_string(),
            source_id: request.source_id,
            checkpoint_json: checkpoint.unwrap_or_default(),
            resume,
            timeout_ms,
        },
        info,
        sweeps: !sync.sweep_modes.is_empty(),
    };
    let (tx, rx) = mpsc::channel(CALLER_ITEMS);
    tokio::spawn(run::drive(Arc::clone(state), plan, handles, tx));
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// A run as the store keeps it, as listings show it.
fn info_of(record: RunRecord) -> SyncRunInfo {
    SyncRunInfo {
        run_id: record.run_id,
        tenant: record.key.tenant,
        connector: record.key.connector,
        sync: record.key.sync,
        source_id: record.key.source,
        mode: record.mode,
        resume: record.resume,
        instance_id: record.instance_id,
        status: record.status,
        error: record.error_code.map(|code| spoke_proto::v1::Error {
            code,
            message: record.error_message.unwrap_or_default(),
            details_json: String::new(),
        }),
        counters: Some(counters_from_json(&record.counters_json)),
        failures_json: record.failures_json,
        swept: record.swept,
        started_unix_ms: record.started_unix_ms,
        ended_unix_ms: record.ended_unix_ms.unwrap_or(0),
    }
}

/// `Hub.ListSyncs`: the runs going on, then the most recent ended ones.
pub(crate) async fn list_syncs(
    state: &Arc<HubState>,
    request: Request<ListSyncsRequest>,
) -> Result<Response<ListSyncsResponse>, Status> {
    let caller = state.access.caller(request.metadata())?;
    let request = request.into_inner();
    let wanted = request.connector.clone();
    if !wanted.is_empty() {
        caller.check_connector(&wanted)?;
    }
    let visible = |tenant: &str, connector: &str| {
        caller.may_act_on(tenant)
            && caller.check_connector(connector).is_ok()
            && (wanted.is_empty() || wanted == connector)
    };
    let mut runs = state.syncs.runs.running(visible);
    let recent = match usize::try_from(request.recent).unwrap_or(MAX_RECENT) {
        0 => DEFAULT_RECENT,
        n => n.min(MAX_RECENT),
    };
    let tenant = caller.tenant_scope();
    let connector = (!wanted.is_empty()).then(|| wanted.clone());
    // Asked for more than shown, in case some are out of the token's scope.
    let ended = blocking(&state.syncs.store, move |s| {
        s.recent_runs(tenant.as_deref(), connector.as_deref(), recent * 2)
    })
    .await?;
    runs.extend(
        ended
            .into_iter()
            .filter(|r| visible(&r.key.tenant, &r.key.connector))
            .take(recent)
            .map(info_of),
    );
    Ok(Response::new(ListSyncsResponse { runs }))
}

/// `Hub.CancelSync`.
pub(crate) async fn cancel_sync(
    state: &Arc<HubState>,
    request: Request<CancelSyncRequest>,
) -> Result<Response<CancelSyncResponse>, Status> {
    let caller = state.access.caller(request.metadata())?;
    let run_id = request.into_inner().run_id.trim().to_owned();
    if run_id.is_empty() {
        return Err(Status::invalid_argument(
            "CancelSyncRequest.run_id is empty: give the run's id (`spoke syncs` lists them)",
        ));
    }
    let cancelled = state.syncs.runs.cancel(&run_id, |tenant, connector| {
        caller.may_act_on(tenant) && check_write(&caller, connector).is_ok()
    });
    match cancelled {
        Some(run) => {
            tracing::info!(
                run_id,
                caller = caller.id(),
                "sync run cancelled by a client"
            );
            Ok(Response::new(CancelSyncResponse {
                message: format!(
                    "cancelling run {run_id} (sync `{}` of connector `{}` on instance {}); it ends within the connector's cancel grace",
                    run.sync, run.connector, run.instance_id
                ),
                run: Some(run),
            }))
        }
        None => Err(Status::not_found(format!(
            "no sync run `{run_id}` is running (that you may cancel); `spoke syncs` lists the runs"
        ))),
    }
}

/// The admin caller of a checkpoint call, and the key it names.
fn checkpoint_key(
    state: &HubState,
    metadata: &tonic::metadata::MetadataMap,
    target: Option<&CheckpointRef>,
    what: &str,
) -> Result<(Caller, SyncKey), Status> {
    let caller = state.access.caller(metadata)?;
    if !caller.is_admin() {
        return Err(Status::permission_denied(format!(
            "Admin.{what} needs an admin token (spoke client-token create --admin); this one is not"
        )));
    }
    let target = target.ok_or_else(|| Status::invalid_argument("the checkpoint is not named"))?;
    for (field, value) in [("connector", &target.connector), ("sync", &target.sync)] {
        if value.is_empty() {
            return Err(Status::invalid_argument(format!(
                "CheckpointRef.{field} is empty"
            )));
        }
    }
    let tenant = if target.tenant.is_empty() {
        caller.tenant().to_owned()
    } else {
        tenant_name(&target.tenant).to_owned()
    };
    let key = SyncKey {
        tenant,
        connector: target.connector.clone(),
        sync: target.sync.clone(),
        source: target.source_id.clone(),
    };
    if !caller.may_act_on(&key.tenant) || caller.check_connector(&key.connector).is_err() {
        return Err(no_checkpoint(&key));
    }
    Ok((caller, key))
}

/// ``sync `S` of connector `C` (source `X`)``, for messages.
fn sync_phrase(key: &SyncKey) -> String {
    let source = if key.source.is_empty() {
        String::new()
    } else {
        format!(" (source `{}`)", key.source)
    };
    format!(
        "sync `{}` of connector `{}`{source}",
        key.sync, key.connector
    )
}

fn no_checkpoint(key: &SyncKey) -> Status {
    Status::not_found(format!("no checkpoint is stored for {}", sync_phrase(key)))
}

fn checkpoint_info(key: &SyncKey, record: CheckpointRecord) -> CheckpointInfo {
    CheckpointInfo {
        checkpoint: Some(CheckpointRef {
            connector: key.connector.clone(),
            sync: key.sync.clone(),
            source_id: key.source.clone(),
            tenant: key.tenant.clone(),
        }),
        checkpoint_json: record.checkpoint.unwrap_or_default(),
        completed_json: record.completed.unwrap_or_default(),
        last_run_id: record.last_run_id.unwrap_or_default(),
        last_mode: record.last_mode.unwrap_or_default(),
        last_status: record.last_status.unwrap_or_default(),
        updated_unix_ms: record.updated_unix_ms,
    }
}

/// `FAILED_PRECONDITION` while a run of `key` goes on.
fn check_idle(state: &HubState, key: &SyncKey, what: &str) -> Result<(), Status> {
    match state.syncs.runs.is_running(key) {
        Some(run_id) => Err(Status::failed_precondition(format!(
            "cannot {what} the checkpoint of sync `{}` while run {run_id} uses it; cancel the run first (spoke sync --cancel {run_id})",
            key.sync
        ))),
        None => Ok(()),
    }
}

/// `Admin.GetCheckpoint`.
pub(crate) async fn get_checkpoint(
    state: &Arc<HubState>,
    request: Request<CheckpointRef>,
) -> Result<Response<CheckpointInfo>, Status> {
    let (_, key) = checkpoint_key(
        state,
        request.metadata(),
        Some(request.get_ref()),
        "GetCheckpoint",
    )?;
    let lookup = key.clone();
    match blocking(&state.syncs.store, move |s| s.checkpoint(&lookup)).await? {
        Some(record) => Ok(Response::new(checkpoint_info(&key, record))),
        None => Err(no_checkpoint(&key)),
    }
}

/// `Admin.SetCheckpoint`: the value is checked against the checkpoint
/// schema of the sync in the connector's manifest, and stored with the
/// sync's checkpoint version, as where both a resumed and a fresh run start.
pub(crate) async fn set_checkpoint(
    state: &Arc<HubState>,
    request: Request<SetCheckpointRequest>,
) -> Result<Response<CheckpointInfo>, Status> {
    let (caller, key) = checkpoint_key(
        state,
        request.metadata(),
        request.get_ref().checkpoint.as_ref(),
        "SetCheckpoint",
    )?;
    let value_json = request.into_inner().value_json;
    let sync = {
        let tables = state.lock();
        let Some(ty) = tables.registry.connector(&key.tenant, &key.connector) else {
            return Err(Status::failed_precondition(format!(
                "connector `{}` has not attached to this hub since it started: its manifest (with the checkpoint's schema) is needed to check the value",
                key.connector
            )));
        };
        find_sync(&ty.manifest.syncs, &key.connector, &key.sync)?.clone()
    };
    let value: serde_json::Value = serde_json::from_str(&value_json)
        .map_err(|e| Status::invalid_argument(format!("the checkpoint value is not JSON: {e}")))?;
    check_against_schema(&sync, &value)?;
    check_idle(state, &key, "replace")?;
    let stored = serde_json::to_string(&spoke_runtime::sync::StoredCheckpoint::new(
        sync.checkpoint_version,
        value,
    ))
    .map_err(|e| Status::internal(format!("cannot encode the checkpoint: {e}")))?;
    let target = key.clone();
    let record = blocking(&state.syncs.store, move |s| {
        s.set_checkpoint(&target, &stored)
    })
    .await?;
    tracing::info!(
        "admin: checkpoint of {key} replaced (by client token {})",
        caller.id()
    );
    Ok(Response::new(checkpoint_info(&key, record)))
}

/// `INVALID_ARGUMENT` listing where `value` breaks the sync's checkpoint schema.
fn check_against_schema(sync: &SyncManifest, value: &serde_json::Value) -> Result<(), Status> {
    let validator = jsonschema::validator_for(&sync.checkpoint_schema).map_err(|e| {
        Status::failed_precondition(format!(
            "the checkpoint schema of sync `{}` in the manifest is not a usable JSON Schema: {e}",
            sync.name
        ))
    })?;
    let problems: Vec<String> = validator
        .iter_errors(value)
        .take(10)
        .map(|e| {
            let path = e.instance_path().to_string();
            format!("at `{}`: {e}", if path.is_empty() { "/" } else { &path })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "the value is not a checkpoint of sync `{}`: {}",
            sync.name,
            problems.join("; ")
        )))
    }
}

/// `Admin.ResetCheckpoint`.
pub(crate) async fn reset_checkpoint(
    state: &Arc<HubState>,
    request: Request<CheckpointRef>,
) -> Result<Response<AdminResponse>, Status> {
    let (caller, key) = checkpoint_key(
        state,
        request.metadata(),
        Some(request.get_ref()),
        "ResetCheckpoint",
    )?;
    check_idle(state, &key, "reset")?;
    let target = key.clone();
    let forgot = blocking(&state.syncs.store, move |s| s.reset_checkpoint(&target)).await?;
    if !forgot {
        return Err(no_checkpoint(&key));
    }
    tracing::info!(
        "admin: checkpoint of {key} reset (by client token {})",
        caller.id()
    );
    Ok(Response::new(AdminResponse {
        message: format!(
            "forgot the checkpoint of {}: its next run starts from nothing",
            sync_phrase(&key)
        ),
        instance: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(modes: &[SyncMode]) -> SyncManifest {
        serde_json::from_value(serde_json::json!({
            "name": "files",
            "description": "",
            "modes": modes,
            "checkpoint_schema": {"type": "object", "properties": {"page": {"type": "integer"}}, "required": ["page"]},
            "checkpoint_version": 1,
            "error_budget": 0.0
        }))
        .unwrap()
    }

    fn record(
        checkpoint: Option<&str>,
        completed: Option<&str>,
        mode: &str,
        status: &str,
    ) -> CheckpointRecord {
        CheckpointRecord {
            checkpoint: checkpoint.map(str::to_owned),
            completed: completed.map(str::to_owned),
            last_run_id: Some("run-1".into()),
            last_mode: Some(mode.into()),
            last_status: Some(status.into()),
            updated_unix_ms: 0,
        }
    }

    #[test]
    fn a_first_run_is_a_full_run_from_nothing() {
        let s = sync(&[SyncMode::Full, SyncMode::Incremental]);
        assert_eq!(
            plan_start(&s, None, None, false),
            (SyncMode::Full, false, None)
        );
    }

    #[test]
    fn after_a_completed_run_the_next_is_incremental_from_its_checkpoint() {
        let s = sync(&[SyncMode::Full, SyncMode::Incremental]);
        let r = record(Some("A"), Some("A"), "full", "completed");
        assert_eq!(
            plan_start(&s, None, Some(&r), false),
            (SyncMode::Incremental, false, Some("A".into()))
        );
        // A sync without incremental runs full again.
        let full_only = sync(&[SyncMode::Full]);
        assert_eq!(
            plan_start(&full_only, None, Some(&r), false),
            (SyncMode::Full, false, Some("A".into()))
        );
    }

    #[test]
    fn an_interrupted_run_is_resumed_in_its_mode_unless_fresh_or_another_mode() {
        let s = sync(&[SyncMode::Full, SyncMode::Incremental]);
        let r = record(Some("B"), Some("A"), "full", "failed");
        assert_eq!(
            plan_start(&s, None, Some(&r), false),
            (SyncMode::Full, true, Some("B".into()))
        );
        assert_eq!(
            plan_start(&s, Some(SyncMode::Full), Some(&r), false),
            (SyncMode::Full, true, Some("B".into()))
        );
        assert_eq!(
            plan_start(&s, Some(SyncMode::Incremental), Some(&r), false),
            (SyncMode::Incremental, false, Some("A".into()))
        );
        assert_eq!(
            plan_start(&s, None, Some(&r), true),
            (SyncMode::Incremental, false, Some("A".into()))
        );
        // A run that failed before storing anything is not resumed.
        let nothing = record(Some("A"), Some("A"), "full", "failed");
        assert_eq!(
            plan_start(&s, None, Some(&nothing), false),
            (SyncMode::Incremental, false, Some("A".into()))
        );
    }

    #[test]
    fn syncs_are_found_by_name_or_alone() {
        let one = [sync(&[SyncMode::Full])];
        assert_eq!(find_sync(&one, "files", "").unwrap().name, "files");
        let missing = find_sync(&one, "files", "filez").unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        assert!(
            missing.message().contains("did you mean `files`"),
            "{}",
            missing.message()
        );
        assert_eq!(
            find_sync(&[], "files", "").unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
        let bad_mode = requested_mode(&one[0], "realtime").unwrap_err();
        assert!(
            bad_mode.message().contains("its modes: full"),
            "{}",
            bad_mode.message()
        );
    }

    #[test]
    fn a_checkpoint_value_is_checked_against_the_schema() {
        let s = sync(&[SyncMode::Full]);
        assert!(check_against_schema(&s, &serde_json::json!({"page": 3})).is_ok());
        let wrong = check_against_schema(&s, &serde_json::json!({"page": "three"})).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
        assert!(wrong.message().contains("/page"), "{}", wrong.message());
    }
}
