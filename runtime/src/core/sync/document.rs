//! What a sync emits: documents created, updated or deleted, and group
//! memberships, in a shape every host can map onto its own (Omni's
//! `ConnectorEvent`, a JSON line, a NATS message).
//!
//! As JSON, each event is an object with a `type`:
//!
//! ```json
//! {"type":"document_created","id":"docs/a.md","title":"a.md",
//!  "content":{"text":"# A"},"metadata":{"mime_type":"text/markdown",
//!  "updated_at":"2026-11-30T09:00:00Z","size":3},
//!  "permissions":{"public":true,"users":[],"groups":[]}}
//! {"type":"document_deleted","id":"docs/old.md"}
//! {"type":"group_membership","group":"eng@example.com","members":["ana@example.com"]}
//! ```

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ActionError;

/// One thing a sync run tells its sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SyncEvent {
    /// A document the sink did not have.
    DocumentCreated(Document),
    /// A document the sink had, changed. `permissions: None` keeps the
    /// ones the sink has.
    DocumentUpdated(Document),
    /// A document that no longer exists.
    DocumentDeleted {
        /// The document's id.
        id: String,
    },
    /// Who is in a group (its whole membership, replacing what the sink had).
    GroupMembership(GroupMembership),
}

impl SyncEvent {
    /// The id of the document this event is about (`None` for a group).
    pub fn document_id(&self) -> Option<&str> {
        match self {
            SyncEvent::DocumentCreated(d) | SyncEvent::DocumentUpdated(d) => Some(&d.id),
            SyncEvent::DocumentDeleted { id } => Some(id),
            SyncEvent::GroupMembership(_) => None,
        }
    }

    /// Appends the event to `out` as one line of JSON (and its `\n`), the
    /// form every transport sends events in.
    ///
    /// ```
    /// use spoke::sync::SyncEvent;
    /// let mut out = Vec::new();
    /// SyncEvent::DocumentDeleted { id: "a".into() }.write_json_line(&mut out).unwrap();
    /// assert_eq!(out, b"{\"type\":\"document_deleted\",\"id\":\"a\"}\n");
    /// ```
    pub fn write_json_line(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        out.push(b'\n');
        Ok(())
    }
}

/// A document: its id in the outside system, title, content, metadata,
/// permissions and extra attributes.
///
/// ```
/// use spoke::sync::{Document, Permissions};
/// let doc = Document::new("docs/a.md")
///     .title("a.md")
///     .text("# A")
///     .mime_type("text/markdown")
///     .path("docs/a.md")
///     .permissions(Permissions::public());
/// assert_eq!(doc.id, "docs/a.md");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Document {
    /// Its id in the outside system (stable across runs).
    pub id: String,
    /// Its title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its content, inline or by reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Who wrote it, when, what it is and where.
    #[serde(default, skip_serializing_if = "DocumentMetadata::is_empty")]
    pub metadata: DocumentMetadata,
    /// Who may see it; `None` on an update keeps what the sink has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
    /// Attributes search operators filter on (`ext`, `label`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Value>,
}

/// The fields of `value`'s JSON form, which must be an object.
fn fields_of<T: Serialize + ?Sized>(
    what: &str,
    value: &T,
) -> Result<serde_json::Map<String, Value>, ActionError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(ActionError::invalid_input(format!(
            "a document's {what} are named fields, but the value given serializes as {}: pass a struct or a map",
            crate::core::decode::json_kind(&other)
        ))),
        Err(e) => Err(ActionError::invalid_input(format!(
            "a document's {what} could not be serialized: {e}"
        ))),
    }
}

/// A document's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// The text itself.
    Text(String),
    /// Where the host can fetch it (a URL, a content store id).
    Reference(String),
}

/// Who wrote a document, when, what it is and where it lives.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DocumentMetadata {
    /// Its author (a name or an e-mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// Its MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Where a person opens it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where it sits in the outside system's hierarchy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Anything else worth keeping.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

