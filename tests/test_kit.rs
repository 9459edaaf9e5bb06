//! The test kit (`spoke::testing`) as a connector author uses it, and the
//! rules it checks: one line to build an instance, one per call; deadlines,
//! cancellation, metadata, events and progress; secrets by type.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use spoke::prelude::*;
use spoke::testing::{TestConnector, check_manifest};

type ApiKey = Secret<String>;

/// A connector for the kit.
#[connector(name = "kit", init = Self::init, buckets(counters))]
pub struct Kit {
    /// A secret by its type alone: no `secret` key.
    #[config_field]
    api_key: Secret<String>,
    /// A secret through an alias, optional.
    #[config_field]
    backup_key: Option<ApiKey>,
    /// A number.
    #[config_field(default = 3)]
    retries: u32,
    /// A duration in human form.
    #[config_field(default = "250ms")]
    poll: Duration,
    starts: AtomicU32,
}

impl Kit {
    async fn init(&mut self) -> Result<(), String> {
        if self.api_key.expose() == "refuse" {
            return Err("the API refused the key".into());
        }
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[connector]
impl Kit {
    /// Adds one to counter `name` in the store (compare-and-swap, tried
    /// again when another writer got there first); its new value.
    #[action(write)]
    async fn bump(&self, ctx: &Context, name: String) -> Result<u64, ActionError> {
        let counters = ctx.store().bucket("counters")?;
        loop {
            let now = counters.get::<u64>(&name).await?;
            let next = now.as_ref().map_or(0, |n| n.value) + 1;
            let written = match now {
                Some(n) => counters.update(&name, &next, n.revision).await,
                None => counters.create(&name, &next).await,
            };
            match written {
                Ok(_) => return Ok(next),
                Err(e) if e.kind() == spoke::store::StoreErrorKind::Conflict => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Adds two numbers.
    #[action(read)]
    async fn add(&self, a: i64, b: i64) -> Result<i64, ActionError> {
        Ok(a + b)
    }

    /// Counts to `n`, reporting progress and a custom event per step.
    #[action(read)]
    async fn count(&self, ctx: &Context, n: u32) -> Result<u32, ActionError> {
        for i in 1..=n {
            ctx.progress(f64::from(i), Some(f64::from(n)), format!("{i}"))
                .await?;
            ctx.emit_custom("tick", json!(i)).await?;
        }
        Ok(n)
    }

    /// Sleeps until cancelled or `ms` pass.
    #[action(read)]
    async fn wait(&self, ctx: &Context, ms: u64) -> Result<String, ActionError> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok("slept".into()),
            () = ctx.cancelled() => Err(ActionError::cancelled("stopped early")),
        }
    }

    /// Who called, from the metadata.
    #[action(read)]
    async fn caller(&self, ctx: &Context) -> Result<Option<String>, ActionError> {
        Ok(ctx.metadata().get("caller").cloned())
    }

    /// The retry count and whether a backup key is set.
    #[action(read)]
    async fn settings(&self) -> Result<(u32, bool), ActionError> {
        Ok((self.retries, self.backup_key.is_some()))
    }

    /// Panics.
    #[action(read)]
    async fn boom(&self) -> Result<(), ActionError> {
        panic!("kaboom")
    }

    /// Finds by a word.
    #[search_operator(attribute = "word", value_type = "text")]
    fn word(&self, value: String) -> Result<Vec<String>, ActionError> {
        Ok(vec![value.to_uppercase()])
    }
}

async fn kit() -> TestConnector<Kit> {
    TestConnector::<Kit>::start(json!({"api_key": "k-123456"}))
        .await
        .unwrap()
}

#[tokio::test]
async fn one_line_to_start_one_per_call_typed_or_json() {
    let t = kit().await;
    assert_eq!(
        t.connector().starts.load(Ordering::SeqCst),
        1,
        "init ran once"
    );
    assert_eq!(t.connector().poll, Duration::from_millis(250));
    let sum: i64 = t.call("add", json!({"a": 2, "b": 3})).await.unwrap();
    assert_eq!(sum, 5);
    let json: Value = t.call("add", json!({"a": 2, "b": -3})).await.unwrap();
    assert_eq!(json, json!(-1));

    #[derive(serde::Serialize)]
    struct Add {
        a: i64,
        b: i64,
    }
    let typed: i64 = t.call("add", Add { a: 40, b: 2 }).await.unwrap();
    assert_eq!(typed, 42);

    let bad = t
        .call::<i64>("add", json!({"a": 1, "b": "2"}))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), ErrorCode::InvalidInput);
    assert_eq!(bad.details().unwrap()["path"], "$.b");
    let unknown = t.call::<Value>("ad", json!({})).await.unwrap_err();
    assert_eq!(unknown.code(), ErrorCode::NotFound);
    assert!(
        unknown.message().contains("did you mean `add`?"),
        "{unknown}"
    );
    let words: Vec<String> = t.resolve("word", "hi").await.unwrap();
    assert_eq!(words, ["HI"]);
}

#[tokio::test]
async fn events_and_progress_are_captured_in_order() {
    let t = kit().await;
    let outcome = t.run("count", json!({"n": 3})).event_buffer(1).await;
    assert_eq!(outcome.output::<u32>().unwrap(), 3);
    let progress: Vec<(f64, Option<String>)> = outcome
        .progress()
        .into_iter()
        .map(|p| (p.progress, p.message))
        .collect();
    assert_eq!(
        progress,
        [
            (1.0, Some("1".into())),
            (2.0, Some("2".into())),
            (3.0, Some("3".into()))
        ]
    );
    assert_eq!(outcome.custom("tick"), [&json!(1), &json!(2), &json!(3)]);
    assert_eq!(outcome.events.len(), 6);
}

#[tokio::test]
async fn deadlines_cancellation_metadata_and_panics() {
    let t = kit().await.with_cancel_grace(Duration::from_millis(200));
    let late = t
        .run("wait", json!({"ms": 10_000}))
        .timeout(Duration::from_millis(50))
        .await;
    assert_eq!(late.error().unwrap().code(), ErrorCode::DeadlineExceeded);

    let cancelled = t
        .run("wait", json!({"ms": 10_000}))
        .cancel_after(Duration::from_millis(20))
        .await;
    let err = cancelled.error().unwrap();
    assert_eq!(err.code(), ErrorCode::Cancelled);
    assert_eq!(err.message(), "stopped early", "the action saw the cancel");

    let who: Option<String> = t
        .run("caller", json!({}))
        .metadata("caller", "test-suite")
        .await
        .output()
        .unwrap();
    assert_eq!(who.as_deref(), Some("test-suite"));

    let boom = t.call::<()>("boom", json!({})).await.unwrap_err();
    assert_eq!(boom.code(), ErrorCode::Panicked);
    assert!(boom.message().contains("kaboom"));
    // The instance keeps serving.
    assert_eq!(
        t.call::<i64>("add", json!({"a": 1, "b": 1})).await.unwrap(),
        2
    );
}

#[tokio::test]
async fn start_failures_are_start_errors() {
    let err = TestConnector::<Kit>::start(json!({"api_key": "refuse"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the API refused the key"), "{err}");
    let err = TestConnector::<Kit>::start_with_env([("KIT_RETRIES", "many")])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`api_key` (env KIT_API_KEY): required but not set"),
        "{err}"
    );
    assert!(
        err.contains("`retries` (env KIT_RETRIES): invalid value \"many\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_secret_type_is_secret_without_the_key() {
    let fields = <Kit as spoke::Connector>::REGISTRATION.config_fields;
    let secret: Vec<(&str, bool)> = fields.iter().map(|f| (f.key, f.secret)).collect();
    assert_eq!(
        secret,
        [
            ("api_key", true),
            ("backup_key", true),
            ("retries", false),
            ("poll", false)
        ]
    );
    let t = kit().await;
    let config = &t.manifest().config["properties"];
    assert_eq!(config["api_key"]["writeOnly"], true);
    assert_eq!(config["backup_key"]["writeOnly"], true);
    assert_eq!(config["poll"]["default"], "250ms");
    assert_eq!(config["retries"].get("writeOnly"), None);

    // A secret's value never shows in a config error: not in its own
    // field's, and not when it was typed into another field.
    let err = TestConnector::<Kit>::start(json!({
        "api_key": "hunter2-hunter2",
        "backup_key": {"key": "12345678"},
        "retries": "hunter2-hunter2",
    }))
    .await
    .unwrap_err();
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("hunter2"), "a secret leaked: {shown}");
        assert!(!shown.contains("12345678"), "a secret leaked: {shown}");
    }
    let text = err.to_string();
    assert!(
        text.contains("`retries`: invalid value (not shown: it holds the value of a secret field)"),
        "{text}"
    );
    assert!(
        text.contains("`backup_key`: invalid value (not shown"),
        "{text}"
    );
}

#[cfg(feature = "stdio")]
#[test]
fn the_describe_form_shows_a_secret_type_as_a_password_box() {
    let fields =
        spoke::describe_form::fields(<Kit as spoke::Connector>::REGISTRATION.config_fields);
    let kinds: Vec<(String, Value)> = fields
        .iter()
        .map(|f| {
            let f = serde_json::to_value(f).unwrap();
            (f["key"].as_str().unwrap().to_owned(), f["type"].clone())
        })
        .collect();
    assert_eq!(kinds[0], ("KIT_API_KEY".to_owned(), json!("secret")));
    assert_eq!(kinds[1], ("KIT_BACKUP_KEY".to_owned(), json!("secret")));
    assert_ne!(kinds[2].1, json!("secret"));
}

#[test]
fn the_manifest_follows_every_rule() {
    check_manifest().unwrap();
}

#[tokio::test]
async fn each_harness_has_a_store_of_its_own_unless_it_shares_one() {
    let config = json!({"api_key": "k"});
    let a = TestConnector::<Kit>::start(&config).await.unwrap();
    let b = TestConnector::<Kit>::start(&config)
        .await
        .unwrap()
        .sharing_store_of(&a);
    let alone = TestConnector::<Kit>::start(&config).await.unwrap();
    // Two harnesses on one store, bumping at once: no update is lost.
    let bumps = (0..10).map(|i| {
        let t = if i % 2 == 0 { &a } else { &b };
        t.call::<u64>("bump", json!({"name": "n"}))
    });
    let mut seen: Vec<u64> = futures_util::future::join_all(bumps)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=10).collect::<Vec<u64>>());
    assert_eq!(
        alone
            .call::<u64>("bump", json!({"name": "n"}))
            .await
            .unwrap(),
        1
    );
    assert!(a.manifest().capabilities.iter().any(|c| c == "store"));
    // A context no instance made has no store, and says so.
    let err = Context::new("r", "x")
        .store()
        .bucket("counters")
        .unwrap_err();
    assert!(err.message().contains("not made by an instance"), "{err}");
}
