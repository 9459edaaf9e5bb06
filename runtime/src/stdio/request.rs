//! Parsing one line of the stdio transport's input into a [`Request`].
//!
//! An `invoke`'s `input` and a LibreFang command's `params` are not parsed
//! here: they are kept as where their JSON text is in the line ([`Json`]),
//! and decoded once, straight from the line into the action's input type, so
//! a large frame (a file LibreFang sends whole) is never held twice.
//! Everything else in a frame is small and parsed into a [`Value`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::decode::json_kind;
use crate::encoding::Encoding;
use crate::error::ActionError;

/// A piece of JSON text of a line: where it is in the line, or (when it was
/// only had as a [`Value`]) its own text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Json {
    /// Absent or `null`: read as `{}`.
    Absent,
    /// These bytes of the line.
    In(Range<usize>),
    /// This text.
    Copy(String),
}

impl Json {
    /// The JSON text, given the line it was parsed from.
    pub(crate) fn bytes<'a>(&'a self, line: &'a [u8]) -> &'a [u8] {
        match self {
            Json::Absent => b"{}",
            Json::In(range) => line.get(range.clone()).unwrap_or(b"{}"),
            Json::Copy(text) => text.as_bytes(),
        }
    }

    /// Where `raw` (borrowed from `line`) is in it.
    fn within(line: &[u8], raw: &RawValue) -> Json {
        let text = raw.get();
        if text == "null" {
            return Json::Absent;
        }
        let start = (text.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
        match start.checked_add(text.len()) {
            Some(end) if end <= line.len() && line.get(start..end) == Some(text.as_bytes()) => {
                Json::In(start..end)
            }
            _ => Json::Copy(text.to_owned()),
        }
    }

    /// A value's text.
    fn of(value: Option<Value>) -> Json {
        match value {
            None | Some(Value::Null) => Json::Absent,
            Some(value) => Json::Copy(value.to_string()),
        }
    }
}

/// What one input line asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    /// `invoke` or `resolve`: start an invocation.
    Start {
        /// The host's id for it.
        id: String,
        /// What to run.
        call: Call,
        /// `deadline_ms`: milliseconds from receipt.
        deadline_ms: Option<u64>,
        /// `metadata`: what the host knows about the call (`caller`,
        /// `traceparent`, ...), for [`Context::metadata`](crate::Context::metadata).
        metadata: BTreeMap<String, String>,
    },
    /// An `invoke`/`resolve` with a usable id but unusable params: answered
    /// with one `result` carrying this error.
    Reject {
        /// The host's id.
        id: String,
        /// Why.
        error: ActionError,
    },
    /// `cancel`.
    Cancel {
        /// The invocation to cancel.
        id: String,
    },
    /// `heartbeat`.
    Heartbeat,
    /// `ready_ack`.
    ReadyAck,
    /// `shutdown`.
    Shutdown,
    /// Any other method: a LibreFang action method when the connector has
    /// that action, else unknown.
    Other {
        /// The method.
        method: String,
        /// Its params.
        params: Json,
    },
}

/// What an invocation runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Call {
    /// An action with its input.
    Action {
        /// The action.
        name: String,
        /// Its input: JSON text, exactly as the host sent it (`{}` when
        /// absent or `null`). Not checked to be an object: decoding it
        /// into the action's input type does that.
        input: Json,
    },
    /// An action called with an encoding: its input in `input_encoding`
    /// (`input_base64`), or an `accept` list for its output.
    Payload {
        /// The action.
        name: String,
        /// Its input.
        input: Payload,
        /// The output encodings the host accepts, the preferred first.
        accept: Vec<Encoding>,
    },
    /// A search operator with the value to resolve.
    Operator {
        /// The operator.
        name: String,
        /// The value.
        value: String,
    },
}

impl Call {
    /// The action's or operator's name.
    pub(crate) fn name(&self) -> &str {
        match self {
            Call::Action { name, .. }
            | Call::Payload { name, .. }
            | Call::Operator { name, .. } => name,
        }
    }
}