impl DocumentMetadata {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == DocumentMetadata::default()
    }
}

/// Who may see a document: everyone, or the users and groups listed
/// (e-mails or ids).
///
/// ```
/// use spoke::sync::Permissions;
/// let p = Permissions::users(["ana@example.com"]).with_groups(["eng@example.com"]);
/// assert!(!p.public);
/// assert_eq!(p.groups, ["eng@example.com"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Permissions {
    /// Everyone may see it.
    pub public: bool,
    /// Users who may see it.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups whose members may see it.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Permissions {
    /// Everyone may see it.
    pub fn public() -> Self {
        Permissions {
            public: true,
            ..Permissions::default()
        }
    }

    /// Only these users may see it.
    pub fn users<S: Into<String>>(users: impl IntoIterator<Item = S>) -> Self {
        Permissions {
            users: users.into_iter().map(Into::into).collect(),
            ..Permissions::default()
        }
    }

    /// These groups' members may see it too.
    pub fn with_groups<S: Into<String>>(mut self, groups: impl IntoIterator<Item = S>) -> Self {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }
}

/// The members of a group, as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    /// The group's id or e-mail.
    pub group: String,
    /// Its display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its members' ids or e-mails.
    pub members: Vec<String>,
}

/// An instant, written as RFC 3339 in UTC (`2026-11-30T09:00:00Z`).
/// Made from a [`SystemTime`], Unix seconds, or parsed from RFC 3339 with
/// any offset.
///
/// ```
/// use spoke::sync::Timestamp;
/// let t = Timestamp::parse("2026-11-30T10:00:00+01:00").unwrap();
/// assert_eq!(t.to_string(), "2026-11-30T09:00:00Z");
/// assert_eq!(Timestamp::from_unix_seconds(0).unwrap().to_string(), "1970-01-01T00:00:00Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(jiff::Timestamp);

