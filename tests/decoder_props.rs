//! Property tests, through a connector the macros generate, of the decoders
//! of outside input that need a registered connector: an action's input
//! against its parameters and their constraints, the connector's
//! configuration (environment and JSON), and a whole stdio session fed any
//! lines. No panic on any input; every error says what was wrong and where
//! (a JSON path, a config key and its variable, a line number); a secret's
//! value never shows in a config error.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spoke::librefang::{SendParams, TypingParams};
use spoke::prelude::*;
use spoke::stdio::StdioOptions;
use spoke::{ConfigSource, Connector, Input, Instance, Registry};

/// Every field type a config field may have, two secrets among them.
#[connector(name = "shapes")]
pub struct Shapes {
    #[config_field(env = "SHAPES_NAME")]
    name: String,
    #[config_field(env = "SHAPES_PORT", default = 8080)]
    port: u16,
    #[config_field(env = "SHAPES_VERBOSE", default = false)]
    verbose: bool,
    #[config_field(env = "SHAPES_IDS", default)]
    ids: Vec<u32>,
    #[config_field(env = "SHAPES_TAGS", default)]
    tags: Vec<String>,
    #[config_field(env = "SHAPES_LEVEL")]
    level: Option<Level>,
    #[config_field(env = "SHAPES_TIMEOUT", default = "5s")]
    timeout: Duration,
    #[config_field(env = "SHAPES_LIMITS")]
    limits: Option<Limits>,
    #[config_field(secret, env = "SHAPES_TOKEN")]
    token: Secret<String>,
    #[config_field(secret, env = "SHAPES_PIN")]
    pin: Option<Secret<u64>>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Debug,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    max: u32,
    burst: Option<u8>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Order {
    customer: String,
    items: Vec<Item>,
    note: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct Item {
    sku: String,
    qty: u32,
}

#[connector]
impl Shapes {
    /// Searches, within bounds.
    #[action(read)]
    async fn search(
        &self,
        #[schemars(length(min = 1, max = 8), regex(pattern = "^[a-zé]+$"))] query: String,
        #[schemars(range(min = 1, max = 100))] limit: u32,
        #[schemars(range(min = -1.5))] offset: Option<f64>,
        #[schemars(length(max = 2))] tags: Option<Vec<String>>,
        #[schemars(length(min = 1))] labels: Option<BTreeMap<String, String>>,
        #[serde(default)]
        #[schemars(range(max = 10))]
        depth: u8,
    ) -> Value {
        json!({
            "query": query, "limit": limit, "offset": offset, "tags": tags,
            "labels": labels, "depth": depth,
        })
    }

    /// Returns the order.
    #[action]
    async fn order(&self, #[input] order: Order) -> Order {
        order
    }

    /// Returns the text.
    #[action(read)]
    async fn echo(&self, text: String) -> String {
        text
    }

    /// LibreFang `send`: fails when the text is `fail`.
    #[action]
    async fn send(&self, #[input] p: SendParams) -> Result<(), ActionError> {
        match p.text.as_str() {
            "fail" => Err(ActionError::unavailable("platform down")),
            _ => Ok(()),
        }
    }

    /// What the config holds (the secrets' lengths only).
    #[action(read)]
    async fn settings(&self) -> Value {
        json!({
            "name": self.name, "port": self.port, "verbose": self.verbose, "ids": self.ids,
            "tags": self.tags, "level": self.level, "timeout_ms": self.timeout.as_millis(),
            "limits": self.limits, "token_len": self.token.expose().len(),
            "pin_set": self.pin.is_some(),
        })
    }

    /// LibreFang `typing`.
    #[action]
    async fn typing(&self, #[input] _p: TypingParams) {}
}

/// proptest's default case count, and no failure files.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// A runtime whose clock jumps ahead when idle: sessions' timers take no
/// real time.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// A started `shapes`.
async fn shapes() -> Instance {
    let registry = Registry::from_inventory().expect("registry");
    let ty = registry.get("shapes").expect("registered").clone();
    let source = ConfigSource::from_vars([("SHAPES_NAME", "n"), ("SHAPES_TOKEN", "t0ken-value")]);
    Instance::start(ty, source).await.expect("starts")
}

/// Text of any kind.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zé]{0,9}", any::<String>(), "[ -~]{0,12}"]
}

/// Any JSON value, objects keyed by `keys` mostly.
fn json_of(keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5i64..120).prop_map(Value::from),
        (-40i32..400).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(keys), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
    .boxed()
}

fn key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(keys).prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,6}",
    ]
}

