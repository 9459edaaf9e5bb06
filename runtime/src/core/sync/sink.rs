//! [`SyncSink`]: where a run's events and checkpoints go. Each transport
//! implements it (the CLI writes JSON lines and a state file, `serve`
//! sends them to the hub); the runtime calls it.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use super::checkpoint::StoredCheckpoint;
use super::document::SyncEvent;
use super::mode::SyncMode;

/// The future a [`SyncSink`] method returns.
pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SinkError>> + Send + 'a>>;

/// Which run a sink call is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRunInfo {
    /// The connector.
    pub connector: String,
    /// The sync.
    pub sync: String,
    /// The run's id.
    pub run_id: String,
    /// The source it syncs (`""` when the host has one source).
    pub source_id: String,
    /// Its mode.
    pub mode: SyncMode,
    /// Whether it resumes an interrupted run from that run's checkpoint.
    pub is_resume: bool,
}

/// A run's counters, as of a flush or its end.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SyncCounters {
    /// Items the run looked at (`ctx.count_scanned`).
    pub scanned: u64,
    /// Items it found changed (`ctx.count_updated`).
    pub updated: u64,
    /// Events it emitted (sweep deletions included).
    pub emitted: u64,
    /// Documents it reported deleted (sweep deletions included).
    pub deleted: u64,
    /// Items it could not sync (`ctx.fail_item`).
    pub failed: u64,
    /// Events the sink has made durable.
    pub delivered: u64,
    /// Progress the run reported (`ctx.progress`): work done...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// ... out of this much, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
}

/// Events made durable together, with the run's counters at that moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The events, in the order the run emitted them.
    pub events: Vec<SyncEvent>,
    /// The counters as of this flush.
    pub counters: SyncCounters,
}

/// Why a sink did not take a batch or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// What went wrong.
    pub message: String,
    /// Whether trying again may work (a full disk, a hub away for a
    /// moment); the runtime retries these with backoff. Others fail the run.
    pub retryable: bool,
}

impl SinkError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying cannot fix (the receiver is gone for good).
    pub fn fatal(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Where a sync run's events and checkpoints go.
///
/// The runtime calls it in order and never concurrently for one run:
/// every batch flushed before a checkpoint is [`deliver`](Self::deliver)ed
/// before that checkpoint is [`save_checkpoint`](Self::save_checkpoint)d,
/// and a call that fails with a retryable error is made again (backoff
/// from 100 ms to 5 s) until it succeeds, the run is cancelled or its
/// deadline passes. So a sink must make a batch durable before it
/// returns `Ok` (or before its next checkpoint and [`settle`](Self::settle),
/// see there), and may see a batch again after an error.
///
/// ```
/// use std::sync::Mutex;
/// use spoke::sync::{Batch, SinkFuture, StoredCheckpoint, SyncRunInfo, SyncSink};
///
/// #[derive(Default)]
/// struct Printer { checkpoint: Mutex<Option<StoredCheckpoint>> }
///
/// impl SyncSink for Printer {
///     fn deliver<'a>(&'a self, _run: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()> {
///         Box::pin(async move {
///             for event in &batch.events {
///                 println!("{}", serde_json::to_string(event).unwrap());
///             }
///             Ok(())
///         })
///     }
///     fn save_checkpoint<'a>(&'a self, _run: &'a SyncRunInfo, checkpoint: &'a StoredCheckpoint) -> SinkFuture<'a, ()> {
///         Box::pin(async move {
///             *self.checkpoint.lock().unwrap() = Some(checkpoint.clone());
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait SyncSink: Send + Sync + 'static {
    /// Makes `batch` durable.
    fn deliver<'a>(&'a self, run: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()>;

    /// Stores the run's checkpoint; every event before it was delivered.
    fn save_checkpoint<'a>(
        &'a self,
        run: &'a SyncRunInfo,
        checkpoint: &'a StoredCheckpoint,
    ) -> SinkFuture<'a, ()>;

    /// Waits until every batch [`deliver`](Self::deliver) took is durable.
    ///
    /// A sink may return from `deliver` once a batch is on its way (sent,
    /// kept, and sent again by the sink itself after a failure) and confirm
    /// it later: in its `save_checkpoint` and `known_ids` (which must wait
    /// for every batch before them) and here. The runtime settles before a
    /// run completes. The default does nothing: `deliver` made it durable.
    fn settle<'a>(&'a self, run: &'a SyncRunInfo) -> SinkFuture<'a, ()> {
        let _ = run;
        Box::pin(std::future::ready(Ok(())))
    }

    /// The ids of the documents the sink holds for this run's sync and
    /// source, for a sync that sweeps deletions; `None` (the default) when
    /// it does not know, and then nothing is swept.
    fn known_ids<'a>(&'a self, run: &'a SyncRunInfo) -> SinkFuture<'a, Option<HashSet<String>>> {
        let _ = run;
        Box::pin(std::future::ready(Ok(None)))
    }
}
