//! LibreFang's sidecar channel protocol: typed events a connector sends and
//! typed commands it receives, so a Spoke connector can be a LibreFang
//! channel adapter (see [`stdio`](crate::stdio)).
//!
//! Every frame is one JSON object `{"method": "...", "params": {...}}`. The
//! wire shapes follow LibreFang's conformance corpus (copied in
//! `tests/fixtures/librefang/`); optional fields are omitted when unset.
//!
//! **Events** (connector to LibreFang) are built with typed builders and
//! emitted from an action (or a producer) through its [`Context`]:
//!
//! ```
//! use spoke::Context;
//! use spoke::librefang::{LibreFangEmit, MessageBuilder};
//!
//! # async fn demo(ctx: &Context) -> Result<(), spoke::EmitError> {
//! ctx.emit_librefang(
//!     MessageBuilder::new("42", "Alice", "hello")
//!         .content_text()
//!         .channel_id("-100123")
//!         .platform("telegram"),
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Under `stdio`, the transport writes such an event as the LibreFang frame
//! itself (`{"method":"message","params":{...}}`); other transports forward
//! it as a custom event named [`EVENT_NAME`] whose data is the frame.
//! Emitting waits while the receiver is full and errs if it is gone: it never
//! drops an event silently.
//!
//! **Commands** (LibreFang to connector) without an id (`send`, `typing`,
//! `reaction`, `interactive`, `stream_start`, `stream_delta`, `stream_end`)
//! invoke the connector's action of the same name with the params as input.
//! The params types here derive `Deserialize + JsonSchema`, so an action
//! takes them whole:
//!
//! ```standalone_crate
//! use spoke::librefang::SendParams;
//! use spoke::prelude::*;
//!
//! /// A chat channel.
//! #[connector(name = "chat")]
//! pub struct Chat {}
//!
//! #[connector]
//! impl Chat {
//!     /// Deliver a reply to the chat.
//!     #[action]
//!     async fn send(&self, ctx: &Context, #[input] cmd: SendParams) -> Result<(), ActionError> {
//!         # let _ = (ctx, cmd);
//!         /* ... */
//!         Ok(())
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! LibreFang adds optional fields without bumping its protocol version, so
//! the params types ignore fields they do not know when decoding. Their
//! schemas still list only the known fields, closed
//! (`additionalProperties: false`), like every Spoke input schema: they say
//! what the connector understands.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use serde::de::value::SeqAccessDeserializer;
use serde::de::{Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::context::{Context, EmitError};
use crate::manifest::Manifest;

/// The sidecar protocol version Spoke speaks (`ready.params.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The name of the custom event that carries a LibreFang frame
/// (`data` = the whole frame). The stdio transport writes its data as the
/// frame itself; other transports forward it like any custom event.
pub const EVENT_NAME: &str = "librefang";

/// The LibreFang event methods a connector may emit (the stdio transport
/// writes frames with these methods as they are; `ready` is its own).
pub const EMITTED_METHODS: [&str; 5] = ["message", "typing", "qr_ready", "qr_status", "error"];

/// The LibreFang command methods that invoke the connector's action of the
/// same name.
pub const ACTION_METHODS: [&str; 7] = [
    "send",
    "typing",
    "reaction",
    "interactive",
    "stream_start",
    "stream_delta",
    "stream_end",
];

fn is_false(b: &bool) -> bool {
    !*b
}

// ------------------------------------------------------------------ shared

/// A message's content: LibreFang's `ChannelContent`, externally tagged.
///
/// `{"Text": "hello"}` is [`Content::Text`]; `{"FileData": {"data": [...],
/// "filename": "...", "mime_type": "..."}}` (a file LibreFang sends whole,
/// its bytes as a JSON array of numbers) is [`Content::FileData`], decoded
/// straight into bytes (a `FileData` of another shape, e.g. without `data`,
/// is an error that names it: LibreFang never sends one); every other
/// variant (`Image`, `File`, `Voice`, ...) is kept as its JSON in
/// [`Content::Other`], so nothing is lost when a newer LibreFang sends a
/// variant Spoke does not model.
///
/// ```
/// use spoke::librefang::{Content, FileData};
/// let content: Content = serde_json::from_str(
///     r#"{"FileData": {"data": [104, 105], "filename": "hi.txt", "mime_type": "text/plain"}}"#,
/// )?;
/// let Content::FileData(file) = content else { unreachable!() };
/// assert_eq!(file.data, b"hi");
/// assert_eq!(file.filename, "hi.txt");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// A file sent whole.
    FileData(FileData),
    /// Any other variant, as JSON.
    Other(Value),
}

