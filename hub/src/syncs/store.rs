//! The hub's durable store of syncs (`<data>/syncs.db`, SQLite through
//! rusqlite), apart from `hub.db` so that it works also when the hub runs
//! without auth; [`SyncStore::in_memory`] for a hub with no data directory.
//!
//! Per sync key (tenant, connector, sync, source) it keeps the last durable
//! checkpoint, the checkpoint as the last *completed* run left it, and the
//! last run (id, mode, status); the runs, running and recent, with their
//! counters (at most [`MAX_ENDED_RUNS`] ended ones); and, for syncs that
//! sweep deletions, the ids of the documents delivered.
//!
//! A run writes its key only while it is the key's last run: once a reset
//! or another run took the key, [`SyncStore::save_checkpoint`] refuses it
//! and [`SyncStore::end_run`] records it in the runs alone.
//!
//! The database runs in WAL mode with foreign keys on and a busy timeout;
//! its schema version is SQLite's `user_version`, and [`MIGRATIONS`] bring
//! an older file up to date at open. Every write is one transaction, so a
//! crash leaves either all of a change or none of it. The calls block: the
//! hub makes them from `spawn_blocking`.

use std::path::Path;
use std::sync::MutexGuard;

use rusqlite::{Connection, OptionalExtension, params};

use crate::database::{Database, clamp};
use crate::ids::unix_ms;

/// The file name of the database inside the data directory.
pub(crate) const SYNC_DB_FILE: &str = "syncs.db";
/// How long a write waits for another writer of the same file.
/// The most ended runs kept, over all keys: [`SyncStore::end_run`] and
/// [`SyncStore::fail_running`] forget the oldest beyond it.
pub(crate) const MAX_ENDED_RUNS: usize = 10_000;
/// The status of a run under way.
const RUNNING: &str = "running";
/// The status of a run that finished its walk.
const COMPLETED: &str = "completed";

/// The schema, one entry per version: `MIGRATIONS[n]` takes version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE checkpoints (
    tenant TEXT NOT NULL,
    connector TEXT NOT NULL,
    sync TEXT NOT NULL,
    source TEXT NOT NULL,
    checkpoint TEXT,
    completed TEXT,
    last_run_id TEXT,
    last_mode TEXT,
    last_status TEXT,
    updated_unix_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, connector, sync, source)
);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    connector TEXT NOT NULL,
    sync TEXT NOT NULL,
    source TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    resume INTEGER NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    counters_json TEXT NOT NULL,
    failures_json TEXT NOT NULL,
    swept INTEGER NOT NULL DEFAULT 0,
    started_unix_ms INTEGER NOT NULL,
    ended_unix_ms INTEGER
);
CREATE INDEX runs_by_end ON runs (ended_unix_ms, started_unix_ms);
CREATE INDEX runs_by_status ON runs (status);
CREATE TABLE known_ids (
    tenant TEXT NOT NULL,
    connector TEXT NOT NULL,
    sync TEXT NOT NULL,
    source TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    PRIMARY KEY (tenant, connector, sync, source, doc_id)
) WITHOUT ROWID;
"];

/// The columns of a run, in the order [`run_row`] reads them.
const RUN_COLUMNS: &str = "run_id, tenant, connector, sync, source, instance_id, mode, resume, status, error_code, error_message, counters_json, failures_json, swept, started_unix_ms, ended_unix_ms";

/// Why the sync store failed.
pub(crate) type SyncStoreError = crate::database::StoreError;

/// Which sync a record is of: a connector's sync over one source, in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SyncKey {
    /// The tenant.
    pub tenant: String,
    /// The connector.
    pub connector: String,
    /// The sync's name.
    pub sync: String,
    /// The source it walks (empty: the sync's only one).
    pub source: String,
}

impl std::fmt::Display for SyncKey {
    /// `tenant/connector/sync[source]`, without `[..]` when the source is empty.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.connector, self.sync)?;
        if !self.source.is_empty() {
            write!(f, "[{}]", self.source)?;
        }
        Ok(())
    }
}

/// Where a sync key stands: its checkpoints and its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckpointRecord {
    /// The last durable checkpoint (JSON), where a resumed run starts.
    pub checkpoint: Option<String>,
    /// The checkpoint as the last completed run left it, where a fresh
    /// (incremental) run starts.
    pub completed: Option<String>,
    /// The last run begun on the key.
    pub last_run_id: Option<String>,
    /// That run's mode.
    pub last_mode: Option<String>,
    /// That run's status: running, completed, failed or cancelled.
    pub last_status: Option<String>,
    /// When the record last changed.
    pub updated_unix_ms: u64,
}