/// The input of a [`Call::Payload`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    /// JSON text, as [`Call::Action`]'s.
    Json(Json),
    /// Bytes in an encoding, decoded from `input_base64`.
    Encoded(Encoding, Vec<u8>),
}

/// Parses a line. `Ok(None)` for a blank line; `Err` says what is wrong
/// (the caller prefixes the line number).
pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Request>, String> {
    if bytes.trim_ascii().is_empty() {
        return Ok(None);
    }
    // One pass that keeps an `invoke`'s input and other methods' params as
    // text; whatever it cannot settle (including every bad line) is parsed
    // again the plain way, which alone words the errors.
    match serde_json::from_slice::<Frame<'_>>(bytes) {
        Ok(Frame::Invoke(params)) => {
            let input = params
                .input
                .map_or(Json::Absent, |raw| Json::within(bytes, raw));
            return invoke(params.rest, input).map(Some);
        }
        Ok(Frame::Parsed { method, params }) => {
            return match (is_spoke(&method), params) {
                (false, params) => Ok(Some(Request::Other {
                    method,
                    params: params.map_or(Json::Absent, |raw| Json::within(bytes, raw)),
                })),
                (true, None) => request(method, Value::Null).map(Some),
                (true, Some(raw)) => match serde_json::from_str(raw.get()) {
                    Ok(params) => request(method, params).map(Some),
                    Err(_) => plain(bytes).map(Some),
                },
            };
        }
        Ok(Frame::Unsettled) | Err(_) => {}
    }
    plain(bytes).map(Some)
}

/// Whether a method is one of Spoke's own (not a LibreFang command or an
/// unknown one).
fn is_spoke(method: &str) -> bool {
    matches!(
        method,
        "invoke" | "resolve" | "cancel" | "heartbeat" | "ready_ack" | "shutdown"
    )
}

/// Parses a non-blank line the plain way, into a [`Value`] first.
pub(super) fn plain(bytes: &[u8]) -> Result<Request, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut frame) = value else {
        return Err(format!("expected a JSON object, got {}", json_kind(&value)));
    };
    let method = match frame.remove("method") {
        Some(Value::String(m)) => m,
        Some(other) => {
            return Err(format!(
                "`method` must be a string, got {}",
                json_kind(&other)
            ));
        }
        None => return Err("missing a string `method`".to_owned()),
    };
    let params = frame.remove("params").unwrap_or(Value::Null);
    request(method, params)
}

/// The request for a frame's string `method` and its `params` (`null` when
/// absent).
fn request(method: String, params: Value) -> Result<Request, String> {
    let object = |params: Value| -> Result<Map<String, Value>, String> {
        match params {
            Value::Null => Ok(Map::new()),
            Value::Object(map) => Ok(map),
            other => Err(format!(
                "`{method}` params must be an object, got {}",
                json_kind(&other)
            )),
        }
    };
    Ok(match method.as_str() {
        "invoke" => {
            let mut params = object(params)?;
            let input = Json::of(params.remove("input"));
            invoke(params, input)?
        }
        "resolve" => resolve(object(params)?)?,
        "cancel" => Request::Cancel {
            id: id_of("cancel", &object(params)?)?,
        },
        "heartbeat" => Request::Heartbeat,
        "ready_ack" => Request::ReadyAck,
        "shutdown" => Request::Shutdown,
        _ => Request::Other {
            method,
            params: Json::of(Some(params)),
        },
    })
}

/// An `invoke` from its params (without `input`) and its input's JSON text.
fn invoke(mut params: Map<String, Value>, input: Json) -> Result<Request, String> {
    let id = id_of("invoke", &params)?;
    let name = match params.remove("action") {
        Some(Value::String(a)) if !a.is_empty() => a,
        _ => return Err("`invoke` needs a string `action`".to_owned()),
    };
    let encoded = ["input_encoding", "input_base64", "accept"]
        .iter()
        .any(|key| params.get(*key).is_some_and(|v| !v.is_null()));
    if !encoded {
        return Ok(start(id, Call::Action { name, input }, &params));
    }
    match payload_of(&params, input).and_then(|input| Ok((input, accept_of(&params)?))) {
        Ok((input, accept)) => Ok(start(
            id,
            Call::Payload {
                name,
                input,
                accept,
            },
            &params,
        )),
        Err(error) => Ok(Request::Reject { id, error }),
    }
}

