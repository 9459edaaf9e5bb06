//! In-process tests of the invoke path every transport uses, through
//! connectors the macros generate: panic isolation, deadlines, cancellation,
//! events, input decoding, config loading and the init hook.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spoke::prelude::*;
use spoke::{ConfigSource, EventKind, Input, Instance, Registry, StartError};
use tokio::time::Instant;

/// A connector for testing the runtime.
#[connector(name = "lab", init = Self::init)]
pub struct Lab {
    /// Required.
    #[config_field(env = "LAB_ROOT")]
    root: String,
    #[config_field(default = 3)]
    retries: u32,
    #[config_field(secret, env = "LAB_TOKEN")]
    token: Option<Secret<String>>,
    /// A secret that must parse (a `u64`), so a bad value is an error.
    #[config_field(secret, env = "LAB_PIN")]
    pin: Option<Secret<u64>>,
    #[config_field(default)]
    tags: Vec<String>,
    #[config_field(env = "LAB_FAIL_INIT", default = false)]
    fail_init: bool,
    inits: AtomicUsize,
    saw_cancel: Arc<AtomicBool>,
}

impl Lab {
    async fn init(&mut self) -> Result<(), String> {
        if self.fail_init {
            return Err(format!("cannot reach {}", self.root));
        }
        self.inits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
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
impl Lab {
    /// Adds two numbers.
    ///
    /// # Arguments
    /// * `a` - The first.
    /// * `b` - The second, optional.
    #[action(read)]
    fn add(&self, a: u64, b: Option<u64>) -> u64 {
        a + b.unwrap_or(0)
    }

    /// Returns the whole order.
    #[action]
    async fn order(&self, #[input] order: Order) -> Result<Order, ActionError> {
        Ok(order)
    }

    #[action]
    async fn boom(&self, message: String) -> Result<(), ActionError> {
        panic!("{message}")
    }

    #[action]
    fn boom_blocking(&self) -> Result<(), anyhow::Error> {
        panic!("blocking boom")
    }

    #[action]
    async fn sleep(&self, ctx: &Context, ms: u64) -> Result<&'static str, ActionError> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok("slept"),
            () = ctx.cancelled() => {
                self.saw_cancel.store(true, Ordering::SeqCst);
                Err(ActionError::cancelled("stopped early"))
            }
        }
    }

    /// Ignores cancellation entirely.
    #[action]
    async fn stubborn(&self) -> String {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "done".into()
    }

    #[action(timeout = "100ms")]
    async fn limited(&self) -> String {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "done".into()
    }

    #[action]
    async fn steps(&self, ctx: &Context, n: u32) -> Result<u32, ActionError> {
        for i in 1..=n {
            ctx.progress(f64::from(i), Some(f64::from(n)), format!("step {i}"))
                .await
                .map_err(|e| ActionError::unavailable(e.to_string()))?;
        }
        Ok(n)
    }

    #[action(read)]
    fn config(&self) -> Value {
        json!({
            "root": self.root,
            "retries": self.retries,
            "has_token": self.token.is_some(),
            "has_pin": self.pin.is_some(),
            "tags": self.tags,
            "inits": self.inits.load(Ordering::SeqCst),
        })
    }

    /// Files with this extension.
    #[search_operator(attribute = "extension")]
    fn ext(&self, value: String) -> Result<Vec<String>, ActionError> {
        Ok(vec![format!("a.{value}")])
    }
}

/// A free action in another place, merged into `lab`.
#[action(connector = Lab, read)]
async fn shout(conn: &Lab, text: String) -> String {
    format!("{}: {}", conn.root, text.to_uppercase())
}

fn registry() -> Registry {
    Registry::from_inventory().expect("registry is valid")
}

async fn lab(vars: &[(&str, &str)]) -> Result<Instance, StartError> {
    let ty = registry().get("lab").expect("lab is registered").clone();
    Instance::start(ty, ConfigSource::from_vars(vars.iter().copied())).await
}

async fn started() -> Instance {
    lab(&[("LAB_ROOT", "/srv")])
        .await
        .expect("lab starts")
        .with_cancel_grace(Duration::from_millis(200))
}

async fn call(i: &Instance, action: &str, input: Value) -> Result<Value, ActionError> {
    i.invoke(action, Input::Value(&input), Context::new("t", action))
        .await
        .map(|o| o.to_value())
}

#[tokio::test]
async fn named_params_optional_params_and_free_actions() {
    let i = started().await;
    assert_eq!(
        call(&i, "add", json!({"a": 2, "b": 3})).await.unwrap(),
        json!(5)
    );
    assert_eq!(call(&i, "add", json!({"a": 2})).await.unwrap(), json!(2));
    assert_eq!(
        call(&i, "shout", json!({"text": "hi"})).await.unwrap(),
        json!("/srv: HI")
    );
    let resolved = i
        .resolve("ext", "rs", Context::new("t", "ext"))
        .await
        .unwrap();
    assert_eq!(resolved.to_value(), json!(["a.rs"]));
}