/// One run of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunRecord {
    /// Its id.
    pub run_id: String,
    /// The sync it runs.
    pub key: SyncKey,
    /// The connector instance that runs it.
    pub instance_id: String,
    /// Its mode.
    pub mode: String,
    /// Whether it resumed from the last durable checkpoint.
    pub resume: bool,
    /// Running, completed, failed or cancelled.
    pub status: String,
    /// Why it failed: a status code name.
    pub error_code: Option<String>,
    /// Why it failed, for people.
    pub error_message: Option<String>,
    /// Its counters (JSON).
    pub counters_json: String,
    /// The documents it failed on (JSON).
    pub failures_json: String,
    /// How many known documents its sweep deleted.
    pub swept: u64,
    /// When it started.
    pub started_unix_ms: u64,
    /// When it ended; `None` while it runs.
    pub ended_unix_ms: Option<u64>,
}

/// The hub's database of syncs.
#[derive(Debug)]
pub(crate) struct SyncStore {
    db: Database,
}

impl SyncStore {
    /// Opens (creating if needed) `<dir>/syncs.db`, making `dir` with mode
    /// 0700 if it does not exist, and migrates it to the current schema.
    pub(crate) fn open(dir: &Path) -> Result<SyncStore, SyncStoreError> {
        Ok(SyncStore {
            db: Database::open(dir, SYNC_DB_FILE, MIGRATIONS)?,
        })
    }

    /// A store in memory, gone with the hub: for a hub with no data directory.
    pub(crate) fn in_memory() -> Result<SyncStore, SyncStoreError> {
        Ok(SyncStore {
            db: Database::in_memory(MIGRATIONS)?,
        })
    }

    /// The database file; `None` in memory.
    pub(crate) fn path(&self) -> Option<&Path> {
        (!self.db.is_in_memory()).then(|| self.db.path())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.db.conn()
    }

