//! Arrow record batches as an action's input or output (feature `arrow`):
//! [`RecordBatch`] travels as `arrow_ipc` (the Arrow IPC stream format,
//! pyarrow's `pa.ipc.open_stream`) or `parquet` (written uncompressed;
//! Snappy-compressed files, pyarrow's default, are read too).
//!
//! An input stream or file of several batches is one batch to the action
//! (concatenated). Decoding outside bytes runs under `catch_unwind`: the
//! Arrow and Parquet decoders have panicked on corrupt input, and a corrupt
//! payload must be `invalid_input`, never a panic.
//!
//! ```
//! use std::sync::Arc;
//! use spoke::arrow::array::{Int64Array, RecordBatch, StringArray};
//! use spoke::arrow::schema::{DataType, Field, Schema};
//! use spoke::prelude::*;
//!
//! #[connector(name = "numbers")]
//! #[derive(Default)]
//! pub struct Numbers;
//!
//! #[connector]
//! impl Numbers {
//!     /// `count` rows of numbers and their names, as Arrow or Parquet.
//!     #[action(read)]
//!     async fn table(&self, count: i64) -> Result<RecordBatch, ActionError> {
//!         let schema = Arc::new(Schema::new(vec![
//!             Field::new("n", DataType::Int64, false),
//!             Field::new("name", DataType::Utf8, false),
//!         ]));
//!         let n = Int64Array::from_iter_values(0..count);
//!         let name = StringArray::from_iter_values((0..count).map(|i| format!("n{i}")));
//!         RecordBatch::try_new(schema, vec![Arc::new(n), Arc::new(name)])
//!             .map_err(|e| ActionError::internal(e.to_string()))
//!     }
//! }
//! # fn main() {}
//! ```

use std::io::Cursor;
use std::panic::AssertUnwindSafe;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schemars::{Schema, json_schema};
use serde_json::{Value, json};

use crate::connector::{ActionOutput, Input};
use crate::encoding::Encoding;
use crate::error::ActionError;
use crate::instance::panic_message;
use crate::payload::{DeclaredColumns, InputPayload, OutputPayload, PayloadSpec, not_taken};

const ARROW: &[Encoding] = &[Encoding::ArrowIpc, Encoding::Parquet];

impl InputPayload for RecordBatch {
    fn spec() -> PayloadSpec {
        PayloadSpec::of(ARROW)
    }
    fn schema() -> Schema {
        batch_schema()
    }
    fn decode(input: Input<'_>) -> Result<Self, ActionError> {
        match input {
            Input::Encoded {
                encoding: Encoding::ArrowIpc,
                bytes,
            } => decoded("an Arrow IPC stream", || read_ipc(bytes)),
            Input::Encoded {
                encoding: Encoding::Parquet,
                bytes,
            } => decoded("a Parquet file", || read_parquet(bytes)),
            other => Err(not_taken(other.encoding(), ARROW)),
        }
    }
}

impl OutputPayload for RecordBatch {
    fn spec() -> PayloadSpec {
        PayloadSpec::of(ARROW)
    }
    fn schema() -> Schema {
        batch_schema()
    }
    fn encode(self, encoding: Encoding) -> Result<ActionOutput, ActionError> {
        // The agreed encoding is one of ARROW; Arrow IPC is the preferred.
        let (written, sent_as) = match encoding {
            Encoding::Parquet => (write_parquet(&self), Encoding::Parquet),
            _ => (write_ipc(&self), Encoding::ArrowIpc),
        };
        written
            .map(|bytes| ActionOutput::encoded(sent_as, bytes))
            .map_err(|e| {
                ActionError::internal(format!("could not encode the output as {encoding}: {e}"))
            })
    }
}

impl DeclaredColumns for RecordBatch {
    type Schema = arrow_schema::Schema;

    fn describe(schema: &arrow_schema::Schema) -> Value {
        describe_schema(schema)
    }

    fn conforms(&self, declared: &arrow_schema::Schema) -> Result<(), String> {
        let given = self.schema();
        let (given_fields, declared_fields) = (given.fields(), declared.fields());
        if given_fields.len() != declared_fields.len() {
            let names = |s: &arrow_schema::Schema| {
                let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
                names.join(", ")
            };
            return Err(format!(
                "it has {} columns ({}), not {} ({})",
                given_fields.len(),
                names(&given),
                declared_fields.len(),
                names(declared)
            ));
        }
        for (i, (g, d)) in given_fields.iter().zip(declared_fields.iter()).enumerate() {
            if g.name() != d.name() {
                return Err(format!(
                    "column {} is `{}`, not `{}`",
                    i + 1,
                    g.name(),
                    d.name()
                ));
            }
            if g.data_type() != d.data_type() {
                return Err(format!(
                    "column `{}` is {}, not {}",
                    d.name(),
                    g.data_type(),
                    d.data_type()
                ));
            }
            // A column marked nullable that holds no null is fine: pyarrow
            // marks every column nullable.
            let nulls = self.column(i).logical_null_count();
            if !d.is_nullable() && nulls > 0 {
                return Err(format!(
                    "column `{}` has {nulls} nulls, and is declared not nullable",
                    d.name()
                ));
            }
        }
        Ok(())
    }
}

