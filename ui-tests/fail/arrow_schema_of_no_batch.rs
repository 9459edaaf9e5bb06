use spoke::arrow::schema::{DataType, Field, Schema};
use spoke::prelude::*;

#[connector(name = "scores")]
pub struct Scores {}

fn scores() -> Schema {
    Schema::new(vec![Field::new("score", DataType::Float64, true)])
}

#[connector]
impl Scores {
    // A JSON answer has no columns to declare.
    #[action(read, output_arrow_schema = scores)]
    fn best(&self) -> Result<f64, ActionError> {
        Ok(1.0)
    }
}

fn main() {}
