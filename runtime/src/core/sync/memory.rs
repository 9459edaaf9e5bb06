//! [`MemorySink`]: a sink that keeps everything in memory — the documents
//! it holds, every batch and checkpoint it was given — for tests and for
//! hosts that embed a connector.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::checkpoint::StoredCheckpoint;
use super::document::{Document, SyncEvent};
use super::sink::{Batch, SinkError, SinkFuture, SyncRunInfo, SyncSink};

/// A [`SyncSink`] in memory: it holds the documents the runs delivered
/// (by id, the last version of each), the last checkpoint per (sync,
/// source), every batch and checkpoint in the order they came, and can
/// be told to fail (to test retries). Cheap to clone; clones share it.
///
/// ```
/// use spoke::sync::MemorySink;
/// let sink = MemorySink::new();
/// assert!(sink.documents().is_empty());
/// assert_eq!(sink.checkpoint("files", ""), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    documents: BTreeMap<String, Document>,
    events: Vec<SyncEvent>,
    batches: usize,
    checkpoints: Vec<StoredCheckpoint>,
    last_checkpoint: BTreeMap<(String, String), StoredCheckpoint>,
    fail_deliveries: usize,
    failed_deliveries: usize,
    fatal: Option<String>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        MemorySink::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The documents it holds, by id (deleted ones removed).
    pub fn documents(&self) -> BTreeMap<String, Document> {
        self.lock().documents.clone()
    }

    /// Every event delivered, in order, across runs.
    pub fn events(&self) -> Vec<SyncEvent> {
        self.lock().events.clone()
    }

    /// How many batches were delivered.
    pub fn batches(&self) -> usize {
        self.lock().batches
    }

    /// Every checkpoint stored, in order, across runs.
    pub fn checkpoints(&self) -> Vec<StoredCheckpoint> {
        self.lock().checkpoints.clone()
    }

    /// The last checkpoint stored for `sync` and `source_id`: what the
    /// next run starts from.
    pub fn checkpoint(&self, sync: &str, source_id: &str) -> Option<StoredCheckpoint> {
        self.lock()
            .last_checkpoint
            .get(&(sync.to_owned(), source_id.to_owned()))
            .cloned()
    }

    /// Replaces (or with `None` clears) the checkpoint of `sync` and `source_id`.
    pub fn set_checkpoint(
        &self,
        sync: &str,
        source_id: &str,
        checkpoint: Option<StoredCheckpoint>,
    ) {
        let key = (sync.to_owned(), source_id.to_owned());
        let mut inner = self.lock();
        match checkpoint {
            Some(c) => inner.last_checkpoint.insert(key, c),
            None => inner.last_checkpoint.remove(&key),
        };
    }

    /// Makes the next `n` deliveries fail with a retryable error.
    pub fn fail_next_deliveries(&self, n: usize) {
        self.lock().fail_deliveries = n;
    }

    /// How many deliveries failed on purpose so far.
    pub fn failed_deliveries(&self) -> usize {
        self.lock().failed_deliveries
    }

    /// Makes every later call fail for good with this message.
    pub fn fail_for_good(&self, message: impl Into<String>) {
        self.lock().fatal = Some(message.into());
    }
}

impl SyncSink for MemorySink {
    fn deliver<'a>(&'a self, _run: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()> {
        let mut inner = self.lock();
        let result = if let Some(message) = &inner.fatal {
            Err(SinkError::fatal(message.clone()))
        } else if inner.fail_deliveries > 0 {
            inner.fail_deliveries -= 1;
            inner.failed_deliveries += 1;
            Err(SinkError::retryable("the memory sink was told to fail"))
        } else {
            for event in &batch.events {
                match event {
                    SyncEvent::DocumentCreated(d) | SyncEvent::DocumentUpdated(d) => {
                        inner.documents.insert(d.id.clone(), d.clone());
                    }
                    SyncEvent::DocumentDeleted { id } => {
                        inner.documents.remove(id);
                    }
                    SyncEvent::GroupMembership(_) => {}
                }
            }
            inner.events.extend(batch.events.iter().cloned());
            inner.batches += 1;
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn save_checkpoint<'a>(
        &'a self,
        run: &'a SyncRunInfo,
        checkpoint: &'a StoredCheckpoint,
    ) -> SinkFuture<'a, ()> {
        let mut inner = self.lock();
        let result = if let Some(message) = &inner.fatal {
            Err(SinkError::fatal(message.clone()))
        } else {
            inner.checkpoints.push(checkpoint.clone());
            inner.last_checkpoint.insert(
                (run.sync.clone(), run.source_id.clone()),
                checkpoint.clone(),
            );
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }

    fn known_ids<'a>(&'a self, _run: &'a SyncRunInfo) -> SinkFuture<'a, Option<HashSet<String>>> {
        let ids = self.lock().documents.keys().cloned().collect();
        Box::pin(std::future::ready(Ok(Some(ids))))
    }
}
