//! Starting, supervising and cancelling runs: [`Instance::start_sync`],
//! one run per (sync, source) at a time, panics isolated, a cancelled run
//! dropped after the cancel grace, and how a run ends ([`SyncOutcome`]).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::StoredCheckpoint;
use super::context::SyncStart;
use super::document::SyncEvent;
use super::mode::{FlushPolicy, SyncMode};
use super::run::{ItemFailure, RunCore};
use super::sink::{SyncCounters, SyncRunInfo, SyncSink};
use crate::connector::SyncDef;
use crate::error::{ActionError, ErrorCode};
use crate::instance::{Instance, panic_message};
use crate::registry::ConnectorType;
use crate::suggest;

/// What a host asks for when it starts a run.
///
/// ```
/// use spoke::sync::{SyncMode, SyncRequest};
/// let request = SyncRequest::new("files").mode(SyncMode::Full).source("docs");
/// assert_eq!(request.sync.as_deref(), Some("files"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The sync; `None` for the connector's only one.
    pub sync: Option<String>,
    /// The run's id; `None` to make one up.
    pub run_id: Option<String>,
    /// The source it syncs (`""` by default).
    pub source_id: String,
    /// The mode; `None`: incremental when there is a checkpoint and the
    /// sync has that mode, else the sync's first mode.
    pub mode: Option<SyncMode>,
    /// Where the last run got to.
    pub checkpoint: Option<StoredCheckpoint>,
    /// Whether it resumes an interrupted run from that run's checkpoint.
    pub is_resume: bool,
    /// When it must be done by.
    pub deadline: Option<Instant>,
}

impl SyncRequest {
    /// A request for the sync named `sync`.
    pub fn new(sync: impl Into<String>) -> Self {
        SyncRequest {
            sync: Some(sync.into()),
            ..SyncRequest::default()
        }
    }

    /// For this source.
    pub fn source(mut self, source_id: impl Into<String>) -> Self {
        self.source_id = source_id.into();
        self
    }