/// An `invoke`'s input with its encoding: `input` (JSON), or
/// `input_base64` in `input_encoding` (the two are exclusive).
fn payload_of(params: &Map<String, Value>, input: Json) -> Result<Payload, ActionError> {
    let encoding = match params.get("input_encoding") {
        None | Some(Value::Null) => Encoding::Json,
        Some(Value::String(name)) => Encoding::parse(name)
            .map_err(|e| ActionError::invalid_input(format!("`input_encoding`: {e}")))?,
        Some(other) => {
            return Err(ActionError::invalid_input(format!(
                "`input_encoding` must be a string, got {}",
                json_kind(other)
            )));
        }
    };
    let base64 = match params.get("input_base64") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            return Err(ActionError::invalid_input(format!(
                "`input_base64` must be a string, got {}",
                json_kind(other)
            )));
        }
    };
    match (base64, input) {
        (Some(_), Json::In(_) | Json::Copy(_)) => Err(ActionError::invalid_input(
            "an `invoke` has `input` (JSON) or `input_base64`, not both",
        )),
        (Some(text), Json::Absent) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| {
                    ActionError::invalid_input(format!("`input_base64` is not base64: {e}"))
                })?;
            Ok(Payload::Encoded(encoding, bytes))
        }
        (None, input) if encoding == Encoding::Json => Ok(Payload::Json(input)),
        (None, _) => Err(ActionError::invalid_input(format!(
            "an input in {encoding} comes as `input_base64`"
        ))),
    }
}

/// `accept`: absent or `null` (JSON), or an array of encoding names.
fn accept_of(params: &Map<String, Value>) -> Result<Vec<Encoding>, ActionError> {
    let list = match params.get("accept") {
        None | Some(Value::Null) => return Ok(vec![Encoding::Json]),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ActionError::invalid_input(format!(
                "`accept` must be an array of encoding names, got {}",
                json_kind(other)
            )));
        }
    };
    let mut accept = Vec::with_capacity(list.len());
    for item in list {
        let encoding = match item {
            Value::String(name) => Encoding::parse(name)
                .map_err(|e| ActionError::invalid_input(format!("`accept`: {e}")))?,
            other => {
                return Err(ActionError::invalid_input(format!(
                    "`accept` must be an array of encoding names; it holds {}",
                    json_kind(other)
                )));
            }
        };
        if !accept.contains(&encoding) {
            accept.push(encoding);
        }
    }
    Ok(accept)
}

/// A line as the single pass in [`parse`] sees it.
enum Frame<'a> {
    /// An `invoke` whose params are an object.
    Invoke(InvokeParams<'a>),
    /// Any other string `method`, with its params as text.
    Parsed {
        method: String,
        params: Option<&'a RawValue>,
    },
    /// What that pass leaves to the plain parse: no string `method`, or an
    /// `invoke` whose params are not an object.
    Unsettled,
}

/// An `invoke`'s params: `input` kept as text, the rest parsed.
struct InvokeParams<'a> {
    input: Option<&'a RawValue>,
    rest: Map<String, Value>,
}

/// `params` as met in a frame.
enum Params<'a> {
    /// After `"method": "invoke"`.
    Invoke(InvokeParams<'a>),
    /// After another `method`, or before any: kept as text.
    Raw(&'a RawValue),
}

impl<'de> Deserialize<'de> for Frame<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FrameVisitor)
    }
}