/// A file LibreFang sends whole (`ChannelContent::FileData`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct FileData {
    /// Its bytes (on the wire, a JSON array of numbers 0-255).
    pub data: Vec<u8>,
    /// Its name.
    #[serde(default)]
    pub filename: String,
    /// Its MIME type, e.g. `application/pdf`.
    #[serde(default)]
    pub mime_type: String,
}

impl Content {
    /// The text, when this is [`Content::Text`].
    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(t),
            Content::FileData(_) | Content::Other(_) => None,
        }
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(text) => BTreeMap::from([("Text", text)]).serialize(serializer),
            Content::FileData(file) => BTreeMap::from([("FileData", file)]).serialize(serializer),
            Content::Other(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ContentVisitor)
    }
}

/// Reads a [`Content`] in one pass: a `FileData`'s bytes go straight into a
/// `Vec<u8>` (a [`Value`] would take some 32 bytes for each of them).
struct ContentVisitor;

impl<'de> Visitor<'de> for ContentVisitor {
    type Value = Content;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LibreFang content, such as {\"Text\": \"hello\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Content, A::Error> {
        let Some(tag) = map.next_key::<String>()? else {
            return Ok(Content::Other(Value::Object(Map::new())));
        };
        // The usual shape, one key: a `FileData` read straight into bytes.
        let first = if tag == "FileData" {
            Err(map.next_value::<FileData>()?)
        } else {
            Ok(map.next_value::<Value>()?)
        };
        let mut rest = Map::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            rest.insert(key, value);
        }
        if rest.is_empty() {
            return Ok(match first {
                Err(file) => Content::FileData(file),
                Ok(Value::String(text)) if tag == "Text" => Content::Text(text),
                Ok(value) => Content::Other(Value::Object(Map::from_iter([(tag, value)]))),
            });
        }
        // Anything else is kept whole as JSON (a repeated key: the last
        // counts, as in a `Value`).
        if !rest.contains_key(&tag) {
            let first = match first {
                Err(file) => serde_json::to_value(file).map_err(A::Error::custom)?,
                Ok(value) => value,
            };
            rest.insert(tag, first);
        }
        if rest.len() == 1 {
            // Only the repeated key: read it again as one variant.
            return Content::deserialize(Value::Object(rest)).map_err(A::Error::custom);
        }
        Ok(Content::Other(Value::Object(rest)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Content, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Content::Other)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Content, E> {
        Ok(Content::Other(Value::String(v.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Content, E> {
        Ok(Content::Other(Value::String(v)))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Content, E> {
        Ok(Content::Other(Value::Bool(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Content, E> {
        Ok(Content::Other(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Content, E> {
        Ok(Content::Other(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Content, E> {
        Ok(Content::Other(v.into()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Content, E> {
        Ok(Content::Other(Value::Null))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Content, E> {
        Ok(Content::Other(Value::Null))
    }
}

impl JsonSchema for Content {
    fn schema_name() -> Cow<'static, str> {
        "Content".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "LibreFang `ChannelContent`, externally tagged: `{\"Text\": \"hello\"}`, `{\"FileData\": {\"data\": [104, 105], \"filename\": \"hi.txt\", \"mime_type\": \"text/plain\"}}`, or another variant such as `{\"Image\": {\"url\": \"...\", \"caption\": null}}`.",
            "type": "object",
            "properties": {
                "Text": { "type": "string" },
                "FileData": {
                    "type": "object",
                    "properties": {
                        "data": { "type": "array", "items": { "type": "integer", "minimum": 0, "maximum": 255 } },
                        "filename": { "type": "string" },
                        "mime_type": { "type": "string" }
                    },
                    "required": ["data"]
                }
            },
            "minProperties": 1,
            "maxProperties": 1
        })
    }
}

/// A user on the chat platform (LibreFang's `ChannelUser`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ChannelUser {
    /// The platform's id of the user (or chat).
    pub platform_id: String,
    /// The name to show.
    pub display_name: String,
    /// The LibreFang user this maps to, if any (written as `null` when unset).
    #[serde(default)]
    pub librefang_user: Option<String>,
}

// ---------------------------------------------------------------- commands

/// `send` params: deliver a message to the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SendParams {
    /// The chat to send to.
    pub channel_id: String,
    /// The text, flattened (always present).
    pub text: String,
    /// The full structured content, when LibreFang sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// The thread to reply into, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Who the message is for (`user.platform_id` is the channel).
    pub user: ChannelUser,
}

/// `typing` params: show a typing indicator in a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TypingParams {
    /// The chat.
    pub channel_id: String,
}

/// `reaction` params: react to a platform message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReactionParams {
    /// The chat.
    pub channel_id: String,
    /// The platform's id of the message.
    pub message_id: String,
    /// The reaction, e.g. an emoji.
    pub reaction: String,
}

/// One button of an interactive message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Button {
    /// What the button says.
    pub label: String,
    /// The action id sent back when it is pressed.
    pub action: String,
    /// A link to open instead, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A message with buttons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct InteractiveMessage {
    /// The text above the buttons.
    pub text: String,
    /// Rows of buttons.
    #[serde(default)]
    pub buttons: Vec<Vec<Button>>,
}

/// `interactive` params: send a message with buttons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct InteractiveParams {
    /// The chat.
    pub channel_id: String,
    /// The message.
    pub message: InteractiveMessage,
}

/// `stream_start` params: a streamed reply begins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StreamStartParams {
    /// The chat.
    pub channel_id: String,
    /// The stream, named again by its deltas and its end.
    pub stream_id: String,
    /// The thread to stream into, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

/// `stream_delta` params: the next chunk of a streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StreamDeltaParams {
    /// The stream.
    pub stream_id: String,
    /// The chunk.
    pub text: String,
}

/// `stream_end` params: a streamed reply is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StreamEndParams {
    /// The stream.
    pub stream_id: String,
}

/// A command frame LibreFang writes to the connector's stdin.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `send`.
    Send(SendParams),
    /// `typing`.
    Typing(TypingParams),
    /// `reaction`.
    Reaction(ReactionParams),
    /// `interactive`.
    Interactive(InteractiveParams),
    /// `stream_start`.
    StreamStart(StreamStartParams),
    /// `stream_delta`.
    StreamDelta(StreamDeltaParams),
    /// `stream_end`.
    StreamEnd(StreamEndParams),
    /// `ready_ack`: stop re-sending `ready`.
    ReadyAck,
    /// `heartbeat`.
    Heartbeat,
    /// `shutdown`.
    Shutdown,
}

impl Command {
    /// The frame's `method`.
    pub fn method(&self) -> &'static str {
        match self {
            Command::Send(_) => "send",
            Command::Typing(_) => "typing",
            Command::Reaction(_) => "reaction",
            Command::Interactive(_) => "interactive",
            Command::StreamStart(_) => "stream_start",
            Command::StreamDelta(_) => "stream_delta",
            Command::StreamEnd(_) => "stream_end",
            Command::ReadyAck => "ready_ack",
            Command::Heartbeat => "heartbeat",
            Command::Shutdown => "shutdown",
        }
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let method = self.method();
        match self {
            Command::Send(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            Command::Typing(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            Command::Reaction(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            Command::Interactive(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            Command::StreamStart(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            Command::StreamDelta(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            Command::StreamEnd(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            Command::ReadyAck | Command::Heartbeat | Command::Shutdown => {
                FrameOut::<()>::new(method, None).serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let FrameIn { method, params } = FrameIn::deserialize(deserializer)?;
        Ok(match method.as_str() {
            "send" => Command::Send(params_of(&method, params)?),
            "typing" => Command::Typing(params_of(&method, params)?),
            "reaction" => Command::Reaction(params_of(&method, params)?),
            "interactive" => Command::Interactive(params_of(&method, params)?),
            "stream_start" => Command::StreamStart(params_of(&method, params)?),
            "stream_delta" => Command::StreamDelta(params_of(&method, params)?),
            "stream_end" => Command::StreamEnd(params_of(&method, params)?),
            "ready_ack" => Command::ReadyAck,
            "heartbeat" => Command::Heartbeat,
            "shutdown" => Command::Shutdown,
            other => {
                return Err(D::Error::custom(format!(
                    "unknown LibreFang command `{other}`"
                )));
            }
        })
    }
}

// ------------------------------------------------------------------ events

/// `message` params: a message from a platform user, for LibreFang to route
/// to an agent. Build it with [`MessageBuilder`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Message {
    /// The sender's platform id.
    pub user_id: String,
    /// The sender's display name.
    pub user_name: String,
    /// The text (mirrors `content` when that is text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The full structured content; supersedes `text` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// The chat it was posted in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// The platform's name, e.g. `telegram`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The platform's own id of the message (lets reactions find it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The sender's `@handle`, if the platform has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The LibreFang user the sender maps to, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub librefang_user: Option<String>,
    /// Whether it came from a group chat.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_group: bool,
    /// The thread it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

/// Builds a [`Message`]: sender and text first, the rest optional.
///
/// ```
/// use spoke::librefang::{LibreFangEvent, MessageBuilder};
/// let frame = LibreFangEvent::from(MessageBuilder::new("1", "Bob", "hi")).to_frame();
/// assert_eq!(frame, serde_json::json!({
///     "method": "message",
///     "params": {"user_id": "1", "user_name": "Bob", "text": "hi"}
/// }));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct MessageBuilder {
    message: Message,
}

impl MessageBuilder {
    /// A text message from a user.
    pub fn new(
        user_id: impl Into<String>,
        user_name: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        MessageBuilder {
            message: Message {
                user_id: user_id.into(),
                user_name: user_name.into(),
                text: Some(text.into()),
                ..Message::default()
            },
        }
    }

    /// Also sends the text as structured content, `content: {"Text": text}`
    /// (`text` stays, mirrored).
    pub fn content_text(mut self) -> Self {
        let text = self.message.text.clone().unwrap_or_default();
        self.message.content = Some(Content::Text(text));
        self
    }

    /// Structured content of any variant. [`Content::Text`] also becomes
    /// the `text`, so the two always agree; for any other variant `text`
    /// stays as the flattened text.
    ///
    /// ```
    /// use spoke::librefang::{Content, MessageBuilder};
    /// let m = MessageBuilder::new("1", "Bob", "draft")
    ///     .content(Content::Text("final".into()))
    ///     .build();
    /// assert_eq!(m.text.as_deref(), Some("final"));
    /// ```
    pub fn content(mut self, content: Content) -> Self {
        if let Content::Text(text) = &content {
            self.message.text = Some(text.clone());
        }
        self.message.content = Some(content);
        self
    }

    /// The chat it was posted in.
    pub fn channel_id(mut self, channel_id: impl Into<String>) -> Self {
        self.message.channel_id = Some(channel_id.into());
        self
    }

    /// The platform's name.
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.message.platform = Some(platform.into());
        self
    }

    /// The thread it belongs to.
    pub fn thread_id(mut self, thread_id: impl Into<String>) -> Self {
        self.message.thread_id = Some(thread_id.into());
        self
    }

    /// The platform's own id of the message.
    pub fn message_id(mut self, message_id: impl Into<String>) -> Self {
        self.message.message_id = Some(message_id.into());
        self
    }

    /// The sender's `@handle`.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.message.username = Some(username.into());
        self
    }

    /// The LibreFang user the sender maps to.
    pub fn librefang_user(mut self, user: impl Into<String>) -> Self {
        self.message.librefang_user = Some(user.into());
        self
    }

    /// Marks it as coming from a group chat.
    pub fn group(mut self) -> Self {
        self.message.is_group = true;
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: Value) -> Self {
        self.message.metadata.insert(key.into(), value);
        self
    }

    /// The message.
    pub fn build(self) -> Message {
        self.message
    }
}

/// `typing` params: a platform user started or stopped typing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypingIndicator {
    /// The user's platform id.
    pub user_id: String,
    /// The user's display name.
    pub user_name: String,
    /// Whether they are typing now.
    pub is_typing: bool,
}

/// A `typing` event: `user_id` started (`true`) or stopped typing.
pub fn typing(
    user_id: impl Into<String>,
    user_name: impl Into<String>,
    is_typing: bool,
) -> LibreFangEvent {
    LibreFangEvent::Typing(TypingIndicator {
        user_id: user_id.into(),
        user_name: user_name.into(),
        is_typing,
    })
}

/// `qr_ready` params: a login QR code is waiting to be scanned.
///
/// ```
/// use spoke::librefang::QrReady;
/// let qr = QrReady::new("wxp://code").message("Scan within 5 minutes");
/// assert_eq!(qr.qr_url, None);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct QrReady {
    /// The payload the scanner reads.
    pub qr_code: String,
    /// A ready-made scan URL, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_url: Option<String>,
    /// A note for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the code expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl QrReady {
    /// A QR code with nothing else set.
    pub fn new(qr_code: impl Into<String>) -> Self {
        QrReady {
            qr_code: qr_code.into(),
            qr_url: None,
            message: None,
            expires_at: None,
        }
    }

    /// A ready-made scan URL.
    pub fn qr_url(mut self, url: impl Into<String>) -> Self {
        self.qr_url = Some(url.into());
        self
    }

    /// A note for the operator.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// When the code expires, RFC 3339 (e.g. `2026-05-28T20:00:00Z`).
    pub fn expires_at(mut self, at: impl Into<String>) -> Self {
        self.expires_at = Some(at.into());
        self
    }
}

/// `qr_status` params: the QR login moved on (`scanning`, `confirmed`,
/// `expired`, `failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[must_use]
pub struct QrStatus {
    /// The new state.
    pub status: String,
    /// A note for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl QrStatus {
    /// A status with no note.
    pub fn new(status: impl Into<String>) -> Self {
        QrStatus {
            status: status.into(),
            message: None,
        }
    }

    /// A note for the operator.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// `error` params: something went wrong in the adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// What went wrong.
    pub message: String,
}

/// An `error` event.
pub fn error(message: impl Into<String>) -> LibreFangEvent {
    LibreFangEvent::Error(ErrorEvent {
        message: message.into(),
    })
}

/// A per-host header rule of a `ready` frame: `(host, [(name, value)])`.
pub type HeaderRule = (String, Vec<(String, String)>);

/// `ready` params: the adapter is up. The stdio transport sends it; every
/// field is optional on the wire, so the bare legacy `{"method":"ready"}`
/// parses to [`Ready::default`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[must_use]
pub struct Ready {
    /// LibreFang capabilities: `typing`, `reaction`, `interactive`,
    /// `thread`, `streaming`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The account this adapter serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Whether LibreFang should not send error replies to users.
    #[serde(default)]
    pub suppress_error_responses: bool,
    /// Users LibreFang may notify through this channel.
    #[serde(default)]
    pub notification_recipients: Vec<ChannelUser>,
    /// Headers LibreFang adds when fetching URLs on these hosts.
    #[serde(default)]
    pub header_rules: Vec<HeaderRule>,
    /// The protocol version ([`PROTOCOL_VERSION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    /// Spoke's summary of the connector (Spoke hosts read it; LibreFang ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoke: Option<SpokeSummary>,
    /// The connector's full Spoke manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Box<Manifest>>,
}

/// The `spoke` object of a `ready` frame.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SpokeSummary {
    /// The connector's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its display name.
    pub display_name: String,
    /// Its visible action names.
    pub actions: Vec<String>,
    /// Its search operators.
    pub search_operators: Vec<String>,
    /// The manifest's capabilities.
    pub capabilities: Vec<String>,
    /// How many invocations the connector runs at once (`SPOKE_MAX_IN_FLIGHT`);
    /// a supervising hub registers the sidecar with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

impl Ready {
    /// A `ready` for this account, with protocol version 1 and nothing else.
    pub fn new(account_id: impl Into<String>) -> Self {
        Ready {
            account_id: Some(account_id.into()),
            protocol_version: Some(PROTOCOL_VERSION),
            ..Ready::default()
        }
    }

    /// Declares the LibreFang capabilities.
    pub fn capabilities<S: Into<String>>(mut self, caps: impl IntoIterator<Item = S>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }

    /// Asks LibreFang not to send error replies to users.
    pub fn suppress_error_responses(mut self, suppress: bool) -> Self {
        self.suppress_error_responses = suppress;
        self
    }

    /// Adds a user LibreFang may notify.
    pub fn notification_recipient(mut self, user: ChannelUser) -> Self {
        self.notification_recipients.push(user);
        self
    }

    /// Adds headers for URLs on `host`.
    pub fn header_rule(mut self, host: impl Into<String>, headers: Vec<(String, String)>) -> Self {
        self.header_rules.push((host.into(), headers));
        self
    }
}

/// The LibreFang capabilities a connector's manifest supports, in
/// LibreFang's order: `typing` (a `typing` action), `reaction`,
/// `interactive`, `thread` (its `send` input has a `thread_id` property),
/// `streaming` (`stream_start`, `stream_delta` and `stream_end`).
pub fn capabilities(manifest: &Manifest) -> Vec<String> {
    let has = |name: &str| manifest.action(name).is_some();
    let thread = manifest
        .action("send")
        .is_some_and(|a| a.input_schema["properties"].get("thread_id").is_some());
    let streaming = has("stream_start") && has("stream_delta") && has("stream_end");
    [
        ("typing", has("typing")),
        ("reaction", has("reaction")),
        ("interactive", has("interactive")),
        ("thread", thread),
        ("streaming", streaming),
    ]
    .into_iter()
    .filter(|(_, yes)| *yes)
    .map(|(cap, _)| cap.to_owned())
    .collect()
}

/// An event frame a LibreFang adapter writes to stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum LibreFangEvent {
    /// `ready` (sent by the stdio transport, not by connectors).
    Ready(Ready),
    /// `message`.
    Message(Message),
    /// `typing`.
    Typing(TypingIndicator),
    /// `qr_ready`.
    QrReady(QrReady),
    /// `qr_status`.
    QrStatus(QrStatus),
    /// `error`.
    Error(ErrorEvent),
}

impl LibreFangEvent {
    /// The frame's `method`.
    pub fn method(&self) -> &'static str {
        match self {
            LibreFangEvent::Ready(_) => "ready",
            LibreFangEvent::Message(_) => "message",
            LibreFangEvent::Typing(_) => "typing",
            LibreFangEvent::QrReady(_) => "qr_ready",
            LibreFangEvent::QrStatus(_) => "qr_status",
            LibreFangEvent::Error(_) => "error",
        }
    }

    /// The whole frame as JSON, `{"method": ..., "params": {...}}`.
    pub fn to_frame(&self) -> Value {
        // Every params type is a struct of strings, booleans, lists and
        // string-keyed maps: serializing it into a `Value` cannot fail.
        serde_json::to_value(self).unwrap_or_else(|e| {
            serde_json::json!({"method": "error", "params": {"message": format!("cannot encode a `{}` frame: {e}", self.method())}})
        })
    }
}

impl Serialize for LibreFangEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let method = self.method();
        match self {
            LibreFangEvent::Ready(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            LibreFangEvent::Message(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            LibreFangEvent::Typing(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            LibreFangEvent::QrReady(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            LibreFangEvent::QrStatus(p) => FrameOut::new(method, Some(p)).serialize(serializer),
            LibreFangEvent::Error(p) => FrameOut::new(method, Some(p)).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for LibreFangEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let FrameIn { method, params } = FrameIn::deserialize(deserializer)?;
        Ok(match method.as_str() {
            // Legacy adapters send a bare `{"method":"ready"}` (or `"params": null`).
            "ready" if matches!(params, None | Some(Value::Null)) => {
                LibreFangEvent::Ready(Ready::default())
            }
            "ready" => LibreFangEvent::Ready(params_of(&method, params)?),
            "message" => LibreFangEvent::Message(params_of(&method, params)?),
            "typing" => LibreFangEvent::Typing(params_of(&method, params)?),
            "qr_ready" => LibreFangEvent::QrReady(params_of(&method, params)?),
            "qr_status" => LibreFangEvent::QrStatus(params_of(&method, params)?),
            "error" => LibreFangEvent::Error(params_of(&method, params)?),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown LibreFang event `{other}`"
                )));
            }
        })
    }
}

macro_rules! into_event {
    ($($ty:ty => $variant:ident),*) => {$(
        impl From<$ty> for LibreFangEvent {
            fn from(params: $ty) -> Self {
                LibreFangEvent::$variant(params)
            }
        }
    )*};
}

into_event!(
    Ready => Ready,
    Message => Message,
    TypingIndicator => Typing,
    QrReady => QrReady,
    QrStatus => QrStatus,
    ErrorEvent => Error
);

impl From<MessageBuilder> for LibreFangEvent {
    fn from(builder: MessageBuilder) -> Self {
        LibreFangEvent::Message(builder.build())
    }
}

#[derive(Serialize)]
struct FrameOut<'a, P> {
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a P>,
}

impl<'a, P> FrameOut<'a, P> {
    fn new(method: &'a str, params: Option<&'a P>) -> Self {
        FrameOut { method, params }
    }
}

/// A frame as read: its string `method` and its `params` (`None` when
/// absent or `null`). It reads as the frame's [`Value`] would: the last of
/// repeated keys counts (as in the stdio transport), other keys are parsed
/// and dropped.
struct FrameIn {
    method: String,
    params: Option<Value>,
}

impl<'de> Deserialize<'de> for FrameIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FrameInVisitor)
    }
}

struct FrameInVisitor;

impl<'de> Visitor<'de> for FrameInVisitor {
    type Value = FrameIn;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a LibreFang frame, an object with a string `method`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FrameIn, A::Error> {
        let (mut method, mut params) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "method" => method = Some(map.next_value::<Value>()?),
                "params" => params = Some(map.next_value::<Value>()?),
                _ => {
                    // Parsed as a `Value` would parse it (text that is not
                    // UTF-8 is an error here too), then dropped.
                    map.next_value::<Value>()?;
                }
            }
        }
        match method {
            Some(Value::String(method)) => Ok(FrameIn {
                method,
                params: params.filter(|p| !p.is_null()),
            }),
            Some(other) => Err(A::Error::custom(format!(
                "a LibreFang frame's `method` must be a string, got {}",
                crate::decode::json_kind(&other)
            ))),
            None => Err(A::Error::custom(
                "a LibreFang frame needs a string `method`",
            )),
        }
    }
}

/// A frame's params as `T`; an error names the frame and the bad field.
fn params_of<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    method: &str,
    params: Option<Value>,
) -> Result<T, E> {
    let params = params.ok_or_else(|| E::custom(format!("a `{method}` frame needs `params`")))?;
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        E::custom(match path.as_str() {
            "." => format!("`{method}` params: {}", e.into_inner()),
            _ => format!("`{method}` params: at {path}: {}", e.into_inner()),
        })
    })
}

