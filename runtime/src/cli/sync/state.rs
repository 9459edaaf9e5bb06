//! The state file of `<bin> sync --state FILE`: the last durable
//! checkpoint and the last run of each (sync, source), rewritten
//! atomically (a temporary file, synced, renamed over it) at every
//! checkpoint; and, for syncs that sweep deletions, a journal of the
//! document ids delivered (`FILE.ids`, a JSON line per batch, compacted
//! at the end of a run). The file is locked while a run uses it, so two
//! runs cannot interleave their writes.
//!
//! ```json
//! {"spoke_sync_state": 1, "connector": "files", "entries": [
//!   {"sync": "files", "source": "",
//!    "checkpoint": {"version": 1, "checkpoint": {"after": "2026-11-30T09:00:00Z"}},
//!    "last_run": {"run_id": "run-1f...", "mode": "full", "status": "completed",
//!                 "started_at": "2026-12-01T10:00:00Z", "finished_at": "2026-12-01T10:00:04Z"}}
//! ]}
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::replace_file::replace_file;
use crate::sync::{StoredCheckpoint, SyncMode, Timestamp};

/// The format version of the state file.
const FORMAT: u32 = 1;

/// The whole state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateFile {
    spoke_sync_state: u32,
    connector: String,
    entries: Vec<Entry>,
}

/// One (sync, source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) sync: String,
    pub(crate) source: String,
    /// The last durable checkpoint: where an interrupted run resumes.
    #[serde(default)]
    pub(crate) checkpoint: Option<StoredCheckpoint>,
    /// The checkpoint as the last completed run left it: where a run that
    /// is not a resume starts.
    #[serde(default)]
    pub(crate) completed: Option<StoredCheckpoint>,
    #[serde(default)]
    pub(crate) last_run: Option<LastRun>,
}

/// The last run of a (sync, source): `running` if the process ended
/// before it did (killed), so the next run resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastRun {
    pub(crate) run_id: String,
    pub(crate) mode: SyncMode,
    pub(crate) status: String,
    pub(crate) started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) finished_at: Option<Timestamp>,
}

/// A state file in use: its contents, its lock, its id journal.
#[derive(Debug)]
pub(crate) struct State {
    path: PathBuf,
    file: StateFile,
    /// Held while the run lasts (an advisory lock on `FILE.lock`).
    _lock: File,
}

fn lock_path(path: &Path) -> PathBuf {
    with_suffix(path, ".lock")
}

fn journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".ids")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl State {
    /// Opens (or starts) the state file at `path` for `connector`, locking
    /// it. Errors say which file and what is wrong.
    pub(crate) fn open(path: &Path, connector: &str) -> Result<State, String> {
        let shown = path.display();
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path(path))
            .map_err(|e| format!("cannot open the lock of state file `{shown}`: {e}"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "state file `{shown}` is in use by another run (its lock `{}` is held)",
                    lock_path(path).display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock state file `{shown}`: {e}"));
            }
        }
        let file = match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile {
                spoke_sync_state: FORMAT,
                connector: connector.to_owned(),
                entries: Vec::new(),
            },
            Err(e) => return Err(format!("cannot read state file `{shown}`: {e}")),
            Ok(bytes) => {
                let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| {
                    format!("state file `{shown}` is not a Spoke sync state file: {e}")
                })?;
                if file.spoke_sync_state != FORMAT {
                    return Err(format!(
                        "state file `{shown}` has format {}, this connector reads format {FORMAT}",
                        file.spoke_sync_state
                    ));
                }
                if file.connector != connector {
                    return Err(format!(
                        "state file `{shown}` belongs to connector `{}`, not `{connector}`",
                        file.connector
                    ));
                }
                file
            }
        };
        Ok(State {
            path: path.to_owned(),
            file,
            _lock: lock,
        })
    }

    /// The entry of (sync, source), if any.
    pub(crate) fn entry(&self, sync: &str, source: &str) -> Option<&Entry> {
        self.file
            .entries
            .iter()
            .find(|e| e.sync == sync && e.source == source)
    }

    fn entry_mut(&mut self, sync: &str, source: &str) -> &mut Entry {
        let at = match self
            .file
            .entries
            .iter()
            .position(|e| e.sync == sync && e.source == source)
        {
            Some(at) => at,
            None => {
                self.file.entries.push(Entry {
                    sync: sync.to_owned(),
                    source: source.to_owned(),
                    checkpoint: None,
                    completed: None,
                    last_run: None,
                });
                self.file.entries.len() - 1
            }
        };
        &mut self.file.entries[at]
    }

    /// Records the checkpoint of (sync, source) and writes the file.
    pub(crate) fn save_checkpoint(
        &mut self,
        sync: &str,
        source: &str,
        checkpoint: &StoredCheckpoint,
    ) -> std::io::Result<()> {
        self.entry_mut(sync, source).checkpoint = Some(checkpoint.clone());
        self.write()
    }

    /// Records the last run of (sync, source) and writes the file; a
    /// `completed` run's checkpoint becomes where the next fresh run starts.
    pub(crate) fn save_run(
        &mut self,
        sync: &str,
        source: &str,
        run: LastRun,
        completed: bool,
    ) -> std::io::Result<()> {
        let entry = self.entry_mut(sync, source);
        entry.last_run = Some(run);
        if completed {
            entry.completed = entry.checkpoint.clone();
        }
        self.write()
    }

    /// Writes the file atomically: a temporary file beside it, synced,
    /// renamed over it.
    fn write(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.file)?;
        replace_file(&self.path, &bytes)
    }

    /// The journal of the ids delivered for (sync, source).
    pub(crate) fn journal(&self, sync: &str, source: &str) -> std::io::Result<IdJournal> {
        IdJournal::open(journal_path(&self.path), sync, source)
    }
}

