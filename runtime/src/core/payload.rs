//! The types of an action's input and output decide how they travel:
//!
//! | the type | encodings (the first is preferred) |
//! |---|---|
//! | any serde type (`Deserialize`/`Serialize` + `JsonSchema`) | `json`, `msgpack` |
//! | [`Bytes`] | `raw_bytes` |
//! | [`JsonLines<T>`] | `json_lines`, `json` (an array), `msgpack` (an array) |
//! | a Protobuf message (`prost::Message + prost::Name + Default`) that is not a serde type | `protobuf` |
//!
//! `#[action]` reads the types and fills the manifest's `input_encodings`
//! and `output_encodings`; a type of none of these kinds is a compile error
//! at the type. A binary input is the action's whole input: mark its one
//! parameter `#[input]`. The caller picks among them per call (see
//! [`crate::encoding`]).
//!
//! ```
//! use spoke::prelude::*;
//! use spoke::{Bytes, JsonLines};
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! pub struct Row { id: u64, name: String }
//!
//! #[connector(name = "blobs")]
//! #[derive(Default)]
//! pub struct Blobs;
//!
//! #[connector]
//! impl Blobs {
//!     /// The bytes given, reversed.
//!     #[action(read)]
//!     async fn reverse(&self, #[input] data: Bytes) -> Result<Bytes, ActionError> {
//!         let mut v = data.to_vec();
//!         v.reverse();
//!         Ok(Bytes::from(v))
//!     }
//!
//!     /// Some rows, as JSON Lines (or JSON, or MessagePack).
//!     #[action(read)]
//!     async fn rows(&self, count: u64) -> Result<JsonLines<Row>, ActionError> {
//!         Ok((0..count).map(|id| Row { id, name: format!("row {id}") }).collect())
//!     }
//! }
//! # fn main() {}
//! ```

use std::fmt;
use std::io::Cursor;
use std::ops::Deref;

use schemars::{JsonSchema, Schema, json_schema};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::connector::{ActionOutput, Input};
use crate::decode::{at_path, decode, json_path, not_json};
use crate::encoding::Encoding;
use crate::error::ActionError;
use crate::schema::{input_schema_for, output_schema_for};

/// What an action's input or output is, for the manifest: the encodings it
/// travels in (the first preferred) and, for Protobuf, the message's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSpec {
    /// The encodings, the preferred first.
    pub encodings: &'static [Encoding],
    /// The full name of the Protobuf message (`package.Message`).
    pub message_type: Option<String>,
    /// The columns of an Arrow batch, where the action declares them
    /// (`{"fields": [{"name", "type", "nullable"}]}`).
    pub arrow_schema: Option<Value>,
}

impl PayloadSpec {
    /// A serde type's: JSON, then MessagePack.
    pub const SERDE: PayloadSpec = PayloadSpec::of(&[Encoding::Json, Encoding::Msgpack]);

    /// A payload in these encodings, with no message type.
    pub const fn of(encodings: &'static [Encoding]) -> PayloadSpec {
        PayloadSpec {
            encodings,
            message_type: None,
            arrow_schema: None,
        }
    }
}

/// A payload whose columns an action may declare, with
/// `#[action(input_arrow_schema = f)]` or `output_arrow_schema = f`, `f`
/// a fn that returns its schema: `spoke::arrow::RecordBatch` (feature
/// `arrow`). The manifest lists the declared columns, and every batch is
/// checked against them: an input that differs is `invalid_input`, an
/// output that differs is `internal` (the action broke its word).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an Arrow record batch, so it has no columns to declare",
    label = "this declares the columns of `{Self}`",
    note = "`input_arrow_schema` and `output_arrow_schema` describe an `#[input]` or an output of type `spoke::arrow::RecordBatch` (feature `arrow`)"
)]
pub trait DeclaredColumns {
    /// What declares them (an Arrow schema).
    type Schema;
    /// The columns as the manifest lists them.
    fn describe(schema: &Self::Schema) -> Value;
    /// Whether this payload has the declared columns: `Err` says the first
    /// difference (a name, a type, a null in a column declared not
    /// nullable).
    fn conforms(&self, schema: &Self::Schema) -> Result<(), String>;
}

/// Raw bytes as an action's input or output: encoding `raw_bytes`.
/// Converts from `Vec<u8>`, `bytes::Bytes`, `String` and static slices, and
/// derefs to `[u8]`.
///
/// ```
/// let b = spoke::Bytes::from(vec![1, 2, 3]);
/// assert_eq!(&b[..], &[1, 2, 3]);
/// assert_eq!(b.len(), 3);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub bytes::Bytes);

