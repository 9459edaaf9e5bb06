//! Declared Arrow columns (`input_arrow_schema`, `output_arrow_schema`):
//! the manifest lists them, an input batch without them is the caller's
//! `invalid_input` saying which column differs, and an output batch without
//! them is the action's `internal` error, never sent.

use std::sync::Arc;

use serde_json::json;
use spoke::arrow::RecordBatch;
use spoke::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use spoke::arrow::schema::{DataType, Field, Schema, SchemaRef};
use spoke::payload::OutputPayload;
use spoke::prelude::*;
use spoke::testing::{TestConnector, check_manifest};
use spoke::{Encoding, ErrorCode};

/// Scores by id.
#[connector(name = "scores")]
#[derive(Default)]
pub struct Scores;

/// The columns `total` takes: `id` never null, `score` may be.
fn scores() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("score", DataType::Float64, true),
    ]))
}

#[connector]
impl Scores {
    /// The sum of the scores given (nulls count as nothing).
    #[action(read, input_arrow_schema = scores)]
    fn total(&self, #[input] batch: RecordBatch) -> Result<f64, ActionError> {
        let score = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("checked against the declared columns");
        Ok(score.iter().flatten().sum())
    }

    /// Promises `id` and `score`, returns `id` as text: a bug the check
    /// catches.
    #[action(read, output_arrow_schema = Self::promised)]
    fn broken(&self) -> Result<RecordBatch, ActionError> {
        let id: ArrayRef = Arc::new(StringArray::from(vec!["1"]));
        let score: ArrayRef = Arc::new(Float64Array::from(vec![1.0]));
        RecordBatch::try_from_iter([("id", id), ("score", score)])
            .map_err(|e| ActionError::internal(e.to_string()))
    }
}

impl Scores {
    fn promised() -> Schema {
        scores().as_ref().clone()
    }
}

fn ipc(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter_with_nullable(
        columns.into_iter().map(|(name, array)| (name, array, true)),
    )
    .unwrap();
    batch.encode(Encoding::ArrowIpc).unwrap().bytes().to_vec()
}

#[tokio::test]
async fn declared_columns_are_listed_and_checked_both_ways() {
    check_manifest().unwrap();
    let t = TestConnector::<Scores>::start(json!({})).await.unwrap();
    let manifest = t.manifest();
    let total = manifest.actions.iter().find(|a| a.name == "total").unwrap();
    let declared = json!({"fields": [
        {"name": "id", "type": "Int64", "nullable": false},
        {"name": "score", "type": "Float64", "nullable": true},
    ]});
    assert_eq!(total.input_arrow_schema, Some(declared.clone()));
    assert_eq!(total.output_arrow_schema, None);
    let broken = manifest
        .actions
        .iter()
        .find(|a| a.name == "broken")
        .unwrap();
    assert_eq!(broken.output_arrow_schema, Some(declared));
    // The manifest's JSON carries them under these names.
    let text = serde_json::to_value(manifest).unwrap();
    let listed = text["actions"].as_array().unwrap();
    let total_json = listed.iter().find(|a| a["name"] == "total").unwrap();
    assert_eq!(
        total_json["input_arrow_schema"]["fields"][1]["name"],
        "score"
    );
    assert!(
        total_json.get("output_arrow_schema").is_none(),
        "{total_json}"
    );

    // A batch with the columns, marked nullable as pyarrow marks them all:
    // `id` holds no null, so it passes.
    let id: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let score: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.5), None, Some(2.0)]));
    let out = t
        .run_encoded(
            "total",
            Encoding::ArrowIpc,
            ipc(vec![("id", id.clone()), ("score", score.clone())]),
        )
        .await;
    assert_eq!(out.output::<f64>().unwrap(), 3.5);

    // Each way of differing, named.
    let text_scores: ArrayRef = Arc::new(StringArray::from(vec!["1.5", "x", "2"]));
    let null_id: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
    let cases = [
        (
            vec![("id", id.clone()), ("score", text_scores)],
            "column `score` is Utf8, not Float64",
        ),
        (
            vec![("id", id.clone()), ("points", score.clone())],
            "column 2 is `points`, not `score`",
        ),
        (
            vec![("id", id.clone())],
            "it has 1 columns (id), not 2 (id, score)",
        ),
        (
            vec![("id", null_id), ("score", score.clone())],
            "column `id` has 1 nulls, and is declared not nullable",
        ),
    ];
    for (columns, why) in cases {
        let out = t
            .run_encoded("total", Encoding::ArrowIpc, ipc(columns))
            .await;
        let e = out.error().expect("refused");
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
        assert_eq!(
            e.message(),
            format!(
                "$: the batch does not have the action's columns (its input_arrow_schema): {why}"
            )
        );
    }

    // The action that breaks its word answers internal, not the batch.
    let out = t.run("broken", json!({})).await;
    let e = out.error().expect("refused");
    assert_eq!(e.code(), ErrorCode::Internal, "{e}");
    assert!(
        e.message().contains(
            "the action returned a batch without its declared columns (its output_arrow_schema): column `id` is Utf8, not Int64"
        ),
        "{e}"
    );
}