/// One line of the id journal: ids a batch added and removed.
#[derive(Debug, Serialize, Deserialize)]
struct JournalLine {
    sync: String,
    source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    remove: Vec<String>,
}

/// The ids of the documents delivered for one (sync, source), kept in an
/// append-only journal of every batch's additions and removals (a torn
/// last line, from a crash, is ignored), compacted to one line per
/// (sync, source) by [`IdJournal::compact`].
#[derive(Debug)]
pub(crate) struct IdJournal {
    path: PathBuf,
    sync: String,
    source: String,
    /// The ids of this (sync, source).
    ids: HashSet<String>,
    /// Every (sync, source)'s ids, for compaction.
    all: BTreeMap<(String, String), HashSet<String>>,
    out: File,
}

impl IdJournal {
    fn open(path: PathBuf, sync: &str, source: &str) -> std::io::Result<IdJournal> {
        let mut all: BTreeMap<(String, String), HashSet<String>> = BTreeMap::new();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        // Only whole lines count; a torn last one (a crash mid-write) is
        // cut off, so the next line starts clean.
        let whole = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        for line in bytes[..whole].split(|&b| b == b'\n') {
            let Ok(entry) = serde_json::from_slice::<JournalLine>(line) else {
                continue;
            };
            let ids = all.entry((entry.sync, entry.source)).or_default();
            for id in entry.remove {
                ids.remove(&id);
            }
            ids.extend(entry.add);
        }
        if whole < bytes.len() {
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(whole as u64)?;
        }
        let ids = all
            .get(&(sync.to_owned(), source.to_owned()))
            .cloned()
            .unwrap_or_default();
        let out = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(IdJournal {
            path,
            sync: sync.to_owned(),
            source: source.to_owned(),
            ids,
            all,
            out,
        })
    }

    /// The ids known now.
    pub(crate) fn ids(&self) -> &HashSet<String> {
        &self.ids
    }

    /// Records a batch's additions and removals, synced to disk.
    pub(crate) fn record(&mut self, add: Vec<String>, remove: Vec<String>) -> std::io::Result<()> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        for id in &remove {
            self.ids.remove(id);
        }
        self.ids.extend(add.iter().cloned());
        let line = JournalLine {
            sync: self.sync.clone(),
            source: self.source.clone(),
            add,
            remove,
        };
        let mut text = serde_json::to_string(&line)?;
        text.push('\n');
        self.out.write_all(text.as_bytes())?;
        self.out.sync_data()
    }

    /// Rewrites the journal as one line per (sync, source).
    pub(crate) fn compact(&mut self) -> std::io::Result<()> {
        self.all
            .insert((self.sync.clone(), self.source.clone()), self.ids.clone());
        let mut text = String::new();
        for ((sync, source), ids) in &self.all {
            let mut add: Vec<String> = ids.iter().cloned().collect();
            add.sort_unstable();
            let line = JournalLine {
                sync: sync.clone(),
                source: source.clone(),
                add,
                remove: Vec::new(),
            };
            text.push_str(&serde_json::to_string(&line)?);
            text.push('\n');
        }
        replace_file(&self.path, text.as_bytes())?;
        self.out = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_written_atomically_and_read_back_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("files.state");
        let mut state = State::open(&path, "files").unwrap();
        assert!(state.entry("docs", "").is_none());
        let checkpoint = StoredCheckpoint::new(1, serde_json::json!({"page": 2}));
        state.save_checkpoint("docs", "", &checkpoint).unwrap();
        let busy = State::open(&path, "files").unwrap_err();
        assert!(busy.contains("is in use by another run"), "{busy}");
        drop(state);
        let state = State::open(&path, "files").unwrap();
        assert_eq!(
            state.entry("docs", "").unwrap().checkpoint,
            Some(checkpoint)
        );
        drop(state);
        let other = State::open(&path, "tickets").unwrap_err();
        assert!(
            other.ends_with("belongs to connector `files`, not `tickets`"),
            "{other}"
        );
        std::fs::write(&path, "{").unwrap();
        let broken = State::open(&path, "files").unwrap_err();
        assert!(
            broken.contains("is not a Spoke sync state file"),
            "{broken}"
        );
    }

    #[test]
    fn the_journal_replays_ignores_a_torn_line_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.ids");
        let mut journal = IdJournal::open(path.clone(), "docs", "").unwrap();
        journal
            .record(vec!["a".into(), "b".into()], vec![])
            .unwrap();
        journal.record(vec!["c".into()], vec!["a".into()]).unwrap();
        let mut other = IdJournal::open(path.clone(), "docs", "other").unwrap();
        other.record(vec!["z".into()], vec![]).unwrap();
        // A crash mid-write leaves a line without its newline.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"sync":"docs","source":"","add":["torn"#)
            .unwrap();
        let mut journal = IdJournal::open(path.clone(), "docs", "").unwrap();
        let mut ids: Vec<_> = journal.ids().iter().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["b", "c"]);
        // The torn line was cut off: the next record reads back.
        journal.record(vec!["d".into()], vec![]).unwrap();
        let journal = IdJournal::open(path.clone(), "docs", "").unwrap();
        assert!(journal.ids().contains("d"));
        let mut journal = journal;
        journal.compact().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let other = IdJournal::open(path, "docs", "other").unwrap();
        assert!(other.ids().contains("z"));
    }
}
