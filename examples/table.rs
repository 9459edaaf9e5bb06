//! A table in a CSV file, served as Arrow: `rows` returns the rows as one
//! record batch (Arrow IPC by default, Parquet when asked), `append` adds
//! the rows of a batch with the same columns, `columns` says what they are.
//! Needs the `arrow` feature.
//!
//! ```text
//! export TABLE_PATH=people.csv     # a CSV file with a header line
//! cargo run --example table --features arrow -- call columns
//! cargo run --example table --features arrow -- call rows --output-file rows.arrows
//! cargo run --example table --features arrow -- call rows --output-encoding parquet --output-file rows.parquet
//! cargo run --example table --features arrow -- call append --input-encoding parquet --input-file more.parquet
//! ```
//!
//! The column types are read from the file (its first 1,000 rows) when the
//! connector starts; a batch to append must have the same column names and
//! types, else it is `invalid_input` naming the difference.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, Write};
use std::sync::{Arc, Mutex};

use spoke::arrow::RecordBatch;
use spoke::arrow::array::{Int64Array, StringArray};
use spoke::arrow::schema::{DataType, Field, Schema, SchemaRef};
use spoke::prelude::*;

/// A table in a CSV file.
#[connector(name = "table", init = Self::open)]
pub struct Table {
    /// The CSV file: a header line, then one row per line.
    #[config_field(env = "TABLE_PATH")]
    path: String,
    /// Its columns, read from the file at start.
    schema: SchemaRef,
    /// Appends one at a time; reads see whole appends.
    lock: Mutex<()>,
}

/// Rows read to learn the column types.
const INFER_ROWS: usize = 1000;

impl Table {
    async fn open(config: spoke::Config<Self>) -> Result<Self, String> {
        let file = File::open(&config.path).map_err(|e| format!("{}: {e}", config.path))?;
        let (schema, _) = arrow_csv::reader::Format::default()
            .with_header(true)
            .infer_schema(BufReader::new(file), Some(INFER_ROWS))
            .map_err(|e| format!("{}: not a CSV table: {e}", config.path))?;
        Ok(Table {
            path: config.path,
            schema: Arc::new(schema),
            lock: Mutex::new(()),
        })
    }

    fn read(&self) -> Result<RecordBatch, ActionError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let file = File::open(&self.path).map_err(|e| ActionError::unavailable(e.to_string()))?;
        let reader = arrow_csv::ReaderBuilder::new(self.schema.clone())
            .with_header(true)
            .build(BufReader::new(file))
            .map_err(internal)?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ActionError::failed_precondition(format!("{}: {e}", self.path)))?;
        spoke::arrow::select::concat::concat_batches(&self.schema, &batches).map_err(internal)
    }
}

fn internal(e: impl std::fmt::Display) -> ActionError {
    ActionError::internal(e.to_string())
}

/// What `append` did.
#[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Appended {
    /// Rows added.
    pub rows: usize,
}

/// A column.
#[derive(Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its Arrow type (`Int64`, `Float64`, `Utf8`, `Boolean`, ...).
    pub r#type: String,
}

#[connector]
impl Table {
    /// Every row, as one Arrow record batch (Arrow IPC or Parquet).
    #[action(read)]
    fn rows(&self) -> Result<RecordBatch, ActionError> {
        self.read()
    }

    /// The columns: names and Arrow types.
    #[action(read)]
    async fn columns(&self) -> Vec<Column> {
        self.schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                r#type: f.data_type().to_string(),
            })
            .collect()
    }

    /// For each column: its type, and how many of its values are null.
    /// Its own columns are declared (`output_arrow_schema`), so the
    /// manifest lists them and every batch it returns is checked.
    #[action(read, output_arrow_schema = Self::stats_schema)]
    fn stats(&self) -> Result<RecordBatch, ActionError> {
        let rows = self.read()?;
        let fields = self.schema.fields();
        let columns: Vec<spoke::arrow::array::ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| f.name()),
            )),
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| f.data_type().to_string()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.columns().iter().map(|c| c.null_count() as i64),
            )),
        ];
        RecordBatch::try_new(Arc::new(Self::stats_schema()), columns).map_err(internal)
    }

    /// Appends the rows of a batch with the table's columns (Arrow IPC or
    /// Parquet in).
    #[action(write, destructive = false)]
    fn append(&self, #[input] batch: RecordBatch) -> Result<Appended, ActionError> {
        let given = batch.schema();
        let names = |s: &SchemaRef| -> Vec<(String, String)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string()))
                .collect()
        };
        if names(&given) != names(&self.schema) {
            return Err(ActionError::invalid_input(format!(
                "the batch's columns {:?} are not the table's {:?}",
                names(&given),
                names(&self.schema)
            )));
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Read and append on one handle (writes go to the end whatever
        // the position).
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| ActionError::unavailable(e.to_string()))?;
        // A file whose last line has no line break gets one first, or the
        // first new row would be glued onto it.
        if file.seek(std::io::SeekFrom::End(0)).map_err(internal)? > 0 {
            let mut last = [0u8];
            file.seek(std::io::SeekFrom::End(-1)).map_err(internal)?;
            file.read_exact(&mut last).map_err(internal)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(internal)?;
            }
        }
        let mut writer = arrow_csv::WriterBuilder::new()
            .with_header(false)
            .build(file);
        writer.write(&batch).map_err(internal)?;
        Ok(Appended {
            rows: batch.num_rows(),
        })
    }
}

