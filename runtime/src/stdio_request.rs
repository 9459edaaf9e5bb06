//! Parsing one line of the stdio transport's input into a [`Request`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::decode::json_kind;
use crate::error::ActionError;

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
        /// Its params (`null` when absent).
        params: Value,
    },
}

/// What an invocation runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Call {
    /// An action with its input.
    Action {
        /// The action.
        name: String,
        /// Its input.
        input: Value,
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
            Call::Action { name, .. } | Call::Operator { name, .. } => name,
        }
    }
}

/// Parses a line. `Ok(None)` for a blank line; `Err` says what is wrong
/// (the caller prefixes the line number).
pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Request>, String> {
    if bytes.trim_ascii().is_empty() {
        return Ok(None);
    }
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
    Ok(Some(match method.as_str() {
        "invoke" => invoke(object(params)?)?,
        "resolve" => resolve(object(params)?)?,
        "cancel" => Request::Cancel {
            id: id_of("cancel", &object(params)?)?,
        },
        "heartbeat" => Request::Heartbeat,
        "ready_ack" => Request::ReadyAck,
        "shutdown" => Request::Shutdown,
        _ => Request::Other { method, params },
    }))
}

fn invoke(mut params: Map<String, Value>) -> Result<Request, String> {
    let id = id_of("invoke", &params)?;
    let name = match params.remove("action") {
        Some(Value::String(a)) if !a.is_empty() => a,
        _ => return Err("`invoke` needs a string `action`".to_owned()),
    };
    let input = match params.remove("input") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(input) => input,
    };
    Ok(start(id, Call::Action { name, input }, &params))
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
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Result<Option<Request>, String> {
        parse(s.as_bytes())
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
                    input: json!({"text": "hi"})
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
                    input: json!({})
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
                params: json!({"text": "x"})
            }))
        );
    }
}