    fn err(&self, source: rusqlite::Error) -> SyncStoreError {
        self.db.err(source)
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, SyncStoreError> {
        self.db.write(f)
    }

    /// The key's record; `None` if it has none (never run, or reset).
    pub(crate) fn checkpoint(
        &self,
        key: &SyncKey,
    ) -> Result<Option<CheckpointRecord>, SyncStoreError> {
        get_checkpoint(&self.conn(), key).map_err(|e| self.err(e))
    }

    /// Records a run that starts: a runs row with status "running", and
    /// the key's record (created if missing) gets its id, its mode and the
    /// status "running" as its last run's.
    pub(crate) fn begin_run(&self, run: &RunRecord) -> Result<(), SyncStoreError> {
        self.write(|tx| {
            let k = &run.key;
            tx.execute(
                "INSERT INTO runs (run_id, tenant, connector, sync, source, instance_id, mode, resume, status,
                                   error_code, error_message, counters_json, failures_json, swept, started_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', NULL, NULL, ?9, ?10, ?11, ?12)",
                params![
                    run.run_id,
                    k.tenant,
                    k.connector,
                    k.sync,
                    k.source,
                    run.instance_id,
                    run.mode,
                    run.resume,
                    run.counters_json,
                    run.failures_json,
                    clamp(run.swept),
                    clamp(run.started_unix_ms),
                ],
            )?;
            tx.execute(
                "INSERT INTO checkpoints (tenant, connector, sync, source, last_run_id, last_mode, last_status, updated_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7)
                 ON CONFLICT (tenant, connector, sync, source) DO UPDATE SET
                     last_run_id = excluded.last_run_id,
                     last_mode = excluded.last_mode,
                     last_status = excluded.last_status,
                     updated_unix_ms = excluded.updated_unix_ms",
                params![
                    k.tenant,
                    k.connector,
                    k.sync,
                    k.source,
                    run.run_id,
                    run.mode,
                    clamp(unix_ms()),
                ],
            )?;
            Ok(())
        })
    }

    /// Stores a durable checkpoint of run `run_id`, only if it is the key's
    /// last run (a run that lost its key to a reset or another run must not
    /// write): `true` if stored, `false` if refused.
    pub(crate) fn save_checkpoint(
        &self,
        key: &SyncKey,
        run_id: &str,
        checkpoint_json: &str,
    ) -> Result<bool, SyncStoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE checkpoints SET checkpoint = ?5, updated_unix_ms = ?6
                 WHERE tenant = ?1 AND connector = ?2 AND sync = ?3 AND source = ?4 AND last_run_id = ?7",
                params![
                    key.tenant,
                    key.connector,
                    key.sync,
                    key.source,
                    checkpoint_json,
                    clamp(unix_ms()),
                    run_id,
                ],
            )?;
            Ok(changed > 0)
        })
    }

    /// Records how a run ended (its status, error, counters, failures,
    /// swept count and end time, now if it has none), writing its row even
    /// if it was never begun or was forgotten; and, if it is its key's last
    /// run, the key's last status, with `completed := checkpoint` when the
    /// status is "completed". Forgets the oldest ended runs beyond
    /// [`MAX_ENDED_RUNS`].
    pub(crate) fn end_run(&self, run: &RunRecord) -> Result<(), SyncStoreError> {
        self.end_run_capped(run, MAX_ENDED_RUNS)
    }

    /// [`SyncStore::end_run`], keeping at most `cap` ended runs.
    fn end_run_capped(&self, run: &RunRecord, cap: usize) -> Result<(), SyncStoreError> {
        self.write(|tx| {
            let k = &run.key;
            let now = unix_ms();
            tx.execute(
                "INSERT INTO runs (run_id, tenant, connector, sync, source, instance_id, mode, resume, status,
                                   error_code, error_message, counters_json, failures_json, swept, started_unix_ms, ended_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (run_id) DO UPDATE SET
                     status = excluded.status,
                     error_code = excluded.error_code,
                     error_message = excluded.error_message,
                     counters_json = excluded.counters_json,
                     failures_json = excluded.failures_json,
                     swept = excluded.swept,
                     ended_unix_ms = excluded.ended_unix_ms",
                params![
                    run.run_id,
                    k.tenant,
                    k.connector,
                    k.sync,
                    k.source,
                    run.instance_id,
                    run.mode,
                    run.resume,
                    run.status,
                    run.error_code,
                    run.error_message,
                    run.counters_json,
                    run.failures_json,
                    clamp(run.swept),
                    clamp(run.started_unix_ms),
                    clamp(run.ended_unix_ms.unwrap_or(now)),
                ],
            )?;
            tx.execute(
                "UPDATE checkpoints SET
                     last_status = ?6,
                     completed = CASE WHEN ?6 = ?7 THEN checkpoint ELSE completed END,
                     updated_unix_ms = ?8
                 WHERE tenant = ?1 AND connector = ?2 AND sync = ?3 AND source = ?4 AND last_run_id = ?5",
                params![
                    k.tenant,
                    k.connector,
                    k.sync,
                    k.source,
                    run.run_id,
                    run.status,
                    COMPLETED,
                    clamp(now),
                ],
            )?;
            prune_runs(tx, cap)?;
            Ok(())
        })
    }

    /// Updates a running run's counters (JSON); nothing if it is not running.
    pub(crate) fn update_counters(
        &self,
        run_id: &str,
        counters_json: &str,
    ) -> Result<(), SyncStoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET counters_json = ?2 WHERE run_id = ?1 AND status = ?3",
                params![run_id, counters_json, RUNNING],
            )?;
            Ok(())
        })
    }

    /// Replaces the key's checkpoint and its completed checkpoint with
    /// `checkpoint_json`, so that both a resumed and a fresh run start from
    /// it; creates the record if missing. A run under way on the key can no
    /// longer write it (the record forgets its last run's id; its mode and
    /// status stay). Returns the record.
    pub(crate) fn set_checkpoint(
        &self,
        key: &SyncKey,
        checkpoint_json: &str,
    ) -> Result<CheckpointRecord, SyncStoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO checkpoints (tenant, connector, sync, source, checkpoint, completed, updated_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)
                 ON CONFLICT (tenant, connector, sync, source) DO UPDATE SET
                     checkpoint = excluded.checkpoint,
                     completed = excluded.completed,
                     last_run_id = NULL,
                     updated_unix_ms = excluded.updated_unix_ms",
                params![
                    key.tenant,
                    key.connector,
                    key.sync,
                    key.source,
                    checkpoint_json,
                    clamp(unix_ms()),
                ],
            )?;
            get_checkpoint(tx, key)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
    }

    /// Forgets the key's record and its known ids (a run under way on it
    /// can no longer write it); whether there was either.
    pub(crate) fn reset_checkpoint(&self, key: &SyncKey) -> Result<bool, SyncStoreError> {
        self.write(|tx| {
            let k = params![key.tenant, key.connector, key.sync, key.source];
            let records = tx.execute(
                "DELETE FROM checkpoints WHERE tenant = ?1 AND connector = ?2 AND sync = ?3 AND source = ?4",
                k,
            )?;
            let ids = tx.execute(
                "DELETE FROM known_ids WHERE tenant = ?1 AND connector = ?2 AND sync = ?3 AND source = ?4",
                k,
            )?;
            Ok(records + ids > 0)
        })
    }

    /// In one transaction: records the `seen` document ids of the key
    /// (those known already stay) and forgets the `deleted` ones.
    pub(crate) fn record_ids(
        &self,
        key: &SyncKey,
        seen: &[&str],
        deleted: &[&str],
    ) -> Result<(), SyncStoreError> {
        if seen.is_empty() && deleted.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            if !seen.is_empty() {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO known_ids (tenant, connector, sync, source, doc_id)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for id in seen {
                    insert.execute(params![key.tenant, key.connector, key.sync, key.source, id])?;
                }
            }
            if !deleted.is_empty() {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM known_ids
                     WHERE tenant = ?1 AND connector = ?2 AND sync = ?3 AND source = ?4 AND doc_id = ?5",
                )?;
                for id in deleted {
                    delete.execute(params![key.tenant, key.connector, key.sync, key.source, id])?;
                }
            }
            Ok(())
        })
    }

    /// Every known document id of the key, sorted.
    pub(crate) fn known_ids(&self, key: &SyncKey) -> Result<Vec<String>, SyncStoreError> {
        let conn = self.conn();
        let run = || -> rusqlite::Result<Vec<String>> {
            let mut stmt = conn.prepare_cached(
                "SELECT doc_id FROM known_ids
                 WHERE tenant = ?1 AND connector = ?2 AND sync = ?3 AND source = ?4
                 ORDER BY doc_id",
            )?;
            stmt.query_map(
                params![key.tenant, key.connector, key.sync, key.source],
                |r| r.get(0),
            )?
            .collect()
        };
        run().map_err(|e| self.err(e))
    }

    /// Ended runs, newest first (by end time, then start time), of
    /// `tenant` (`None`: all) and `connector` (`None`: all), at most `limit`.
    pub(crate) fn recent_runs(
        &self,
        tenant: Option<&str>,
        connector: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, SyncStoreError> {
        let conn = self.conn();
        let run = || -> rusqlite::Result<Vec<RunRecord>> {
            let mut stmt = conn.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs
                 WHERE ended_unix_ms IS NOT NULL
                   AND (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR connector = ?2)
                 ORDER BY ended_unix_ms DESC, started_unix_ms DESC, run_id DESC
                 LIMIT ?3"
            ))?;
            stmt.query_map(
                params![tenant, connector, i64::try_from(limit).unwrap_or(i64::MAX)],
                run_row,
            )?
            .collect()
        };
        run().map_err(|e| self.err(e))
    }

    /// At hub start: the runs still "running" (a previous hub process died)
    /// become "failed" with the error code "unavailable" and `reason`,
    /// ended now, and so does their keys' last status where they are the
    /// last run (their checkpoints stay). Returns how many.
    pub(crate) fn fail_running(&self, reason: &str) -> Result<usize, SyncStoreError> {
        self.write(|tx| {
            let now = clamp(unix_ms());
            tx.execute(
                "UPDATE checkpoints SET last_status = 'failed', updated_unix_ms = ?1
                 WHERE EXISTS (SELECT 1 FROM runs r
                               WHERE r.run_id = checkpoints.last_run_id AND r.status = ?2
                                 AND r.tenant = checkpoints.tenant AND r.connector = checkpoints.connector
                                 AND r.sync = checkpoints.sync AND r.source = checkpoints.source)",
                params![now, RUNNING],
            )?;
            let failed = tx.execute(
                "UPDATE runs SET status = 'failed', error_code = 'unavailable', error_message = ?1,
                                 ended_unix_ms = ?2
                 WHERE status = ?3",
                params![reason, now, RUNNING],
            )?;
            prune_runs(tx, MAX_ENDED_RUNS)?;
            Ok(failed)
        })
    }
}