/// An object with each of `keys` present half the time, and a few others.
fn object_of(
    keys: &'static [&'static str],
    value: impl Strategy<Value = Value> + Clone + 'static,
) -> impl Strategy<Value = Value> {
    let present: Vec<_> = keys
        .iter()
        .map(|&k| prop::option::weighted(0.5, (Just(k.to_owned()), value.clone())))
        .collect();
    (present, prop::collection::vec((key(keys), value), 0..2)).prop_map(|(present, others)| {
        Value::Object(present.into_iter().flatten().chain(others).collect())
    })
}

// ------------------------------------------------------------ action input

const SEARCH: &[&str] = &["query", "limit", "offset", "tags", "labels", "depth"];
const ORDER: &[&str] = &["customer", "items", "note", "sku", "qty"];

/// A value for a parameter: of a likely type, near the bounds, or anything.
fn param() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        2 => "[a-zé]{0,10}".prop_map(Value::from),
        2 => (-3i64..110).prop_map(Value::from),
        1 => (-16i32..16).prop_map(|n| Value::from(f64::from(n) / 4.0)),
        1 => prop::collection::vec("[a-z]{0,3}".prop_map(Value::from), 0..4).prop_map(Value::Array),
        1 => prop::collection::btree_map("[a-z]{0,3}", "[a-z]{0,3}", 0..3).prop_map(|m| json!(m)),
        1 => prop::collection::vec(object_of(ORDER, (0u32..5).prop_map(Value::from)), 0..3)
            .prop_map(Value::Array),
        1 => json_of(ORDER),
    ]
}

/// An input for `search` or `order`: an object of its parameters mostly.
fn input(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => object_of(keys, param()),
        1 => json_of(keys),
    ]
}

/// An `invalid_input` error at a JSON path into the input, which says what
/// was wrong; its path.
fn assert_at_a_path(
    e: &ActionError,
    input: &Value,
    params: &[&str],
) -> Result<String, TestCaseError> {
    prop_assert_eq!(e.code(), ErrorCode::InvalidInput, "{}", e);
    let path = e
        .details()
        .and_then(|d| d["path"].as_str())
        .unwrap_or_default()
        .to_owned();
    let what = e.message().strip_prefix(&format!("{path}: "));
    prop_assert!(what.is_some_and(|w| !w.trim().is_empty()), "{}", e);
    if path != "$" {
        // `$.name`, `$.name[1].more`, ...: a parameter, or a key of the input.
        let first = path
            .strip_prefix("$.")
            .and_then(|p| p.split(['.', '[']).next())
            .unwrap_or_default();
        let in_input = input.get(first).is_some();
        prop_assert!(
            params.contains(&first) || in_input,
            "{} is not in the input: {}",
            path,
            e
        );
    }
    Ok(path)
}

