//! Decoding an invocation's input into the action's input type, with errors
//! that name the JSON path of the bad field.

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::error::Category;

use crate::connector::Input;
use crate::error::ActionError;

/// Decodes an action's input. The input must be a JSON object (empty bytes and
/// `null` mean `{}`); errors are `invalid_input` with `details.path`, e.g.
/// `$.items[1].qty`, or `$` for input that is not an object or not JSON.
pub fn decode<T: DeserializeOwned>(input: Input<'_>) -> Result<T, ActionError> {
    let empty = || Value::Object(Default::default());
    match input {
        Input::Encoded {
            encoding: crate::encoding::Encoding::Json,
            bytes,
        } => decode(Input::Bytes(bytes)),
        Input::Encoded { encoding, .. } => Err(crate::payload::not_taken(
            encoding,
            &[crate::encoding::Encoding::Json],
        )),
        Input::Bytes(bytes) => {
            let text = bytes.trim_ascii();
            if text.is_empty() || text == b"null" {
                return decode(Input::Value(&empty()));
            }
            if text[0] != b'{' {
                return Err(not_an_object(match serde_json::from_slice::<Value>(text) {
                    Ok(v) => json_kind(&v),
                    Err(e) => return Err(not_json(&e)),
                }));
            }
            // The plain decoder first (the common, valid case, at full
            // speed); only a failure is decoded again to learn its path.
            if let Ok(value) = serde_json::from_slice(text) {
                return Ok(value);
            }
            let mut de = serde_json::Deserializer::from_slice(text);
            let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                match inner.classify() {
                    Category::Syntax | Category::Eof => not_json(&inner),
                    Category::Data | Category::Io => at_path(&path, &inner.to_string()),
                }
            })?;
            de.end().map_err(|e| not_json(&e))?;
            Ok(value)
        }
        Input::Value(Value::Null) => decode(Input::Value(&empty())),
        Input::Value(value) if !value.is_object() => Err(not_an_object(json_kind(value))),
        Input::Value(value) => T::deserialize(value).or_else(|_| {
            serde_path_to_error::deserialize(value)
                .map_err(|e| at_path(&e.path().to_string(), &e.into_inner().to_string()))
        }),
    }
}

/// The error of input that is not JSON at all (blamed on the document).
pub(crate) fn not_json(e: &serde_json::Error) -> ActionError {
    ActionError::invalid_input_at("$", format!("input is not valid JSON: {e}"))
}

fn not_an_object(found: &str) -> ActionError {
    ActionError::invalid_input_at("$", format!("input must be a JSON object, got {found}"))
}

/// How a JSON value is described in error messages: "an array", "null", ...
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `prefix` (`$`, `$[3]`) followed by a `serde_path_to_error` path:
/// `$`, `$[1].qty`, `$.items`.
pub(crate) fn json_path(prefix: &str, path: &str) -> String {
    match path {
        "." | "" => prefix.to_owned(),
        p if p.starts_with('[') => format!("{prefix}{p}"),
        p => format!("{prefix}.{p}"),
    }
}

/// `invalid_input` at the `serde_path_to_error` path of a bad value.
pub(crate) fn at_path(path: &str, message: &str) -> ActionError {
    let mut path = json_path("$", path);
    // serde reports a missing field at its parent object; point at the field itself.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        path = format!("{path}.{field}");
    }
    ActionError::invalid_input_at(path, hide_generated_names(message))
}

/// serde names the generated input struct (`struct __SpokeInput_echo`); say "object".
fn hide_generated_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("struct __SpokeInput_") {
        out.push_str(&rest[..at]);
        out.push_str("the input object");
        rest = &rest[at + "struct __SpokeInput_".len()..];
        rest = rest.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    #[allow(non_camel_case_types)]
    struct __SpokeInput_add {
        a: u32,
        items: Option<Vec<Item>>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        qty: u32,
    }

    fn path(r: Result<__SpokeInput_add, ActionError>) -> (String, String) {
        let e = r.unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidInput);
        (
            e.details().unwrap()["path"].as_str().unwrap().to_owned(),
            e.message().to_owned(),
        )
    }

    #[test]
    fn paths_point_at_the_bad_field() {
        let (p, _) = path(decode(Input::Bytes(
            br#"{"a": 1, "items": [{"qty": 1}, {"qty": "x"}]}"#,
        )));
        assert_eq!(p, "$.items[1].qty");
        let (p, m) = path(decode(Input::Bytes(br#"{"items": []}"#)));
        assert_eq!(
            (p.as_str(), m.as_str()),
            ("$.a", "$.a: missing field `a` at line 1 column 13")
        );
        let (p, _) = path(decode(Input::Value(&serde_json::json!({"a": 1, "zz": 2}))));
        assert_eq!(p, "$.zz");
    }

    #[test]
    fn only_objects_are_inputs() {
        for bad in [&b"[1]"[..], b"5", b"\"x\""] {
            let (p, m) = path(decode(Input::Bytes(bad)));
            assert_eq!(p, "$");
            assert!(m.contains("input must be a JSON object"), "{m}");
        }
        let (p, _) = path(decode(Input::Value(&serde_json::json!([1, 2]))));
        assert_eq!(p, "$");
    }

    #[test]
    fn syntax_errors_are_blamed_on_the_document_not_a_field() {
        let (p, m) = path(decode(Input::Bytes(br#"{"a": 1,}"#)));
        assert_eq!(p, "$");
        assert!(m.contains("not valid JSON") && m.contains("line 1"), "{m}");
        let (p, _) = path(decode(Input::Bytes(br#"{"a": 1} trailing"#)));
        assert_eq!(p, "$");
    }

    #[test]
    fn empty_and_null_mean_an_empty_object() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Nothing {}
        for empty in [&b""[..], b"  ", b"null", b" null\n"] {
            assert_eq!(decode::<Nothing>(Input::Bytes(empty)).unwrap(), Nothing {});
        }
        assert_eq!(
            decode::<Nothing>(Input::Value(&Value::Null)).unwrap(),
            Nothing {}
        );
    }

    #[test]
    fn generated_type_names_never_reach_the_caller() {
        assert_eq!(
            hide_generated_names("expected struct __SpokeInput_add_2 here"),
            "expected the input object here"
        );
        let (_, m) = path(decode(Input::Bytes(br#"{"a": 1, "items": 5}"#)));
        assert!(!m.contains("__Spoke"), "{m}");
    }
}