impl Timestamp {
    /// Parses RFC 3339 (`2026-11-30T09:00:00Z`, `...+01:00`); the error says
    /// what is wrong.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        text.parse::<jiff::Timestamp>()
            .map(Timestamp)
            .map_err(|e| format!("`{text}` is not an RFC 3339 timestamp: {e}"))
    }

    /// Seconds since the Unix epoch; `None` out of range.
    pub fn from_unix_seconds(seconds: i64) -> Option<Timestamp> {
        jiff::Timestamp::from_second(seconds).ok().map(Timestamp)
    }

    /// Seconds since the Unix epoch (rounded down).
    pub fn as_unix_seconds(self) -> i64 {
        self.0.as_second()
    }

    /// Now.
    pub fn now() -> Timestamp {
        Timestamp(jiff::Timestamp::now())
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl From<SystemTime> for Timestamp {
    /// Clamped to the range RFC 3339 can write (years 0001 to 9999, about).
    fn from(time: SystemTime) -> Self {
        Timestamp(jiff::Timestamp::try_from(time).unwrap_or_else(|_| {
            if time < SystemTime::UNIX_EPOCH {
                jiff::Timestamp::MIN
            } else {
                jiff::Timestamp::MAX
            }
        }))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl Document {
    /// A document with this id and nothing else yet.
    pub fn new(id: impl Into<String>) -> Self {
        Document {
            id: id.into(),
            ..Document::default()
        }
    }

    /// Its title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Its content, inline.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.content = Some(Content::Text(text.into()));
        self
    }

    /// Its content, by reference (a URL, a content store id).
    pub fn content_ref(mut self, reference: impl Into<String>) -> Self {
        self.content = Some(Content::Reference(reference.into()));
        self
    }

    /// Its author.
    pub fn author(mut self, author: impl Into<String>) -> Self {
        self.metadata.author = Some(author.into());
        self
    }

    /// When it was created.
    pub fn created_at(mut self, at: impl Into<Timestamp>) -> Self {
        self.metadata.created_at = Some(at.into());
        self
    }

    /// When it last changed.
    pub fn updated_at(mut self, at: impl Into<Timestamp>) -> Self {
        self.metadata.updated_at = Some(at.into());
        self
    }

    /// Its MIME type.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.metadata.mime_type = Some(mime_type.into());
        self
    }

    /// Its size in bytes.
    pub fn size(mut self, bytes: u64) -> Self {
        self.metadata.size = Some(bytes);
        self
    }

    /// Where a person opens it.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.metadata.url = Some(url.into());
        self
    }

    /// Where it sits in the outside system.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.metadata.path = Some(path.into());
        self
    }

    /// One more metadata entry.
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.extra.insert(key.into(), value.into());
        self
    }

    /// One more attribute for search operators.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// The fields of `value` (a struct or a map) as metadata entries, over
    /// any of the same name. Declare its type on the sync
    /// (`#[sync(extra = T)]`) and hosts learn the fields' schema from the
    /// manifest (Omni's `extra_schema`, from which its indexer finds people
    /// in `format: email` fields).
    ///
    /// ```
    /// use spoke::prelude::*;
    /// use spoke::sync::Document;
    ///
    /// #[derive(Serialize, JsonSchema)]
    /// struct Ticket {
    ///     #[schemars(email)]
    ///     assignee: String,
    ///     priority: u8,
    /// }
    ///
    /// let doc = Document::new("T-1")
    ///     .extra_from(&Ticket { assignee: "ana@example.com".into(), priority: 2 })
    ///     .unwrap();
    /// assert_eq!(doc.metadata.extra["priority"], 2);
    /// ```
    ///
    /// # Errors
    ///
    /// `invalid_input` when `value` does not serialize as a JSON object
    /// (a number, a list) or fails to serialize.
    pub fn extra_from<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, ActionError> {
        self.metadata.extra.extend(fields_of("extra", value)?);
        Ok(self)
    }

    /// The fields of `value` (a struct or a map) as attributes, over any of
    /// the same name. Declare its type on the sync
    /// (`#[sync(attributes = T)]`) and hosts learn their schema from the
    /// manifest (Omni's `attributes_schema`).
    ///
    /// # Errors
    ///
    /// `invalid_input` when `value` does not serialize as a JSON object.
    pub fn attributes_from<T: Serialize + ?Sized>(
        mut self,
        value: &T,
    ) -> Result<Self, ActionError> {
        self.attributes.extend(fields_of("attributes", value)?);
        Ok(self)
    }

    /// Who may see it.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = Some(permissions);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_a_type_and_only_what_is_set() {
        let doc = Document::new("a")
            .title("A")
            .text("hi")
            .size(2)
            .updated_at(Timestamp::from_unix_seconds(60).unwrap())
            .permissions(Permissions::public());
        let json = serde_json::to_value(SyncEvent::DocumentCreated(doc.clone())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "document_created", "id": "a", "title": "A",
                "content": {"text": "hi"},
                "metadata": {"size": 2, "updated_at": "1970-01-01T00:01:00Z"},
                "permissions": {"public": true, "users": [], "groups": []}})
        );
        let back: SyncEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, SyncEvent::DocumentCreated(doc));
        let deleted =
            serde_json::to_string(&SyncEvent::DocumentDeleted { id: "b".into() }).unwrap();
        assert_eq!(deleted, r#"{"type":"document_deleted","id":"b"}"#);
    }

    #[test]
    fn timestamps_parse_any_offset_and_say_what_is_wrong() {
        assert_eq!(
            Timestamp::parse("2026-11-30T10:00:00+01:00").unwrap(),
            Timestamp::parse("2026-11-30T09:00:00Z").unwrap()
        );
        let err = Timestamp::parse("yesterday").unwrap_err();
        assert!(
            err.starts_with("`yesterday` is not an RFC 3339 timestamp"),
            "{err}"
        );
        let epoch = Timestamp::from(SystemTime::UNIX_EPOCH);
        assert_eq!(epoch.as_unix_seconds(), 0);
    }
}