fn batch_schema() -> Schema {
    json_schema!({
        "$schema": crate::schema::DIALECT,
        "description": "an Arrow record batch (encoding arrow_ipc or parquet)"
    })
}

/// A batch's fields as the manifest shows them:
/// `{"fields": [{"name", "type", "nullable"}]}`, `type` as Arrow prints
/// it (`Int64`, `Utf8`, `Timestamp(Microsecond, None)`, ...).
///
/// ```
/// use spoke::arrow::schema::{DataType, Field, Schema};
/// let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
/// assert_eq!(
///     spoke::record_batch::describe_schema(&schema),
///     serde_json::json!({"fields": [{"name": "id", "type": "Int64", "nullable": false}]})
/// );
/// ```
pub fn describe_schema(schema: &arrow_schema::Schema) -> Value {
    let fields: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
        .collect();
    json!({ "fields": fields })
}

/// Runs a decoder of outside bytes: its error, or its panic, is
/// `invalid_input` saying the input is not `what`.
fn decoded(
    what: &str,
    decode: impl FnOnce() -> Result<RecordBatch, String>,
) -> Result<RecordBatch, ActionError> {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        Err(format!(
            "the decoder gave up on it ({})",
            panic_message(&*panic)
        ))
    });
    outcome.map_err(|why| ActionError::invalid_input_at("$", format!("input is not {what}: {why}")))
}

/// The most memory an input batch may decode to (512 MiB): a small
/// Parquet file can describe billions of rows (run-length encoded levels
/// and dictionary indices), so what it decodes to is bounded, not only its
/// size on the wire.
pub const MAX_DECODED_BYTES: usize = 512 * 1024 * 1024;

fn read_ipc(bytes: &[u8]) -> Result<RecordBatch, String> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| e.to_string())?;
    let schema = reader.schema();
    let batches = within_budget(reader)?;
    one_batch(&schema, &batches)
}

fn read_parquet(bytes: &[u8]) -> Result<RecordBatch, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .map_err(|e| e.to_string())?;
    // What the file says it holds, before a page is read: rows, and the
    // bytes its row groups take uncompressed.
    let described: i64 = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.total_byte_size().max(0))
        .sum();
    if described as u64 > MAX_DECODED_BYTES as u64 {
        return Err(too_large(format!(
            "it says it holds {described} bytes uncompressed"
        )));
    }
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| e.to_string())?;
    let batches = within_budget(reader)?;
    one_batch(&schema, &batches)
}

fn too_large(what: String) -> String {
    format!(
        "{what}, more than an input batch may take ({} MiB decoded)",
        MAX_DECODED_BYTES / (1024 * 1024)
    )
}

/// Every batch of `reader`, while they take no more than
/// [`MAX_DECODED_BYTES`] together.
fn within_budget(
    reader: impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>,
) -> Result<Vec<RecordBatch>, String> {
    let mut batches = Vec::new();
    let mut taken = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        taken = taken.saturating_add(batch.get_array_memory_size());
        if taken > MAX_DECODED_BYTES {
            return Err(too_large(format!("it decodes to more than {taken} bytes")));
        }
        batches.push(batch);
    }
    Ok(batches)
}

fn one_batch(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, String> {
    match batches {
        [one] => Ok(one.clone()),
        many => arrow_select::concat::concat_batches(schema, many).map_err(|e| e.to_string()),
    }
}

/// The bytes a batch's columns cover (a slice of a larger batch counts its
/// part only).
fn covered_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}

fn write_ipc(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(covered_bytes(batch) + 1024);
    let mut writer =
        StreamWriter::try_new(&mut bytes, &batch.schema()).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    drop(writer);
    Ok(bytes)
}