/// `search`'s output keeps every constraint of its parameters.
fn assert_within_bounds(out: &Value) -> Result<(), TestCaseError> {
    let query = out["query"].as_str().unwrap_or_default();
    prop_assert!((1..=8).contains(&query.chars().count()), "{}", out);
    prop_assert!(
        query.chars().all(|c| c.is_ascii_lowercase() || c == 'é'),
        "{}",
        out
    );
    prop_assert!(
        (1..=100).contains(&out["limit"].as_u64().unwrap_or(0)),
        "{}",
        out
    );
    prop_assert!(out["offset"].as_f64().is_none_or(|o| o >= -1.5), "{}", out);
    prop_assert!(
        out["tags"].as_array().is_none_or(|t| t.len() <= 2),
        "{}",
        out
    );
    prop_assert!(
        out["labels"].as_object().is_none_or(|l| !l.is_empty()),
        "{}",
        out
    );
    prop_assert!(out["depth"].as_u64().is_some_and(|d| d <= 10), "{}", out);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Any input to an action, as text (the wire) and as a value (the test
    /// kit): the action runs within its parameters' constraints, or the
    /// call is `invalid_input` at the path of what is wrong; both ways the
    /// same.
    #[test]
    fn action_input_runs_within_bounds_or_fails_at_a_path(
        search in input(SEARCH),
        order in input(ORDER),
        cut in any::<prop::sample::Index>(),
    ) {
        runtime().block_on(async {
            let instance = shapes().await;
            for (action, input) in [("search", &search), ("order", &order)] {
                let params = if action == "search" { SEARCH } else { ORDER };
                let text = input.to_string();
                let ctx = || Context::builder("r", action).build();
                let by_text = instance.invoke(action, Input::Bytes(text.as_bytes()), ctx()).await;
                let by_value = instance.invoke(action, Input::Value(input), ctx()).await;
                match (&by_text, &by_value) {
                    (Ok(a), Ok(b)) => {
                        prop_assert_eq!(a.to_value(), b.to_value());
                        let out = a.to_value();
                        if action == "search" {
                            assert_within_bounds(&out)?;
                        } else {
                            prop_assert_eq!(&out["customer"], &input["customer"]);
                            prop_assert_eq!(&out["items"], &input["items"]);
                        }
                    }
                    (Err(a), Err(b)) => prop_assert_eq!(
                        assert_at_a_path(a, input, params)?,
                        assert_at_a_path(b, input, params)?
                    ),
                    _ => prop_assert!(false, "{}: {:?} from text, {:?} from a value", text, by_text, by_value),
                }
                // The text cut short: not JSON, said at `$`.
                let cut = &text.as_bytes()[..cut.index(text.len())];
                if let Err(e) = instance.invoke(action, Input::Bytes(cut), ctx()).await {
                    assert_at_a_path(&e, input, params)?;
                }
            }
            Ok(())
        })?;
    }
}

// ----------------------------------------------------------------- config

/// The fields: key, variable, secret.
const FIELDS: &[(&str, &str, bool)] = &[
    ("name", "SHAPES_NAME", false),
    ("port", "SHAPES_PORT", false),
    ("verbose", "SHAPES_VERBOSE", false),
    ("ids", "SHAPES_IDS", false),
    ("tags", "SHAPES_TAGS", false),
    ("level", "SHAPES_LEVEL", false),
    ("timeout", "SHAPES_TIMEOUT", false),
    ("limits", "SHAPES_LIMITS", false),
    ("token", "SHAPES_TOKEN", true),
    ("pin", "SHAPES_PIN", true),
];
const KEYS: &[&str] = &[
    "name", "port", "verbose", "ids", "tags", "level", "timeout", "limits", "token", "pin", "max",
    "burst",
];

/// A secret: long enough to be told apart from any other text (the
/// runtime masks secrets of 4 characters or more), with quotes,
/// backslashes, control characters and any Unicode now and then, as a
/// pasted key may have; some longer than an error shows of a value.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{12,24}",
        "[A-Za-z0-9]{4,8}[\"\\\\\\n\\t\\x01'/ é☃😀][A-Za-z0-9\"\\\\]{4,12}",
        "[a-z0-9]{70,90}",
        "[0-9]{12,18}",
    ]
}

/// A value as typed into a form or a `.env` file, or `secret` pasted
/// into the wrong field (alone, or among other text).
fn typed(secret: String) -> impl Strategy<Value = String> {
    let s = secret.clone();
    prop_oneof![
        4 => text(),
        2 => prop_oneof![
            "[0-9]{1,6}",
            "-[0-9]{1,3}",
            "(true|false|yes|no|on|off|maybe)",
            "(info|debug|loud)",
            "[0-9]{1,3}(ms|s|m|h|x|)",
            "[0-9a-z]{0,3}(, ?[0-9a-z]{0,3}){0,3}",
            "\\[[0-9, \"a-z]{0,8}\\]",
            "\\{\"(max|burst|x)\": ?[0-9\"a-z]{0,4}\\}",
        ],
        1 => Just(secret),
        1 => ("[a-z ,\\[{\"]{0,4}", "[a-z ,\\]}\"]{0,4}").prop_map(move |(a, b)| format!("{a}{s}{b}")),
    ]
}