/// Forgets the oldest ended runs beyond the newest `cap`; how many.
fn prune_runs(conn: &Connection, cap: usize) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM runs WHERE run_id IN (
             SELECT run_id FROM runs WHERE ended_unix_ms IS NOT NULL
             ORDER BY ended_unix_ms DESC, started_unix_ms DESC, run_id DESC
             LIMIT -1 OFFSET ?1)",
        params![i64::try_from(cap).unwrap_or(i64::MAX)],
    )
}

fn unclamp(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

fn get_checkpoint(conn: &Connection, key: &SyncKey) -> rusqlite::Result<Option<CheckpointRecord>> {
    conn.query_row(
        "SELECT checkpoint, completed, last_run_id, last_mode, last_status, updated_unix_ms
         FROM checkpoints WHERE tenant = ?1 AND connector = ?2 AND sync = ?3 AND source = ?4",
        params![key.tenant, key.connector, key.sync, key.source],
        |r| {
            Ok(CheckpointRecord {
                checkpoint: r.get(0)?,
                completed: r.get(1)?,
                last_run_id: r.get(2)?,
                last_mode: r.get(3)?,
                last_status: r.get(4)?,
                updated_unix_ms: unclamp(r.get(5)?),
            })
        },
    )
    .optional()
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let ended: Option<i64> = r.get(15)?;
    Ok(RunRecord {
        run_id: r.get(0)?,
        key: SyncKey {
            tenant: r.get(1)?,
            connector: r.get(2)?,
            sync: r.get(3)?,
            source: r.get(4)?,
        },
        instance_id: r.get(5)?,
        mode: r.get(6)?,
        resume: r.get(7)?,
        status: r.get(8)?,
        error_code: r.get(9)?,
        error_message: r.get(10)?,
        counters_json: r.get(11)?,
        failures_json: r.get(12)?,
        swept: unclamp(r.get(13)?),
        started_unix_ms: unclamp(r.get(14)?),
        ended_unix_ms: ended.map(unclamp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(tenant: &str, connector: &str, sync: &str, source: &str) -> SyncKey {
        SyncKey {
            tenant: tenant.into(),
            connector: connector.into(),
            sync: sync.into(),
            source: source.into(),
        }
    }

    fn docs() -> SyncKey {
        key("acme", "drive", "docs", "")
    }

    /// A run of `key` that starts now.
    fn run(id: &str, key: &SyncKey) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            key: key.clone(),
            instance_id: "i1".into(),
            mode: "incremental".into(),
            resume: false,
            status: RUNNING.into(),
            error_code: None,
            error_message: None,
            counters_json: "{}".into(),
            failures_json: "[]".into(),
            swept: 0,
            started_unix_ms: unix_ms(),
            ended_unix_ms: None,
        }
    }

    /// `run` ended with `status` at `ended`.
    fn ended(run: &RunRecord, status: &str, ended: u64) -> RunRecord {
        RunRecord {
            status: status.into(),
            ended_unix_ms: Some(ended),
            ..run.clone()
        }
    }

    fn ids(store: &SyncStore, key: &SyncKey) -> Vec<String> {
        store.known_ids(key).unwrap()
    }

    #[test]
    fn a_key_displays_with_its_source_if_any() {
        assert_eq!(docs().to_string(), "acme/drive/docs");
        assert_eq!(
            key("acme", "drive", "docs", "shared").to_string(),
            "acme/drive/docs[shared]"
        );
    }

    #[test]
    fn a_completed_run_copies_its_checkpoint_a_failed_one_does_not() {
        let store = SyncStore::in_memory().unwrap();
        let k = docs();
        assert_eq!(store.checkpoint(&k).unwrap(), None);
        let first = run("r1", &k);
        store.begin_run(&first).unwrap();
        let record = store.checkpoint(&k).unwrap().unwrap();
        assert_eq!(record.last_run_id.as_deref(), Some("r1"));
        assert_eq!(record.last_mode.as_deref(), Some("incremental"));
        assert_eq!(record.last_status.as_deref(), Some(RUNNING));
        assert_eq!(record.checkpoint, None);
        assert!(store.save_checkpoint(&k, "r1", r#"{"page":1}"#).unwrap());
        assert!(store.save_checkpoint(&k, "r1", r#"{"page":2}"#).unwrap());
        store.update_counters("r1", r#"{"emitted":2}"#).unwrap();
        let mut done = ended(&first, COMPLETED, unix_ms());
        done.counters_json = r#"{"emitted":3}"#.into();
        done.swept = 4;
        store.end_run(&done).unwrap();
        let record = store.checkpoint(&k).unwrap().unwrap();
        assert_eq!(record.checkpoint.as_deref(), Some(r#"{"page":2}"#));
        assert_eq!(record.completed.as_deref(), Some(r#"{"page":2}"#));
        assert_eq!(record.last_status.as_deref(), Some(COMPLETED));
        assert_eq!(store.recent_runs(None, None, 10).unwrap(), vec![done]);
        // Counters of an ended run stay as it ended.
        store.update_counters("r1", r#"{"emitted":9}"#).unwrap();
        assert_eq!(
            store.recent_runs(None, None, 10).unwrap()[0].counters_json,
            r#"{"emitted":3}"#
        );

        let second = RunRecord {
            resume: true,
            ..run("r2", &k)
        };
        store.begin_run(&second).unwrap();
        assert!(store.save_checkpoint(&k, "r2", r#"{"page":3}"#).unwrap());
        let mut failed = ended(&second, "failed", unix_ms());
        failed.error_code = Some("internal".into());
        failed.error_message = Some("boom".into());
        store.end_run(&failed).unwrap();
        let record = store.checkpoint(&k).unwrap().unwrap();
        assert_eq!(record.checkpoint.as_deref(), Some(r#"{"page":3}"#));
        assert_eq!(record.completed.as_deref(), Some(r#"{"page":2}"#));
        assert_eq!(record.last_run_id.as_deref(), Some("r2"));
        assert_eq!(record.last_status.as_deref(), Some("failed"));
        let runs = store.recent_runs(None, None, 10).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].error_message.as_deref(), Some("boom"));
        assert!(runs[0].resume);
    }

    #[test]
    fn a_run_that_lost_its_key_cannot_write_it() {
        let store = SyncStore::in_memory().unwrap();
        let k = docs();
        let old = run("old", &k);
        store.begin_run(&old).unwrap();
        assert!(store.save_checkpoint(&k, "old", "1").unwrap());
        store.begin_run(&run("new", &k)).unwrap();
        assert!(!store.save_checkpoint(&k, "old", "2").unwrap());
        // Its end is recorded in the runs only.
        store.end_run(&ended(&old, COMPLETED, unix_ms())).unwrap();
        let record = store.checkpoint(&k).unwrap().unwrap();
        assert_eq!(record.checkpoint.as_deref(), Some("1"));
        assert_eq!(record.completed, None);
        assert_eq!(record.last_run_id.as_deref(), Some("new"));
        assert_eq!(record.last_status.as_deref(), Some(RUNNING));
        assert_eq!(store.recent_runs(None, None, 10).unwrap().len(), 1);
        // After a reset, the running one cannot write either.
        assert!(store.reset_checkpoint(&k).unwrap());
        assert!(!store.save_checkpoint(&k, "new", "3").unwrap());
        assert_eq!(store.checkpoint(&k).unwrap(), None);
        // Nor on a key it never began.
        assert!(
            !store
                .save_checkpoint(&key("acme", "drive", "other", ""), "new", "3")
                .unwrap()
        );
    }

    #[test]
    fn set_and_reset() {
        let store = SyncStore::in_memory().unwrap();
        let k = docs();
        assert!(!store.reset_checkpoint(&k).unwrap());
        let record = store.set_checkpoint(&k, "5").unwrap();
        assert_eq!(record.checkpoint.as_deref(), Some("5"));
        assert_eq!(record.completed.as_deref(), Some("5"));
        assert_eq!(record.last_run_id, None);
        assert_eq!(store.checkpoint(&k).unwrap(), Some(record));
        // A run under way on the key can no longer write it.
        store.begin_run(&run("r1", &k)).unwrap();
        let record = store.set_checkpoint(&k, "7").unwrap();
        assert_eq!(record.checkpoint.as_deref(), Some("7"));
        assert_eq!(record.completed.as_deref(), Some("7"));
        assert_eq!(record.last_run_id, None);
        assert_eq!(record.last_status.as_deref(), Some("running"));
        assert!(!store.save_checkpoint(&k, "r1", "8").unwrap());
        assert_eq!(
            store.checkpoint(&k).unwrap().unwrap().checkpoint.as_deref(),
            Some("7")
        );
        // Another source is another key.
        let other = key("acme", "drive", "docs", "shared");
        store.set_checkpoint(&other, "1").unwrap();
        assert!(store.reset_checkpoint(&k).unwrap());
        assert_eq!(store.checkpoint(&k).unwrap(), None);
        assert!(!store.reset_checkpoint(&k).unwrap());
        assert!(store.checkpoint(&other).unwrap().is_some());
        // Known ids alone count as something to reset.
        store.record_ids(&k, &["a"], &[]).unwrap();
        assert!(store.reset_checkpoint(&k).unwrap());
        assert!(ids(&store, &k).is_empty());
    }

    #[test]
    fn known_ids_are_recorded_deleted_and_sorted() {
        let store = SyncStore::in_memory().unwrap();
        let k = docs();
        let other = key("acme", "drive", "docs", "shared");
        assert!(ids(&store, &k).is_empty());
        store.record_ids(&k, &["c", "a", "b"], &[]).unwrap();
        store.record_ids(&other, &["z"], &[]).unwrap();
        assert_eq!(ids(&store, &k), ["a", "b", "c"]);
        // Again: nothing changes.
        store.record_ids(&k, &["a", "b", "c"], &[]).unwrap();
        store.record_ids(&k, &[], &[]).unwrap();
        assert_eq!(ids(&store, &k), ["a", "b", "c"]);
        store.record_ids(&k, &["d"], &["b", "missing"]).unwrap();
        assert_eq!(ids(&store, &k), ["a", "c", "d"]);
        store.record_ids(&k, &[], &["a"]).unwrap();
        assert_eq!(ids(&store, &k), ["c", "d"]);
        assert_eq!(ids(&store, &other), ["z"]);
        // Resetting one key leaves the other's ids.
        store.reset_checkpoint(&k).unwrap();
        assert!(ids(&store, &k).is_empty());
        assert_eq!(ids(&store, &other), ["z"]);
    }

    #[test]
    fn a_hundred_thousand_ids_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = SyncStore::open(dir.path()).unwrap();
        let k = docs();
        let all: Vec<String> = (0..100_000).map(|n| format!("doc-{n:06}")).collect();
        let started = std::time::Instant::now();
        for batch in all.chunks(500) {
            let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
            store.record_ids(&k, &batch, &[]).unwrap();
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(30), "took {took:?}");
        assert_eq!(ids(&store, &k), all);
    }

    #[test]
    fn recent_runs_filter_order_and_limit() {
        let store = SyncStore::in_memory().unwrap();
        let a = key("acme", "drive", "docs", "");
        let b = key("acme", "mail", "inbox", "");
        let c = key("beta", "drive", "docs", "");
        let mut expected = Vec::new();
        for (n, k) in [&a, &b, &c, &a, &b, &c].into_iter().enumerate() {
            let id = format!("r{n}");
            let mut begun = run(&id, k);
            begun.started_unix_ms = 1_000 + n as u64;
            store.begin_run(&begun).unwrap();
            // r0 and r1 end at the same time: the later start comes first.
            let end = 2_000 + (n as u64).max(1);
            let done = ended(&begun, COMPLETED, end);
            store.end_run(&done).unwrap();
            expected.push(done);
        }
        store.begin_run(&run("live", &a)).unwrap();
        let names =
            |runs: Vec<RunRecord>| -> Vec<String> { runs.into_iter().map(|r| r.run_id).collect() };
        assert_eq!(
            names(store.recent_runs(None, None, 100).unwrap()),
            ["r5", "r4", "r3", "r2", "r1", "r0"]
        );
        assert_eq!(
            names(store.recent_runs(None, None, 2).unwrap()),
            ["r5", "r4"]
        );
        assert!(store.recent_runs(None, None, 0).unwrap().is_empty());
        assert_eq!(
            names(store.recent_runs(Some("acme"), None, 100).unwrap()),
            ["r4", "r3", "r1", "r0"]
        );
        assert_eq!(
            names(store.recent_runs(None, Some("drive"), 100).unwrap()),
            ["r5", "r3", "r2", "r0"]
        );
        assert_eq!(
            names(store.recent_runs(Some("acme"), Some("drive"), 1).unwrap()),
            ["r3"]
        );
        assert!(
            store
                .recent_runs(Some("none"), None, 100)
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.recent_runs(None, None, 100).unwrap()[5], expected[0]);
    }

    #[test]
    fn fail_running_ends_the_runs_of_a_dead_hub() {
        let store = SyncStore::in_memory().unwrap();
        let a = docs();
        let b = key("acme", "mail", "inbox", "");
        store.begin_run(&run("ra", &a)).unwrap();
        assert!(store.save_checkpoint(&a, "ra", "9").unwrap());
        let done = run("rb", &b);
        store.begin_run(&done).unwrap();
        store.end_run(&ended(&done, COMPLETED, unix_ms())).unwrap();
        // A run that lost its key to another: its key keeps the other's status.
        store.begin_run(&run("lost", &b)).unwrap();
        store.begin_run(&run("rb2", &b)).unwrap();
        store
            .end_run(&ended(&run("rb2", &b), "cancelled", unix_ms()))
            .unwrap();

        assert_eq!(store.fail_running("the hub restarted").unwrap(), 2);
        let record = store.checkpoint(&a).unwrap().unwrap();
        assert_eq!(record.last_status.as_deref(), Some("failed"));
        assert_eq!(record.checkpoint.as_deref(), Some("9"));
        assert_eq!(record.completed, None);
        assert_eq!(
            store
                .checkpoint(&b)
                .unwrap()
                .unwrap()
                .last_status
                .as_deref(),
            Some("cancelled")
        );
        let runs = store.recent_runs(None, None, 10).unwrap();
        let failed: Vec<&RunRecord> = runs.iter().filter(|r| r.status == "failed").collect();
        assert_eq!(failed.len(), 2);
        for r in failed {
            assert_eq!(r.error_code.as_deref(), Some("unavailable"));
            assert_eq!(r.error_message.as_deref(), Some("the hub restarted"));
            assert!(r.ended_unix_ms.is_some());
        }
        assert_eq!(store.fail_running("again").unwrap(), 0);
    }

    #[test]
    fn reopens_with_everything() {
        let dir = tempfile::tempdir().unwrap();
        let k = docs();
        let first = run("r1", &k);
        {
            let store = SyncStore::open(dir.path()).unwrap();
            assert_eq!(store.path(), Some(dir.path().join(SYNC_DB_FILE).as_path()));
            store.begin_run(&first).unwrap();
            assert!(store.save_checkpoint(&k, "r1", "1").unwrap());
            store.end_run(&ended(&first, COMPLETED, 5_000)).unwrap();
            store.begin_run(&run("r2", &k)).unwrap();
            assert!(store.save_checkpoint(&k, "r2", "2").unwrap());
            store.update_counters("r2", r#"{"emitted":1}"#).unwrap();
            store.record_ids(&k, &["x", "y"], &[]).unwrap();
        }
        let store = SyncStore::open(dir.path()).unwrap();
        let record = store.checkpoint(&k).unwrap().unwrap();
        assert_eq!(record.checkpoint.as_deref(), Some("2"));
        assert_eq!(record.completed.as_deref(), Some("1"));
        assert_eq!(record.last_run_id.as_deref(), Some("r2"));
        assert_eq!(record.last_status.as_deref(), Some(RUNNING));
        assert_eq!(ids(&store, &k), ["x", "y"]);
        assert_eq!(
            store.recent_runs(None, None, 10).unwrap(),
            vec![ended(&first, COMPLETED, 5_000)]
        );
        // The run the dead process left is still running, with its counters.
        let counters: String = store
            .conn()
            .query_row(
                "SELECT counters_json FROM runs WHERE run_id = 'r2'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counters, r#"{"emitted":1}"#);
        assert_eq!(store.fail_running("restart").unwrap(), 1);
        let version: u32 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as u32);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(SyncStore::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(SYNC_DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SyncStore::open(dir.path()),
            Err(SyncStoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn the_in_memory_store_has_no_path() {
        let store = SyncStore::in_memory().unwrap();
        assert_eq!(store.path(), None);
        let k = docs();
        store.set_checkpoint(&k, "1").unwrap();
        assert!(store.checkpoint(&k).unwrap().is_some());
        // Each in-memory store is its own.
        assert!(
            SyncStore::in_memory()
                .unwrap()
                .checkpoint(&k)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ended_runs_beyond_the_cap_are_forgotten_oldest_first() {
        let store = SyncStore::in_memory().unwrap();
        let k = docs();
        let live = run("live", &k);
        store.begin_run(&live).unwrap();
        for n in 0..5u64 {
            let r = run(&format!("r{n}"), &k);
            store
                .end_run_capped(&ended(&r, COMPLETED, 1_000 + n), 3)
                .unwrap();
        }
        let left: Vec<String> = store
            .recent_runs(None, None, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(left, ["r4", "r3", "r2"]);
        // A running run is not counted, nor forgotten.
        assert_eq!(store.fail_running("restart").unwrap(), 1);
        assert_eq!(store.recent_runs(None, None, 100).unwrap().len(), 4);
        assert_eq!(MAX_ENDED_RUNS, 10_000);
    }
}
