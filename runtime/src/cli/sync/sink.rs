//! The sink of `<bin> sync`: events as JSON lines to stdout or a file
//! (flushed, and synced to disk when it is a file, before a checkpoint is
//! stored), checkpoints to the state file, and the ids delivered to its
//! journal (for syncs that sweep deletions).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::sync::{Mutex, MutexGuard};

use super::state::{IdJournal, State};
use crate::sync::{
    Batch, SinkError, SinkFuture, StoredCheckpoint, SyncEvent, SyncRunInfo, SyncSink,
};

/// Where the JSON lines go.
pub(crate) enum Output {
    /// Standard output (or a pipe behind it).
    Stdout(BufWriter<std::io::Stdout>),
    /// A regular file, synced to disk at every flush.
    File(BufWriter<File>),
    /// Anything else opened by path (`/dev/null`, a FIFO): flushed, not synced.
    Device(BufWriter<File>),
}

impl Output {
    /// Opens `--out`: `-` or nothing for stdout, else the path (created,
    /// and truncated unless `append`).
    pub(crate) fn open(path: Option<&str>, append: bool) -> Result<Output, String> {
        match path {
            None | Some("-") => Ok(Output::Stdout(BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            ))),
            Some(path) => {
                let file = File::options()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(path)
                    .map_err(|e| format!("cannot open the output file `{path}`: {e}"))?;
                let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
                let writer = BufWriter::with_capacity(1 << 16, file);
                Ok(if regular {
                    Output::File(writer)
                } else {
                    Output::Device(writer)
                })
            }
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Stdout(w) => w,
            Output::File(w) | Output::Device(w) => w,
        }
    }

    /// Writes the lines and makes them durable. They are encoded into one
    /// buffer first (serde_json writes in many small pieces, each a call
    /// through `dyn Write` otherwise), then written at once.
    fn write_batch(&mut self, events: &[SyncEvent], buffer: &mut Vec<u8>) -> std::io::Result<()> {
        buffer.clear();
        for event in events {
            event.write_json_line(buffer)?;
        }
        let writer = self.writer();
        writer.write_all(buffer)?;
        writer.flush()?;
        if let Output::File(w) = self {
            w.get_ref().sync_data()?;
        }
        Ok(())
    }
}

/// The sink of one CLI run.
pub(crate) struct CliSink {
    /// The output, and the buffer a batch is encoded into.
    out: Mutex<(Output, Vec<u8>)>,
    state: Option<Mutex<State>>,
    journal: Option<Mutex<IdJournal>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CliSink {
    pub(crate) fn new(out: Output, state: Option<State>, journal: Option<IdJournal>) -> Self {
        CliSink {
            out: Mutex::new((out, Vec::new())),
            state: state.map(Mutex::new),
            journal: journal.map(Mutex::new),
        }
    }

    /// The state file, to record how the run ended.
    pub(crate) fn state(&self) -> Option<MutexGuard<'_, State>> {
        self.state.as_ref().map(lock)
    }

    /// Compacts the id journal (after a completed run).
    pub(crate) fn compact_journal(&self) -> std::io::Result<()> {
        match &self.journal {
            Some(journal) => lock(journal).compact(),
            None => Ok(()),
        }
    }

    fn io_error(what: &str, e: &std::io::Error) -> SinkError {
        let message = format!("cannot {what}: {e}");
        if e.kind() == ErrorKind::BrokenPipe {
            // Nobody reads the output any more: retrying cannot help.
            SinkError::fatal(message)
        } else {
            SinkError::retryable(message)
        }
    }
}

impl SyncSink for CliSink {
    fn deliver<'a>(&'a self, _run: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()> {
        let mut out = lock(&self.out);
        let (output, buffer) = &mut *out;
        let mut result = output
            .write_batch(&batch.events, buffer)
            .map_err(|e| Self::io_error("write the documents", &e));
        if result.is_ok()
            && let Some(journal) = &self.journal
        {
            let (mut add, mut remove) = (Vec::new(), Vec::new());
            for event in &batch.events {
                match event {
                    SyncEvent::DocumentCreated(d) | SyncEvent::DocumentUpdated(d) => {
                        add.push(d.id.clone());
                    }
                    SyncEvent::DocumentDeleted { id } => remove.push(id.clone()),
                    SyncEvent::GroupMembership(_) => {}
                }
            }
            result = lock(journal)
                .record(add, remove)
                .map_err(|e| Self::io_error("record the document ids", &e));
        }
        drop(out);
        Box::pin(std::future::ready(result))
    }

    fn save_checkpoint<'a>(
        &'a self,
        run: &'a SyncRunInfo,
        checkpoint: &'a StoredCheckpoint,
    ) -> SinkFuture<'a, ()> {
        let result = match &self.state {
            None => Ok(()),
            Some(state) => lock(state)
                .save_checkpoint(&run.sync, &run.source_id, checkpoint)
                .map_err(|e| Self::io_error("write the state file", &e)),
        };
        Box::pin(std::future::ready(result))
    }

    fn known_ids<'a>(&'a self, _run: &'a SyncRunInfo) -> SinkFuture<'a, Option<HashSet<String>>> {
        let ids = self.journal.as_ref().map(|j| lock(j).ids().clone());
        Box::pin(std::future::ready(Ok(ids)))
    }
}
