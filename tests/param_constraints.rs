//! Constraints on named action parameters (`#[schemars(range/length/regex)]`,
//! `description`, `#[serde(default/rename)]`): published in the input
//! schema, and enforced on every call exactly as the schema says, checked
//! against a JSON Schema validator.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use spoke::prelude::*;
use spoke::testing::TestConnector;

/// Searches, within bounds.
#[connector(name = "bounded")]
pub struct Bounded {}

#[connector]
impl Bounded {
    /// Search.
    ///
    /// # Arguments
    /// * `query` - What to look for.
    #[action(read)]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        #[schemars(length(min = 1, max = 8), regex(pattern = "^[a-zé]+$"))] query: String,
        #[schemars(range(min = 1, max = 100), description = "At most this many.")] limit: u32,
        #[schemars(range(min = -1.5))] offset: Option<f64>,
        #[schemars(length(max = 2))] tags: Option<Vec<String>>,
        #[schemars(length(min = 1))] labels: Option<BTreeMap<String, String>>,
        #[serde(rename = "pageToken")]
        #[schemars(length(max = 4))]
        page_token: Option<String>,
        #[serde(default)]
        #[schemars(range(max = 10))]
        depth: u8,
    ) -> Value {
        json!({
            "query": query, "limit": limit, "offset": offset, "tags": tags,
            "labels": labels, "page_token": page_token, "depth": depth,
        })
    }

    /// Files with this extension.
    #[search_operator(attribute = "extension")]
    fn ext(&self, #[schemars(regex(pattern = "^[a-z0-9]+$"))] extension: String) -> Vec<String> {
        vec![format!("a.{extension}")]
    }
}

/// Shouts (a free action with a constraint).
#[action(connector = Bounded, read)]
fn shout(_conn: &Bounded, #[schemars(length(min = 2))] text: String) -> String {
    text.to_uppercase()
}

async fn bounded() -> TestConnector<Bounded> {
    TestConnector::<Bounded>::start(json!({})).await.unwrap()
}

fn input_schema(c: &TestConnector<Bounded>, action: &str) -> Value {
    serde_json::to_value(&c.manifest().action(action).unwrap().input_schema).unwrap()
}

#[tokio::test]
async fn the_schema_publishes_every_constraint() {
    let c = bounded().await;
    let schema = input_schema(&c, "search");
    let p = &schema["properties"];
    assert_eq!(
        (&p["limit"]["minimum"], &p["limit"]["maximum"]),
        (&json!(1), &json!(100))
    );
    assert_eq!(p["limit"]["description"], "At most this many.");
    assert_eq!(p["query"]["description"], "What to look for.");
    assert_eq!(
        (&p["query"]["minLength"], &p["query"]["maxLength"]),
        (&json!(1), &json!(8))
    );
    assert_eq!(p["query"]["pattern"], "^[a-zé]+$");
    assert_eq!(p["offset"]["minimum"], -1.5);
    assert_eq!(p["tags"]["maxItems"], 2);
    assert_eq!(p["labels"]["minProperties"], 1);
    assert_eq!(p["pageToken"]["maxLength"], 4);
    assert!(p.get("page_token").is_none(), "{p:#}");
    assert_eq!(
        (&p["depth"]["maximum"], &p["depth"]["default"]),
        (&json!(10), &json!(0))
    );
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["limit", "query"]);
    assert_eq!(
        input_schema(&c, "shout")["properties"]["text"]["minLength"],
        2
    );
}

#[tokio::test]
async fn a_call_the_schema_rejects_is_invalid_input_at_its_path() {
    let c = bounded().await;
    let cases = [
        (
            json!({"query": "abc", "limit": 0}),
            "$.limit",
            "must be at least 1, got 0",
        ),
        (
            json!({"query": "abc", "limit": 101}),
            "$.limit",
            "must be at most 100, got 101",
        ),
        (
            json!({"query": "", "limit": 1}),
            "$.query",
            "must be at least 1 character long",
        ),
        (
            json!({"query": "ABC", "limit": 1}),
            "$.query",
            "must match the pattern `^[a-zé]+$`",
        ),
        (
            json!({"query": "a", "limit": 1, "offset": -2}),
            "$.offset",
            "must be at least -1.5",
        ),
        (
            json!({"query": "a", "limit": 1, "tags": ["x", "y", "z"]}),
            "$.tags",
            "must have at most 2 items, got 3",
        ),
        (
            json!({"query": "a", "limit": 1, "labels": {}}),
            "$.labels",
            "must have at least 1 entry, got 0",
        ),
        (
            json!({"query": "a", "limit": 1, "pageToken": "12345"}),
            "$.pageToken",
            "at most 4 characters long",
        ),
        (
            json!({"query": "a", "limit": 1, "depth": 11}),
            "$.depth",
            "must be at most 10, got 11",
        ),
    ];
    let validator = jsonschema::draft202012::new(&input_schema(&c, "search")).unwrap();
    for (input, path, message) in cases {
        assert!(!validator.is_valid(&input), "the schema accepts {input}");
        let e = c.call::<Value>("search", &input).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{input}: {e}");
        assert_eq!(e.details().unwrap()["path"], path, "{input}: {e}");
        assert!(e.message().starts_with(&format!("{path}: ")), "{e}");
        assert!(e.message().contains(message), "{input}: {e}");
    }
}

#[tokio::test]
async fn a_call_the_schema_accepts_runs() {
    let c = bounded().await;
    let validator = jsonschema::draft202012::new(&input_schema(&c, "search")).unwrap();
    // Bounds are inclusive; absent optional parameters are not checked;
    // eight characters are sixteen bytes here: JSON Schema counts characters.
    let inputs = [
        json!({"query": "a", "limit": 1}),
        json!({"query": "éééééééé", "limit": 100, "offset": -1.5, "tags": ["x", "y"],
               "labels": {"k": "v"}, "pageToken": "1234", "depth": 10}),
        json!({"query": "abc", "limit": 7, "offset": null, "tags": null, "labels": null}),
    ];
    for input in inputs {
        assert!(validator.is_valid(&input), "the schema rejects {input}");
        let out: Value = c
            .call("search", &input)
            .await
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(out["query"], input["query"]);
    }
    let out: Value = c
        .call("search", json!({"query": "ab", "limit": 3}))
        .await
        .unwrap();
    assert_eq!(out["depth"], 0, "serde's default fills an absent parameter");
}

#[tokio::test]
async fn free_actions_and_search_operators_are_checked_too() {
    let c = bounded().await;
    let e = c
        .call::<String>("shout", json!({"text": "a"}))
        .await
        .unwrap_err();
    assert_eq!(e.details().unwrap()["path"], "$.text");
    assert_eq!(
        c.call::<String>("shout", json!({"text": "ab"}))
            .await
            .unwrap(),
        "AB"
    );

    let e = c.resolve::<Vec<String>>("ext", "r s").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert_eq!(e.details().unwrap()["path"], "$.value");
    assert_eq!(
        c.resolve::<Vec<String>>("ext", "rs").await.unwrap(),
        ["a.rs"]
    );
}
