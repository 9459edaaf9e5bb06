//! [`Runs`]: the sync runs the manager started, one per (source, slot
//! class): `scheduled` (full and incremental) or `realtime`, as Omni
//! counts them. A run holds its slot from `POST /sync` until its task
//! ends, which a cancel brings about within the instance's cancel grace
//! even when the sync ignores it; `GET /sync/{id}` says whether it holds one.
//!
//! When a run ends, the manager is told: `complete` (a completed run that
//! is not realtime, after storing a checkpoint if the run stored none, so
//! that completing never wipes the source's checkpoint), `fail` with the
//! error (a failed or panicked run), nothing when it was cancelled (the
//! manager cancelled it) or is realtime. While a run is alive it heartbeats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::manager::ManagerClient;
use super::sink::OmniSink;
use crate::backoff::Backoff;
use crate::instance::Instance;
use crate::sync::{StoredCheckpoint, SyncMode, SyncRun, SyncStatus};

/// How long the end of a run is reported before giving up.
const REPORT_FOR: Duration = Duration::from_secs(600);

/// Which slot a run holds on its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotClass {
    /// Full and incremental runs.
    Scheduled,
    /// Realtime runs.
    Realtime,
}

impl SlotClass {
    /// The class of a mode.
    pub fn of(mode: SyncMode) -> SlotClass {
        match mode {
            SyncMode::Realtime => SlotClass::Realtime,
            _ => SlotClass::Scheduled,
        }
    }

    /// `scheduled` or `realtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotClass::Scheduled => "scheduled",
            SlotClass::Realtime => "realtime",
        }
    }
}

#[derive(Debug)]
struct Held {
    run_id: String,
    /// The instance running it, once it started.
    instance: Option<Instance>,
}

/// The slots of every source.
#[derive(Debug, Default)]
pub struct Runs {
    slots: Mutex<HashMap<(String, SlotClass), Held>>,
}

/// Why a slot could not be reserved.
#[derive(Debug, PartialEq, Eq)]
pub enum Reserve {
    /// Reserved: the caller must start the run or [`Runs::release`] it.
    Reserved,
    /// This very run holds it already (the manager sent `/sync` again).
    Same,
    /// Another run holds it.
    Busy,
}

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, SlotClass), Held>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the slot of `source` in `class` for `run_id`.
    pub fn reserve(&self, source: &str, class: SlotClass, run_id: &str) -> Reserve {
        let mut slots = self.lock();
        match slots.get(&(source.to_owned(), class)) {
            Some(held) if held.run_id == run_id => Reserve::Same,
            Some(_) => Reserve::Busy,
            None => {
                slots.insert(
                    (source.to_owned(), class),
                    Held {
                        run_id: run_id.to_owned(),
                        instance: None,
                    },
                );
                Reserve::Reserved
            }
        }
    }

    /// Frees the slot `run_id` holds, if it still does.
    pub fn release(&self, source: &str, class: SlotClass, run_id: &str) {
        let mut slots = self.lock();
        let key = (source.to_owned(), class);
        if slots.get(&key).is_some_and(|h| h.run_id == run_id) {
            slots.remove(&key);
        }
    }

    /// Whether run `run_id` holds a slot.
    pub fn is_running(&self, run_id: &str) -> bool {
        self.lock().values().any(|h| h.run_id == run_id)
    }

    /// Cancels run `run_id`; whether it holds a slot. A run still starting
    /// (fetching its source) is cancelled as soon as it starts.
    pub fn cancel(&self, run_id: &str) -> bool {
        let slots = self.lock();
        let Some(held) = slots.values().find(|h| h.run_id == run_id) else {
            return false;
        };
        if let Some(instance) = &held.instance {
            instance.cancel_sync(run_id);
        }
        true
    }

    /// How many slots are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no slot is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the instance running `run_id`; `false` when the slot was
    /// given up meanwhile (cancelled while starting).
    fn started(&self, source: &str, class: SlotClass, run_id: &str, instance: &Instance) -> bool {
        let mut slots = self.lock();
        match slots.get_mut(&(source.to_owned(), class)) {
            Some(held) if held.run_id == run_id => {
                held.instance = Some(instance.clone());
                true
            }
            _ => false,
        }
    }
}

/// A started run, handed to [`supervise`].
pub struct Started {
    /// The run.
    pub run: SyncRun,
    /// Its instance.
    pub instance: Instance,
    /// Its sink.
    pub sink: Arc<OmniSink>,
    /// The checkpoint it started from, stored before `complete` if it
    /// stores none.
    pub start_checkpoint: Option<StoredCheckpoint>,
}

/// Watches a run to its end: heartbeats while it runs, tells the manager
/// how it ended, then frees its slot.
pub async fn supervise(
    runs: Arc<Runs>,
    client: ManagerClient,
    started: Started,
    heartbeat_every: Duration,
) {
    let info = started.run.info().clone();
    let class = SlotClass::of(info.mode);
    if !runs.started(&info.source_id, class, &info.run_id, &started.instance) {
        started.run.cancel();
    }
    let heartbeat = {
        let client = client.clone();
        let path = format!("/sdk/sync/{}/heartbeat", info.run_id);
        async move {
            let mut tick = tokio::time::interval(heartbeat_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = client.call_once(Method::POST, &path, None).await {
                    tracing::debug!(target: "spoke::http", "heartbeat: {e}");
                }
            }
        }
    };
    let outcome = tokio::select! {
        outcome = started.run.outcome() => outcome,
        () = heartbeat => unreachable!("the heartbeat loop never ends"),
    };
    let reporting = client.with_backoff(
        Backoff::builder()
            .initial(Duration::from_millis(200))
            .max(Duration::from_secs(10))
            .max_elapsed(REPORT_FOR)
            .build()
            .expect("a valid backoff"),
    );
    let run_id = &info.run_id;
    let report = match outcome.status {
        SyncStatus::Completed if info.mode == SyncMode::Realtime => None,
        SyncStatus::Completed => {
            if !started.sink.saved_checkpoint().await
                && let Some(checkpoint) = &started.start_checkpoint
            {
                // Completing copies the run's checkpoint over the source's,
                // even when the run stored none: store the one it started from.
                let path = format!("/sdk/sync/{run_id}/checkpoint");
                if let Err(e) = reporting
                    .call(Method::PUT, &path, Some(&json!(checkpoint)))
                    .await
                {
                    tracing::warn!(target: "spoke::http", %run_id, "storing the checkpoint before complete: {e}");
                }
            }
            Some((format!("/sdk/sync/{run_id}/complete"), None))
        }
        SyncStatus::Failed => {
            let error = outcome
                .error
                .as_ref()
                .map_or_else(|| "failed".to_owned(), ToString::to_string);
            Some((
                format!("/sdk/sync/{run_id}/fail"),
                Some(json!({ "error": error })),
            ))
        }
        SyncStatus::Cancelled => None,
    };
    if let Some((path, body)) = report
        && let Err(e) = reporting.call(Method::POST, &path, body.as_ref()).await
    {
        tracing::warn!(target: "spoke::http", %run_id, "reporting the end of the run: {e}");
    }
    runs.release(&info.source_id, class, run_id);
}