struct FrameVisitor;

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = Frame<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Frame<'de>, A::Error> {
        // As in a `Value`, the last of repeated keys counts; other keys
        // are parsed (and dropped) as a `Value` would parse them.
        let mut method: Option<Value> = None;
        let mut params: Option<Params<'de>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "method" => method = Some(map.next_value()?),
                "params" => {
                    params = Some(match &method {
                        Some(Value::String(m)) if m == "invoke" => {
                            Params::Invoke(map.next_value()?)
                        }
                        _ => Params::Raw(map.next_value()?),
                    });
                }
                _ => {
                    map.next_value::<Value>()?;
                }
            }
        }
        let Some(Value::String(method)) = method else {
            return Ok(Frame::Unsettled);
        };
        Ok(match (method == "invoke", params) {
            (true, Some(Params::Invoke(params))) => Frame::Invoke(params),
            (true, Some(Params::Raw(raw))) => {
                serde_json::from_str(raw.get()).map_or(Frame::Unsettled, Frame::Invoke)
            }
            (true, None) => Frame::Unsettled,
            (false, Some(Params::Raw(raw))) => Frame::Parsed {
                method,
                params: Some(raw),
            },
            (false, None) => Frame::Parsed {
                method,
                params: None,
            },
            // Params read as an invoke's, then a later `method` that is not.
            (false, Some(Params::Invoke(_))) => Frame::Unsettled,
        })
    }
}

impl<'de> Deserialize<'de> for InvokeParams<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(InvokeParamsVisitor)
    }
}

struct InvokeParamsVisitor;

impl<'de> Visitor<'de> for InvokeParamsVisitor {
    type Value = InvokeParams<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of `invoke` params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InvokeParams<'de>, A::Error> {
        let mut input = None;
        let mut rest = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "input" {
                input = Some(map.next_value()?);
            } else {
                let value = map.next_value()?;
                rest.insert(key, value);
            }
        }
        Ok(InvokeParams { input, rest })
    }
}

fn resolve(mut params: Map<String, Value>) -> Result<Request, String> {
    let id = id_of("resolve", &params)?;
    let name = match params.remove("operator") {
        Some(Value::String(o)) if !o.is_empty() => o,
        _ => return Err("`resolve` needs a string `operator`".to_owned()),
    };
    let value = match params.remove("value") {
        Some(Value::String(v)) => v,
        other => {
            let found = other.as_ref().map_or("nothing", json_kind);
            let error = ActionError::invalid_input_at(
                "$.value",
                format!("`resolve` needs a string `value`, got {found}"),
            );
            return Ok(Request::Reject { id, error });
        }
    };
    Ok(start(id, Call::Operator { name, value }, &params))
}

/// A `Start` with the params common to `invoke` and `resolve`, or a
/// `Reject` when one of them is unusable.
fn start(id: String, call: Call, params: &Map<String, Value>) -> Request {
    let checked = deadline_of(params).and_then(|d| Ok((d, metadata_of(params)?)));
    match checked {
        Ok((deadline_ms, metadata)) => Request::Start {
            id,
            call,
            deadline_ms,
            metadata,
        },
        Err(error) => Request::Reject { id, error },
    }
}

fn id_of(method: &str, params: &Map<String, Value>) -> Result<String, String> {
    match params.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(format!("`{method}` needs a non-empty string `id`")),
    }
}

fn deadline_of(params: &Map<String, Value>) -> Result<Option<u64>, ActionError> {
    match params.get("deadline_ms") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ActionError::invalid_input(format!(
                "`deadline_ms` must be a whole number of milliseconds, got {v}"
            ))
        }),
    }
}