impl Table {
    /// The columns of `stats`.
    fn stats_schema() -> Schema {
        Schema::new(vec![
            Field::new("column", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("nulls", DataType::Int64, false),
        ])
    }
}

fn main() -> std::process::ExitCode {
    spoke::main()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use spoke::Encoding;
    use spoke::testing::{TestConnector, check_manifest};

    fn table(dir: &std::path::Path) -> String {
        let path = dir.join("people.csv");
        // No line break after the last row: `append` adds one first.
        std::fs::write(&path, "id,name,score\n1,Ada,9.5\n2,Grace,8.25").unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn rows_go_out_and_come_back_in_as_arrow_and_parquet() {
        check_manifest().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let t = TestConnector::<Table>::start(json!({"path": table(dir.path())}))
            .await
            .unwrap();
        let columns: Vec<Column> = t.call("columns", json!({})).await.unwrap();
        assert_eq!(
            columns
                .iter()
                .map(|c| c.r#type.as_str())
                .collect::<Vec<_>>(),
            ["Int64", "Utf8", "Float64"]
        );
        let ipc = t.run("rows", json!({})).await;
        assert_eq!(ipc.encoding(), Some(Encoding::ArrowIpc));
        let parquet = t.run("rows", json!({})).accept([Encoding::Parquet]).await;
        assert_eq!(parquet.encoding(), Some(Encoding::Parquet));
        // The rows back in, once as Arrow and once as Parquet: 2 + 2 + 2.
        for out in [&ipc, &parquet] {
            let appended = t
                .run_encoded(
                    "append",
                    out.encoding().unwrap(),
                    out.bytes().unwrap().to_vec(),
                )
                .await;
            assert_eq!(appended.output::<Appended>().unwrap(), Appended { rows: 2 });
        }
        let all = t.run("rows", json!({})).await;
        let batch = <RecordBatch as spoke::payload::InputPayload>::decode(spoke::Input::Encoded {
            encoding: Encoding::ArrowIpc,
            bytes: all.bytes().unwrap(),
        })
        .unwrap();
        assert_eq!(batch.num_rows(), 6);
        // `stats` declares its columns: the manifest lists them.
        let stats = t
            .manifest()
            .actions
            .iter()
            .find(|a| a.name == "stats")
            .unwrap();
        assert_eq!(
            stats.output_arrow_schema,
            Some(json!({"fields": [
                {"name": "column", "type": "Utf8", "nullable": false},
                {"name": "type", "type": "Utf8", "nullable": false},
                {"name": "nulls", "type": "Int64", "nullable": false},
            ]}))
        );
        assert_eq!(
            stats.output_encodings,
            [Encoding::ArrowIpc, Encoding::Parquet]
        );
        let out = t.run("stats", json!({})).await;
        let stats = <RecordBatch as spoke::payload::InputPayload>::decode(spoke::Input::Encoded {
            encoding: Encoding::ArrowIpc,
            bytes: out.bytes().unwrap(),
        })
        .unwrap();
        assert_eq!(stats.num_rows(), 3);
        assert_eq!(stats.schema().as_ref(), &Table::stats_schema());
        // Other columns are refused, naming both.
        let other = t.run("columns", json!({})).await;
        assert!(other.error().is_none());
        let wrong = RecordBatch::try_from_iter([(
            "id",
            Arc::new(spoke::arrow::array::Int64Array::from(vec![7])) as _,
        )])
        .unwrap();
        let bytes =
            <RecordBatch as spoke::payload::OutputPayload>::encode(wrong, Encoding::ArrowIpc)
                .unwrap()
                .bytes()
                .to_vec();
        let e = t.run_encoded("append", Encoding::ArrowIpc, bytes).await;
        assert!(
            e.error().unwrap().message().contains("are not the table's"),
            "{:?}",
            e.error()
        );
    }
}
