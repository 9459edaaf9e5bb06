//! The connector's store on NATS: each declared bucket a JetStream KV
//! bucket `spoke_<connector>_<bucket>` (history 1, the bucket's TTL as its
//! `max_age`), created or updated when the instance starts, shared by
//! every instance on every machine. A tenant's keys are `<tenant>.<key>`
//! in it, so tenants never see each other's, and NATS permissions can
//! split them (`$KV.spoke_<connector>_<bucket>.<tenant>.>`).
//!
//! `create` and `update` are JetStream's own compare-and-swap (the
//! expected last sequence of the key's subject): of two instances racing,
//! the server lets exactly one write.

use std::collections::HashMap;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;

use crate::store::{
    BucketDef, Expect, RawEntry, StoreBackend, StoreError, StoreErrorKind, conflict,
};

/// The NATS KV bucket of connector `connector`'s bucket `bucket`.
///
/// ```
/// assert_eq!(spoke::nats::kv_store::bucket_name("files", "cursors"), "spoke_files_cursors");
/// ```
pub fn bucket_name(connector: &str, bucket: &str) -> String {
    format!("spoke_{connector}_{bucket}")
}

/// A connector's buckets in JetStream KV.
pub struct KvStore {
    connector: String,
    stores: HashMap<&'static str, kv::Store>,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

fn unavailable(bucket: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        format!("bucket `{bucket}` (NATS KV): {e}"),
    )
}

impl KvStore {
    /// Creates (or updates to the declared TTL) every bucket of
    /// `connector`, and keeps them.
    pub async fn open(
        js: &jetstream::Context,
        connector: &str,
        buckets: &'static [BucketDef],
    ) -> Result<KvStore, StoreError> {
        let mut stores = HashMap::new();
        for def in buckets {
            let name = bucket_name(connector, def.name);
            let store = js
                .create_or_update_key_value(kv::Config {
                    bucket: name.clone(),
                    description: format!("Spoke: connector {connector}'s bucket {}", def.name),
                    history: 1,
                    max_age: def.ttl().unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    unavailable(
                        def.name,
                        format!("cannot create or update {name} (it needs JetStream): {e}"),
                    )
                })?;
            stores.insert(def.name, store);
        }
        Ok(KvStore {
            connector: connector.to_owned(),
            stores,
        })
    }

    fn store(&self, bucket: &BucketDef) -> Result<&kv::Store, StoreError> {
        self.stores
            .get(bucket.name)
            .ok_or_else(|| unavailable(bucket.name, "it was not opened at start-up"))
    }
}

fn nats_key(tenant: &str, key: &str) -> String {
    format!("{tenant}.{key}")
}

impl StoreBackend for KvStore {
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<RawEntry>, StoreError>> {
        Box::pin(async move {
            let store = self.store(bucket)?;
            let entry = store
                .entry(nats_key(tenant, key))
                .await
                .map_err(|e| unavailable(bucket.name, e))?;
            Ok(entry
                .filter(|e| e.operation == kv::Operation::Put)
                .map(|e| RawEntry {
                    value: e.value.to_vec(),
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
        Box::pin(async move {
            let store = self.store(bucket)?;
            let (at, value) = (nats_key(tenant, key), Bytes::from(value));
            // JetStream's own compare-and-swap: the expected last sequence
            // of the key's subject.
            match expect {
                Expect::Anything => store
                    .put(at, value)
                    .await
                    .map_err(|e| unavailable(bucket.name, e)),
                Expect::Absent => store.create(at, value).await.map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => conflict(bucket.name, key, "it exists"),
                    _ => unavailable(bucket.name, e),
                }),
                Expect::Revision(revision) => {
                    store
                        .update(at, value, revision)
                        .await
                        .map_err(|e| match e.kind() {
                            kv::UpdateErrorKind::WrongLastRevision => conflict(
                                bucket.name,
                                key,
                                format!("it is no longer at revision {revision}"),
                            ),
                            _ => unavailable(bucket.name, e),
                        })
                }
            }
        })
    }

    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.store(bucket)?
                .delete(nats_key(tenant, key))
                .await
                .map_err(|e| unavailable(bucket.name, e))
        })
    }

    fn keys<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let prefix = format!("{tenant}.");
            let all: Vec<String> = self
                .store(bucket)?
                .keys()
                .await
                .map_err(|e| unavailable(bucket.name, e))?
                .try_collect()
                .await
                .map_err(|e| unavailable(bucket.name, e))?;
            let mut mine: Vec<String> = all
                .into_iter()
                .filter_map(|k| k.strip_prefix(prefix.as_str()).map(str::to_owned))
                .collect();
            mine.sort();
            Ok(mine)
        })
    }
}