impl Bytes {
    /// The bytes, as the `bytes` crate's type (no copy).
    pub fn into_inner(self) -> bytes::Bytes {
        self.0
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<bytes::Bytes> for Bytes {
    fn from(b: bytes::Bytes) -> Self {
        Bytes(b)
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v.into())
    }
}

impl From<String> for Bytes {
    fn from(s: String) -> Self {
        Bytes(s.into())
    }
}

impl From<&'static [u8]> for Bytes {
    fn from(s: &'static [u8]) -> Self {
        Bytes(bytes::Bytes::from_static(s))
    }
}

impl From<&'static str> for Bytes {
    fn from(s: &'static str) -> Self {
        Bytes(bytes::Bytes::from_static(s.as_bytes()))
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.0.into()
    }
}

/// A sequence of records that travels as JSON Lines (one JSON value per
/// line, each ended by `\n`), or as a JSON or MessagePack array when the
/// caller asks. As input, blank lines are skipped and the last line needs
/// no `\n`.
///
/// ```
/// use spoke::JsonLines;
/// let rows: JsonLines<u32> = (1..=3).collect();
/// assert_eq!(rows.len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonLines<T>(pub Vec<T>);

impl<T> JsonLines<T> {
    /// The records.
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<T> Deref for JsonLines<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T> From<Vec<T>> for JsonLines<T> {
    fn from(v: Vec<T>) -> Self {
        JsonLines(v)
    }
}

impl<T> FromIterator<T> for JsonLines<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        JsonLines(iter.into_iter().collect())
    }
}

