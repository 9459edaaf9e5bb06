//! [`LocalStore`]: the store of a connector run anywhere but NATS: a JSON
//! file per bucket and tenant, `<dir>/<connector>/<tenant>/<bucket>.json`,
//! under `SPOKE_STORE_DIR` (default `~/.spoke/store`).
//!
//! Every write takes an exclusive lock on the bucket's `.lock` file (an OS
//! file lock, so the processes of one machine take turns), reads the file,
//! changes it and replaces it whole (written aside, then renamed), so a
//! reader never sees half a file and a compare-and-swap holds across
//! processes. Expired values (a bucket with a TTL) read as absent and are
//! dropped at the next write. It is made for the state of one connector on
//! one machine (cursors, small caches): each write rewrites the bucket.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BucketDef, Expect, RawEntry, StoreBackend, StoreError, StoreErrorKind, conflict};

/// `SPOKE_STORE_DIR`: where the local store keeps its files.
pub const STORE_DIR: &str = "SPOKE_STORE_DIR";

/// A store in files under one directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    connector: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct BucketFile {
    /// The last revision given.
    revision: u64,
    entries: BTreeMap<String, StoredEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredEntry {
    value: Box<RawValue>,
    revision: u64,
    /// When it was written, milliseconds since the Unix epoch.
    written_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unavailable(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        format!("the local store: {what} {}: {e}", path.display()),
    )
}

/// Runs `f` on the blocking pool with `path`, once it is known good.
fn blocking<T: Send + 'static>(
    path: Result<PathBuf, StoreError>,
    f: impl FnOnce(PathBuf) -> Result<T, StoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StoreError>> {
    Box::pin(async move {
        let path = path?;
        tokio::task::spawn_blocking(move || f(path))
            .await
            .map_err(|e| {
                StoreError::new(StoreErrorKind::Unavailable, format!("the local store: {e}"))
            })?
    })
}

impl StoredEntry {
    fn live(&self, bucket: &BucketDef, now: u64) -> bool {
        bucket
            .ttl_ms
            .is_none_or(|ttl| now.saturating_sub(self.written_ms) < ttl)
    }
}

impl LocalStore {
    /// Connector `connector`'s files under `root`.
    pub fn new(root: impl Into<PathBuf>, connector: &str) -> LocalStore {
        LocalStore {
            root: root.into(),
            connector: connector.to_owned(),
        }
    }

    /// Under `SPOKE_STORE_DIR`, else `$HOME/.spoke/store`, else
    /// `.spoke/store` in the working directory.
    pub fn from_env(connector: &str) -> LocalStore {
        let root = match std::env::var_os(STORE_DIR) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => match std::env::var_os("HOME") {
                Some(home) if !home.is_empty() => PathBuf::from(home).join(".spoke").join("store"),
                _ => PathBuf::from(".spoke").join("store"),
            },
        };
        LocalStore::new(root, connector)
    }

    /// The directory of one tenant's buckets.
    pub fn dir(&self, tenant: &str) -> PathBuf {
        self.root.join(&self.connector).join(tenant)
    }

    /// The bucket's file; the tenant must be a plain name, as it names a
    /// directory.
    fn file(&self, tenant: &str, bucket: &BucketDef) -> Result<PathBuf, StoreError> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        };
        if !plain(tenant) {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "the local store: tenant `{tenant}` cannot name a directory (SPOKE_TENANT is [A-Za-z0-9_-]+)"
                ),
            ));
        }
        Ok(self.dir(tenant).join(format!("{}.json", bucket.name)))
    }

    fn read(path: &Path) -> Result<BucketFile, StoreError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| unavailable(path, "cannot read", format!("not a bucket file: {e}"))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(BucketFile::default()),
            Err(e) => Err(unavailable(path, "cannot read", e)),
        }
    }

    /// Runs `change` on the bucket's file under its lock, and writes the
    /// file back when `change` says it changed it.
    fn locked<T: Send + 'static>(
        &self,
        tenant: &str,
        bucket: &BucketDef,
        change: impl FnOnce(&mut BucketFile, u64) -> Result<(T, bool), StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let path = self.file(tenant, bucket);
        let bucket = *bucket;
        blocking(path, move |path| {
            let dir = path.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(dir).map_err(|e| unavailable(dir, "cannot create", e))?;
            let lock_path = path.with_extension("lock");
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| unavailable(&lock_path, "cannot open", e))?;
            lock.lock()
                .map_err(|e| unavailable(&lock_path, "cannot lock", e))?;
            let now = now_ms();
            let mut file = Self::read(&path)?;
            let before = file.entries.len();
            file.entries.retain(|_, e| e.live(&bucket, now));
            let pruned = file.entries.len() != before;
            let (out, changed) = change(&mut file, now)?;
            if changed || pruned {
                let aside = path.with_extension("json.tmp");
                let bytes =
                    serde_json::to_vec(&file).map_err(|e| unavailable(&path, "cannot write", e))?;
                let mut f =
                    File::create(&aside).map_err(|e| unavailable(&aside, "cannot write", e))?;
                f.write_all(&bytes)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| unavailable(&aside, "cannot write", e))?;
                fs::rename(&aside, &path).map_err(|e| unavailable(&path, "cannot replace", e))?;
            }
            drop(lock);
            Ok(out)
        })
    }
}