/// A JSON config value: a likely one, `secret` (as text, or inside an
/// object or a list), or any JSON.
fn json_typed(secret: String) -> impl Strategy<Value = Value> {
    let (s1, s2) = (secret.clone(), secret.clone());
    prop_oneof![
        3 => typed(secret.clone()).prop_map(Value::from),
        2 => json_of(KEYS),
        1 => Just(Value::from(s1)),
        1 => "(max|burst|x)".prop_map(move |k| json!({ k: s2.clone() })),
        1 => Just(json!([1, secret])),
    ]
}

/// Whether `message` shows `secret` in any way an error may quote it: as
/// is, JSON-escaped, `{:?}`-escaped; or 16 characters of it in a row.
fn shows(message: &str, secret: &str) -> bool {
    let json = serde_json::to_string(secret).unwrap();
    let debug = format!("{secret:?}");
    let forms = [secret, &json[1..json.len() - 1], &debug[1..debug.len() - 1]];
    let chars: Vec<char> = secret.chars().collect();
    forms.iter().any(|form| message.contains(form))
        || chars
            .windows(16)
            .any(|w| message.contains(&w.iter().collect::<String>()))
}

/// A config error that names every field it is about (and its variable,
/// from the environment), says what was wrong, and shows no secret.
fn assert_clear_config_error(
    errors: &spoke::ConfigErrors,
    from_env: bool,
    secrets: &[&str],
) -> Result<(), TestCaseError> {
    let shown = errors.to_string();
    prop_assert!(!errors.problems.is_empty(), "{}", shown);
    for problem in &errors.problems {
        prop_assert!(shown.contains(&format!("`{}`", problem.key)), "{}", shown);
        let field = FIELDS.iter().find(|(key, ..)| *key == problem.key);
        match (&problem.kind, field) {
            (spoke::config::ConfigProblemKind::Unknown { .. }, None) => prop_assert!(!from_env),
            (spoke::config::ConfigProblemKind::Unknown { .. }, Some(_)) => {
                prop_assert!(false, "a field reported unknown: {}", shown)
            }
            (_, None) => prop_assert!(false, "not a field: {}", shown),
            (kind, Some((_, env, _))) => {
                if from_env {
                    prop_assert_eq!(problem.env.as_deref(), Some(*env));
                    prop_assert!(
                        shown.contains(&format!("`{}` (env {env})", problem.key)),
                        "{}",
                        shown
                    );
                }
                if let spoke::config::ConfigProblemKind::Invalid(why) = kind {
                    prop_assert!(!why.trim().is_empty(), "{}", shown);
                }
            }
        }
    }
    for secret in secrets {
        prop_assert!(
            !shows(&shown, secret),
            "secret {:?} shown: {}",
            secret,
            shown
        );
        prop_assert!(
            !shows(&format!("{errors:?}"), secret),
            "secret {:?} in Debug",
            secret
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Any variables: the config, or every problem named by field and
    /// variable, without the secrets' values.
    #[test]
    fn env_config_loads_or_names_each_problem_without_secrets(
        vars in (secret(), secret()).prop_flat_map(|(token, pin)| {
            FIELDS
                .iter()
                .map(|&(_, env, secret)| {
                    let value = if secret {
                        prop_oneof![Just(token.clone()), Just(pin.clone())].boxed()
                    } else {
                        prop_oneof![typed(token.clone()), typed(pin.clone())].boxed()
                    };
                    prop::option::weighted(0.7, (Just(env.to_owned()), value))
                })
                .collect::<Vec<_>>()
        }),
    ) {
        let vars: Vec<(String, String)> = vars.into_iter().flatten().collect();
        let secrets: Vec<&str> = vars
            .iter()
            .filter(|(env, _)| env == "SHAPES_TOKEN" || env == "SHAPES_PIN")
            .map(|(_, value)| value.as_str())
            .collect();
        if let Err(e) = Shapes::load_config(&ConfigSource::from_vars(vars.iter().cloned())) {
            assert_clear_config_error(&e, true, &secrets)?;
        }
    }

    /// Any JSON config: the config, or every problem named by key,
    /// without the secrets' values.
    #[test]
    fn json_config_loads_or_names_each_problem_without_secrets(
        (token, pin, map) in (secret(), secret()).prop_flat_map(|(token, pin)| {
            let fields: Vec<_> = KEYS
                .iter()
                .map(|&key| {
                    let value = match key {
                        "token" => prop_oneof![Just(Value::from(token.clone())), json_of(KEYS)].boxed(),
                        "pin" => prop_oneof![Just(Value::from(pin.clone())), json_of(KEYS)].boxed(),
                        _ => prop_oneof![json_typed(token.clone()), json_typed(pin.clone())].boxed(),
                    };
                    prop::option::weighted(0.6, (Just(key.to_owned()), value))
                })
                .collect();
            (Just(token), Just(pin), fields)
        }),
    ) {
        let map: serde_json::Map<String, Value> = map.into_iter().flatten().collect();
        let secrets: Vec<&str> = [(&token, "token"), (&pin, "pin")]
            .into_iter()
            .filter(|(s, key)| map.get(*key).and_then(Value::as_str) == Some(s.as_str()))
            .map(|(s, _)| s.as_str())
            .collect();
        let source = ConfigSource::from_json(Value::Object(map)).unwrap();
        if let Err(e) = Shapes::load_config(&source) {
            assert_clear_config_error(&e, false, &secrets)?;
        }
    }
}

// ------------------------------------------------------------ stdio session

/// A line a host may write: a frame of the protocol with any params, one
/// cut short, any bytes, or blank.
fn stdio_line() -> impl Strategy<Value = Vec<u8>> {
    const METHODS: &[&str] = &[
        "invoke",
        "resolve",
        "cancel",
        "heartbeat",
        "ready_ack",
        "send",
        "typing",
        "nope",
    ];
    const PARAMS: &[&str] = &[
        "id",
        "action",
        "input",
        "deadline_ms",
        "metadata",
        "channel_id",
        "text",
        "user",
        "platform_id",
        "display_name",
    ];
    let frame = || {
        (
            prop::sample::select(METHODS),
            "[0-9]{1,2}",
            prop::sample::select(&["echo", "search", "order", "send", "nope"][..]),
            object_of(PARAMS, json_of(PARAMS)),
        )
            .prop_map(|(method, id, action, mut params)| {
                if method == "invoke" {
                    params["id"] = id.into();
                    params["action"] = action.into();
                }
                json!({ "method": method, "params": params })
                    .to_string()
                    .into_bytes()
            })
    };
    prop_oneof![
        4 => frame(),
        1 => (frame(), any::<prop::sample::Index>()).prop_map(|(mut f, at)| {
            f.truncate(at.index(f.len()));
            f
        }),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => Just(Vec::new()),
    ]
}

proptest! {
    #![proptest_config(Config { cases: 64, ..config() })]

    /// Any lines, some too long: the session ends cleanly at the end of
    /// input; every frame it writes is JSON; every error frame says which
    /// line (or which LibreFang command) it is about.
    #[test]
    fn a_stdio_session_answers_any_lines(
        lines in prop::collection::vec(stdio_line(), 0..12),
    ) {
        let mut input = Vec::new();
        for line in &lines {
            // A line holding a `\n` is more than one.
            input.extend(line.iter().filter(|&&b| b != b'\n'));
            input.push(b'\n');
        }
        let count = lines.len();
        let frames = runtime().block_on(async {
            let mut options = StdioOptions::default();
            options.ready_max_sends = 1;
            options.max_line_bytes = 600;
            let (out, mut from_connector) = tokio::io::duplex(1 << 22);
            spoke::stdio::run(shapes().await, input.as_slice(), out, options)
                .await
                .expect("the session ends cleanly");
            let mut written = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut from_connector, &mut written)
                .await
                .expect("UTF-8 frames");
            written
        });
        for frame in frames.lines() {
            let frame: Value = serde_json::from_str(frame).expect("a JSON frame");
            prop_assert!(frame["method"].is_string(), "{}", frame);
            if frame["method"] == "error" {
                let message = frame["params"]["message"].as_str().unwrap_or_default();
                let line = message
                    .strip_prefix("line ")
                    .and_then(|m| m.split(':').next())
                    .and_then(|n| n.parse::<usize>().ok());
                let command = ["send: ", "typing: "].iter().any(|m| message.starts_with(m));
                prop_assert!(
                    line.is_some_and(|n| (1..=count).contains(&n)) || command,
                    "which line? {}", message
                );
            }
        }
    }
}