// ---------------------------------------------------------------- emitting

/// Emitting LibreFang events from an action or producer; implemented for
/// [`Context`]. Bring it into scope with `use spoke::librefang::LibreFangEmit;`.
pub trait LibreFangEmit {
    /// Emits a LibreFang event: under `stdio` it is written to stdout as the
    /// frame itself. Waits while the receiver is full; errs if it is gone or
    /// the invocation was cancelled, never dropping the event silently.
    fn emit_librefang(
        &self,
        event: impl Into<LibreFangEvent> + Send,
    ) -> impl Future<Output = Result<(), EmitError>> + Send;
}

impl LibreFangEmit for Context {
    fn emit_librefang(
        &self,
        event: impl Into<LibreFangEvent> + Send,
    ) -> impl Future<Output = Result<(), EmitError>> + Send {
        let frame = event.into().to_frame();
        self.emit_custom(EVENT_NAME, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_content_is_mirrored_into_text() {
        let m = MessageBuilder::new("1", "Bob", "old")
            .content(Content::Text("new".into()))
            .build();
        assert_eq!(m.text.as_deref(), Some("new"));
        assert_eq!(m.content, Some(Content::Text("new".into())));
        assert_eq!(
            LibreFangEvent::from(m).to_frame(),
            json!({"method": "message", "params": {
                "user_id": "1", "user_name": "Bob", "text": "new", "content": {"Text": "new"}
            }})
        );
        // Any other variant leaves the flattened text alone.
        let image = json!({"Image": {"url": "https://x/y.png", "caption": null}});
        let m = MessageBuilder::new("1", "Bob", "a picture")
            .content(Content::Other(image.clone()))
            .build();
        assert_eq!(m.text.as_deref(), Some("a picture"));
        assert_eq!(m.content, Some(Content::Other(image)));
        // content_text mirrors the other way.
        let m = MessageBuilder::new("1", "Bob", "hi").content_text().build();
        assert_eq!(m.content, Some(Content::Text("hi".into())));
        assert_eq!(m.text.as_deref(), Some("hi"));
    }

    #[test]
    fn content_reads_every_shape_and_writes_it_back() {
        let file = json!({"FileData": {"data": [0, 1, 255], "filename": "b.bin", "mime_type": "application/octet-stream"}});
        let content: Content = serde_json::from_value(file.clone()).unwrap();
        assert_eq!(
            content,
            Content::FileData(FileData {
                data: vec![0, 1, 255],
                filename: "b.bin".into(),
                mime_type: "application/octet-stream".into(),
            })
        );
        assert_eq!(serde_json::to_value(&content).unwrap(), file);
        // From text too (the stdio transport decodes straight from the line).
        let from_text: Content = serde_json::from_str(&file.to_string()).unwrap();
        assert_eq!(from_text, content);
        for other in [
            json!({"Image": {"url": "https://x/y.png", "caption": null}}),
            json!({"Text": "a", "extra": 1}),
            json!({"Text": 5}),
            json!({"FileData": {"data": [1]}, "extra": true}),
            json!({}),
            json!(["a"]),
            json!("plain"),
            json!(null),
        ] {
            let content: Content = serde_json::from_str(&other.to_string()).unwrap();
            let expected = if other.get("extra") == Some(&json!(true)) {
                json!({"FileData": {"data": [1], "filename": "", "mime_type": ""}, "extra": true})
            } else {
                other.clone()
            };
            assert_eq!(content, Content::Other(expected), "{other}");
        }
        assert_eq!(
            serde_json::from_str::<Content>(r#"{"Text": "hi"}"#).unwrap(),
            Content::Text("hi".into())
        );
        // A repeated key: the last counts.
        assert_eq!(
            serde_json::from_str::<Content>(r#"{"Text": "a", "Text": "b"}"#).unwrap(),
            Content::Text("b".into())
        );
        // From a `Value` as from text.
        let content = Content::deserialize(json!({"FileData": {"data": [1, 2]}})).unwrap();
        assert_eq!(
            content,
            Content::FileData(FileData {
                data: vec![1, 2],
                ..FileData::default()
            })
        );
        // A `FileData` of another shape is an error that says so.
        let bad = serde_json::from_str::<Content>(r#"{"FileData": {"data": "aGk="}}"#).unwrap_err();
        assert!(bad.to_string().contains("expected a sequence"), "{bad}");
        let bad = serde_json::from_str::<Content>(r#"{"FileData": {"data": [256]}}"#).unwrap_err();
        assert!(bad.to_string().contains("256"), "{bad}");
    }

    #[test]
    fn the_spoke_summary_reads_without_max_in_flight() {
        let summary: SpokeSummary = serde_json::from_value(json!({
            "name": "x", "version": "1", "display_name": "X",
            "actions": [], "search_operators": [], "capabilities": []
        }))
        .unwrap();
        assert_eq!(summary.max_in_flight, None);
        let with = SpokeSummary {
            max_in_flight: Some(8),
            ..summary
        };
        assert_eq!(serde_json::to_value(&with).unwrap()["max_in_flight"], 8);
    }
}
