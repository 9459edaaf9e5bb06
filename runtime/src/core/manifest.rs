//! The manifest: everything a host needs to know about a connector, as JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encoding::Encoding;

/// The manifest format version, `"spoke": 1`.
pub const MANIFEST_VERSION: u32 = 1;

/// Whether an action only reads or also changes the outside system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Reads only; safe to retry on another instance.
    Read,
    /// May change the outside system (the default, as in Omni).
    Write,
}

impl Mode {
    /// `"read"` or `"write"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Write => "write",
        }
    }
}

/// The kind of value a search operator takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// Free text.
    Text,
    /// A person (name, handle or e-mail).
    Person,
    /// A date or date-time (RFC 3339 or a date).
    Datetime,
}

impl ValueType {
    /// `"text"`, `"person"` or `"datetime"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ValueType::Text => "text",
            ValueType::Person => "person",
            ValueType::Datetime => "datetime",
        }
    }
}

/// A connector's manifest, serialised as
/// `{ "spoke": 1, "name", "version", "display_name", "description",
/// "source_types" (when there are any), "config",
/// "actions", "search_operators", "syncs" and "buckets" (when there are any),
/// "capabilities" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_VERSION`].
    pub spoke: u32,
    /// The connector's name (`[a-z][a-z0-9_-]*`).
    pub name: String,
    /// The connector's version (its crate version unless set).
    pub version: String,
    /// A human-friendly name.
    pub display_name: String,
    /// What the connector does.
    pub description: String,
    /// The kinds of source it serves: those it declares
    /// (`#[connector(source_types = "...")]`), then those its syncs declare,
    /// each once (absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_types: Vec<String>,
    /// JSON Schema (draft 2020-12) of the configuration.
    pub config: Value,
    /// The actions, sorted by name.
    pub actions: Vec<ActionManifest>,
    /// The search operators, sorted by operator.
    pub search_operators: Vec<SearchOperatorManifest>,
    /// The syncs, sorted by name (absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syncs: Vec<SyncManifest>,
    /// The buckets of its store, in declaration order (absent when there
    /// are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<BucketManifest>,
    /// What the connector supports, e.g. `"actions"`, `"search_operators"`.
    pub capabilities: Vec<String>,
}

/// One bucket of a connector's store in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketManifest {
    /// Its name.
    pub name: String,
    /// How long a value lives after its last write (absent: for ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// One action in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionManifest {
    /// The action's name.
    pub name: String,
    /// What it does (its doc comment unless set).
    pub description: String,
    /// Read or write.
    pub mode: Mode,
    /// Only administrators may call it.
    pub admin_only: bool,
    /// Not listed to callers; still callable by name where allowed.
    pub hidden: bool,
    /// A write that may destroy or overwrite data: true for a write unless
    /// it says `#[action(write, destructive = false)]`, false for a read.
    #[serde(default = "yes")]
    pub destructive: bool,
    /// Calling it again with the same input changes nothing more
    /// (`#[action(idempotent)]`; reads are).
    #[serde(default)]
    pub idempotent: bool,
    /// Its own timeout, if it declares one.
    pub timeout_ms: Option<u64>,
    /// Self-contained JSON Schema of the input object.
    pub input_schema: Value,
    /// JSON Schema of the output.
    pub output_schema: Value,
    /// The encodings its input may come in, the preferred first
    /// (`["json", "msgpack"]` for parameters; `["json"]` when a manifest
    /// from before encodings does not say).
    #[serde(default = "json_only")]
    pub input_encodings: Vec<Encoding>,
    /// The encodings it can answer in, the preferred first.
    #[serde(default = "json_only")]
    pub output_encodings: Vec<Encoding>,
    /// The Protobuf message its input is (`package.Message`), if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_message_type: Option<String>,
    /// The Protobuf message its output is, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_message_type: Option<String>,
    /// The columns of its input Arrow batch, if the action declares them:
    /// `{"fields": [{"name": "id", "type": "Int64", "nullable": false}]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_arrow_schema: Option<Value>,
    /// The columns of its output Arrow batch, if the action declares them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_arrow_schema: Option<Value>,
}

impl ActionManifest {
    /// Whether it takes and gives JSON: what a JSON-only host (MCP, Omni)
    /// can call.
    pub fn speaks_json(&self) -> bool {
        self.input_encodings.contains(&Encoding::Json)
            && self.output_encodings.contains(&Encoding::Json)
    }

    /// Whether its input is an object of named parameters (a serde type,
    /// JSON first), not bytes, a message or a sequence of records.
    pub fn takes_parameters(&self) -> bool {
        self.input_encodings.first() == Some(&Encoding::Json)
    }
}

fn json_only() -> Vec<Encoding> {
    vec![Encoding::Json]
}

/// One search operator in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchOperatorManifest {
    /// The operator (its fn name), as typed by users: `ext:rs`.
    pub operator: String,
    /// The document attribute it filters on.
    pub attribute_key: String,
    /// The kind of value it takes.
    pub value_type: ValueType,
    /// What it does.
    pub description: String,
}

/// One sync in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncManifest {
    /// The sync's name.
    pub name: String,
    /// What it syncs (its doc comment unless set).
    pub description: String,
    /// The modes it runs in, the default first.
    pub modes: Vec<crate::sync::SyncMode>,
    /// The kind of source it syncs, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// JSON Schema of its checkpoint.
    pub checkpoint_schema: Value,
    /// The version of its checkpoint type.
    pub checkpoint_version: u32,
    /// The share of items that may fail in a completed run (0 to 1).
    pub error_budget: f64,
    /// The modes whose complete runs report unseen documents as deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep_modes: Vec<crate::sync::SyncMode>,
    /// JSON Schema of its documents' `metadata.extra`, when it declares
    /// the type (`#[sync(extra = T)]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_schema: Option<Value>,
    /// JSON Schema of its documents' `attributes`, when it declares the
    /// type (`#[sync(attributes = T)]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes_schema: Option<Value>,
}

impl Manifest {
    /// The action with this name, if any.
    pub fn action(&self, name: &str) -> Option<&ActionManifest> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// A write destroys until it says otherwise (MCP's default too).
fn yes() -> bool {
    true
}
