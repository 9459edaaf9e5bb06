//! A connector whose actions take and give payloads other than JSON: raw
//! bytes, JSON Lines, MessagePack and Protobuf. The types decide (see
//! `spoke::payload`); the manifest lists each action's `input_encodings` and
//! `output_encodings`, and the caller picks per call.
//!
//! ```text
//! cargo run --example codecs -- describe
//! echo -n hello | cargo run --example codecs -- call reverse --input-encoding raw_bytes --input-file - | cat
//! cargo run --example codecs -- call rows '{"count": 3}'                       # JSON Lines
//! cargo run --example codecs -- call rows '{"count": 3}' --output-encoding json # a JSON array
//! cargo run --example codecs -- call stats '{"values": [1, 2, 4]}' --output-encoding msgpack --output-file stats.mpk
//! ```

use spoke::prelude::*;
use spoke::{Bytes, JsonLines};

/// One generated row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Row {
    /// Its number, from 0.
    pub id: u64,
    /// `row <id>`.
    pub name: String,
    /// `id` squared.
    pub score: f64,
}

/// How many rows, and their scores' sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Total {
    /// The rows.
    pub count: u64,
    /// The sum of their scores.
    pub sum: f64,
}

/// A few statistics of some numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    /// How many.
    pub count: usize,
    /// The smallest (null for none).
    pub min: Option<f64>,
    /// The largest (null for none).
    pub max: Option<f64>,
    /// The mean (null for none).
    pub mean: Option<f64>,
}

/// A Protobuf request: what `prost-build` generates from
/// `message HelloRequest { string name = 1; uint32 times = 2; }` in package
/// `spoke.examples.codecs` (with `enable_type_names()`, for `prost::Name`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Whom to greet.
    #[prost(string, tag = "1")]
    pub name: String,
    /// How many times.
    #[prost(uint32, tag = "2")]
    pub times: u32,
}

impl prost::Name for HelloRequest {
    const NAME: &'static str = "HelloRequest";
    const PACKAGE: &'static str = "spoke.examples.codecs";
}

/// A Protobuf reply: `message HelloReply { repeated string lines = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// One greeting per time asked.
    #[prost(string, repeated, tag = "1")]
    pub lines: Vec<String>,
}

impl prost::Name for HelloReply {
    const NAME: &'static str = "HelloReply";
    const PACKAGE: &'static str = "spoke.examples.codecs";
}

/// Actions in every encoding but Arrow's.
#[connector(name = "codecs")]
#[derive(Default)]
pub struct Codecs;

/// The most rows `rows` makes in one call.
const MAX_ROWS: u64 = 1_000_000;

#[connector]
impl Codecs {
    /// The bytes given, in reverse order (raw bytes in, raw bytes out).
    #[action(read)]
    async fn reverse(&self, #[input] data: Bytes) -> Result<Bytes, ActionError> {
        let mut bytes = data.to_vec();
        bytes.reverse();
        Ok(Bytes::from(bytes))
    }

    /// `count` rows, as JSON Lines (or a JSON or MessagePack array).
    ///
    /// # Arguments
    /// * `count` - How many rows (at most 1,000,000).
    #[action(read)]
    async fn rows(&self, count: u64) -> Result<JsonLines<Row>, ActionError> {
        if count > MAX_ROWS {
            return Err(ActionError::invalid_input_at(
                "$.count",
                format!("at most {MAX_ROWS} rows, not {count}"),
            ));
        }
        Ok((0..count)
            .map(|id| Row {
                id,
                name: format!("row {id}"),
                score: (id * id) as f64,
            })
            .collect())
    }

    /// How many rows were given, and their scores' sum (JSON Lines, a
    /// JSON array or a MessagePack array in; JSON or MessagePack out).
    #[action(read)]
    async fn total(&self, #[input] rows: JsonLines<Row>) -> Result<Total, ActionError> {
        Ok(Total {
            count: rows.len() as u64,
            sum: rows.iter().map(|r| r.score).sum(),
        })
    }

