//! Syncs: a connector walks an outside system into a host's index (all of
//! it once, then what changed), checkpointing as it goes, so that a run
//! killed half-way resumes where it stopped.
//!
//! A connector declares a sync with `#[sync]` on an `async fn(&self, ctx:
//! &SyncContext<C>)` in its `#[connector]` impl, `C` being its checkpoint
//! type; see [`SyncContext`] for an example. The runtime, whatever the
//! transport:
//!
//! - **starts** a run ([`Instance::start_sync`](crate::Instance::start_sync))
//!   with the last checkpoint, decoded as `C` (or migrated, see
//!   [`checkpoint`]): a checkpoint that no longer decodes stops the run
//!   before it starts, naming the field;
//! - **buffers** the events it emits ([`SyncEvent`]: documents created,
//!   updated or deleted, group memberships) and flushes them to the
//!   transport's [`SyncSink`] by count or age ([`SyncMode::flush_policy`]:
//!   full 500 events / 300 s, incremental 100 / 60 s, realtime every
//!   event; a timer flushes an idle buffer). A failed flush is retried
//!   with backoff and never dropped while the run goes on;
//! - **stores a checkpoint** only once every event emitted before it is
//!   durable, so a resumed run misses nothing (it may emit some again);
//! - **counts** what the run scanned, updated, emitted and failed, and
//!   lists the items it failed (`ctx.fail_item`); the run completes while
//!   they stay within the sync's error budget (`#[sync(error_budget =
//!   "5%")]`, 0 by default);
//! - **sweeps deletions** for a sync declared with `sweep` (its full mode)
//!   or `sweep = "full, incremental"`: at the end of a complete run of
//!   those modes (not a resumed one), the documents the sink holds that the
//!   run neither emitted nor marked (`ctx.mark_seen`) are emitted as
//!   deleted. A failed or cancelled run never sweeps;
//! - **runs one run per (sync, source)** at a time (and one realtime run
//!   beside it, as Omni counts slots): a second start is
//!   refused with `failed_precondition` naming the running run. A
//!   cancelled run sees its token cancelled, gets the instance's cancel
//!   grace, then is dropped, so its slot is free at most the grace after
//!   the cancel, even if it ignores the token. A panic fails the run with
//!   `panicked`; the process goes on.
//!
//! | module | what it is |
//! |---|---|
//! | [`mode`] | full, incremental, realtime, and when each flushes |
//! | [`document`] | the events: documents, metadata, permissions, groups |
//! | [`checkpoint`] | stored checkpoints, versions and migration |
//! | [`sink`] | the interface a transport implements |
//! | [`memory`] | [`MemorySink`], a sink in memory (tests, embedding) |
//! | [`context`] | [`SyncContext`], the author's side of a run |
//! | `run` | one run's buffer, flushes and counters |
//! | [`start`] | starting, supervising and cancelling runs; [`SyncOutcome`] |

pub mod checkpoint;
pub mod context;
pub mod document;
pub mod memory;
pub mod mode;
pub(crate) mod run;
pub mod sink;
pub mod start;

pub use checkpoint::{CheckpointError, MigrateFn, StoredCheckpoint, decode_checkpoint};
pub use context::{SyncContext, SyncStart};
pub use document::{
    Content, Document, DocumentMetadata, GroupMembership, Permissions, SyncEvent, Timestamp,
};
pub use memory::MemorySink;
pub use mode::{FlushPolicy, SyncMode};
pub use run::{ItemFailure, MAX_LISTED_FAILURES};
pub use sink::{Batch, SinkError, SinkFuture, SyncCounters, SyncRunInfo, SyncSink};
pub use start::{RunningSync, SyncOutcome, SyncProgress, SyncRequest, SyncRun, SyncStatus};
#[cfg(test)]
mod tests;
