//! Property tests of the decoders of outside input outside the transports:
//! an action's input (`decode`), parameter constraints, a `--config` file,
//! and the `SPOKE_*` variables; and the strategies the transports' own
//! property tests share (`stdio::props`). Each property: no panic on any
//! input, and every error says what was wrong and where (a variable, a JSON
//! path, a file). The macro-generated side (a registered action's input, a
//! connector's config fields, a whole stdio session) is in the root
//! package's `tests/decoder_props.rs`.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// Every property's runner: proptest's default case count (256,
/// `PROPTEST_CASES` overrides it) and no failure files, so a run depends on
/// nothing left by an earlier one (a failure prints its minimal input).
pub(crate) fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// Text as people and programs send it: short ASCII words, any Unicode
/// (control characters, quotes, backslashes, astral planes included).
pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,8}",
        any::<String>(),
        "[ -~]{0,12}",
        Just(String::new()),
    ]
}

/// Object keys: one of `known` (the keys a decoder looks for) or any text.
pub(crate) fn key(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(known).prop_map(str::to_owned),
        1 => text(),
    ]
}

/// A JSON number: whole numbers over the whole `i64` and `u64` ranges, and
/// floats of up to 9 digits (serde_json reads floats of many digits back
/// only to within a unit in the last place).
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3i64..300).prop_map(Value::from),
        (-999_999_999i64..1_000_000_000, -15..=15i32).prop_map(|(digits, exp)| {
            Value::from(format!("{digits}e{exp}").parse::<f64>().expect("a number"))
        }),
    ]
}

/// Any JSON value, three levels deep, whose objects use `known` keys most
/// of the time.
pub(crate) fn json(known: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(known), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Bytes that are, half the time, nearly valid: `valid` as generated, cut
/// short, with a byte changed or inserted (non-UTF-8 included); else any
/// bytes at all.
pub(crate) fn mangled(
    valid: impl Strategy<Value = Vec<u8>> + 'static,
) -> impl Strategy<Value = Vec<u8>> {
    (valid, 0..5u8, any::<prop::sample::Index>(), any::<u8>())
        .prop_map(|(mut bytes, how, at, byte)| {
            let at = at.index(bytes.len() + 1);
            match how {
                0 | 1 => {}
                2 => bytes.truncate(at),
                3 => bytes.insert(at, byte),
                _ => {
                    if let Some(b) = bytes.get_mut(at) {
                        *b = byte;
                    }
                }
            }
            bytes
        })
        .boxed()
        .prop_union(prop::collection::vec(any::<u8>(), 0..64).boxed())
}

/// Whether `message` contains `secret` as it would show in any of the ways
/// an error message may quote it: as is, JSON-escaped, `{:?}`-escaped.
#[cfg(feature = "grpc")]
fn shows(message: &str, secret: &str) -> bool {
    let json = serde_json::to_string(secret).expect("a string encodes");
    let debug = format!("{secret:?}");
    [secret, &json[1..json.len() - 1], &debug[1..debug.len() - 1]]
        .iter()
        .any(|form| message.contains(form))
}

mod decoding {
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::Value;

    use super::{config, json, mangled};
    use crate::connector::Input;
    use crate::decode::decode;
    use crate::error::{ActionError, ErrorCode};

    // Shaped like the macro's generated input struct.
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    #[allow(non_camel_case_types, dead_code)]
    struct __SpokeInput_order {
        customer: String,
        qty: u32,
        note: Option<String>,
        items: Option<Vec<Item>>,
        #[serde(default)]
        urgent: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[allow(dead_code)]
    struct Item {
        sku: String,
        #[serde(default)]
        n: i8,
        tags: Option<std::collections::BTreeMap<String, u16>>,
    }

    const KEYS: &[&str] = &[
        "customer", "qty", "note", "items", "urgent", "sku", "n", "tags", "x",
    ];

    type Decoded = Result<__SpokeInput_order, ActionError>;

    /// An `invalid_input` error whose message starts with its
    /// `details.path`, a JSON path from `$`, and says what was wrong.
    fn assert_clear(e: &ActionError) -> Result<String, TestCaseError> {
        prop_assert_eq!(e.code(), ErrorCode::InvalidInput, "{}", e);
        let path = e
            .details()
            .and_then(|d| d["path"].as_str())
            .unwrap_or_default()
            .to_owned();
        prop_assert!(path.starts_with('$'), "no path: {}", e);
        let what = e.message().strip_prefix(&format!("{path}: "));
        prop_assert!(what.is_some_and(|w| !w.trim().is_empty()), "{}", e);
        prop_assert!(!e.message().contains("__Spoke"), "{}", e);
        Ok(path)
    }

    proptest! {
        #![proptest_config(config())]

        /// Any bytes: decoded, or an `invalid_input` error at a path.
        #[test]
        fn any_bytes_decode_or_fail_at_a_path(
            bytes in mangled(json(KEYS).prop_map(|v| v.to_string().into_bytes())),
        ) {
            let decoded: Decoded = decode(Input::Bytes(&bytes));
            if let Err(e) = &decoded {
                assert_clear(e)?;
            }
        }

        /// A value decodes the same from its text and from a `Value` (the
        /// gRPC and stdio transports have the one, the test kit the other):
        /// the same output, or an error at the same path.
        #[test]
        fn text_and_value_decode_alike(value in json(KEYS)) {
            let text = value.to_string();
            let from_text: Decoded = decode(Input::Bytes(text.as_bytes()));
            let from_value: Decoded = decode(Input::Value(&value));
            match (&from_text, &from_value) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!(assert_clear(a)?, assert_clear(b)?),
                _ => prop_assert!(false, "{text}: {from_text:?} but {from_value:?}"),
            }
        }

        /// The free-form input type (`#[input] v: Value`) takes any object
        /// as it is, and `null` as `{}`.
        #[test]
        fn a_value_input_takes_any_object(value in json(KEYS)) {
            let text = value.to_string();
            let decoded = decode::<Value>(Input::Bytes(text.as_bytes()));
            match &value {
                Value::Object(_) => prop_assert_eq!(decoded.ok(), Some(value.clone())),
                Value::Null => prop_assert_eq!(decoded.ok(), Some(serde_json::json!({}))),
                _ => {
                    assert_clear(&decoded.unwrap_err())?;
                }
            }
        }
    }
}

mod config_files {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::{config, json, mangled};
    use crate::config::ConfigSource;

    const KEYS: &[&str] = &["token", "root", "retries", "tags"];

    proptest! {
        #![proptest_config(config())]

        /// Any file given as `--config`: a source when it holds a JSON
        /// object, else an error that names the file and says what is wrong.
        #[test]
        fn a_config_file_is_an_object_or_a_clear_error(
            text in mangled(json(KEYS).prop_map(|v| v.to_string().into_bytes())),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.json");
            std::fs::write(&path, &text).unwrap();
            let path = path.to_str().unwrap();
            let parsed = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(t).ok());
            match (crate::cli::config_source(Some(path)), parsed) {
                (Ok(ConfigSource::Json(map)), Some(Value::Object(object))) => {
                    prop_assert_eq!(map, object);
                }
                (Err(e), Some(value)) => {
                    prop_assert!(!value.is_object(), "{}", e);
                    prop_assert!(e.starts_with(&format!("config file `{path}`: config must be a JSON object, got ")), "{}", e);
                }
                (Err(e), None) => {
                    let about = e.strip_prefix(&format!("config file `{path}` "));
                    prop_assert!(
                        about.is_some_and(|a| a.starts_with("is not valid JSON: ") && a.contains(" column "))
                            || e.starts_with(&format!("cannot read config file `{path}`: ")),
                        "{}", e
                    );
                }
                (source, parsed) => prop_assert!(false, "{:?} from {:?}", source, parsed),
            }
        }
    }
}

