//! Path 12: a table of 100,000 rows × 8 columns through the hub as JSON,
//! MessagePack, Arrow IPC and Parquet, against the same data encoded and
//! decoded in this process with the same libraries.
//!
//! - **Spoke:** a client's unary `Hub.Invoke` (accepting one encoding)
//!   through the real hub (in this process, as path 2's) to the `table`
//!   connector attached over gRPC; the connector encodes its rows (Spoke's
//!   own encoders: serde_json, rmp-serde, arrow-ipc, parquet), sends them
//!   in 1 MiB chunks, the hub joins them and answers; the client decodes
//!   the answer into rows in memory (`Vec<Row>` or record batches) and
//!   checks them. Timed from the request to the decoded rows.
//! - **Baseline:** the same rows encoded and decoded in this process, with
//!   the same libraries and settings, no Spoke and no sockets.
//!
//! The connector holds its rows (built once, at start): a call measures
//! moving them, not making them.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Map;
use spoke::arrow::RecordBatch;
use spoke::arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use spoke::arrow::schema::{DataType, Field, Schema, SchemaRef};
use spoke::prelude::*;
use spoke::{ConfigSource, Instance, Registry};
use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{Encoding as WireEncoding, InstanceResult, InvokeRequest, instance_result};
use tonic::transport::Channel;

use crate::Opts;
use crate::baseline::{self, Blob, EchoClient};
use crate::end_to_end::{attach, start_hub};
use crate::report::{Report, Target};
use crate::stats::median;

const PATH: &str = "12 table rows";

/// Rows in the table.
pub const ROWS: usize = 100_000;

/// One row: eight columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Row {
    pub id: i64,
    pub account: i64,
    pub amount: f64,
    pub score: f64,
    pub active: bool,
    pub name: String,
    pub category: String,
    pub at_us: i64,
}

const CATEGORIES: [&str; 5] = ["books", "garden", "music", "tools", "toys"];

/// The table's rows, the same each time.
pub fn rows(count: usize) -> Vec<Row> {
    (0..count as i64)
        .map(|i| Row {
            id: i,
            account: i * 7919 % 10_007,
            amount: (i % 1000) as f64 * 1.25,
            score: ((i * 31) % 97) as f64 / 97.0,
            active: i % 3 != 0,
            name: format!("user-{:06}", i * 13 % 1_000_000),
            category: CATEGORIES[i as usize % CATEGORIES.len()].to_owned(),
            at_us: 1_700_000_000_000_000 + i * 1000,
        })
        .collect()
}

/// The rows' columns as Arrow types.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("account", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("score", DataType::Float64, false),
        Field::new("active", DataType::Boolean, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("at_us", DataType::Int64, false),
    ]))
}

/// The rows as one record batch.
pub fn batch(rows: &[Row]) -> RecordBatch {
    let int = |f: fn(&Row) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    let float = |f: fn(&Row) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
    };
    let text = |f: fn(&Row) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let columns = vec![
        int(|r| r.id),
        int(|r| r.account),
        float(|r| r.amount),
        float(|r| r.score),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.active)))) as ArrayRef,
        text(|r| &r.name),
        text(|r| &r.category),
        int(|r| r.at_us),
    ];
    RecordBatch::try_new(schema(), columns).expect("the columns fit the schema")
}

/// The rows, shared: serialized without a copy.
pub struct SharedRows(Arc<Vec<Row>>);

impl Serialize for SharedRows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl JsonSchema for SharedRows {
    fn schema_name() -> Cow<'static, str> {
        "Rows".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Vec<Row>>::json_schema(generator)
    }
}

/// A table of rows, built at start.
#[connector(name = "table", init = Self::build)]
pub struct Table {
    /// Rows in the table.
    #[config_field(default = 100_000)]
    count: usize,
    records: Arc<Vec<Row>>,
    batch: RecordBatch,
}

impl Table {
    async fn build(config: spoke::Config<Self>) -> Result<Self, String> {
        let records = rows(config.count);
        let batch = batch(&records);
        Ok(Table {
            count: config.count,
            records: Arc::new(records),
            batch,
        })
    }
}

#[connector]
impl Table {
    /// Every row, as JSON or MessagePack.
    #[action(read)]
    async fn records(&self) -> SharedRows {
        SharedRows(self.records.clone())
    }