#[tokio::test]
async fn bad_input_names_the_json_path() {
    let i = started().await;
    let order =
        json!({"customer": "c", "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": "many"}]});
    let err = call(&i, "order", order).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(err.details().unwrap()["path"], "$.items[1].qty");

    let err = call(&i, "add", json!({"a": 1, "c": 2})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert!(err.message().contains("unknown field `c`"), "{err}");

    let err = i
        .invoke("add", Input::Bytes(b"{\"a\": 1,"), Context::new("t", "add"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert!(err.message().contains("line 1"), "{err}");

    let ok = call(&i, "order", json!({"customer": "c", "items": []}))
        .await
        .unwrap();
    assert_eq!(ok, json!({"customer": "c", "items": [], "note": null}));
}

#[tokio::test]
async fn unknown_actions_are_not_found_with_the_list() {
    let i = started().await;
    let err = call(&i, "ad", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(err.message().contains("did you mean `add`?"), "{err}");
    let listed = &err.details().unwrap()["actions"];
    assert!(
        listed.as_array().unwrap().contains(&json!("shout")),
        "{listed}"
    );
    let err = i
        .resolve("nope", "x", Context::new("t", "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

#[tokio::test]
async fn panics_become_errors_and_the_connector_keeps_serving() {
    let i = started().await;
    let err = call(&i, "boom", json!({"message": "kaboom 42"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Panicked);
    assert_eq!(err.message(), "kaboom 42");
    let err = call(&i, "boom_blocking", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Panicked);
    assert_eq!(err.message(), "blocking boom");
    assert_eq!(call(&i, "add", json!({"a": 1})).await.unwrap(), json!(1));
}

#[tokio::test]
async fn the_callers_deadline_ends_the_call_and_cancels_the_token() {
    let i = started().await;
    let ctx = Context::builder("t", "sleep")
        .timeout(Duration::from_millis(50))
        .build();
    let token = ctx.cancellation().clone();
    let began = Instant::now();
    let err = i
        .invoke("sleep", Input::Value(&json!({"ms": 30_000})), ctx)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::DeadlineExceeded);
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    assert!(token.is_cancelled());
}

#[tokio::test]
async fn an_actions_own_timeout_applies() {
    let i = started().await;
    let began = Instant::now();
    let err = call(&i, "limited", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DeadlineExceeded);
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn cancellation_reaches_the_action_which_may_wind_down() {
    let i = started().await;
    let ctx = Context::new("t", "sleep");
    let token = ctx.cancellation().clone();
    let call = tokio::spawn(i.invoke("sleep", Input::Value(&json!({"ms": 30_000})), ctx));
    tokio::time::sleep(Duration::from_millis(20)).await;
    token.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::Cancelled);
    assert_eq!(
        err.message(),
        "stopped early",
        "the action's own answer within the grace period"
    );
}

#[tokio::test]
async fn an_action_that_ignores_cancellation_is_dropped_after_the_grace() {
    let i = started().await;
    let ctx = Context::new("t", "stubborn");
    let token = ctx.cancellation().clone();
    let began = Instant::now();
    let call = tokio::spawn(i.invoke("stubborn", Input::Value(&json!({})), ctx));
    tokio::time::sleep(Duration::from_millis(20)).await;
    token.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::Cancelled);
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn progress_events_arrive_in_order() {
    let i = started().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let ctx = Context::builder("req-7", "steps").events(tx).build();
    let call = tokio::spawn(i.invoke("steps", Input::Value(&json!({"n": 3})), ctx));
    let mut seen = Vec::new();
    while let Some(event) = rx.recv().await {
        assert_eq!(event.request_id, "req-7");
        if let EventKind::Progress {
            progress, total, ..
        } = event.kind
        {
            assert_eq!(total, Some(3.0));
            seen.push(progress);
        }
    }
    assert_eq!(seen, vec![1.0, 2.0, 3.0]);
    assert_eq!(call.await.unwrap().unwrap().to_value(), json!(3));
}

#[tokio::test]
async fn config_loads_defaults_options_and_json_lists_and_init_runs_once() {
    let i = lab(&[
        ("LAB_ROOT", "/r"),
        ("LAB_TAGS", r#"["a","b"]"#),
        ("LAB_TOKEN", "t0k3n"),
    ])
    .await
    .unwrap();
    let got = call(&i, "config", json!({})).await.unwrap();
    assert_eq!(
        got,
        json!({"root": "/r", "retries": 3, "has_token": true, "has_pin": false, "tags": ["a", "b"], "inits": 1})
    );
}

/// A secret `u64` that does not parse, distinctive enough to search for.
const BAD_PIN: &str = "sekrit-0xDEADBEEF";

/// Asserts that no piece of the bad pin appears in `text`.
#[track_caller]
fn assert_pin_hidden(text: &str) {
    let lower = text.to_lowercase();
    for piece in [BAD_PIN, "sekrit", "deadbeef"] {
        assert!(
            !lower.contains(&piece.to_lowercase()),
            "the secret leaked ({piece}): {text}"
        );
    }
}

#[tokio::test]
async fn every_config_problem_is_reported_at_once_without_secret_values() {
    let err = lab(&[
        ("LAB_RETRIES", "many"),
        ("LAB_PIN", BAD_PIN),
        ("LAB_TOKEN", "t0k3n-valid-but-secret"),
    ])
    .await
    .unwrap_err();
    let StartError::Config(errors) = &err else {
        panic!("expected config errors, got {err}")
    };
    let text = err.to_string();
    assert_eq!(errors.problems.len(), 3, "{text}");
    assert!(
        text.contains("`root` (env LAB_ROOT): required but not set"),
        "{text}"
    );
    assert!(
        text.contains("`retries` (env LAB_RETRIES): invalid value \"many\""),
        "{text}"
    );
    assert!(
        text.contains("`pin` (env LAB_PIN): invalid value (not shown: the field is secret)"),
        "{text}"
    );
    let pin = errors
        .problems
        .iter()
        .find(|p| p.key == "pin")
        .unwrap_or_else(|| panic!("a problem for `pin`: {text}"));
    assert_eq!(pin.env.as_deref(), Some("LAB_PIN"));
    // Nowhere: not in the message, the structured problems or their Debug.
    for shown in [text.clone(), format!("{err:?}"), format!("{errors:?}")] {
        assert_pin_hidden(&shown);
        assert!(!shown.contains("t0k3n"), "a valid secret leaked: {shown}");
    }
}

#[tokio::test]
async fn a_bad_secret_from_a_json_config_is_not_shown_either() {
    let ty = registry().get("lab").expect("lab is registered").clone();
    let source = ConfigSource::from_json(json!({"root": "/r", "pin": BAD_PIN})).unwrap();
    let err = Instance::start(ty.clone(), source).await.unwrap_err();
    let text = err.to_string();
    // A JSON config is keyed by field key: the message names the key, not
    // the environment variable.
    assert!(
        text.contains("`pin`: invalid value (not shown: the field is secret)"),
        "{text}"
    );
    assert!(!text.contains("LAB_PIN"), "{text}");
    assert_pin_hidden(&text);
    assert_pin_hidden(&format!("{err:?}"));
    // A JSON value of the wrong kind is hidden too.
    let source =
        ConfigSource::from_json(json!({"root": "/r", "pin": {"sekrit": "deadbeef"}})).unwrap();
    let err = Instance::start(ty, source).await.unwrap_err();
    assert!(
        err.to_string().contains("`pin`: invalid value (not shown"),
        "{err}"
    );
    assert_pin_hidden(&err.to_string());
    assert_pin_hidden(&format!("{err:?}"));
}

#[tokio::test]
async fn a_failing_init_hook_is_a_clear_start_error() {
    let err = lab(&[("LAB_ROOT", "/r"), ("LAB_FAIL_INIT", "true")])
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Init { .. }));
    assert_eq!(
        err.to_string(),
        "connector `lab` failed to initialise: cannot reach /r"
    );
}

#[test]
fn the_manifest_describes_everything() {
    let reg = registry();
    let m = reg.get("lab").unwrap().manifest();
    let names: Vec<&str> = m.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "add",
            "boom",
            "boom_blocking",
            "config",
            "limited",
            "order",
            "shout",
            "sleep",
            "steps",
            "stubborn"
        ]
    );
    let add = m.action("add").unwrap();
    assert_eq!(add.mode, spoke::Mode::Read);
    assert_eq!(add.input_schema["required"], json!(["a"]));
    assert_eq!(
        add.input_schema["properties"]["a"]["description"],
        "The first."
    );
    assert_eq!(add.description, "Adds two numbers.");
    assert_eq!(m.action("order").unwrap().mode, spoke::Mode::Write);
    assert_eq!(m.action("limited").unwrap().timeout_ms, Some(100));
    assert_eq!(m.search_operators[0].attribute_key, "extension");
    let config = &m.config;
    assert_eq!(config["required"], json!(["root"]));
    assert_eq!(config["properties"]["retries"]["default"], 3);
    assert_eq!(config["properties"]["token"]["writeOnly"], true);
    assert_eq!(config["properties"]["retries"]["x-env"], "LAB_RETRIES");
    for action in &m.actions {
        let problems = spoke::schema::check_input_schema(&action.input_schema);
        assert!(problems.is_empty(), "{}: {problems:?}", action.name);
    }
}