mod constraints {
    use proptest::prelude::*;

    use super::{config, text};
    use crate::core::constraints::{Bound, Pattern, check_length, check_pattern, check_range};
    use crate::error::{ActionError, ErrorCode};

    fn bound() -> impl Strategy<Value = Option<Bound>> {
        prop_oneof![
            Just(None),
            any::<i64>().prop_map(|n| Some(Bound::from(n))),
            any::<u64>().prop_map(|n| Some(Bound::from(n))),
            any::<f64>().prop_map(|x| Some(Bound::from(x))),
        ]
    }

    /// An error at `path` that says what was wrong.
    fn assert_at(result: Result<(), ActionError>, path: &str) -> Result<(), TestCaseError> {
        if let Err(e) = result {
            prop_assert_eq!(e.code(), ErrorCode::InvalidInput);
            prop_assert_eq!(&e.details().expect("details")["path"], path);
            let what = e.message().strip_prefix(&format!("{path}: "));
            prop_assert!(what.is_some_and(|w| w.starts_with("must ")), "{}", e);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        /// Any number against any bounds: within them, or an error at the
        /// parameter's path that says which bound.
        #[test]
        fn ranges(
            int in any::<i64>(), uint in any::<u64>(), float in any::<f64>(),
            min in bound(), max in bound(),
        ) {
            assert_at(check_range(&int, min, max, "$.a"), "$.a")?;
            assert_at(check_range(&uint, min, max, "$.b"), "$.b")?;
            assert_at(check_range(&Some(float), min, max, "$.c"), "$.c")?;
        }

        /// Any text or list against any lengths.
        #[test]
        fn lengths(
            s in text(), list in prop::collection::vec(any::<u8>(), 0..8),
            min in prop::option::of(0usize..16), max in prop::option::of(0usize..16),
        ) {
            let result = check_length(&s, min, max, "$.s");
            let chars = s.chars().count();
            let within = min.is_none_or(|m| chars >= m) && max.is_none_or(|m| chars <= m);
            prop_assert_eq!(result.is_ok(), within);
            assert_at(result, "$.s")?;
            assert_at(check_length(&list, min, max, "$.l"), "$.l")?;
        }

        /// Any text against a pattern.
        #[test]
        fn patterns(s in text()) {
            static WORD: Pattern = Pattern::new("^[a-zé]+$");
            let result = check_pattern(&s, &WORD, "$.q");
            prop_assert_eq!(
                result.is_ok(),
                !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == 'é')
            );
            assert_at(result, "$.q")?;
        }
    }
}