impl<T> IntoIterator for JsonLines<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// An input type of Spoke's own (not a serde type, not a Protobuf message):
/// [`Bytes`], [`JsonLines<T>`].
pub trait InputPayload: Sized {
    /// What it travels as.
    fn spec() -> PayloadSpec;
    /// The JSON Schema the manifest shows for it.
    fn schema() -> Schema;
    /// Decodes it (the encoding is one of [`InputPayload::spec`]'s).
    fn decode(input: Input<'_>) -> Result<Self, ActionError>;
}

/// An output type of Spoke's own: [`Bytes`], [`JsonLines<T>`].
pub trait OutputPayload {
    /// What it travels as.
    fn spec() -> PayloadSpec;
    /// The JSON Schema the manifest shows for it.
    fn schema() -> Schema;
    /// Encodes it (the encoding is one of [`OutputPayload::spec`]'s).
    fn encode(self, encoding: Encoding) -> Result<ActionOutput, ActionError>;
}

const RAW: &[Encoding] = &[Encoding::RawBytes];
const LINES: &[Encoding] = &[Encoding::JsonLines, Encoding::Json, Encoding::Msgpack];

impl InputPayload for Bytes {
    fn spec() -> PayloadSpec {
        PayloadSpec::of(RAW)
    }
    fn schema() -> Schema {
        bytes_schema()
    }
    fn decode(input: Input<'_>) -> Result<Self, ActionError> {
        match input {
            Input::Encoded {
                encoding: Encoding::RawBytes,
                bytes,
            } => Ok(Bytes(bytes::Bytes::copy_from_slice(bytes))),
            other => Err(not_taken(other.encoding(), RAW)),
        }
    }
}

impl OutputPayload for Bytes {
    fn spec() -> PayloadSpec {
        PayloadSpec::of(RAW)
    }
    fn schema() -> Schema {
        bytes_schema()
    }
    fn encode(self, _: Encoding) -> Result<ActionOutput, ActionError> {
        Ok(ActionOutput::encoded(Encoding::RawBytes, self.0))
    }
}

fn bytes_schema() -> Schema {
    json_schema!({
        "$schema": crate::schema::DIALECT,
        "description": "raw bytes (encoding raw_bytes)"
    })
}

impl<T: DeserializeOwned + JsonSchema> InputPayload for JsonLines<T> {
    fn spec() -> PayloadSpec {
        PayloadSpec::of(LINES)
    }
    fn schema() -> Schema {
        input_schema_for::<Vec<T>>()
    }
    fn decode(input: Input<'_>) -> Result<Self, ActionError> {
        match input {
            Input::Value(Value::Null) => Ok(JsonLines(Vec::new())),
            Input::Value(Value::Object(map)) if map.is_empty() => Ok(JsonLines(Vec::new())),
            Input::Value(value) => serde_path_to_error::deserialize(value)
                .map(JsonLines)
                .map_err(|e| at_path(&e.path().to_string(), &e.into_inner().to_string())),
            Input::Bytes(bytes)
            | Input::Encoded {
                encoding: Encoding::Json,
                bytes,
            } => json_array(bytes).map(JsonLines),
            Input::Encoded {
                encoding: Encoding::JsonLines,
                bytes,
            } => json_lines(bytes).map(JsonLines),
            Input::Encoded {
                encoding: Encoding::Msgpack,
                bytes,
            } => decode_msgpack_value(bytes).map(JsonLines),
            other => Err(not_taken(other.encoding(), LINES)),
        }
    }
}

impl<T: Serialize + JsonSchema> OutputPayload for JsonLines<T> {
    fn spec() -> PayloadSpec {
        PayloadSpec::of(LINES)
    }
    fn schema() -> Schema {
        output_schema_for::<Vec<T>>()
    }
    fn encode(self, encoding: Encoding) -> Result<ActionOutput, ActionError> {
        match encoding {
            Encoding::JsonLines => {
                let mut out = Vec::new();
                for record in &self.0 {
                    serde_json::to_writer(&mut out, record).map_err(cannot_encode(encoding))?;
                    out.push(b'\n');
                }
                Ok(ActionOutput::encoded(Encoding::JsonLines, out))
            }
            _ => encode_serde(&self.0, encoding),
        }
    }
}

/// Decodes a serde input: JSON (an object; see [`decode`]) or MessagePack
/// (a map; `nil` or no bytes mean `{}`).
pub fn decode_serde<T: DeserializeOwned>(input: Input<'_>) -> Result<T, ActionError> {
    match input {
        Input::Encoded {
            encoding: Encoding::Msgpack,
            bytes,
        } => {
            // `nil` (0xc0) and nothing mean no parameters, as in JSON.
            if bytes.is_empty() || bytes == [0xc0] {
                return decode(Input::Bytes(b"{}"));
            }
            if !is_msgpack_map(bytes[0]) {
                return Err(ActionError::invalid_input_at(
                    "$",
                    "input must be a MessagePack map (of the parameters by name)",
                ));
            }
            decode_msgpack_value(bytes)
        }
        Input::Encoded { encoding, .. } if encoding != Encoding::Json => {
            Err(not_taken(encoding, PayloadSpec::SERDE.encodings))
        }
        json => decode(json),
    }
}

/// Encodes a serde output as JSON or MessagePack (structs as maps).
pub fn encode_serde<T: Serialize + ?Sized>(
    value: &T,
    encoding: Encoding,
) -> Result<ActionOutput, ActionError> {
    match encoding {
        Encoding::Msgpack => rmp_serde::to_vec_named(value)
            .map(|bytes| ActionOutput::encoded(Encoding::Msgpack, bytes))
            .map_err(cannot_encode(encoding)),
        _ => ActionOutput::encode(value).map_err(cannot_encode(Encoding::Json)),
    }
}

/// Decodes a Protobuf input.
pub fn decode_protobuf<T: prost::Message + prost::Name + Default>(
    input: Input<'_>,
) -> Result<T, ActionError> {
    match input {
        Input::Encoded {
            encoding: Encoding::Protobuf,
            bytes,
        } => T::decode(bytes).map_err(|e| {
            ActionError::invalid_input_at(
                "$",
                format!("input is not a valid Protobuf `{}`: {e}", T::full_name()),
            )
        }),
        other => Err(not_taken(other.encoding(), &[Encoding::Protobuf])),
    }
}

/// Encodes a Protobuf output.
pub fn encode_protobuf<T: prost::Message>(value: &T) -> ActionOutput {
    ActionOutput::encoded(Encoding::Protobuf, value.encode_to_vec())
}

/// A Protobuf message's spec: its full name.
pub fn protobuf_spec<T: prost::Name>() -> PayloadSpec {
    PayloadSpec {
        encodings: &[Encoding::Protobuf],
        message_type: Some(T::full_name()),
        arrow_schema: None,
    }
}

/// The schema the manifest shows for a Protobuf message.
pub fn protobuf_schema<T: prost::Name>() -> Schema {
    json_schema!({
        "$schema": crate::schema::DIALECT,
        "description": format!("Protobuf message `{}` (encoding protobuf)", T::full_name())
    })
}

/// The error of an encoding an action does not take.
pub fn not_taken(encoding: Encoding, taken: &[Encoding]) -> ActionError {
    ActionError::invalid_input(format!(
        "input encoded as {encoding}, but this action takes {}",
        Encoding::join(taken, "or")
    ))
    .with_details(serde_json::json!({ "input_encoding": encoding, "supported": taken }))
}

fn cannot_encode<E: fmt::Display>(encoding: Encoding) -> impl FnOnce(E) -> ActionError {
    move |e| ActionError::internal(format!("could not encode the output as {encoding}: {e}"))
}

fn is_msgpack_map(marker: u8) -> bool {
    matches!(marker, 0x80..=0x8f | 0xde | 0xdf)
}

/// The most nested MessagePack a caller may send (serde_json's limit too).
const MSGPACK_DEPTH: usize = 128;

fn decode_msgpack_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ActionError> {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(bytes));
    de.set_max_depth(MSGPACK_DEPTH);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner {
            rmp_serde::decode::Error::Syntax(message) => at_path(&path, &message),
            other => at_path(&path, &format!("input is not valid MessagePack: {other}")),
        }
    })?;
    let read = de.position();
    if read != bytes.len() as u64 {
        return Err(ActionError::invalid_input_at(
            "$",
            format!(
                "input is not valid MessagePack: {} bytes after the value's end (at byte {read})",
                bytes.len() as u64 - read
            ),
        ));
    }
    Ok(value)
}