    /// Every row, as one Arrow batch (Arrow IPC or Parquet).
    #[action(read, output_arrow_schema = schema)]
    async fn batch(&self) -> RecordBatch {
        debug_assert_eq!(self.batch.num_rows(), self.count);
        self.batch.clone()
    }
}

/// One of the four ways the rows travel.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Json,
    Msgpack,
    ArrowIpc,
    Parquet,
}

const WAYS: [Way; 4] = [Way::Json, Way::Msgpack, Way::ArrowIpc, Way::Parquet];

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Json => "JSON",
            Way::Msgpack => "MessagePack",
            Way::ArrowIpc => "Arrow IPC",
            Way::Parquet => "Parquet",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Way::Json | Way::Msgpack => "records",
            Way::ArrowIpc | Way::Parquet => "batch",
        }
    }

    fn wire(self) -> WireEncoding {
        match self {
            Way::Json => WireEncoding::Json,
            Way::Msgpack => WireEncoding::Msgpack,
            Way::ArrowIpc => WireEncoding::ArrowIpc,
            Way::Parquet => WireEncoding::Parquet,
        }
    }

    /// The rows encoded as the connector encodes them, with the library
    /// alone.
    fn encode(self, rows: &[Row], batch: &RecordBatch) -> Vec<u8> {
        match self {
            Way::Json => serde_json::to_vec(rows).expect("JSON"),
            Way::Msgpack => rmp_serde::to_vec_named(rows).expect("MessagePack"),
            Way::ArrowIpc => {
                let mut bytes = Vec::new();
                let mut writer =
                    arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())
                        .expect("IPC");
                writer.write(batch).expect("IPC");
                writer.finish().expect("IPC");
                drop(writer);
                bytes
            }
            Way::Parquet => {
                let mut bytes = Vec::new();
                let mut writer =
                    parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None)
                        .expect("Parquet");
                writer.write(batch).expect("Parquet");
                writer.close().expect("Parquet");
                bytes
            }
        }
    }

    /// The rows back from `bytes`, as a reader of this encoding holds them;
    /// checked: the count, and the sum of the ids.
    fn decode(self, bytes: &[u8]) -> Result<(), String> {
        let (count, id_sum) = match self {
            Way::Json | Way::Msgpack => {
                let rows: Vec<Row> = if self == Way::Json {
                    serde_json::from_slice(bytes).map_err(|e| e.to_string())?
                } else {
                    rmp_serde::from_slice(bytes).map_err(|e| e.to_string())?
                };
                (rows.len(), rows.iter().map(|r| r.id).sum::<i64>())
            }
            Way::ArrowIpc => {
                let reader = arrow_ipc::reader::StreamReader::try_new(bytes, None)
                    .map_err(|e| e.to_string())?;
                let batches = reader
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                count_batches(&batches)
            }
            Way::Parquet => {
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                        bytes::Bytes::copy_from_slice(bytes),
                    )
                    .and_then(|b| b.build())
                    .map_err(|e| e.to_string())?;
                let batches = reader
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                count_batches(&batches)
            }
        };
        let expected = (ROWS as i64 - 1) * ROWS as i64 / 2;
        if count != ROWS || id_sum != expected {
            return Err(format!(
                "{}: {count} rows with ids summing to {id_sum}, expected {ROWS} and {expected}",
                self.name()
            ));
        }
        Ok(())
    }
}

fn count_batches(batches: &[RecordBatch]) -> (usize, i64) {
    let mut count = 0;
    let mut sum = 0;
    for b in batches {
        count += b.num_rows();
        let ids = b
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .expect("an Int64 id column");
        sum += ids.values().iter().sum::<i64>();
        debug_assert_eq!(ids.null_count(), 0);
    }
    (count, sum)
}

/// The table connector, running in this process.
async fn table() -> Instance {
    let registry = Registry::from_inventory().expect("the registry");
    let ty = registry.get("table").expect("table is registered").clone();
    Instance::start(ty, ConfigSource::Json(Map::new()))
        .await
        .expect("table starts")
}

