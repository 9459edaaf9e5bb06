//! Storage for connector code: `ctx.store()`, key-value buckets the
//! connector declares, the same API on every transport.
//!
//! A connector declares its buckets, each with an optional TTL:
//!
//! ```ignore
//! #[connector(name = "files", buckets(cursors, cache(ttl = "1h")))]
//! ```
//!
//! and its actions, producers and syncs read and write them through
//! [`Context::store`](crate::context::Context::store):
//!
//! ```
//! # use spoke::prelude::*;
//! # async fn example(ctx: &Context) -> Result<(), ActionError> {
//! let cursors = ctx.store().bucket("cursors")?;
//! let rev = cursors.put("account-1", &42u64).await?;
//! let now = cursors.get::<u64>("account-1").await?.expect("just put");
//! assert_eq!((now.value, now.revision), (42, rev));
//! // Compare-and-swap: only if nobody wrote since `now`.
//! cursors.update("account-1", &43u64, now.revision).await?;
//! # Ok(()) }
//! ```
//!
//! Values are JSON (any `Serialize`/`Deserialize` type); each write gives
//! the key a new revision. [`Bucket::create`] writes only a key that does
//! not exist and [`Bucket::update`] only one still at the revision the
//! caller read: of two instances racing, exactly one wins and the other
//! gets [`StoreErrorKind::Conflict`] (an action that returns it with `?`
//! answers `failed_precondition`).
//!
//! Where it lives depends on how the connector is served: on NATS
//! (`<bin> nats`) a JetStream KV bucket per declared bucket, shared by every
//! instance on every machine; everywhere else (the CLI, a sidecar, attached
//! to a hub, HTTP, MCP) a file per bucket under `SPOKE_STORE_DIR` (default
//! `~/.spoke/store`), shared by the processes of one machine. Either way
//! every tenant has its own keys.

mod local;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ActionError, ErrorCode};
use crate::suggest::did_you_mean;

pub use local::{LocalStore, STORE_DIR};

/// A bucket a connector declares (`#[connector(buckets(name(ttl = "1h")))]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketDef {
    /// Its name: `[a-z][a-z0-9_]*`.
    pub name: &'static str,
    /// How long a value lives after it was last written; `None`: for ever.
    pub ttl_ms: Option<u64>,
}

impl BucketDef {
    /// Its TTL.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl_ms.map(Duration::from_millis)
    }
}

/// A value and the revision it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its revision: what [`Bucket::update`] expects.
    pub revision: u64,
}

/// What went wrong with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The connector did not declare the bucket.
    Undeclared,
    /// The key cannot be a key.
    InvalidKey,
    /// `create`: the key exists; `update`: it is not at the revision
    /// given (someone wrote it since, or it is gone).
    Conflict,
    /// The value stored is not of the type asked for, or the value given
    /// does not serialise.
    Value,
    /// The store cannot be reached or written.
    Unavailable,
}

/// An error of the store: what went wrong, where.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> ActionError {
        let code = match e.kind {
            StoreErrorKind::Conflict => ErrorCode::FailedPrecondition,
            StoreErrorKind::Unavailable => ErrorCode::Unavailable,
            StoreErrorKind::Undeclared | StoreErrorKind::InvalidKey | StoreErrorKind::Value => {
                ErrorCode::Internal
            }
        };
        ActionError::new(code, e.message)
    }
}

/// Checks a key: 1 to 1024 of `[A-Za-z0-9_=/.-]`, not starting or ending
/// with `.` (the keys NATS KV takes, so every store takes the same).
///
/// ```
/// use spoke::store::check_key;
/// assert!(check_key("account/42.cursor").is_ok());
/// assert!(check_key("a b").unwrap_err().to_string().contains("`a b`"));
/// assert!(check_key(".x").is_err());
/// ```
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        Err(StoreError::new(
            StoreErrorKind::InvalidKey,
            format!("`{key}` cannot be a store key: {why}"),
        ))
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if key.starts_with('.') || key.ends_with('.') {
        return bad("it starts or ends with `.`");
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '/' | '.')))
    {
        return bad(&format!(
            "`{c}` is not allowed (letters, digits and `_ - = / .` are)"
        ));
    }
    Ok(())
}

/// One stored value as a backend holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The value's bytes (JSON).
    pub value: Vec<u8>,
    /// Its revision.
    pub revision: u64,
}

/// What a write expects of the key it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: it writes whatever the key holds (`put`).
    Anything,
    /// That the key holds nothing (`create`).
    Absent,
    /// That the key is at this revision (`update`: compare-and-swap).
    Revision(u64),
}

/// Where values are kept: a file per bucket ([`LocalStore`]), JetStream
/// KV (`spoke::nats::kv_store`), or a host's own.
///
/// Each call names the tenant, the bucket (declared) and a checked key;
/// a backend keeps each tenant's keys apart and applies the bucket's TTL.
pub trait StoreBackend: Send + Sync + fmt::Debug + 'static {
    /// The value of `key`, or `None`.
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<RawEntry>, StoreError>>;

    /// Writes `key` if it is as `expect` says (else
    /// [`StoreErrorKind::Conflict`]); its new revision.
    fn write<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
        key: &'a str,
        value: Vec<u8>,
        expect: Expect,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Removes `key` (nothing when it holds nothing).
    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The keys that hold a value, sorted.
    fn keys<'a>(
        &'a self,
        tenant: &'a str,
        bucket: &'a BucketDef,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
}

