//! Declared Arrow columns, by a free fn (a `Schema` or a `SchemaRef`) or
//! by an associated fn through `Self`.
use std::sync::Arc;

use spoke::arrow::RecordBatch;
use spoke::arrow::schema::{DataType, Field, Schema, SchemaRef};
use spoke::prelude::*;

#[connector(name = "scores")]
#[derive(Default)]
pub struct Scores;

fn scores() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("score", DataType::Float64, true)]))
}

/// The columns `select` returns.
fn columns() -> SchemaRef {
    scores()
}

impl Scores {
    fn counts() -> Schema {
        Schema::new(vec![Field::new("rows", DataType::Int64, false)])
    }
}

#[connector]
impl Scores {
    /// The same batch back.
    #[action(read, input_arrow_schema = scores, output_arrow_schema = scores)]
    fn echo(&self, #[input] batch: RecordBatch) -> RecordBatch {
        batch
    }

    /// A parameter named as the declaring fn does not shadow it.
    #[action(read, output_arrow_schema = columns)]
    fn select(&self, columns: Vec<String>) -> Result<RecordBatch, ActionError> {
        let score: spoke::arrow::array::ArrayRef = Arc::new(spoke::arrow::array::Float64Array::from(
            vec![columns.len() as f64],
        ));
        RecordBatch::try_new(scores(), vec![score]).map_err(|e| ActionError::internal(e.to_string()))
    }

    /// How many rows.
    #[action(read, input_arrow_schema = crate::scores, output_arrow_schema = Self::counts)]
    async fn count(&self, #[input] batch: RecordBatch) -> Result<RecordBatch, ActionError> {
        let rows: spoke::arrow::array::ArrayRef =
            Arc::new(spoke::arrow::array::Int64Array::from(vec![batch.num_rows() as i64]));
        RecordBatch::try_new(Arc::new(Self::counts()), vec![rows])
            .map_err(|e| ActionError::internal(e.to_string()))
    }
}

fn main() {
    let registry = spoke::registry::Registry::from_inventory().unwrap();
    let manifest = registry.get("scores").unwrap().manifest();
    assert!(manifest.actions.iter().all(|a| a.output_arrow_schema.is_some()));
    assert_eq!(
        manifest.actions.iter().filter(|a| a.input_arrow_schema.is_some()).count(),
        2
    );
}
