//! The JSON bodies of Omni's connector contract: what the connector-manager
//! sends to a connector, what a connector answers, and what it sends back
//! to the manager (`/sdk/...`).
//!
//! Only the fields Spoke uses are read; everything else a body carries is
//! ignored, so the manager's timestamps (six-digit years, `+002026-...`,
//! which RFC 3339 parsers refuse) never stop a request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sync::SyncMode;

/// `POST /sync`.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncRequest {
    /// The run's id (a ULID), chosen by the manager.
    pub sync_run_id: String,
    /// The source to sync.
    pub source_id: String,
    /// `full`, `incremental` or `realtime`.
    pub sync_mode: SyncMode,
    /// The checkpoint to start from; else the source's.
    #[serde(default)]
    pub checkpoint: Option<Value>,
    /// Whether the manager resumes a run it lost.
    #[serde(default)]
    pub is_resume: bool,
}

/// `POST /cancel`.
#[derive(Debug, Clone, Deserialize)]
pub struct CancelRequest {
    /// The run to cancel.
    pub sync_run_id: String,
}

/// `POST /action`.
#[derive(Debug, Clone, Deserialize)]
pub struct ActionRequest {
    /// The action's name.
    pub action: String,
    /// Its input (`null` means `{}`).
    #[serde(default)]
    pub params: Value,
    /// The source's credential, when the action runs on a source.
    #[serde(default)]
    pub credentials: Option<ServiceCredential>,
    /// The source, when the action runs on one.
    #[serde(default)]
    pub source: Option<Source>,
    /// Who asked, as the manager vouches.
    #[serde(default)]
    pub actor_email: Option<String>,
}

/// A source, as `GET /sdk/source/{id}` returns it (the fields Spoke reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    /// Its id.
    pub id: String,
    /// Its kind (`file_system`, `jira`, ...).
    #[serde(default)]
    pub source_type: String,
    /// Its configuration, a JSON object.
    #[serde(default)]
    pub config: Value,
    /// The checkpoint of its last completed run.
    #[serde(default)]
    pub checkpoint: Option<Value>,
}

/// A source's credential, as `GET /sdk/credentials/{id}` returns it (the
/// fields Spoke reads). `credentials` is the secret blob.
#[derive(Clone, Deserialize)]
pub struct ServiceCredential {
    /// The secret values (`{"api_token": ...}`), mapped onto the
    /// connector's secret config fields by name.
    #[serde(default)]
    pub credentials: Value,
    /// Non-secret settings of the credential.
    #[serde(default)]
    pub config: Value,
}

impl std::fmt::Debug for ServiceCredential {
    // The blob holds secrets: show its keys only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self
            .credentials
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        f.debug_struct("ServiceCredential")
            .field("credentials", &keys)
            .finish_non_exhaustive()
    }
}

/// `{"status": "...", "message": ...}`: the answer of `/sync` and of every
/// refused request but `/action`'s.
#[derive(Debug, Clone, Serialize)]
pub struct StatusBody {
    /// `started`, `cancelled`, `not_found`, `error`, `healthy`.
    pub status: &'static str,
    /// Why, when it is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `{"status": "success", "result": ...}` or `{"status": "error", "error":
/// "<code>: <message>"}`: the answer of `/action`.
#[derive(Debug, Clone, Serialize)]
pub struct ActionResponse<'a> {
    /// `success` or `error`.
    pub status: &'static str,
    /// The action's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a serde_json::value::RawValue>,
    /// The error, `<code>: <message>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's code and details, for callers that read more than Omni.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}
