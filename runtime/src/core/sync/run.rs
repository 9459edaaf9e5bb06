//! One run's shared state: its buffer of events and the flushes that
//! empty it, its checkpoints, counters, failed items and the ids it saw.
//! [`SyncContext`](super::SyncContext) is the author's view of it; the
//! supervisor in [`start`](super::start) ends it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::StoredCheckpoint;
use super::document::SyncEvent;
use super::mode::FlushPolicy;
use super::sink::{Batch, SinkError, SinkFuture, SyncCounters, SyncRunInfo, SyncSink};
use crate::backoff::Backoff;
use crate::connector::SyncDef;
use crate::error::ActionError;

/// The most events a buffer reserves room for up front.
const MAX_RESERVED: usize = 1_024;

/// How many failed items a run lists (all are counted).
pub const MAX_LISTED_FAILURES: usize = 1_000;

/// One item a run could not sync (`ctx.fail_item`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    /// The item's id.
    pub id: String,
    /// What went wrong.
    pub error: String,
}

/// The retry schedule of a sink call that failed with a retryable error.
pub(crate) fn sink_backoff() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_millis(100))
        .max(Duration::from_secs(5))
        .build()
        .expect("a valid backoff")
}

#[derive(Debug, Default)]
struct Pending {
    events: Vec<SyncEvent>,
    /// When the oldest of `events` was emitted.
    oldest: Option<Instant>,
}

/// A batch being delivered: put back in the buffer when dropped undelivered.
struct Unsent<'a> {
    core: &'a RunCore,
    batch: Option<Batch>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            self.core.requeue(batch.events);
        }
    }
}

/// A run's state, shared by its context(s), its age flusher and its
/// supervisor.
pub(crate) struct RunCore {
    pub(crate) info: SyncRunInfo,
    pub(crate) def: &'static SyncDef,
    sink: Arc<dyn SyncSink>,
    policy: FlushPolicy,
    pub(crate) cancel: CancellationToken,
    pub(crate) deadline: Option<Instant>,
    pending: Mutex<Pending>,
    /// One flush (or checkpoint) at a time, in order.
    flushing: tokio::sync::Mutex<()>,
    /// An event went into an empty buffer (wakes the age flusher).
    first_pending: Notify,
    counters: Mutex<SyncCounters>,
    failures: Mutex<Vec<ItemFailure>>,
    /// The document ids the run emitted or marked, when it sweeps.
    seen: Option<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for RunCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCore")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RunCore {
    pub(crate) fn new(
        info: SyncRunInfo,
        def: &'static SyncDef,
        sink: Arc<dyn SyncSink>,
        policy: FlushPolicy,
        cancel: CancellationToken,
        deadline: Option<Instant>,
    ) -> Self {
        let sweeps = def.sweep.contains(&info.mode) && !info.is_resume;
        RunCore {
            info,
            def,
            sink,
            policy,
            cancel,
            deadline,
            pending: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
            first_pending: Notify::new(),
            counters: Mutex::default(),
            failures: Mutex::default(),
            seen: sweeps.then(Mutex::default),
        }
    }

    pub(crate) fn counters(&self) -> SyncCounters {
        *lock(&self.counters)
    }