    /// The count, smallest, largest and mean of some numbers (JSON or
    /// MessagePack, in and out).
    ///
    /// # Arguments
    /// * `values` - The numbers.
    #[action(read)]
    async fn stats(&self, values: Vec<f64>) -> Result<Stats, ActionError> {
        let count = values.len();
        let min = values.iter().copied().reduce(f64::min);
        let max = values.iter().copied().reduce(f64::max);
        let mean = (count > 0).then(|| values.iter().sum::<f64>() / count as f64);
        Ok(Stats {
            count,
            min,
            max,
            mean,
        })
    }

    /// Greets someone, in Protobuf (`spoke.examples.codecs.HelloRequest`
    /// in, `HelloReply` out).
    #[action(read)]
    async fn greet(&self, #[input] request: HelloRequest) -> Result<HelloReply, ActionError> {
        if request.times > 100 {
            return Err(ActionError::invalid_input_at(
                "$.times",
                "at most 100 greetings",
            ));
        }
        let lines = (0..request.times.max(1))
            .map(|i| format!("hello {} ({})", request.name, i + 1))
            .collect();
        Ok(HelloReply { lines })
    }
}

fn main() -> std::process::ExitCode {
    spoke::main()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use serde_json::json;
    use spoke::testing::{TestConnector, check_manifest};
    use spoke::{Encoding, ErrorCode};

    async fn codecs() -> TestConnector<Codecs> {
        TestConnector::<Codecs>::start(json!({})).await.unwrap()
    }

    #[test]
    fn the_manifest_says_what_each_action_takes_and_gives() {
        check_manifest().unwrap();
        let manifest = spoke::Registry::from_inventory()
            .unwrap()
            .get("codecs")
            .unwrap()
            .manifest()
            .clone();
        let by_name = |name: &str| {
            manifest
                .actions
                .iter()
                .find(|a| a.name == name)
                .unwrap()
                .clone()
        };
        use Encoding::*;
        let reverse = by_name("reverse");
        assert_eq!(
            (reverse.input_encodings, reverse.output_encodings),
            (vec![RawBytes], vec![RawBytes])
        );
        let rows = by_name("rows");
        assert_eq!(
            (rows.input_encodings, rows.output_encodings),
            (vec![Json, Msgpack], vec![JsonLines, Json, Msgpack])
        );
        let total = by_name("total");
        assert_eq!(total.input_encodings, [JsonLines, Json, Msgpack]);
        assert_eq!(total.output_encodings, [Json, Msgpack]);
        let greet = by_name("greet");
        assert_eq!(
            (greet.input_encodings, greet.output_encodings),
            (vec![Protobuf], vec![Protobuf])
        );
        assert_eq!(
            greet.input_message_type.as_deref(),
            Some("spoke.examples.codecs.HelloRequest")
        );
        assert_eq!(
            greet.output_message_type.as_deref(),
            Some("spoke.examples.codecs.HelloReply")
        );
        assert!(by_name("stats").input_message_type.is_none());
    }

    #[tokio::test]
    async fn every_encoding_round_trips() {
        let t = codecs().await;
        // Raw bytes.
        let out = t
            .run_encoded("reverse", Encoding::RawBytes, b"abc".to_vec())
            .await;
        assert_eq!(
            (out.encoding(), out.bytes().unwrap()),
            (Some(Encoding::RawBytes), &b"cba"[..])
        );
        // JSON Lines by default, a JSON array or MessagePack when asked.
        let out = t.run("rows", json!({"count": 2})).await;
        assert_eq!(out.encoding(), Some(Encoding::JsonLines));
        assert_eq!(
            out.bytes().unwrap(),
            b"{\"id\":0,\"name\":\"row 0\",\"score\":0.0}\n{\"id\":1,\"name\":\"row 1\",\"score\":1.0}\n"
        );
        let lines = out.bytes().unwrap().to_vec();
        let out = t
            .run("rows", json!({"count": 2}))
            .accept([Encoding::Json])
            .await;
        let rows: Vec<Row> = out.output().unwrap();
        assert_eq!(rows[1].name, "row 1");
        let out = t
            .run("rows", json!({"count": 2}))
            .accept([Encoding::Parquet, Encoding::Msgpack])
            .await;
        assert_eq!(out.encoding(), Some(Encoding::Msgpack));
        assert_eq!(
            rmp_serde::from_slice::<Vec<Row>>(out.bytes().unwrap()).unwrap(),
            rows
        );
        let msgpack = out.bytes().unwrap().to_vec();
        // JSON Lines, or MessagePack, in.
        for (encoding, bytes) in [(Encoding::JsonLines, lines), (Encoding::Msgpack, msgpack)] {
            let out = t.run_encoded("total", encoding, bytes).await;
            assert_eq!(out.output::<Total>().unwrap(), Total { count: 2, sum: 1.0 });
        }
        // MessagePack parameters in, MessagePack out.
        let input = rmp_serde::to_vec_named(&json!({"values": [1.0, 2.0, 6.0]})).unwrap();
        let out = t
            .run_encoded("stats", Encoding::Msgpack, input)
            .accept([Encoding::Msgpack])
            .await;
        assert_eq!(out.encoding(), Some(Encoding::Msgpack));
        let stats: Stats = rmp_serde::from_slice(out.bytes().unwrap()).unwrap();
        assert_eq!((stats.count, stats.mean), (3, Some(3.0)));
        // Protobuf.
        let request = HelloRequest {
            name: "Ada".into(),
            times: 2,
        };
        let out = t
            .run_encoded("greet", Encoding::Protobuf, request.encode_to_vec())
            .await;
        let reply = HelloReply::decode(out.bytes().unwrap()).unwrap();
        assert_eq!(reply.lines, ["hello Ada (1)", "hello Ada (2)"]);
    }

    #[tokio::test]
    async fn a_mismatch_names_what_the_action_supports() {
        let t = codecs().await;
        let out = t.run_encoded("stats", Encoding::Parquet, vec![1, 2]).await;
        let e = out.error().unwrap();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert_eq!(
            e.message(),
            "action `stats` takes json or msgpack input, not parquet"
        );
        assert_eq!(
            e.details().unwrap()["supported"],
            json!(["json", "msgpack"])
        );
        let out = t.run("reverse", json!({})).await;
        assert_eq!(
            out.error().unwrap().message(),
            "action `reverse` takes raw_bytes input, not json"
        );
        let out = t
            .run("stats", json!({"values": []}))
            .accept([Encoding::ArrowIpc, Encoding::RawBytes])
            .await;
        let e = out.error().unwrap();
        assert_eq!(
            e.message(),
            "action `stats` answers in json or msgpack, and the caller accepts only arrow_ipc or raw_bytes"
        );
        assert_eq!(
            e.details().unwrap()["accept"],
            json!(["arrow_ipc", "raw_bytes"])
        );
    }

    #[tokio::test]
    async fn corrupted_payloads_are_invalid_input_never_a_panic() {
        let t = codecs().await;
        let request = HelloRequest {
            name: "Ada".into(),
            times: 2,
        }
        .encode_to_vec();
        let stats = rmp_serde::to_vec_named(&json!({"values": [1.0, 2.0]})).unwrap();
        let rows = rmp_serde::to_vec_named(&vec![Row {
            id: 1,
            name: "x".into(),
            score: 2.0,
        }])
        .unwrap();
        let lines = b"{\"id\":1,\"name\":\"x\",\"score\":2.0}\n".to_vec();
        let cases = [
            ("greet", Encoding::Protobuf, request),
            ("stats", Encoding::Msgpack, stats),
            ("total", Encoding::Msgpack, rows),
            ("total", Encoding::JsonLines, lines),
        ];
        for (action, encoding, good) in cases {
            assert!(
                t.run_encoded(action, encoding, good.clone())
                    .await
                    .error()
                    .is_none(),
                "{action}"
            );
            let mut bad = Vec::new();
            for cut in 1..good.len() {
                bad.push(good[..cut].to_vec());
            }
            for i in 0..good.len() {
                let mut flipped = good.clone();
                flipped[i] ^= 0xff;
                bad.push(flipped);
            }
            for bytes in bad {
                let out = t.run_encoded(action, encoding, bytes.clone()).await;
                if let Some(e) = out.error() {
                    assert_eq!(
                        e.code(),
                        ErrorCode::InvalidInput,
                        "{action} {encoding} {bytes:?}: {e}"
                    );
                }
            }
        }
        let e = t
            .run_encoded("greet", Encoding::Protobuf, vec![0xff, 0xff])
            .await;
        let e = e.error().unwrap();
        assert!(
            e.message()
                .contains("not a valid Protobuf `spoke.examples.codecs.HelloRequest`"),
            "{e}"
        );
    }
}
