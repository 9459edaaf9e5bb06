use std::sync::Arc;

use spoke::arrow::RecordBatch;
use spoke::arrow::schema::{DataType, Field, Schema};
use spoke::prelude::*;

#[connector(name = "scores")]
pub struct Scores {}

fn scores() -> Schema {
    Schema::new(vec![Field::new("score", DataType::Float64, true)])
}

#[connector]
impl Scores {
    // The declared columns are those of the whole input, a batch taken as
    // `#[input]`: named parameters are an object.
    #[action(read, input_arrow_schema = scores)]
    fn count(&self, batch: Arc<Vec<u8>>) -> usize {
        batch.len()
    }

    /// Fine: the whole input.
    #[action(read, input_arrow_schema = scores)]
    fn rows(&self, #[input] batch: RecordBatch) -> usize {
        batch.num_rows()
    }
}

fn main() {}