fn json_array<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, ActionError> {
    let text = bytes.trim_ascii();
    // No input (which transports send as `{}`) is no records.
    if text.is_empty() || text == b"null" || text == b"{}" {
        return Ok(Vec::new());
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    let records = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            at_path(&path, &inner.to_string())
        } else {
            not_json(&inner)
        }
    })?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(records)
}

fn json_lines<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, ActionError> {
    let mut records = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let mut de = serde_json::Deserializer::from_slice(line);
        let record = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                (path, inner)
            })
            .and_then(|r| de.end().map(|()| r).map_err(|e| (String::new(), e)))
            .map_err(|(path, e)| {
                let at = json_path(&format!("$[{}]", records.len()), &path);
                let what = if e.is_data() {
                    e.to_string()
                } else {
                    format!("not valid JSON: {e}")
                };
                ActionError::invalid_input_at(at, format!("line {}: {what}", n + 1))
            })?;
        records.push(record);
    }
    Ok(records)
}

/// A payload as a JSON value, in any encoding serde reads (JSON,
/// MessagePack, JSON Lines as an array); `None` for binary encodings and
/// bytes that do not decode.
///
/// ```
/// use spoke::Encoding;
/// let v = spoke::payload::to_value(Encoding::JsonLines, b"1\n2\n").unwrap();
/// assert_eq!(v, serde_json::json!([1, 2]));
/// assert!(spoke::payload::to_value(Encoding::RawBytes, b"x").is_none());
/// ```
pub fn to_value(encoding: Encoding, bytes: &[u8]) -> Option<Value> {
    match encoding {
        Encoding::Json => serde_json::from_slice(bytes).ok(),
        Encoding::Msgpack => rmp_serde::from_slice(bytes).ok(),
        Encoding::JsonLines => json_lines::<Value>(bytes).ok().map(Value::Array),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Params {
        a: u32,
        tags: Vec<String>,
    }

    fn msgpack(v: &impl Serialize) -> Vec<u8> {
        rmp_serde::to_vec_named(v).unwrap()
    }

    fn enc(encoding: Encoding, bytes: &[u8]) -> Input<'_> {
        Input::Encoded { encoding, bytes }
    }

    #[test]
    fn msgpack_inputs_decode_as_json_ones_do() {
        let p = Params {
            a: 3,
            tags: vec!["x".into()],
        };
        let bytes = msgpack(&p);
        assert_eq!(
            decode_serde::<Params>(enc(Encoding::Msgpack, &bytes)).unwrap(),
            p
        );
        let out = encode_serde(&p, Encoding::Msgpack).unwrap();
        assert_eq!(out.encoding(), Encoding::Msgpack);
        assert_eq!(out.bytes(), &bytes[..]);
    }

    #[test]
    fn msgpack_errors_name_the_path_and_never_panic() {
        let bad = msgpack(&serde_json::json!({"a": 1, "tags": ["x", 5]}));
        let e = decode_serde::<Params>(enc(Encoding::Msgpack, &bad)).unwrap_err();
        assert_eq!(e.details().unwrap()["path"], "$.tags[1]", "{e}");
        let e = decode_serde::<Params>(enc(Encoding::Msgpack, &msgpack(&[1, 2]))).unwrap_err();
        assert!(e.message().contains("MessagePack map"), "{e}");
        let mut trailing = msgpack(&serde_json::json!({"a": 1, "tags": []}));
        trailing.push(0x01);
        let e = decode_serde::<Params>(enc(Encoding::Msgpack, &trailing)).unwrap_err();
        assert!(e.message().contains("1 bytes after"), "{e}");
        for cut in 1..bad.len() {
            let e = decode_serde::<Params>(enc(Encoding::Msgpack, &bad[..cut])).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidInput);
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = [vec![0x91; 100_000], vec![0x80]].concat();
        let mut map = vec![0x81, 0xa1, b'a'];
        map.extend(deep);
        let e = decode_serde::<Params>(enc(Encoding::Msgpack, &map)).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidInput);
    }

    #[test]
    fn json_lines_read_with_line_numbers_and_write_a_newline_after_each() {
        let input = b"{\"a\":1,\"tags\":[]}\n\n{\"a\":2,\"tags\":[\"q\"]}";
        let rows = JsonLines::<Params>::decode(enc(Encoding::JsonLines, input)).unwrap();
        assert_eq!(rows.len(), 2);
        let out = rows.encode(Encoding::JsonLines).unwrap();
        assert_eq!(
            std::str::from_utf8(out.bytes()).unwrap(),
            "{\"a\":1,\"tags\":[]}\n{\"a\":2,\"tags\":[\"q\"]}\n"
        );
        let bad = b"{\"a\":1,\"tags\":[]}\n{\"a\":\"x\",\"tags\":[]}\n";
        let e = JsonLines::<Params>::decode(enc(Encoding::JsonLines, bad)).unwrap_err();
        assert_eq!(e.details().unwrap()["path"], "$[1].a", "{e}");
        assert!(e.message().contains("line 2"), "{e}");
        let e = JsonLines::<Params>::decode(enc(Encoding::JsonLines, b"{\"a\":1,")).unwrap_err();
        assert!(e.message().contains("line 1: not valid JSON"), "{e}");
        let arr = JsonLines::<Params>::decode(Input::Bytes(b"[{\"a\":1,\"tags\":[]}]")).unwrap();
        assert_eq!(arr.len(), 1);
        let e = JsonLines::<Params>::decode(enc(Encoding::RawBytes, b"x")).unwrap_err();
        assert!(
            e.message()
                .contains("raw_bytes, but this action takes json_lines, json or msgpack"),
            "{e}"
        );
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the probe's autoref levels are the point
    fn types_prost_also_implements_stay_serde_types() {
        #[allow(unused_imports)]
        use crate::__private::{
            FallbackInputLevel, FallbackOutputLevel, OwnInputLevel, OwnOutputLevel, PayloadProbe,
            ProtobufInputLevel, ProtobufOutputLevel, SerdeInputLevel, SerdeOutputLevel,
        };
        // prost implements `Message + Name` for these (Protobuf's wrapper
        // types): they must still be JSON, as they always were.
        assert_eq!(
            (&&&PayloadProbe::<String>::new()).output_payload(),
            PayloadSpec::SERDE
        );
        assert_eq!(
            (&&&PayloadProbe::<u32>::new()).plain_output_payload(),
            PayloadSpec::SERDE
        );
        assert_eq!(
            (&&&PayloadProbe::<Vec<u8>>::new()).input_payload(),
            PayloadSpec::SERDE
        );
        assert_eq!(
            (&&&PayloadProbe::<Bytes>::new()).input_payload(),
            PayloadSpec::of(RAW)
        );
    }

    #[test]
    fn outputs_read_back_as_values() {
        let rows = JsonLines(vec![1, 2]);
        let out = rows.clone().encode(Encoding::JsonLines).unwrap();
        assert_eq!(out.to_value(), serde_json::json!([1, 2]));
        let out = rows.encode(Encoding::Msgpack).unwrap();
        assert_eq!(out.to_value(), serde_json::json!([1, 2]));
        let out = Bytes::from("hi").encode(Encoding::RawBytes).unwrap();
        assert_eq!(out.to_value(), Value::Null);
        assert_eq!(out.bytes(), b"hi");
    }
}