/// `metadata`: absent or `null` (empty), or an object of strings.
fn metadata_of(params: &Map<String, Value>) -> Result<BTreeMap<String, String>, ActionError> {
    let map = match params.get("metadata") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(ActionError::invalid_input(format!(
                "`metadata` must be an object of strings, got {}",
                json_kind(other)
            )));
        }
    };
    map.iter()
        .map(|(key, value)| match value {
            Value::String(s) => Ok((key.clone(), s.clone())),
            other => Err(ActionError::invalid_input(format!(
                "`metadata` values must be strings; `{key}` is {}",
                json_kind(other)
            ))),
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Parses a line, with every piece of JSON text copied out of it.
    fn p(s: &str) -> Result<Option<Request>, String> {
        parse(s.as_bytes()).map(|r| r.map(|r| copied(r, s.as_bytes())))
    }

    fn copied(request: Request, line: &[u8]) -> Request {
        map_json(request, |json| match json {
            Json::In(_) => Json::Copy(String::from_utf8(json.bytes(line).to_vec()).unwrap()),
            other => other,
        })
    }

    /// `request` with `f` applied to each piece of JSON it holds.
    pub(in crate::stdio) fn map_json(request: Request, f: impl Fn(Json) -> Json) -> Request {
        match request {
            Request::Start {
                id,
                call: Call::Action { name, input },
                deadline_ms,
                metadata,
            } => Request::Start {
                id,
                call: Call::Action {
                    name,
                    input: f(input),
                },
                deadline_ms,
                metadata,
            },
            Request::Other { method, params } => Request::Other {
                method,
                params: f(params),
            },
            other => other,
        }
    }

    impl From<&str> for Json {
        fn from(text: &str) -> Json {
            Json::Copy(text.to_owned())
        }
    }

    #[test]
    fn json_text_is_found_in_the_line_without_a_copy() {
        let line = br#"{"method":"send","params": {"text":"x"} }"#;
        let Ok(Some(Request::Other { method, params })) = parse(line) else {
            panic!("a send")
        };
        assert_eq!(method, "send");
        assert_eq!(params, Json::In(27..39));
        assert_eq!(params.bytes(line), br#"{"text":"x"}"#);
        // A string with escapes is still the line's own text.
        let line =
            br#"{"method":"invoke","params":{"id":"1","action":"a","input":{"s":"\"\u00e9"}}}"#;
        let Ok(Some(Request::Start {
            call: Call::Action { input, .. },
            ..
        })) = parse(line)
        else {
            panic!("an invoke")
        };
        assert!(matches!(input, Json::In(_)), "{input:?}");
        assert_eq!(input.bytes(line), br#"{"s":"\"\u00e9"}"#);
        // Text not in the line (it cannot be: a guard) is copied.
        let raw = RawValue::from_string("[1]".to_owned()).unwrap();
        assert_eq!(Json::within(line, &raw), Json::Copy("[1]".into()));
    }

    #[test]
    fn invocations() {
        assert_eq!(
            p(
                r#"{"method":"invoke","params":{"id":"1","action":"echo","input":{"text":"hi"},"deadline_ms":50}}"#
            ),
            Ok(Some(Request::Start {
                id: "1".into(),
                call: Call::Action {
                    name: "echo".into(),
                    input: r#"{"text":"hi"}"#.into()
                },
                deadline_ms: Some(50),
                metadata: BTreeMap::new(),
            }))
        );
        assert_eq!(
            p(r#"{"method":"invoke","params":{"id":"1","action":"echo"}}"#),
            Ok(Some(Request::Start {
                id: "1".into(),
                call: Call::Action {
                    name: "echo".into(),
                    input: Json::Absent
                },
                deadline_ms: None,
                metadata: BTreeMap::new(),
            }))
        );
        assert_eq!(
            p(r#"{"method":"resolve","params":{"id":"2","operator":"ext","value":"rs"}}"#),
            Ok(Some(Request::Start {
                id: "2".into(),
                call: Call::Operator {
                    name: "ext".into(),
                    value: "rs".into()
                },
                deadline_ms: None,
                metadata: BTreeMap::new(),
            }))
        );
        let Ok(Some(Request::Reject { id, error })) =
            p(r#"{"method":"invoke","params":{"id":"3","action":"a","deadline_ms":-1}}"#)
        else {
            panic!("a bad deadline is answered for its id")
        };
        assert_eq!(id, "3");
        assert!(error.message().contains("deadline_ms"), "{error}");
    }

    #[test]
    fn metadata_is_an_object_of_strings() {
        let Ok(Some(Request::Start { metadata, .. })) = p(
            r#"{"method":"invoke","params":{"id":"1","action":"a","metadata":{"caller":"spoke-cli","traceparent":"00-ab-cd-01"}}}"#,
        ) else {
            panic!("an invoke with metadata starts")
        };
        assert_eq!(
            metadata,
            BTreeMap::from([
                ("caller".to_owned(), "spoke-cli".to_owned()),
                ("traceparent".to_owned(), "00-ab-cd-01".to_owned()),
            ])
        );
        let Ok(Some(Request::Start { metadata, .. })) = p(
            r#"{"method":"resolve","params":{"id":"2","operator":"o","value":"v","metadata":{"caller":"x"}}}"#,
        ) else {
            panic!("a resolve with metadata starts")
        };
        assert_eq!(metadata["caller"], "x");
        for bad in [r#""caller""#, r#"{"caller":1}"#, "[]"] {
            let line = format!(
                r#"{{"method":"invoke","params":{{"id":"3","action":"a","metadata":{bad}}}}}"#
            );
            let Ok(Some(Request::Reject { id, error })) = p(&line) else {
                panic!("bad metadata {bad} is answered for its id")
            };
            assert_eq!(id, "3");
            assert_eq!(error.code(), crate::ErrorCode::InvalidInput);
            assert!(error.message().contains("metadata"), "{error}");
        }
    }

    #[test]
    fn what_is_wrong_with_bad_lines() {
        let err = |s: &str| p(s).unwrap_err();
        assert!(err("{nope").starts_with("not valid JSON"));
        assert_eq!(err("[1]"), "expected a JSON object, got an array");
        assert_eq!(err(r#"{"params":{}}"#), "missing a string `method`");
        assert_eq!(
            err(r#"{"method":1}"#),
            "`method` must be a string, got a number"
        );
        assert_eq!(
            err(r#"{"method":"invoke","params":{"action":"a"}}"#),
            "`invoke` needs a non-empty string `id`"
        );
        assert_eq!(
            err(r#"{"method":"invoke","params":{"id":"1"}}"#),
            "`invoke` needs a string `action`"
        );
        assert_eq!(
            err(r#"{"method":"invoke","params":[1]}"#),
            "`invoke` params must be an object, got an array"
        );
        assert_eq!(p("  "), Ok(None));
    }

    #[test]
    fn other_methods() {
        assert_eq!(p(r#"{"method":"heartbeat"}"#), Ok(Some(Request::Heartbeat)));
        assert_eq!(p(r#"{"method":"ready_ack"}"#), Ok(Some(Request::ReadyAck)));
        assert_eq!(p(r#"{"method":"shutdown"}"#), Ok(Some(Request::Shutdown)));
        assert_eq!(
            p(r#"{"method":"cancel","params":{"id":"9"}}"#),
            Ok(Some(Request::Cancel { id: "9".into() }))
        );
        assert_eq!(
            p(r#"{"method":"send","params":{"text":"x"}}"#),
            Ok(Some(Request::Other {
                method: "send".into(),
                params: r#"{"text":"x"}"#.into()
            }))
        );
    }

    /// The action named by an invoke line, and its input text.
    fn action_of(line: &str) -> (String, String) {
        match p(line) {
            Ok(Some(Request::Start {
                call: Call::Action { name, input },
                ..
            })) => (name, String::from_utf8(input.bytes(b"").to_vec()).unwrap()),
            other => panic!("{line} starts an action: {other:?}"),
        }
    }

    #[test]
    fn an_invoke_input_is_kept_verbatim() {
        let input = r#"{ "n": 12345678901234567890, "big": 123456789012345678901234567890, "x": 1.50, "s": "caf\u00e9 \ud83d\ude00 \"q\"", "nested": {"list": [1, {"deep": [null, -0.0e+0]}], "empty": {}} }"#;
        for line in [
            format!(r#"{{"method":"invoke","params":{{"id":"1","action":"a","input":{input}}}}}"#),
            // Params before the method, whitespace around the input, other keys.
            format!(
                r#"{{"jsonrpc":"2.0","params":{{"input": {input} ,"action":"a","id":"1"}},"method":"invoke"}}"#
            ),
        ] {
            assert_eq!(action_of(&line), ("a".to_owned(), input.to_owned()));
        }
        // What going through a `Value` would not have kept.
        let via_value = serde_json::from_str::<Value>(input).unwrap().to_string();
        for kept in [
            "123456789012345678901234567890",
            "1.50",
            r"\u00e9",
            r"\ud83d",
        ] {
            assert!(
                input.contains(kept) && !via_value.contains(kept),
                "{via_value}"
            );
        }
        // Not an object: still the input, for decoding to reject.
        for input in ["5", "[1]", r#""x""#, "true"] {
            let line = format!(
                r#"{{"method":"invoke","params":{{"id":"1","action":"a","input":{input}}}}}"#
            );
            assert_eq!(action_of(&line).1, input);
        }
        // The last of repeated keys counts, as in a `Value`.
        assert_eq!(
            action_of(
                r#"{"method":"invoke","params":{"id":"1","action":"a","input":{"a":1},"input":{"b":2}}}"#
            )
            .1,
            r#"{"b":2}"#
        );
    }

    #[test]
    fn an_absent_or_null_input_is_an_empty_object() {
        for params in [
            r#"{"id":"1","action":"a"}"#,
            r#"{"id":"1","action":"a","input":null}"#,
            r#"{"id":"1","action":"a","input": null }"#,
        ] {
            for line in [
                format!(r#"{{"method":"invoke","params":{params}}}"#),
                format!(r#"{{"params":{params},"method":"invoke"}}"#),
            ] {
                assert_eq!(action_of(&line).1, "{}", "{line}");
            }
        }
    }

    #[test]
    fn an_invoke_input_reaches_decoding_as_text() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct In {
            n: u64,
        }
        let decoded = |input: &str| {
            let line = format!(
                r#"{{"method":"invoke","params":{{"id":"1","action":"a","input":{input}}}}}"#
            );
            crate::decode::decode::<In>(crate::Input::Bytes(action_of(&line).1.as_bytes()))
        };
        assert_eq!(
            decoded(r#"{"n": 18446744073709551615}"#).unwrap().n,
            u64::MAX
        );
        // Input that is not an object is rejected as it was from a `Value`.
        for (input, kind) in [
            ("5", "a number"),
            ("[1]", "an array"),
            (r#""x""#, "a string"),
            ("true", "a boolean"),
        ] {
            let error = decoded(input).unwrap_err();
            let value = serde_json::from_str::<Value>(input).unwrap();
            let before = crate::decode::decode::<In>(crate::Input::Value(&value)).unwrap_err();
            assert_eq!(error.code(), crate::ErrorCode::InvalidInput);
            assert_eq!(error.details().unwrap()["path"], "$");
            assert!(
                error
                    .message()
                    .ends_with(&format!("input must be a JSON object, got {kind}")),
                "{error}"
            );
            assert_eq!(
                (error.code(), error.message(), error.details()),
                (before.code(), before.message(), before.details())
            );
        }
    }

    #[test]
    fn bad_params_and_keys_in_any_order() {
        let err = |s: &str| p(s).unwrap_err();
        for line in [
            r#"{"method":"invoke","params":null}"#,
            r#"{"params":{"action":"a","input":{}},"method":"invoke"}"#,
        ] {
            assert_eq!(err(line), "`invoke` needs a non-empty string `id`");
        }
        assert_eq!(
            err(r#"{"method":"invoke","params":{"id":"1","action":"a"},"params":5}"#),
            "`invoke` params must be an object, got a number"
        );
        assert_eq!(
            err(r#"{"method":"invoke","params":"x"}"#),
            "`invoke` params must be an object, got a string"
        );
        assert!(
            err(r#"{"method":"invoke","params":{"id":"1","action":"a","input":{"a":1,}}}"#)
                .starts_with("not valid JSON")
        );
        assert!(
            err(r#"{"method":"invoke","params":{"id":"1","action":"a"}} x"#)
                .starts_with("not valid JSON")
        );
        // The last `method` counts.
        assert_eq!(
            p(r#"{"method":"invoke","params":{"id":"9"},"method":"cancel"}"#),
            Ok(Some(Request::Cancel { id: "9".into() }))
        );
        assert_eq!(
            p(r#"{"params":{"id":"9"},"method":"cancel"}"#),
            Ok(Some(Request::Cancel { id: "9".into() }))
        );
        assert_eq!(
            p(r#"{"params":{"text":"x"},"method":"send"}"#),
            Ok(Some(Request::Other {
                method: "send".into(),
                params: r#"{"text":"x"}"#.into()
            }))
        );
        assert_eq!(
            p(r#"{"method":"send"}"#),
            Ok(Some(Request::Other {
                method: "send".into(),
                params: Json::Absent
            }))
        );
    }

    #[test]
    fn the_usual_invoke_is_read_in_one_pass() {
        let line = br#"{"method":"invoke","params":{"id":"1","action":"a","input":{"k":[1,2]},"deadline_ms":5}}"#;
        assert!(matches!(
            serde_json::from_slice::<Frame<'_>>(line),
            Ok(Frame::Invoke(InvokeParams { input: Some(raw), .. })) if raw.get() == r#"{"k":[1,2]}"#
        ));
        let line = br#"{"method":"heartbeat"}"#;
        assert!(matches!(
            serde_json::from_slice::<Frame<'_>>(line),
            Ok(Frame::Parsed { .. })
        ));
    }

    #[test]
    fn one_pass_and_plain_parsing_agree() {
        // JSON text, as a `Value` would have it.
        let same = |json: Json| match json {
            Json::Copy(text) => {
                Json::Copy(serde_json::from_str::<Value>(&text).unwrap().to_string())
            }
            other => other,
        };
        let normal = |r: Result<Request, String>| match r {
            Ok(Request::Start {
                id,
                call: Call::Action { name, input },
                deadline_ms,
                metadata,
            }) => Ok(Request::Start {
                id,
                call: Call::Action {
                    name,
                    input: same(input),
                },
                deadline_ms,
                metadata,
            }),
            Ok(Request::Other { method, params }) => Ok(Request::Other {
                method,
                params: same(params),
            }),
            other => other,
        };
        for line in [
            r#"{"method":"invoke","params":{"id":"1","action":"a","input":{"b":[1,{"c":"\u00e9"}]}}}"#,
            r#"{"params":{"id":"1","action":"a","input":[1]},"method":"invoke","x":[{}]}"#,
            r#"{"method":"invoke","params":{"id":"1","action":"a","input":5,"deadline_ms":-1}}"#,
            r#"{"method":"invoke","params":{"id":"1","action":"a","metadata":{"k":1}}}"#,
            r#"{"method":"invoke","params":{"id":"1","action":"a","metadata":{"k":"v"}},"method":"resolve"}"#,
            r#"{"method":"invoke","params":{"id":"","action":"a"}}"#,
            r#"{"method":"invoke","params":{"id":"1","action":""}}"#,
            r#"{"method":"invoke","params":{"id":"1","action":"a","input":{}}"#,
            r#"{"method":"invoke","params":{"id":"1","action":"a","input":{}},"x":1e400}"#,
            r#"{"method":"invoke"}"#,
            r#"{"method":"invoke","params":[]}"#,
            r#"{"method":["invoke"],"params":{}}"#,
            r#"{"method":"resolve","params":{"id":"2","operator":"o","value":5}}"#,
            r#"{"params":{"id":"2","operator":"o","value":"v"},"method":"resolve"}"#,
            r#"{"method":"cancel","params":{"id":"3"}}"#,
            r#"{"method":"cancel","params":5}"#,
            r#"{"method":"send","params":[1]}"#,
            r#"{"params":{"text":"x","n":1.50},"method":"send"}"#,
            r#"{"method":"send","params":null}"#,
            r#"{"method":"shutdown","params":{"id":"1","action":"a"}}"#,
            "[]",
            "5",
            "{",
        ] {
            assert_eq!(
                normal(p(line).map(Option::unwrap)),
                normal(plain(line.as_bytes())),
                "{line}"
            );
        }
    }
}