    /// In this mode.
    pub fn mode(mut self, mode: SyncMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// From this checkpoint.
    pub fn checkpoint(mut self, checkpoint: StoredCheckpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// Resuming an interrupted run.
    pub fn resume(mut self) -> Self {
        self.is_resume = true;
        self
    }

    /// With this run id.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Where this run starts, from what the last runs of its sync and
    /// source left (what `<bin> sync` and syncs over NATS both do): a run
    /// that did not end (`interrupted`, its mode) and stored a checkpoint
    /// (`latest`) is resumed in its mode from that checkpoint, unless
    /// `mode` asks for another; any other run starts in `mode` from the
    /// checkpoint of the last completed run (`completed`), not from a walk
    /// left half-way.
    ///
    /// ```
    /// use serde_json::json;
    /// use spoke::sync::{StoredCheckpoint, SyncMode, SyncRequest};
    /// let (latest, done) = (StoredCheckpoint::new(1, json!(30)), StoredCheckpoint::new(1, json!(0)));
    /// let r = SyncRequest::new("ledger").after(None, Some(SyncMode::Full), Some(latest.clone()), Some(done.clone()));
    /// assert!(r.is_resume);
    /// assert_eq!((r.mode, r.checkpoint), (Some(SyncMode::Full), Some(latest.clone())));
    /// let r = SyncRequest::new("ledger").after(Some(SyncMode::Incremental), Some(SyncMode::Full), Some(latest), Some(done.clone()));
    /// assert!(!r.is_resume);
    /// assert_eq!(r.checkpoint, Some(done));
    /// ```
    pub fn after(
        mut self,
        mode: Option<SyncMode>,
        interrupted: Option<SyncMode>,
        latest: Option<StoredCheckpoint>,
        completed: Option<StoredCheckpoint>,
    ) -> Self {
        let interrupted = interrupted.filter(|_| latest.is_some());
        self.mode = mode.or(interrupted);
        self.is_resume = interrupted.is_some() && interrupted == self.mode;
        self.checkpoint = if self.is_resume { latest } else { completed };
        self
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// It returned `Ok`, its events were delivered, its failed items fit
    /// its error budget.
    Completed,
    /// It returned an error, panicked, passed its deadline, its sink
    /// refused for good, or too many items failed.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl SyncStatus {
    /// `"completed"`, `"failed"` or `"cancelled"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Completed => "completed",
            SyncStatus::Failed => "failed",
            SyncStatus::Cancelled => "cancelled",
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncOutcome {
    /// Which run.
    pub run: SyncRunInfo,
    /// How it ended.
    pub status: SyncStatus,
    /// Why, when it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ActionError>,
    /// Its counters at the end.
    pub counters: SyncCounters,
    /// The items it could not sync (at most 1,000 listed; all counted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<ItemFailure>,
    /// How many documents the end-of-run sweep found deleted.
    pub swept: u64,
    /// How long it ran, in milliseconds.
    pub elapsed_ms: u64,
}

/// A started run: its id, its counters while it runs, a way to cancel
/// it, and its outcome.
#[derive(Debug)]
pub struct SyncRun {
    core: Arc<RunCore>,
    task: JoinHandle<SyncOutcome>,
}

impl SyncRun {
    /// Which run.
    pub fn info(&self) -> &SyncRunInfo {
        &self.core.info
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.core.info.run_id
    }

    /// Its counters so far.
    pub fn counters(&self) -> SyncCounters {
        self.core.counters()
    }

    /// Cancels it: the sync sees its token cancelled and has the cancel
    /// grace to return; then it is dropped and its slot is free.
    pub fn cancel(&self) {
        self.core.cancel.cancel();
    }

    /// A token that cancels the run.
    pub fn cancellation(&self) -> CancellationToken {
        self.core.cancel.clone()
    }

    /// A handle that reads the run's counters while it runs (from another
    /// task, say a progress line), after [`SyncRun::outcome`] took the run.
    pub fn progress(&self) -> SyncProgress {
        SyncProgress {
            core: Arc::clone(&self.core),
        }
    }

    /// Waits for the run to end.
    pub async fn outcome(self) -> SyncOutcome {
        let info = self.core.info.clone();
        self.task.await.unwrap_or_else(|e| SyncOutcome {
            run: info,
            status: SyncStatus::Failed,
            error: Some(ActionError::internal(format!("the run's task ended: {e}"))),
            counters: self.core.counters(),
            failures: self.core.failures(),
            swept: 0,
            elapsed_ms: 0,
        })
    }
}

/// Reads a run's counters; see [`SyncRun::progress`].
#[derive(Debug, Clone)]
pub struct SyncProgress {
    core: Arc<RunCore>,
}

impl SyncProgress {
    /// The run's counters now.
    pub fn counters(&self) -> SyncCounters {
        self.core.counters()
    }
}

/// A run holding a (sync, source) slot.
#[derive(Debug, Clone)]
pub struct RunningSync {
    /// Which run.
    pub info: SyncRunInfo,
    /// Since when.
    pub started: Instant,
    cancel: CancellationToken,
}

/// A run's slot: its sync, its source, and whether it is realtime (a
/// realtime watch runs beside the full and incremental runs of its source).
type SlotKey = (String, String, bool);

/// The runs of one instance, one per (sync, source), and one realtime.
#[derive(Debug, Default)]
pub(crate) struct SyncSlots {
    running: Mutex<HashMap<SlotKey, RunningSync>>,
}

impl SyncSlots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SlotKey, RunningSync>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn running(&self) -> Vec<RunningSync> {
        let mut runs: Vec<_> = self.lock().values().cloned().collect();
        runs.sort_by_key(|r| r.started);
        runs
    }

    pub(crate) fn cancel(&self, run_id: &str) -> bool {
        match self.lock().values().find(|r| r.info.run_id == run_id) {
            Some(run) => {
                run.cancel.cancel();
                true
            }
            None => false,
        }
    }

    pub(crate) fn cancel_all(&self) {
        for run in self.lock().values() {
            run.cancel.cancel();
        }
    }
}

/// Frees a slot when its run's task ends, however it ends.
struct Slot {
    slots: Arc<SyncSlots>,
    key: SlotKey,
    run_id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.slots.lock();
        if running
            .get(&self.key)
            .is_some_and(|r| r.info.run_id == self.run_id)
        {
            running.remove(&self.key);
        }
    }
}

/// A fresh run id: `run-` and 16 hex digits.
fn new_run_id() -> String {
    format!("run-{:016x}", fastrand::u64(..))
}

/// The sync `name`d, or the connector's only one; `not_found` naming the
/// syncs there are, or `invalid_input` when several could be meant.
pub(crate) fn find_def(
    ty: &ConnectorType,
    name: Option<&str>,
) -> Result<&'static SyncDef, ActionError> {
    let names: Vec<&'static str> = ty.syncs().iter().map(|s| s.name).collect();
    let connector = ty.name();
    match name {
        Some(name) => ty.sync(name).ok_or_else(|| {
            ActionError::not_found(format!(
                "connector `{connector}` has no sync `{name}`{}; its syncs: {}",
                suggest::hint(name, names.iter().copied()),
                suggest::list(&names)
            ))
            .with_details(json!({ "syncs": names }))
        }),
        None => match ty.syncs() {
            [only] => Ok(only),
            [] => Err(ActionError::not_found(format!(
                "connector `{connector}` has no syncs"
            ))),
            _ => Err(ActionError::invalid_input(format!(
                "connector `{connector}` has several syncs; name one: {}",
                names.join(", ")
            ))
            .with_details(json!({ "syncs": names }))),
        },
    }
}

/// The mode of a run: the one asked for, if the sync has it.
fn choose_mode(def: &SyncDef, request: &SyncRequest) -> Result<SyncMode, ActionError> {
    let modes: Vec<&str> = def.modes.iter().map(|m| m.as_str()).collect();
    match request.mode {
        Some(mode) if def.modes.contains(&mode) => Ok(mode),
        Some(mode) => Err(ActionError::invalid_input(format!(
            "sync `{}` has no {mode} mode; its modes: {}",
            def.name,
            modes.join(", ")
        ))
        .with_details(json!({ "modes": modes }))),
        None if request.checkpoint.is_some() && def.modes.contains(&SyncMode::Incremental) => {
            Ok(SyncMode::Incremental)
        }
        None => Ok(def.modes.first().copied().unwrap_or(SyncMode::Full)),
    }
}

impl Instance {
    /// Starts a run of one of the connector's syncs, sending its events and
    /// checkpoints to `sink`, and returns at once (call from within a Tokio
    /// runtime). Refused, before anything runs, when the sync or mode is
    /// unknown (`not_found`, `invalid_input`), when a run of the same sync
    /// and source is still running (`failed_precondition`, naming it), or
    /// when the stored checkpoint does not decode (`failed_precondition`,
    /// naming the field).
    ///
    /// The run ends [`Completed`](SyncStatus::Completed) when the sync
    /// returns `Ok`, every event is delivered and its failed items fit the
    /// error budget (then a full run that sweeps emits the deletions it
    /// found); [`Cancelled`](SyncStatus::Cancelled) when cancelled (its
    /// buffered events are dropped: its last checkpoint does not cover
    /// them, so the next run emits them again); otherwise
    /// [`Failed`](SyncStatus::Failed). Its slot is free when its task ends:
    /// at most the cancel grace after a cancel, even if the sync ignores it.
    pub fn start_sync(
        &self,
        request: SyncRequest,
        sink: Arc<dyn SyncSink>,
    ) -> Result<SyncRun, ActionError> {
        let def = find_def(self.connector_type(), request.sync.as_deref())?;
        let mode = choose_mode(def, &request)?;
        let policy =
            FlushPolicy::from_env(mode).map_err(|e| ActionError::invalid_input(e.to_string()))?;
        let info = SyncRunInfo {
            connector: self.connector_type().name().to_owned(),
            sync: def.name.to_owned(),
            run_id: request.run_id.clone().unwrap_or_else(new_run_id),
            source_id: request.source_id.clone(),
            mode,
            is_resume: request.is_resume,
        };
        let slots = Arc::clone(self.sync_slots());
        let key = (
            info.sync.clone(),
            info.source_id.clone(),
            mode == SyncMode::Realtime,
        );
        let cancel = CancellationToken::new();
        {
            let mut running = slots.lock();
            if let Some(run) = running.get(&key) {
                return Err(ActionError::failed_precondition(format!(
                    "sync `{}` of source `{}` is already running as run {} (for {:.0?}); cancel it or wait for it to end",
                    def.name,
                    info.source_id,
                    run.info.run_id,
                    run.started.elapsed()
                ))
                .with_details(json!({ "running_run_id": run.info.run_id })));
            }
            running.insert(
                key.clone(),
                RunningSync {
                    info: info.clone(),
                    started: Instant::now(),
                    cancel: cancel.clone(),
                },
            );
        }
        let slot = Slot {
            slots,
            key,
            run_id: info.run_id.clone(),
        };
        let core = Arc::new(RunCore::new(
            info,
            def,
            sink,
            policy,
            cancel,
            request.deadline,
        ));
        let start = SyncStart {
            core: Arc::clone(&core),
            checkpoint: request.checkpoint,
        };
        let connector = self.connector_handle().clone();
        let future =
            match std::panic::catch_unwind(AssertUnwindSafe(|| (def.start)(connector, start))) {
                Ok(Ok(future)) => future,
                Ok(Err(e)) => return Err(e.into()),
                Err(payload) => return Err(ActionError::panicked(panic_message(&*payload))),
            };
        let grace = self.cancel_grace();
        let task_core = Arc::clone(&core);
        let task = tokio::spawn(async move {
            let _slot = slot;
            supervise(task_core, future, grace).await
        });
        tracing::info!(target: "spoke::sync", sync = def.name, run_id = %core.info.run_id, source = %core.info.source_id, mode = %mode, resume = core.info.is_resume, "sync run started");
        Ok(SyncRun { core, task })
    }