fn write_parquet(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut bytes, batch.schema(), None).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema as ArrowSchema};

    use super::*;

    fn batch(rows: i64) -> RecordBatch {
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("score", DataType::Float64, true),
            Field::new("name", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(Float64Array::from_iter(
                    (0..rows).map(|i| (i % 3 != 0).then_some(i as f64)),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("row {i}")),
                )),
            ],
        )
        .unwrap()
    }

    fn input(encoding: Encoding, bytes: &[u8]) -> Input<'_> {
        Input::Encoded { encoding, bytes }
    }

    #[test]
    fn batches_round_trip_as_arrow_ipc_and_parquet() {
        for encoding in [Encoding::ArrowIpc, Encoding::Parquet] {
            let out = batch(1000).encode(encoding).unwrap();
            assert_eq!(out.encoding(), encoding);
            let back = RecordBatch::decode(input(encoding, out.bytes())).unwrap();
            assert_eq!(back, batch(1000), "{encoding}");
        }
        assert_eq!(
            describe_schema(&batch(1).schema()),
            json!({"fields": [
                {"name": "id", "type": "Int64", "nullable": false},
                {"name": "score", "type": "Float64", "nullable": true},
                {"name": "name", "type": "Utf8", "nullable": false},
            ]})
        );
    }

    #[test]
    fn batches_are_checked_against_their_declared_columns() {
        let declared = batch(1).schema();
        assert_eq!(batch(10).conforms(&declared), Ok(()));
        let renamed = ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("points", DataType::Float64, true),
            Field::new("name", DataType::Utf8, false),
        ]);
        assert_eq!(
            batch(3).conforms(&renamed),
            Err("column 2 is `score`, not `points`".into())
        );
        let retyped = ArrowSchema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("score", DataType::Float64, true),
            Field::new("name", DataType::Utf8, false),
        ]);
        assert_eq!(
            batch(3).conforms(&retyped),
            Err("column `id` is Int64, not Utf8".into())
        );
        let fewer = ArrowSchema::new(vec![Field::new("id", DataType::Int64, false)]);
        assert_eq!(
            batch(3).conforms(&fewer),
            Err("it has 3 columns (id, score, name), not 1 (id)".into())
        );
        // `score` holds nulls (rows 0 and 3): fine while it is declared
        // nullable, refused once it is not.
        let strict = ArrowSchema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("score", DataType::Float64, false),
            Field::new("name", DataType::Utf8, true),
        ]);
        assert_eq!(
            batch(4).conforms(&strict),
            Err("column `score` has 2 nulls, and is declared not nullable".into())
        );
    }

    #[test]
    fn a_decoder_that_panics_is_invalid_input() {
        let e = decoded("an Arrow IPC stream", || panic!("index out of bounds")).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidInput);
        assert_eq!(
            e.message(),
            "$: input is not an Arrow IPC stream: the decoder gave up on it (index out of bounds)"
        );
    }

    #[test]
    fn inputs_that_decode_to_too_much_are_refused() {
        assert_eq!(within_budget([Ok(batch(10))].into_iter()).unwrap().len(), 1);
        // A stream of batches adding up past the budget stops there.
        let one = batch(1000);
        let each = one.get_array_memory_size();
        let many = std::iter::repeat_with(|| Ok(one.clone())).take(MAX_DECODED_BYTES / each + 2);
        let e = within_budget(many).unwrap_err();
        assert!(
            e.contains("more than an input batch may take (512 MiB decoded)"),
            "{e}"
        );
        // A slice is written at its own size, not its parent's.
        assert!(covered_bytes(&batch(10_000).slice(0, 10)) < covered_bytes(&batch(10_000)) / 100);
    }

    #[test]
    fn corrupt_batches_are_invalid_input_never_a_panic() {
        for encoding in [Encoding::ArrowIpc, Encoding::Parquet] {
            let good = batch(50).encode(encoding).unwrap().bytes().to_vec();
            let mut bad: Vec<Vec<u8>> = (0..good.len())
                .step_by(7)
                .map(|n| good[..n].to_vec())
                .collect();
            for i in (0..good.len()).step_by(5) {
                let mut flipped = good.clone();
                flipped[i] ^= 0xa5;
                bad.push(flipped);
            }
            bad.push(b"not a batch at all".to_vec());
            for bytes in bad {
                if let Err(e) = RecordBatch::decode(input(encoding, &bytes)) {
                    assert_eq!(e.code(), crate::ErrorCode::InvalidInput, "{encoding}: {e}");
                }
            }
            let e = RecordBatch::decode(input(encoding, b"junk")).unwrap_err();
            assert!(e.message().starts_with("$: input is not a"), "{e}");
        }
        let e = RecordBatch::decode(Input::Bytes(b"{}")).unwrap_err();
        assert!(e.message().contains("takes arrow_ipc or parquet"), "{e}");
    }
}