    pub(crate) fn failures(&self) -> Vec<ItemFailure> {
        lock(&self.failures).clone()
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut SyncCounters)) {
        f(&mut lock(&self.counters));
    }

    /// Buffers an event; flushes when the buffer is full (the emitter
    /// waits for it: backpressure).
    pub(crate) async fn emit(&self, event: SyncEvent) -> Result<(), ActionError> {
        if self.cancel.is_cancelled() {
            return Err(self.cancelled("while emitting"));
        }
        if let Some(id) = event.document_id() {
            if id.is_empty() {
                return Err(ActionError::invalid_input(format!(
                    "sync `{}` emitted a document with an empty id",
                    self.info.sync
                )));
            }
            if let Some(seen) = &self.seen {
                lock(seen).insert(id.to_owned());
            }
        }
        self.count(|c| {
            c.emitted += 1;
            c.deleted += u64::from(matches!(event, SyncEvent::DocumentDeleted { .. }));
        });
        let full = {
            let mut pending = lock(&self.pending);
            pending.events.push(event);
            if pending.oldest.is_none() {
                pending.oldest = Some(Instant::now());
                self.first_pending.notify_one();
            }
            pending.events.len() >= self.policy.max_events
        };
        if full { self.flush().await } else { Ok(()) }
    }

    /// Marks a document as still there without emitting it (a sweep does
    /// not delete it).
    pub(crate) fn mark_seen(&self, id: &str) {
        if let Some(seen) = &self.seen {
            lock(seen).insert(id.to_owned());
        }
    }

    /// Records an item the run could not sync. It counts as seen: a
    /// document the sink holds is not swept as deleted because it could
    /// not be read this time.
    pub(crate) fn fail_item(&self, id: String, error: String) {
        tracing::warn!(target: "spoke::sync", sync = %self.info.sync, run_id = %self.info.run_id, item = %id, "item failed: {error}");
        self.mark_seen(&id);
        self.count(|c| c.failed += 1);
        let mut failures = lock(&self.failures);
        if failures.len() < MAX_LISTED_FAILURES {
            failures.push(ItemFailure { id, error });
        }
    }

    /// Delivers every buffered event.
    pub(crate) async fn flush(&self) -> Result<(), ActionError> {
        let _turn = self.flushing.lock().await;
        self.flush_in_turn().await
    }

    async fn flush_in_turn(&self) -> Result<(), ActionError> {
        let events = {
            let mut pending = lock(&self.pending);
            pending.oldest = None;
            // Room for the next batch at once: a buffer grown by doubling
            // would copy its (large) events again and again.
            let room = Vec::with_capacity(self.policy.max_events.min(MAX_RESERVED));
            std::mem::replace(&mut pending.events, room)
        };
        if events.is_empty() {
            return Ok(());
        }
        // Until the sink took it, the batch goes back in front of the
        // buffer whatever ends this flush: an error, or this future being
        // dropped (a caller's timeout or `select!`, the run ending while
        // the age flusher waits on the sink).
        let mut unsent = Unsent {
            core: self,
            batch: Some(Batch {
                events,
                counters: self.counters(),
            }),
        };
        let batch = unsent.batch.as_ref().expect("the batch is there");
        self.retrying("deliver events to", || self.sink.deliver(&self.info, batch))
            .await?;
        let n = unsent.batch.take().map_or(0, |b| b.events.len() as u64);
        self.count(|c| c.delivered += n);
        Ok(())
    }

    /// Puts events that were not delivered back in front of the buffer.
    fn requeue(&self, mut events: Vec<SyncEvent>) {
        let mut pending = lock(&self.pending);
        events.append(&mut pending.events);
        pending.events = events;
        if pending.oldest.is_none() {
            pending.oldest = Some(Instant::now());
            // The age flusher may be waiting for a first event.
            self.first_pending.notify_one();
        }
    }

    /// Flushes, then stores `checkpoint`: it is stored only once every
    /// event emitted before it is durable.
    pub(crate) async fn save_checkpoint(&self, checkpoint: Value) -> Result<(), ActionError> {
        if self.cancel.is_cancelled() {
            return Err(self.cancelled("before its checkpoint was stored"));
        }
        let stored = StoredCheckpoint::new(self.def.checkpoint_version, checkpoint);
        let _turn = self.flushing.lock().await;
        self.flush_in_turn().await?;
        self.retrying("store the checkpoint at", || {
            self.sink.save_checkpoint(&self.info, &stored)
        })
        .await
    }

    /// Waits until the sink has made every delivered batch durable.
    pub(crate) async fn settle(&self) -> Result<(), ActionError> {
        let _turn = self.flushing.lock().await;
        self.retrying("settle", || self.sink.settle(&self.info))
            .await
    }

    /// The ids the sink holds that the run did not see, sorted; `None`
    /// when the run does not sweep or the sink does not know.
    pub(crate) async fn unseen(&self) -> Result<Option<Vec<String>>, ActionError> {
        let Some(seen) = &self.seen else {
            return Ok(None);
        };
        let Some(known) = self
            .retrying("ask for the ids known to", || {
                self.sink.known_ids(&self.info)
            })
            .await?
        else {
            return Ok(None);
        };
        let seen = lock(seen);
        let mut gone: Vec<String> = known.into_iter().filter(|id| !seen.contains(id)).collect();
        gone.sort_unstable();
        Ok(Some(gone))
    }

    /// Flushes the buffer when its oldest event is `max_age` old, whether
    /// or not more events come, until `done`.
    pub(crate) async fn flush_by_age(&self, done: CancellationToken) {
        if self.policy.max_events <= 1 {
            return;
        }
        loop {
            let oldest = lock(&self.pending).oldest;
            let wait = async {
                match oldest {
                    None => self.first_pending.notified().await,
                    Some(at) => tokio::time::sleep_until(at + self.policy.max_age).await,
                }
            };
            tokio::select! {
                () = wait => {}
                () = done.cancelled() => return,
            }
            if oldest.is_none() {
                continue;
            }
            // A flush begun is not dropped half-way when the run ends: the
            // sink may have taken the batch already, and the batch put back
            // would go out twice. It ends with the run's cancellation or
            // deadline at the latest.
            if let Err(e) = self.flush().await {
                tracing::debug!(target: "spoke::sync", run_id = %self.info.run_id, "age flush stopped: {e}");
                // Cancelled or refused for good: the run ends.
                return;
            }
        }
    }

    /// Calls the sink until it succeeds, retrying retryable errors with
    /// backoff until the run is cancelled or its deadline passes.
    async fn retrying<'c, T>(
        &self,
        what: &str,
        call: impl Fn() -> SinkFuture<'c, T>,
    ) -> Result<T, ActionError> {
        let mut schedule = sink_backoff().schedule();
        loop {
            // A sink call may wait (for a receiver that is slow or gone):
            // the run's cancellation and deadline end the wait too.
            let error: SinkError = tokio::select! {
                result = call() => match result {
                    Ok(value) => return Ok(value),
                    Err(e) => e,
                },
                () = self.cancel.cancelled() => {
                    return Err(self.cancelled(&format!("while waiting to {what} its sink")));
                }
                () = crate::context::sleep_until(self.deadline) => {
                    return Err(ActionError::deadline_exceeded(format!(
                        "sync `{}` passed its deadline while waiting to {what} its sink",
                        self.info.sync
                    )));
                }
            };
            if !error.retryable {
                return Err(ActionError::unavailable(format!(
                    "sync `{}` could not {what} its sink: {}",
                    self.info.sync, error.message
                )));
            }
            let delay = schedule.next_delay().unwrap_or(Duration::from_secs(5));
            tracing::warn!(target: "spoke::sync", sync = %self.info.sync, run_id = %self.info.run_id, "could not {what} the sink: {}; retrying in {delay:?}", error.message);
            let deadline = crate::context::sleep_until(self.deadline);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => {
                    return Err(self.cancelled(&format!("while retrying to {what} its sink ({})", error.message)));
                }
                () = deadline => {
                    return Err(ActionError::deadline_exceeded(format!(
                        "sync `{}` passed its deadline while retrying to {what} its sink: {}",
                        self.info.sync, error.message
                    )));
                }
            }
        }
    }

    fn cancelled(&self, when: &str) -> ActionError {
        ActionError::cancelled(format!(
            "run {} of sync `{}` was cancelled {when}",
            self.info.run_id, self.info.sync
        ))
    }
}