mod variables {
    use proptest::prelude::*;

    #[cfg(feature = "grpc")]
    use super::shows;
    use super::{config, text};
    use crate::env::{EnvError, MAX_IN_FLIGHT, SHUTDOWN_GRACE};

    /// A value as it may be typed: numbers, durations, words, any text.
    pub(super) fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            text(),
            any::<i64>().prop_map(|n| n.to_string()),
            "[0-9]{1,30}",
            "[0-9]{0,4}(ns|us|µs|ms|s|m|h|d|x|)( ?[0-9]{1,3}[a-zµ]{0,2}){0,3}",
            " *[0-9]{1,3} *",
        ]
    }

    /// An error names its variable first and says what was wrong.
    pub(super) fn assert_names(e: &EnvError, names: &[&str]) -> Result<(), TestCaseError> {
        prop_assert!(names.contains(&e.variable.as_str()), "{}", e);
        let shown = e.to_string();
        let what = shown.strip_prefix(&format!("{}: ", e.variable));
        prop_assert!(what.is_some_and(|w| !w.trim().is_empty()), "{}", shown);
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        /// `SPOKE_MAX_IN_FLIGHT` and `SPOKE_SHUTDOWN_GRACE`, whatever they hold.
        #[test]
        fn shared_variables(value in value()) {
            match crate::env::positive::<usize>(MAX_IN_FLIGHT, &value) {
                Ok(n) => prop_assert!(n > 0),
                Err(e) => {
                    assert_names(&e, &[MAX_IN_FLIGHT])?;
                    prop_assert!(e.message.contains(&format!("`{value}`")), "{}", e);
                }
            }
            match crate::env::duration(SHUTDOWN_GRACE, &value) {
                // What parses is written back the same way.
                Ok(d) => prop_assert_eq!(crate::duration::parse(&crate::duration::format(d)), Ok(d)),
                Err(e) => assert_names(&e, &[SHUTDOWN_GRACE])?,
            }
        }
    }

    #[cfg(feature = "stdio")]
    proptest! {
        #![proptest_config(config())]

        /// The stdio transport's variables.
        #[test]
        fn stdio_variables(vars in prop::collection::vec(
            (prop::sample::select(&[
                crate::stdio::MAX_LINE, crate::stdio::ACCOUNT_ID, MAX_IN_FLIGHT, SHUTDOWN_GRACE,
                "SPOKE_OTHER", "PATH",
            ][..]), value()),
            0..6,
        )) {
            if let Err(e) = crate::stdio::StdioOptions::from_vars(vars) {
                assert_names(&e, &[crate::stdio::MAX_LINE, MAX_IN_FLIGHT, SHUTDOWN_GRACE])?;
            }
        }
    }

    #[cfg(feature = "grpc")]
    proptest! {
        #![proptest_config(config())]

        /// `serve`'s variables (all but `SPOKE_TLS_CA`, which reads a
        /// file): the registration token never shows, in an error or in
        /// the options' `Debug`.
        #[test]
        fn attach_variables(
            vars in prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(&[
                            crate::grpc::env::HUB_URL, crate::grpc::env::INSTANCE_ID,
                            crate::grpc::env::DISPLAY_NAME, crate::grpc::env::TAGS,
                            crate::grpc::env::TENANT, crate::grpc::env::KEY_PATH,
                            MAX_IN_FLIGHT, SHUTDOWN_GRACE, "SPOKE_METADATA_", "SPOKE_HUB_UR",
                            "PATH",
                        ][..]).prop_map(str::to_owned),
                        "[a-zA-Z_]{0,8}".prop_map(|k| format!("SPOKE_METADATA_{k}")),
                    ],
                    prop_oneof![value(), "(http|https|ftp|)(://)?[a-z.:0-9\\[\\]@]{0,20}"],
                ),
                0..6,
            ),
            token in "[A-Za-z0-9_\"\\\\-]{12,40}",
            at in any::<prop::sample::Index>(),
        ) {
            let mut vars: Vec<(String, String)> = vars;
            let token_var = (crate::grpc::env::REGISTRATION_TOKEN.to_owned(), token.clone());
            vars.insert(at.index(vars.len() + 1), token_var);
            let manifest = crate::grpc::options::tests::manifest();
            match crate::grpc::serve::AttachOptions::from_vars(vars, &manifest) {
                Ok(options) => {
                    let shown = format!("{options:?}");
                    prop_assert!(!shows(&shown, &token), "{}", shown);
                    prop_assert_eq!(
                        options.registration_token.map(|t| t.expose().clone()),
                        Some(token.trim().to_owned()).filter(|t| !t.is_empty())
                    );
                }
                Err(e) => {
                    prop_assert!(e.variable.starts_with("SPOKE_"), "{}", e);
                    prop_assert!(!e.message.trim().is_empty(), "{}", e);
                    prop_assert!(!shows(&e.to_string(), &token), "{}", e);
                }
            }
        }
    }
}
