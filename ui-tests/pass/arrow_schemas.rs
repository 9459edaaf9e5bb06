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
    assert!(manifest.actions.iter().all(|a| a.input_arrow_schema.is_some()
        && a.output_arrow_schema.is_some()));
}