impl StoreBackend for LocalStore {
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<RawEntry>, StoreError>> {
        let path = self.file(tenant, bucket);
        let key = key.to_owned();
        let bucket = *bucket;
        blocking(path, move |path| {
            let file = Self::read(&path)?;
            Ok(file
                .entries
                .get(&key)
                .filter(|e| e.live(&bucket, now_ms()))
                .map(|e| RawEntry {
                    value: e.value.get().as_bytes().to_vec(),
                    revision: e.revision,
                }))
        })
    }

    fn write<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
        key: &'a str,
        value: Vec<u8>,
        expect: Expect,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let key = key.to_owned();
        let name = bucket.name;
        self.locked(tenant, bucket, move |file, now| {
            let value = String::from_utf8(value)
                .map_err(|e| e.to_string())
                .and_then(|text| RawValue::from_string(text).map_err(|e| e.to_string()))
                .map_err(|e| {
                    StoreError::new(
                        StoreErrorKind::Value,
                        format!("bucket `{name}`, key `{key}`: {e}"),
                    )
                })?;
            let current = file.entries.get(&key).map(|e| e.revision);
            match (expect, current) {
                (Expect::Anything, _) => {}
                (Expect::Absent, None) => {}
                (Expect::Absent, Some(rev)) => {
                    return Err(conflict(name, &key, format!("it exists (revision {rev})")));
                }
                (Expect::Revision(want), Some(rev)) if want == rev => {}
                (Expect::Revision(want), now_at) => {
                    return Err(conflict(
                        name,
                        &key,
                        match now_at {
                            Some(rev) => format!("it is at revision {rev}, not {want}"),
                            None => format!("it holds nothing, not revision {want}"),
                        },
                    ));
                }
            }
            file.revision += 1;
            let revision = file.revision;
            file.entries.insert(
                key,
                StoredEntry {
                    value,
                    revision,
                    written_ms: now,
                },
            );
            Ok((revision, true))
        })
    }

    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = key.to_owned();
        self.locked(tenant, bucket, move |file, _| {
            let removed = file.entries.remove(&key).is_some();
            Ok(((), removed))
        })
    }

    fn keys<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let path = self.file(tenant, bucket);
        let bucket = *bucket;
        blocking(path, move |path| {
            let file = Self::read(&path)?;
            let now = now_ms();
            Ok(file
                .entries
                .iter()
                .filter(|(_, e)| e.live(&bucket, now))
                .map(|(k, _)| k.clone())
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::Store;

    static BUCKETS: &[BucketDef] = &[
        BucketDef {
            name: "cursors",
            ttl_ms: None,
        },
        BucketDef {
            name: "cache",
            ttl_ms: Some(200),
        },
    ];

    fn store(dir: &Path, tenant: &str) -> Store {
        Store::new(
            "files",
            tenant,
            BUCKETS,
            Arc::new(LocalStore::new(dir, "files")),
        )
    }

    #[tokio::test]
    async fn values_revisions_and_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "default");
        let cursors = s.bucket("cursors").unwrap();
        assert_eq!(cursors.get::<u64>("a").await.unwrap(), None);
        let r1 = cursors.create("a", &1u64).await.unwrap();
        let err = cursors.create("a", &2u64).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Conflict, "{err}");
        let r2 = cursors.update("a", &2u64, r1).await.unwrap();
        assert!(r2 > r1);
        let err = cursors.update("a", &3u64, r1).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Conflict);
        assert!(
            err.message().contains(&format!("revision {r2}, not {r1}")),
            "{err}"
        );
        let now = cursors.get::<u64>("a").await.unwrap().unwrap();
        assert_eq!((now.value, now.revision), (2, r2));
        let err = cursors.get::<String>("a").await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Value);
        cursors.put("b/c", &"x").await.unwrap();
        assert_eq!(cursors.keys().await.unwrap(), ["a", "b/c"]);
        cursors.delete("a").await.unwrap();
        assert_eq!(cursors.keys().await.unwrap(), ["b/c"]);
        // Another tenant sees none of it.
        let other = store(dir.path(), "acme").bucket("cursors").unwrap();
        assert!(other.keys().await.unwrap().is_empty());
        // Undeclared buckets and bad keys say what is wrong.
        let err = s.bucket("cursor").unwrap_err();
        assert!(err.message().contains("did you mean `cursors`?"), "{err}");
        let err = cursors.put("a b", &1).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::InvalidKey);
    }

    #[tokio::test]
    async fn values_expire_after_the_buckets_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let cache = store(dir.path(), "default").bucket("cache").unwrap();
        cache.put("k", &1).await.unwrap();
        assert!(cache.get::<i32>("k").await.unwrap().is_some());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(cache.get::<i32>("k").await.unwrap(), None);
        assert!(cache.keys().await.unwrap().is_empty());
        cache
            .create("k", &2)
            .await
            .expect("an expired key is absent");
    }

    #[tokio::test]
    async fn of_racing_swaps_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let cursors = store(dir.path(), "default").bucket("cursors").unwrap();
        let r = cursors.put("n", &0).await.unwrap();
        let mut tasks = Vec::new();
        for i in 1..=8 {
            // Separate backends, as separate processes would be.
            let b = store(dir.path(), "default").bucket("cursors").unwrap();
            tasks.push(tokio::spawn(async move { b.update("n", &i, r).await }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(e) => assert_eq!(e.kind(), StoreErrorKind::Conflict),
            }
        }
        assert_eq!(won, 1);
    }
}