/// A connector's storage: its declared buckets, for one tenant, in one
/// backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    connector: &'static str,
    tenant: Arc<str>,
    buckets: &'static [BucketDef],
    backend: Arc<dyn StoreBackend>,
}

impl Store {
    /// Connector `connector`'s `buckets` for `tenant`, kept in `backend`.
    pub fn new(
        connector: &'static str,
        tenant: impl Into<Arc<str>>,
        buckets: &'static [BucketDef],
        backend: Arc<dyn StoreBackend>,
    ) -> Store {
        Store {
            connector,
            tenant: tenant.into(),
            buckets,
            backend,
        }
    }

    /// A store of no connector, for a context no instance invoked through.
    pub(crate) fn detached() -> Store {
        Store::new(
            "",
            crate::env::DEFAULT_TENANT,
            &[],
            Arc::new(LocalStore::new("", "")),
        )
    }

    /// The buckets the connector declared.
    pub fn buckets(&self) -> &'static [BucketDef] {
        self.buckets
    }

    /// Where the values are kept.
    pub fn backend(&self) -> &Arc<dyn StoreBackend> {
        &self.backend
    }

    /// The tenant whose keys these are.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Bucket `name`; an error (with the declared names) when the
    /// connector did not declare it.
    pub fn bucket(&self, name: &str) -> Result<Bucket, StoreError> {
        match self.buckets.iter().find(|b| b.name == name) {
            Some(def) => Ok(Bucket {
                store: self.clone(),
                def,
            }),
            None if self.connector.is_empty() => Err(StoreError::new(
                StoreErrorKind::Undeclared,
                format!(
                    "no bucket `{name}`: this context was not made by an instance, so it has no store (call the action through an Instance or the test kit's harness)"
                ),
            )),
            None => {
                let names: Vec<&str> = self.buckets.iter().map(|b| b.name).collect();
                let hint = did_you_mean(name, names.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                let declared = if names.is_empty() {
                    format!(
                        "it declares none: add `buckets({name})` to `#[connector(name = \"{}\", ...)]`",
                        self.connector
                    )
                } else {
                    format!("it declares {}", names.join(", "))
                };
                Err(StoreError::new(
                    StoreErrorKind::Undeclared,
                    format!(
                        "connector `{}` has no bucket `{name}`{hint} ({declared})",
                        self.connector
                    ),
                ))
            }
        }
    }
}

/// One declared bucket, for one tenant.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Store,
    def: &'static BucketDef,
}

impl Bucket {
    /// Its name.
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    /// How long a value lives after its last write.
    pub fn ttl(&self) -> Option<Duration> {
        self.def.ttl()
    }

    fn backend(&self) -> &dyn StoreBackend {
        &*self.store.backend
    }

    /// The value of `key` and its revision, or `None`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        check_key(key)?;
        let Some(raw) = self
            .backend()
            .get(&self.store.tenant, self.def, key)
            .await?
        else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&raw.value).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Value,
                format!(
                    "bucket `{}`, key `{key}`: the value stored is not a {}: {e}",
                    self.def.name,
                    std::any::type_name::<T>()
                ),
            )
        })?;
        Ok(Some(Versioned {
            value,
            revision: raw.revision,
        }))
    }

    /// Writes `value` at `key`, whatever it held; the new revision.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<u64, StoreError> {
        self.write(key, value, Expect::Anything).await
    }

    /// Writes `value` at `key` only if it holds nothing (else
    /// [`StoreErrorKind::Conflict`]); the new revision.
    pub async fn create<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<u64, StoreError> {
        self.write(key, value, Expect::Absent).await
    }

    /// Writes `value` at `key` only if it is still at `revision` (else
    /// [`StoreErrorKind::Conflict`]): compare-and-swap. The new revision.
    pub async fn update<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        revision: u64,
    ) -> Result<u64, StoreError> {
        self.write(key, value, Expect::Revision(revision)).await
    }

    async fn write<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        check_key(key)?;
        let bytes = serde_json::to_vec(value).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Value,
                format!(
                    "bucket `{}`, key `{key}`: the value does not serialise to JSON: {e}",
                    self.def.name
                ),
            )
        })?;
        self.backend()
            .write(&self.store.tenant, self.def, key, bytes, expect)
            .await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.backend()
            .delete(&self.store.tenant, self.def, key)
            .await
    }

    /// The keys that hold a value, sorted.
    pub async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.backend().keys(&self.store.tenant, self.def).await
    }
}

/// The conflict error of a backend.
pub fn conflict(bucket: &str, key: &str, what: impl fmt::Display) -> StoreError {
    StoreError::new(
        StoreErrorKind::Conflict,
        format!("bucket `{bucket}`, key `{key}`: {what}"),
    )
}
