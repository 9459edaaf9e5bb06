//! Checkpoints: where a sync run got to, in the sync's own type, stored
//! with the version of that type so that a changed type is caught, and
//! migrated when the sync says how.
//!
//! A sync's checkpoint type `C` is any `Serialize + DeserializeOwned +
//! JsonSchema` type. It is stored as a [`StoredCheckpoint`]: the sync's
//! checkpoint `version` (1 unless `#[sync(version = N)]`) and the JSON of
//! the value. When a run starts, the stored checkpoint is decoded
//! ([`decode_checkpoint`]):
//!
//! - same version: decoded as `C`; a checkpoint that no longer decodes is
//!   an error naming the sync and the field (`$.last_path`), and the run
//!   does not start;
//! - an older version: handed to the sync's `migrate` fn
//!   (`#[sync(version = 2, migrate = Self::upgrade)]`, a
//!   `fn(u32, serde_json::Value) -> Result<C, E: Display>` that gets the
//!   stored version and value); without one, an error says so;
//! - a newer version (a binary older than the one that wrote it): an error.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ActionError;

/// A checkpoint as a sink stores it: the sync's checkpoint version and
/// the JSON of the sync's checkpoint value.
///
/// ```
/// use spoke::sync::StoredCheckpoint;
/// let stored = StoredCheckpoint::new(1, serde_json::json!({"page": 3}));
/// assert_eq!(
///     serde_json::to_string(&stored).unwrap(),
///     r#"{"version":1,"checkpoint":{"page":3}}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    /// The sync's checkpoint version when it was written.
    pub version: u32,
    /// The checkpoint, as the sync's type serialises it.
    pub checkpoint: Value,
}

impl StoredCheckpoint {
    /// A stored checkpoint of `version`.
    pub fn new(version: u32, checkpoint: Value) -> Self {
        StoredCheckpoint {
            version,
            checkpoint,
        }
    }
}

/// A sync's way from an older checkpoint to its current type: gets the
/// stored version and value.
pub type MigrateFn<C> = fn(u32, Value) -> Result<C, String>;

/// Why a stored checkpoint could not be used; the run does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CheckpointError {
    /// The sync.
    pub sync: String,
    /// The JSON path of the field that did not decode, when one did not.
    pub path: Option<String>,
    /// What is wrong, naming the sync and the field, and what to do.
    pub message: String,
}

impl From<CheckpointError> for ActionError {
    fn from(e: CheckpointError) -> Self {
        let mut details = serde_json::json!({ "sync": e.sync });
        if let Some(path) = &e.path {
            details["path"] = Value::String(path.clone());
        }
        ActionError::failed_precondition(e.message).with_details(details)
    }
}