    /// Cancels the running run with this id; whether there was one.
    pub fn cancel_sync(&self, run_id: &str) -> bool {
        self.sync_slots().cancel(run_id)
    }

    /// Cancels every running run (at shutdown).
    pub fn cancel_all_syncs(&self) {
        self.sync_slots().cancel_all();
    }

    /// The runs running now, oldest first.
    pub fn running_syncs(&self) -> Vec<RunningSync> {
        self.sync_slots().running()
    }
}

/// Runs the sync to its end and says how it ended.
async fn supervise(
    core: Arc<RunCore>,
    future: crate::connector::SyncFuture,
    grace: Duration,
) -> SyncOutcome {
    let started = Instant::now();
    let done = CancellationToken::new();
    let age_core = Arc::clone(&core);
    let age_done = done.clone();
    let ager = tokio::spawn(async move { age_core.flush_by_age(age_done).await });
    let _stop_ager = done.clone().drop_guard();

    let mut future = AssertUnwindSafe(future).catch_unwind();
    let settle = |r: std::thread::Result<Result<(), ActionError>>| {
        r.unwrap_or_else(|p| Err(ActionError::panicked(panic_message(&*p))))
    };
    let deadline = crate::context::sleep_until(core.deadline);
    let returned = tokio::select! {
        biased;
        result = &mut future => settle(result),
        () = deadline => {
            core.cancel.cancel();
            let _ = tokio::time::timeout(grace, &mut future).await;
            Err(ActionError::deadline_exceeded(format!("sync `{}` did not finish before its deadline", core.info.sync)))
        }
        () = core.cancel.cancelled() => {
            if tokio::time::timeout(grace, &mut future).await.is_err() {
                tracing::warn!(target: "spoke::sync", sync = %core.info.sync, run_id = %core.info.run_id, ?grace, "sync did not return within its cancel grace; dropped");
            }
            Err(ActionError::cancelled(format!("run {} of sync `{}` was cancelled", core.info.run_id, core.info.sync)))
        }
    };
    drop(future);
    done.cancel();
    let _ = ager.await;

    let (status, error, swept) = match returned {
        Err(e)
            if e.code() == ErrorCode::Cancelled
                || core.cancel.is_cancelled() && e.code() != ErrorCode::DeadlineExceeded =>
        {
            (SyncStatus::Cancelled, Some(e), 0)
        }
        Err(e) => (SyncStatus::Failed, Some(e), 0),
        // It stopped early because it was asked to.
        Ok(()) if core.cancel.is_cancelled() => (
            SyncStatus::Cancelled,
            Some(ActionError::cancelled(format!(
                "run {} of sync `{}` was cancelled",
                core.info.run_id, core.info.sync
            ))),
            0,
        ),
        Ok(()) => match finish(&core).await {
            Ok(swept) => (SyncStatus::Completed, None, swept),
            Err(e) => {
                let status = if e.code() == ErrorCode::Cancelled {
                    SyncStatus::Cancelled
                } else {
                    SyncStatus::Failed
                };
                (status, Some(e), 0)
            }
        },
    };
    let outcome = SyncOutcome {
        run: core.info.clone(),
        status,
        error,
        counters: core.counters(),
        failures: core.failures(),
        swept,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    match &outcome.error {
        None => {
            tracing::info!(target: "spoke::sync", sync = %outcome.run.sync, run_id = %outcome.run.run_id, emitted = outcome.counters.emitted, failed = outcome.counters.failed, swept, "sync run completed")
        }
        Some(e) => {
            tracing::warn!(target: "spoke::sync", sync = %outcome.run.sync, run_id = %outcome.run.run_id, status = outcome.status.as_str(), "sync run ended: {e}")
        }
    }
    outcome
}

/// After the sync returned `Ok`: delivers what is buffered, checks the
/// error budget, sweeps, and waits until the sink has it all. The number of documents swept.
async fn finish(core: &RunCore) -> Result<u64, ActionError> {
    core.flush().await?;
    check_budget(core)?;
    let Some(gone) = core.unseen().await? else {
        core.settle().await?;
        return Ok(0);
    };
    for id in &gone {
        core.emit(SyncEvent::DocumentDeleted { id: id.clone() })
            .await?;
    }
    core.flush().await?;
    core.settle().await?;
    Ok(gone.len() as u64)
}

/// Fails the run when more items failed than its error budget allows:
/// failed / items, where items is the larger of the scanned count and the
/// documents emitted plus the failures.
fn check_budget(core: &RunCore) -> Result<(), ActionError> {
    let counters = core.counters();
    if counters.failed == 0 {
        return Ok(());
    }
    let items = counters.scanned.max(counters.emitted + counters.failed);
    let rate = counters.failed as f64 / items as f64;
    let budget = core.def.error_budget;
    if rate <= budget {
        return Ok(());
    }
    let failures = core.failures();
    let listed: Vec<String> = failures
        .iter()
        .take(3)
        .map(|f| format!("{}: {}", f.id, f.error))
        .collect();
    Err(ActionError::failed_precondition(format!(
        "{} of {items} items failed ({:.1}%), over the error budget of {:.1}% of sync `{}`: {}{}",
        counters.failed,
        rate * 100.0,
        budget * 100.0,
        core.info.sync,
        listed.join("; "),
        if counters.failed > 3 { "; ..." } else { "" }
    ))
    .with_details(json!({
        "failed": counters.failed,
        "items": items,
        "error_budget": budget,
        "failures": failures,
    })))
}
