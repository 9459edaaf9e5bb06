//! [`SyncContext`]: what a sync run sees and does.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{MigrateFn, StoredCheckpoint, decode_checkpoint};
use super::document::{Document, GroupMembership, SyncEvent};
use super::mode::SyncMode;
use super::run::RunCore;
use super::sink::SyncCounters;
use crate::error::ActionError;

/// The context of one sync run, with `C` the sync's checkpoint type (`()`
/// for a sync that keeps none).
///
/// A sync takes `ctx: &SyncContext<C>`, reads where the last run got to
/// with [`last_checkpoint`](Self::last_checkpoint), emits documents, and
/// stores its progress with [`checkpoint`](Self::checkpoint):
///
/// ```standalone_crate
/// use spoke::prelude::*;
/// use spoke::sync::{Document, SyncContext, SyncMode};
///
/// #[derive(Serialize, Deserialize, JsonSchema, Default)]
/// struct Cursor { page: u32 }
///
/// /// Pages of a wiki.
/// #[connector(name = "wiki")]
/// pub struct Wiki {}
///
/// #[connector]
/// impl Wiki {
///     /// Every page.
///     #[sync(modes = "full, incremental")]
///     async fn pages(&self, ctx: &SyncContext<Cursor>) -> Result<(), ActionError> {
///         let mut page = ctx.last_checkpoint().map_or(0, |c| c.page);
///         while page < 3 && !ctx.is_cancelled() {
///             ctx.created(Document::new(format!("page-{page}")).text("...")).await?;
///             page += 1;
///             ctx.checkpoint(&Cursor { page }).await?;
///         }
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
///
/// Emitted events are buffered and flushed to the host by count or age
/// ([`SyncMode::flush_policy`]); a checkpoint is stored only after every
/// event before it is durable. A context is cheap to clone; clones share
/// the run.
pub struct SyncContext<C = ()> {
    core: Arc<RunCore>,
    last: Option<Arc<C>>,
    _checkpoint: PhantomData<fn(C)>,
}

impl<C> Clone for SyncContext<C> {
    fn clone(&self) -> Self {
        SyncContext {
            core: Arc::clone(&self.core),
            last: self.last.clone(),
            _checkpoint: PhantomData,
        }
    }
}

impl<C> std::fmt::Debug for SyncContext<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncContext")
            .field("run", &self.core.info)
            .finish_non_exhaustive()
    }
}

/// What the runtime hands a sync's generated start fn: the run, and the
/// checkpoint it starts from. Connector code does not use it.
#[derive(Debug)]
pub struct SyncStart {
    pub(crate) core: Arc<RunCore>,
    pub(crate) checkpoint: Option<StoredCheckpoint>,
}

impl SyncStart {
    /// The run's context, its stored checkpoint decoded as `C` (migrated
    /// with `migrate` when older). An error means the run does not start.
    pub fn context<C: DeserializeOwned>(
        self,
        migrate: Option<MigrateFn<C>>,
    ) -> Result<SyncContext<C>, super::checkpoint::CheckpointError> {
        let def = self.core.def;
        let last = match &self.checkpoint {
            None => None,
            Some(stored) => Some(Arc::new(decode_checkpoint(
                def.name,
                def.checkpoint_version,
                stored,
                migrate,
            )?)),
        };
        Ok(SyncContext {
            core: self.core,
            last,
            _checkpoint: PhantomData,
        })
    }
}

impl<C> SyncContext<C> {
    /// The sync's name.
    pub fn sync_name(&self) -> &str {
        &self.core.info.sync
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.core.info.run_id
    }

    /// The source this run syncs (`""` when the host has just one).
    pub fn source_id(&self) -> &str {
        &self.core.info.source_id
    }

    /// Full, incremental or realtime.
    pub fn mode(&self) -> SyncMode {
        self.core.info.mode
    }

    /// Whether this run resumes an interrupted one from its checkpoint.
    pub fn is_resume(&self) -> bool {
        self.core.info.is_resume
    }

    /// Where the last run got to: the last checkpoint stored for this sync
    /// and source, or `None` on a first run.
    pub fn last_checkpoint(&self) -> Option<&C> {
        self.last.as_deref()
    }

    /// The run's cancellation token: cancelled when the host cancels the
    /// run or its deadline passes. After cancellation the run has the
    /// instance's cancel grace to return; then it is dropped.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.core.cancel
    }

    /// Resolves when the run is cancelled; use in `tokio::select!`.
    pub async fn cancelled(&self) {
        self.core.cancel.cancelled().await
    }

    /// Whether the run has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.core.cancel.is_cancelled()
    }

    /// When the run must be done by, if the host said.
    pub fn deadline(&self) -> Option<Instant> {
        self.core.deadline
    }

    /// Time left before the deadline (`None` when there is none).
    pub fn remaining(&self) -> Option<Duration> {
        self.core
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Emits an event. Waits while a full buffer is flushed
    /// (backpressure); errs when the run is cancelled or the sink refuses
    /// the events for good.
    pub async fn emit(&self, event: SyncEvent) -> Result<(), ActionError> {
        self.core.emit(event).await
    }

    /// Emits a document the host did not have.
    pub async fn created(&self, document: Document) -> Result<(), ActionError> {
        self.emit(SyncEvent::DocumentCreated(document)).await
    }

    /// Emits a changed document.
    pub async fn updated(&self, document: Document) -> Result<(), ActionError> {
        self.emit(SyncEvent::DocumentUpdated(document)).await
    }

    /// Emits the deletion of a document.
    pub async fn deleted(&self, id: impl Into<String>) -> Result<(), ActionError> {
        self.emit(SyncEvent::DocumentDeleted { id: id.into() })
            .await
    }

    /// Emits the whole membership of a group.
    pub async fn group_membership(&self, group: GroupMembership) -> Result<(), ActionError> {
        self.emit(SyncEvent::GroupMembership(group)).await
    }

    /// Marks a document as still there though it is not emitted (unchanged),
    /// so the end of a full run that sweeps does not report it deleted.
    pub fn mark_seen(&self, id: &str) {
        self.core.mark_seen(id);
    }

    /// Reports one item the run could not sync; the run goes on. It
    /// succeeds while failed items stay within the sync's error budget,
    /// and its result lists them.
    pub fn fail_item(&self, id: impl Into<String>, error: impl std::fmt::Display) {
        self.core.fail_item(id.into(), error.to_string());
    }

    /// Counts items looked at.
    pub fn count_scanned(&self, n: u64) {
        self.core.count(|c| c.scanned += n);
    }

    /// Counts items found changed.
    pub fn count_updated(&self, n: u64) {
        self.core.count(|c| c.updated += n);
    }

    /// Reports progress: `done` out of `total`, when known.
    pub fn progress(&self, done: f64, total: Option<f64>) {
        self.core.count(|c| {
            c.progress = Some(done);
            c.total = total;
        });
    }

    /// The run's counters so far.
    pub fn counters(&self) -> SyncCounters {
        self.core.counters()
    }

    /// Delivers the buffered events now.
    pub async fn flush(&self) -> Result<(), ActionError> {
        self.core.flush().await
    }
}

impl<C: Serialize> SyncContext<C> {
    /// Stores where the run got to, after every event emitted before it is
    /// durable. The next run starts from the last checkpoint stored.
    pub async fn checkpoint(&self, checkpoint: &C) -> Result<(), ActionError> {
        let value = serde_json::to_value(checkpoint).map_err(|e| {
            ActionError::internal(format!(
                "the checkpoint of sync `{}` does not serialise: {e}",
                self.core.info.sync
            ))
        })?;
        self.core.save_checkpoint(value).await
    }
}