async fn client(addr: SocketAddr) -> HubClient<Channel> {
    crate::end_to_end::client(addr)
        .await
        .max_decoding_message_size(
            spoke_proto::MAX_ASSEMBLED_BYTES + spoke_proto::RESPONSE_SLACK_BYTES,
        )
}

/// The request for the rows in `way`'s encoding.
fn request(way: Way) -> InvokeRequest {
    InvokeRequest {
        connector: "table".into(),
        action: way.action().into(),
        payload: b"{}".to_vec().into(),
        accept: vec![way.wire() as i32],
        ..Default::default()
    }
}

/// The answer's payload: `tail` after `chunks`, checked to be in `way`'s
/// encoding.
fn payload(
    way: Way,
    result: InstanceResult,
    chunks: Vec<bytes::Bytes>,
) -> Result<bytes::Bytes, String> {
    if result.encoding != way.wire() as i32 {
        return Err(format!(
            "{}: answered in encoding {}",
            way.name(),
            result.encoding
        ));
    }
    let Some(instance_result::Outcome::Payload(tail)) = result.outcome else {
        return Err(format!("{:?}", result.outcome));
    };
    if chunks.is_empty() {
        return Ok(tail);
    }
    let mut joined =
        Vec::with_capacity(chunks.iter().map(bytes::Bytes::len).sum::<usize>() + tail.len());
    for chunk in chunks.iter().chain([&tail]) {
        joined.extend_from_slice(chunk);
    }
    Ok(joined.into())
}

/// One call through the hub: the time from the request to the decoded
/// (and checked) rows, and the answer's size.
async fn through_hub(
    client: &mut HubClient<Channel>,
    way: Way,
) -> Result<(Duration, usize), String> {
    let started = Instant::now();
    let response = client
        .invoke(request(way))
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let result = response.results.into_iter().next().ok_or("no result")?;
    let bytes = payload(way, result, Vec::new())?;
    way.decode(&bytes)?;
    Ok((started.elapsed(), bytes.len()))
}

/// One call through the hub over `InvokeStream`: the hub forwards the
/// result's chunks as they come, and the client joins them.
async fn through_hub_streamed(
    client: &mut HubClient<Channel>,
    way: Way,
) -> Result<(Duration, usize), String> {
    use spoke_proto::v1::invoke_stream_item::Item;
    let started = Instant::now();
    let mut stream = client
        .invoke_stream(request(way))
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let mut chunks = Vec::new();
    let mut result = None;
    while let Some(item) = stream.message().await.map_err(|s| s.to_string())? {
        match item.item {
            Some(Item::Chunk(chunk)) => chunks.push(chunk.data),
            Some(Item::Result(r)) => result = Some(r),
            Some(Item::Event(_)) | None => {}
        }
    }
    let bytes = payload(way, result.ok_or("no result")?, chunks)?;
    way.decode(&bytes)?;
    Ok((started.elapsed(), bytes.len()))
}

/// The same in this process: encode, then decode.
fn in_process(way: Way, rows: &[Row], batch: &RecordBatch) -> (Duration, usize) {
    let started = Instant::now();
    let bytes = way.encode(rows, batch);
    way.decode(&bytes).expect("the rows back");
    (started.elapsed(), bytes.len())
}

/// The transport floor: encode and decode in this process, with the bytes
/// sent there and back through a raw tonic server between (the same bytes
/// over loopback twice, as connector to hub and hub to client move them).
async fn over_raw_tonic(
    raw: &mut EchoClient<Channel>,
    way: Way,
    rows: &[Row],
    batch: &RecordBatch,
) -> Duration {
    let started = Instant::now();
    let bytes = way.encode(rows, batch);
    let back = raw
        .bounce(Blob { data: bytes.into() })
        .await
        .expect("a raw tonic bounce")
        .into_inner();
    way.decode(&back.data).expect("the rows back");
    started.elapsed()
}