/// Decodes the stored checkpoint of sync `sync`, whose checkpoint type is
/// `C` at `version`, migrating an older one with `migrate` (see the
/// [module docs](self)).
///
/// ```
/// use spoke::sync::{StoredCheckpoint, decode_checkpoint};
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Cursor { page: u32 }
///
/// let stored = StoredCheckpoint::new(1, serde_json::json!({"page": "three"}));
/// let err = decode_checkpoint::<Cursor>("files", 1, &stored, None).unwrap_err();
/// assert_eq!(err.path.as_deref(), Some("$.page"));
///
/// let old = StoredCheckpoint::new(1, serde_json::json!({"pages_done": 3}));
/// let migrate = |from: u32, old: serde_json::Value| -> Result<Cursor, String> {
///     Ok(Cursor { page: old["pages_done"].as_u64().ok_or("no pages_done")? as u32 + 1 })
/// };
/// let cursor = decode_checkpoint::<Cursor>("files", 2, &old, Some(migrate)).unwrap();
/// assert_eq!(cursor, Cursor { page: 4 });
/// ```
pub fn decode_checkpoint<C: DeserializeOwned>(
    sync: &str,
    version: u32,
    stored: &StoredCheckpoint,
    migrate: Option<MigrateFn<C>>,
) -> Result<C, CheckpointError> {
    let error = |path: Option<String>, message: String| CheckpointError {
        sync: sync.to_owned(),
        path,
        message,
    };
    if stored.version > version {
        return Err(error(
            None,
            format!(
                "the stored checkpoint of sync `{sync}` has version {}, newer than this build's {version}: \
                 run the build that wrote it, or reset the checkpoint",
                stored.version
            ),
        ));
    }
    if stored.version < version {
        let Some(migrate) = migrate else {
            return Err(error(
                None,
                format!(
                    "the stored checkpoint of sync `{sync}` has version {}, and the sync is at version {version} \
                     with no `migrate` fn to bring it over: add `migrate = ...` to its `#[sync]`, or reset the checkpoint",
                    stored.version
                ),
            ));
        };
        return migrate(stored.version, stored.checkpoint.clone()).map_err(|e| {
            error(
                None,
                format!(
                    "the `migrate` fn of sync `{sync}` could not bring its checkpoint from version {} to {version}: {e}",
                    stored.version
                ),
            )
        });
    }
    C::deserialize(&stored.checkpoint).or_else(|_| {
        serde_path_to_error::deserialize(&stored.checkpoint).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { "$".to_owned() } else { format!("$.{path}") };
            error(
                Some(path.clone()),
                format!(
                    "the stored checkpoint of sync `{sync}` no longer decodes at `{path}`: {}; \
                     if its type changed, raise the sync's `version` and give it a `migrate` fn, or reset the checkpoint",
                    e.into_inner()
                ),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Cursor {
        #[allow(dead_code)]
        after: Option<String>,
        page: u32,
    }

    #[test]
    fn a_changed_type_names_the_sync_and_the_field() {
        let stored = StoredCheckpoint::new(1, serde_json::json!({"after": null, "page": "x"}));
        let err = decode_checkpoint::<Cursor>("files", 1, &stored, None).unwrap_err();
        assert_eq!(err.path.as_deref(), Some("$.page"));
        assert!(
            err.message.starts_with(
                "the stored checkpoint of sync `files` no longer decodes at `$.page`: invalid type"
            ),
            "{}",
            err.message
        );
        let missing = StoredCheckpoint::new(1, serde_json::json!({"after": null}));
        let err = decode_checkpoint::<Cursor>("files", 1, &missing, None).unwrap_err();
        assert!(
            err.message.contains("missing field `page`"),
            "{}",
            err.message
        );
        let action: ActionError = err.into();
        assert_eq!(action.code(), crate::error::ErrorCode::FailedPrecondition);
    }

    #[test]
    fn versions_are_migrated_or_refused() {
        let old = StoredCheckpoint::new(1, serde_json::json!({"n": 2}));
        let err = decode_checkpoint::<Cursor>("files", 2, &old, None).unwrap_err();
        assert!(err.message.contains("no `migrate` fn"), "{}", err.message);
        let migrate: MigrateFn<Cursor> = |from, v| {
            assert_eq!(from, 1);
            Ok(Cursor {
                after: None,
                page: v["n"].as_u64().ok_or("no n")? as u32,
            })
        };
        let cursor = decode_checkpoint("files", 2, &old, Some(migrate)).unwrap();
        assert_eq!(cursor.page, 2);
        let failing: MigrateFn<Cursor> = |_, _| Err("no n".into());
        let err = decode_checkpoint("files", 2, &old, Some(failing)).unwrap_err();
        assert!(
            err.message.ends_with("from version 1 to 2: no n"),
            "{}",
            err.message
        );
        let newer = StoredCheckpoint::new(3, serde_json::json!({}));
        let err = decode_checkpoint::<Cursor>("files", 2, &newer, Some(migrate)).unwrap_err();
        assert!(
            err.message.contains("newer than this build's 2"),
            "{}",
            err.message
        );
    }
}
