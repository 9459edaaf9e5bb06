//! The SQLite files the hub keeps in its data directory (`hub.db` of
//! `trust`, `syncs.db` of `syncs`), opened one way: the directory made with
//! mode 0700 if missing, WAL mode, `synchronous = NORMAL`, foreign keys on,
//! a busy timeout, and the schema brought up to date at open by a list of
//! migrations (`migrations[n]` takes version `n`, SQLite's `user_version`,
//! to `n + 1`; a file of a newer hub is refused). Every write is one
//! immediate transaction, so a crash leaves all of a change or none of it.
//! The calls block: the hub makes them from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

/// How long a write waits for another writer of the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The name a database in memory goes by in errors.
const IN_MEMORY: &str = ":memory:";

/// Why a store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be made or opened.
    #[error("cannot use the data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("the hub database {path}: {source}")]
    Sqlite {
        /// The database file (`:memory:` in memory).
        path: PathBuf,
        /// What went wrong.
        source: rusqlite::Error,
    },
    /// The file was written by a newer hub.
    #[error(
        "the hub database {path} has schema version {found}; this hub knows up to {known}: use a newer hub"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest this hub knows.
        known: u32,
    },
}

/// One open database: its connection and its file.
#[derive(Debug)]
pub(crate) struct Database {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Database {
    /// Opens (creating if needed) `<dir>/<file>`, making `dir` with mode
    /// 0700 if it does not exist, and migrates it to the current schema.
    pub(crate) fn open(
        dir: &Path,
        file: &str,
        migrations: &[&str],
    ) -> Result<Database, StoreError> {
        make_private_dir(dir)?;
        let path = dir.join(file);
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrate(&mut conn, &path, migrations)?;
        Ok(Database {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// A database in memory, gone with the hub.
    pub(crate) fn in_memory(migrations: &[&str]) -> Result<Database, StoreError> {
        let path = PathBuf::from(IN_MEMORY);
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrate(&mut conn, &path, migrations)?;
        Ok(Database {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file (`:memory:` in memory).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it lives in memory only.
    pub(crate) fn is_in_memory(&self) -> bool {
        self.path.as_os_str() == IN_MEMORY
    }

    /// The connection. A panic elsewhere while holding it cannot leave a
    /// transaction half-applied (SQLite rolls it back), so a poisoned lock
    /// is taken over.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A SQLite error of this database.
    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs `f` in one immediate (write-locked) transaction, committed if
    /// `f` returns `Ok`, rolled back otherwise.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|e| self.err(e))
    }
}

/// Unix milliseconds as SQLite's integer (saturating).
pub(crate) fn clamp(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn make_private_dir(dir: &Path) -> Result<(), StoreError> {
    let fail = |source| StoreError::Dir {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(fail)?;
    } else if !dir.is_dir() {
        return Err(fail(std::io::Error::other("it is not a directory")));
    }
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let known = migrations.len() as u32;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let version: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            known,
        });
    }
    for step in &migrations[version as usize..] {
        tx.execute_batch(step).map_err(sql)?;
    }
    tx.pragma_update(None, "user_version", known).map_err(sql)?;
    tx.commit().map_err(sql)
}