/// Each kind of call's times (ms), a median per round.
#[derive(Default)]
struct Rounds {
    unary: Vec<f64>,
    streamed: Vec<f64>,
    in_process: Vec<f64>,
    raw_tonic: Vec<f64>,
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let hub = start_hub().await;
    attach(hub, table().await, "table-1");
    let mut client = client(hub).await;
    let mut raw = baseline::client_large(baseline::serve_large().await).await;
    let rows = rows(ROWS);
    let batch = batch(&rows);
    // Routable once a call goes through.
    let ready = Instant::now() + Duration::from_secs(30);
    while let Err(e) = through_hub(&mut client, Way::ArrowIpc).await {
        assert!(
            Instant::now() < ready,
            "the table connector is not routable: {e}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = if opts.quick { 2 } else { 5 };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut unary_ms = Vec::new();
    for way in WAYS {
        let mut rounds = Rounds::default();
        let (mut wire_bytes, mut base_bytes) = (0, 0);
        // A warm-up round, then the measured ones; in each, every kind of
        // call in turn.
        for round in 0..=opts.rounds {
            let mut this = Rounds::default();
            for _ in 0..calls {
                let (t, n) = in_process(way, &rows, &batch);
                this.in_process.push(ms(t));
                base_bytes = n;
                let (t, n) = through_hub(&mut client, way)
                    .await
                    .expect("a unary call through the hub");
                this.unary.push(ms(t));
                wire_bytes = n;
                let (t, _) = through_hub_streamed(&mut client, way)
                    .await
                    .expect("a streamed call through the hub");
                this.streamed.push(ms(t));
                if way == Way::ArrowIpc {
                    this.raw_tonic
                        .push(ms(over_raw_tonic(&mut raw, way, &rows, &batch).await));
                }
            }
            if round > 0 {
                rounds.unary.push(median(&this.unary));
                rounds.streamed.push(median(&this.streamed));
                rounds.in_process.push(median(&this.in_process));
                if !this.raw_tonic.is_empty() {
                    rounds.raw_tonic.push(median(&this.raw_tonic));
                }
            }
        }
        let base_ms = median(&rounds.in_process);
        let case = format!("{ROWS} rows x 8 columns, {}", way.name());
        let target = (way == Way::ArrowIpc).then_some(Target::RatioAtMost { ratio: 1.5 });
        for (metric, times, note) in [
            (
                "end to end, unary Invoke",
                &rounds.unary,
                "Hub.Invoke, the hub joins the chunks; baseline: encode and decode in-process, same libraries",
            ),
            (
                "end to end, InvokeStream",
                &rounds.streamed,
                "Hub.InvokeStream, the hub forwards the chunks and the client joins them",
            ),
        ] {
            let mut adding = report
                .add(PATH, &case, metric, "ms", median(times))
                .baseline(base_ms)
                .note(note);
            if let Some(target) = target {
                adding = adding.target(target);
            }
        }
        unary_ms.push((way, median(&rounds.unary)));
        if !rounds.raw_tonic.is_empty() {
            report
                .add(PATH, &case, "end to end, InvokeStream vs raw tonic", "ms", median(&rounds.streamed))
                .baseline(median(&rounds.raw_tonic))
                .note("baseline: encode, a raw tonic unary echo of the bytes (there and back over loopback), decode");
        }
        report
            .add(
                PATH,
                &case,
                "bytes on the wire",
                "KiB",
                wire_bytes as f64 / 1024.0,
            )
            .baseline(base_bytes as f64 / 1024.0)
            .note("the answer's payload; baseline: the bytes encoded in-process");
    }
    let of = |way: Way| unary_ms.iter().find(|(w, _)| *w == way).map(|(_, ms)| *ms);
    if let (Some(arrow), Some(json)) = (of(Way::ArrowIpc), of(Way::Json)) {
        report
            .add(
                PATH,
                "Arrow IPC (baseline: JSON), both through the hub",
                "end to end, unary Invoke",
                "ms",
                arrow,
            )
            .baseline(json)
            .target(Target::RatioAtMost { ratio: 0.2 })
            .note("Arrow IPC's time over JSON's: at most 0.2 is 5x faster");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_round_trips_the_rows_and_the_check_catches_a_loss() {
        let rows = rows(ROWS);
        let batch = batch(&rows);
        for way in WAYS {
            let bytes = way.encode(&rows, &batch);
            assert_eq!(way.decode(&bytes), Ok(()), "{way:?}");
        }
        let fewer = &rows[1..];
        let short = Way::Json.encode(fewer, &batch);
        assert!(Way::Json.decode(&short).unwrap_err().contains("99999 rows"));
        assert!(Way::ArrowIpc.decode(b"not arrow").is_err());
    }
}
