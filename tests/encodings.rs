//! Payload encodings through real processes: the `codecs` example's own
//! command line, and the `spoke` hub with the `spoke` CLI as the caller.
//! Raw bytes, JSON Lines, MessagePack and Protobuf in and out, a mismatch,
//! and a result large enough to travel in chunks.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{Hub, example, run, stderr, stdout};
use serde::Deserialize;
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(30);

/// The `Stats` of the example.
#[derive(Debug, Deserialize, PartialEq)]
struct Stats {
    count: usize,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

/// `HelloRequest` and `HelloReply` of the example, by hand: field 1 a
/// string (length-delimited), field 2 a varint.
fn hello_request(name: &str, times: u8) -> Vec<u8> {
    let mut bytes = vec![0x0a, name.len() as u8];
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(&[0x10, times]);
    bytes
}

fn hello_reply_lines(mut bytes: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    while let [0x0a, len, rest @ ..] = bytes {
        let (line, tail) = rest.split_at(*len as usize);
        lines.push(String::from_utf8(line.to_vec()).unwrap());
        bytes = tail;
    }
    assert!(bytes.is_empty(), "not a HelloReply: {bytes:?}");
    lines
}

fn ok(out: &Output) -> &Output {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn the_connector_binary_calls_in_every_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.bin");
    let out_path = out_file.to_str().unwrap();

    // Raw bytes in from the command line, out to a file.
    let out = run(example("codecs").args([
        "call",
        "reverse",
        "hello",
        "--input-encoding",
        "raw",
        "--output-file",
        out_path,
    ]));
    ok(&out);
    assert_eq!(std::fs::read(&out_file).unwrap(), b"olleh");
    assert!(
        stderr(&out).contains("wrote 5 bytes of raw_bytes to"),
        "{}",
        stderr(&out)
    );

    // JSON Lines printed as they are; a JSON array when asked.
    let out = run(example("codecs").args(["call", "rows", r#"{"count": 2}"#]));
    assert_eq!(
        stdout(ok(&out)),
        "{\"id\":0,\"name\":\"row 0\",\"score\":0.0}\n{\"id\":1,\"name\":\"row 1\",\"score\":1.0}\n"
    );
    let out = run(example("codecs").args([
        "call",
        "rows",
        r#"{"count": 2}"#,
        "--output-encoding",
        "json",
    ]));
    let rows: Value = serde_json::from_str(&stdout(ok(&out))).unwrap();
    assert_eq!(rows[1]["name"], "row 1");

    // MessagePack in from a file, out on stdout (a pipe here, not a terminal).
    let input = rmp_serde::to_vec_named(&json!({"values": [1.0, 2.0, 6.0]})).unwrap();
    let input_path = write(dir.path(), "stats.mpk", &input);
    let out = run(example("codecs").args([
        "call",
        "stats",
        "--input-encoding",
        "msgpack",
        "--input-file",
        &input_path,
        "--output-encoding",
        "msgpack",
    ]));
    let stats: Stats = rmp_serde::from_slice(&ok(&out).stdout).unwrap();
    assert_eq!(
        stats,
        Stats {
            count: 3,
            min: Some(1.0),
            max: Some(6.0),
            mean: Some(3.0)
        }
    );

    // Protobuf in and out.
    let request = write(dir.path(), "hello.pb", &hello_request("Ada", 2));
    let out = run(example("codecs").args([
        "call",
        "greet",
        "--input-encoding",
        "protobuf",
        "--input-file",
        &request,
        "--output-file",
        out_path,
    ]));
    ok(&out);
    assert_eq!(
        hello_reply_lines(&std::fs::read(&out_file).unwrap()),
        ["hello Ada (1)", "hello Ada (2)"]
    );

    // A mismatch is the action's invalid_input, naming what it takes.
    let out = run(example("codecs").args(["call", "stats", "x", "--input-encoding", "parquet"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "error[invalid_input]: action `stats` takes json or msgpack input, not parquet"
        ),
        "{}",
        stderr(&out)
    );
    // An encoding that does not exist is a usage error.
    let out = run(example("codecs").args(["call", "stats", "--input-encoding", "yaml"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`yaml` is not an encoding: use json, raw_bytes"),
        "{}",
        stderr(&out)
    );
    // The output file of a failed call is left as it was.
    std::fs::write(&out_file, b"kept").unwrap();
    let bad = write(dir.path(), "bad.pb", &[0xff, 0xff]);
    let out = run(example("codecs").args([
        "call",
        "greet",
        "--input-encoding",
        "protobuf",
        "--input-file",
        &bad,
        "--output-file",
        out_path,
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a valid Protobuf `spoke.examples.codecs.HelloRequest`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&out_file).unwrap(), b"kept");
}

#[test]
fn payloads_pass_through_the_hub_unchanged_in_every_encoding() {
    let hub = Hub::start(&[]);
    let _codecs = [
        hub.attach(
            "codecs",
            &[("SPOKE_INSTANCE_ID", "c1"), ("SPOKE_TAGS", "all")],
        ),
        hub.attach(
            "codecs",
            &[("SPOKE_INSTANCE_ID", "c2"), ("SPOKE_TAGS", "all")],
        ),
    ];
    hub.wait_for_instances("codecs", 2, READY);
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.bin");
    let out_path = out_file.to_str().unwrap();
    let call = |args: &[&str]| {
        common::run_with_limit(
            hub.cli().args(["call", "codecs"]).args(args),
            Duration::from_secs(60),
        )
    };

    // Raw bytes.
    let input = write(dir.path(), "in.bin", &[0, 1, 2, 0xff]);
    ok(&call(&[
        "reverse",
        "--input-encoding",
        "raw_bytes",
        "--input-file",
        &input,
        "--output-file",
        out_path,
    ]));
    assert_eq!(std::fs::read(&out_file).unwrap(), [0xff, 2, 1, 0]);

    // MessagePack both ways.
    let stats = rmp_serde::to_vec_named(&json!({"values": [2.0, 4.0]})).unwrap();
    let stats = write(dir.path(), "stats.mpk", &stats);
    let out = call(&[
        "stats",
        "--input-encoding",
        "msgpack",
        "--input-file",
        &stats,
        "--output-encoding",
        "msgpack,json",
    ]);
    let got: Stats = rmp_serde::from_slice(&ok(&out).stdout).unwrap();
    assert_eq!(got.mean, Some(3.0));

    // Protobuf.
    let request = write(dir.path(), "hello.pb", &hello_request("Grace", 1));
    ok(&call(&[
        "greet",
        "--input-encoding",
        "protobuf",
        "--input-file",
        &request,
        "--output-file",
        out_path,
    ]));
    assert_eq!(
        hello_reply_lines(&std::fs::read(&out_file).unwrap()),
        ["hello Grace (1)"]
    );

    // JSON Lines in, JSON out (pretty-printed).
    let lines = write(
        dir.path(),
        "rows.jsonl",
        b"{\"id\":1,\"name\":\"a\",\"score\":1.5}\n{\"id\":2,\"name\":\"b\",\"score\":2.0}\n",
    );
    let out = call(&["total", "--input-encoding", "jsonl", "--input-file", &lines]);
    let total: Value = serde_json::from_str(&stdout(ok(&out))).unwrap();
    assert_eq!(total, json!({"count": 2, "sum": 3.5}));

    // A result over 1 MiB travels in chunks and arrives whole.
    let out = call(&[
        "rows",
        r#"{"count": 100000}"#,
        "--output-encoding",
        "msgpack",
        "--output-file",
        out_path,
    ]);
    ok(&out);
    let bytes = std::fs::read(&out_file).unwrap();
    assert!(bytes.len() > 2 << 20, "{} bytes", bytes.len());
    let rows: Vec<Value> = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(rows.len(), 100_000);
    assert_eq!(rows[99_999]["name"], "row 99999");

    // The mismatch comes back from the connector through the hub.
    let out = call(&[
        "stats",
        r#"{"values": []}"#,
        "--output-encoding",
        "arrow_ipc,parquet",
        "--output-file",
        out_path,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "error[invalid_input]: action `stats` answers in json or msgpack, and the caller accepts only arrow_ipc or parquet"
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(r#""supported":["json","msgpack"]"#),
        "{}",
        stderr(&out)
    );

    // A broadcast shows binary outputs as base64 and MessagePack as JSON.
    let out = call(&["reverse", "--tag", "all", "--input-encoding", "raw", "ab"]);
    let entries: Value = serde_json::from_str(&stdout(ok(&out))).unwrap();
    assert_eq!(
        entries,
        json!([
            {"instance": "c1", "encoding": "raw_bytes", "output_base64": "YmE="},
            {"instance": "c2", "encoding": "raw_bytes", "output_base64": "YmE="},
        ])
    );
    let out = call(&[
        "stats",
        r#"{"values": [1]}"#,
        "--tag",
        "all",
        "--output-encoding",
        "msgpack",
    ]);
    let entries: Value = serde_json::from_str(&stdout(ok(&out))).unwrap();
    assert_eq!(entries[0]["encoding"], "msgpack");
    assert_eq!(entries[1]["output"]["mean"], 1.0);
}

#[test]
fn a_sidecar_carries_other_encodings_as_base64_in_its_lines() {
    use base64::Engine as _;
    use common::sidecar::Sidecar;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut codecs = Sidecar::acked("codecs");

    // Raw bytes in and out.
    codecs.send(&json!({"method": "invoke", "params": {
        "id": "1", "action": "reverse", "input_encoding": "raw_bytes",
        "input_base64": b64.encode([1, 2, 3]), "accept": ["raw_bytes"],
    }}));
    let frame = codecs.frame();
    assert_eq!(
        frame["params"],
        json!({"id": "1", "output_encoding": "raw_bytes", "output_base64": b64.encode([3, 2, 1])}),
        "{frame}"
    );

    // JSON in, MessagePack out when accepted.
    codecs.send(&json!({"method": "invoke", "params": {
        "id": "2", "action": "stats", "input": {"values": [2.0]}, "accept": ["msgpack", "json"],
    }}));
    let frame = codecs.frame();
    assert_eq!(frame["params"]["output_encoding"], "msgpack", "{frame}");
    let bytes = b64
        .decode(frame["params"]["output_base64"].as_str().unwrap())
        .unwrap();
    let stats: Stats = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(stats.mean, Some(2.0));

    // No `accept`: JSON, as a host from before encodings reads it; a
    // JSON Lines action answers as a JSON array then.
    codecs.send(&common::frames::invoke("3", "rows", json!({"count": 1})));
    let frame = codecs.frame();
    assert_eq!(
        frame["params"]["output"],
        json!([{"id": 0, "name": "row 0", "score": 0.0}]),
        "{frame}"
    );
    // ... and a binary-only action says it cannot.
    codecs.send(&json!({"method": "invoke", "params": {
        "id": "4", "action": "reverse", "input_encoding": "raw_bytes", "input_base64": "AA==",
    }}));
    let frame = codecs.frame();
    assert_eq!(frame["params"]["error"]["code"], "invalid_input", "{frame}");
    assert_eq!(
        frame["params"]["error"]["message"],
        "action `reverse` answers in raw_bytes, and the caller accepts only json"
    );

    // Bad payload fields: one invalid_input result each, naming the field.
    for (id, params, says) in [
        (
            "5",
            json!({"input_encoding": "yaml", "input_base64": ""}),
            "`input_encoding`: `yaml` is not an encoding",
        ),
        (
            "6",
            json!({"input_encoding": "raw", "input_base64": "not base64!"}),
            "`input_base64` is not base64",
        ),
        (
            "7",
            json!({"input_encoding": "msgpack"}),
            "an input in msgpack comes as `input_base64`",
        ),
        (
            "8",
            json!({"input": {}, "input_base64": "AA=="}),
            "`input` (JSON) or `input_base64`, not both",
        ),
        (
            "9",
            json!({"input": {}, "accept": "json"}),
            "`accept` must be an array of encoding names",
        ),
    ] {
        let mut params = params;
        params["id"] = json!(id);
        params["action"] = json!("reverse");
        codecs.send(&json!({"method": "invoke", "params": params}));
        let frame = codecs.frame();
        assert_eq!(frame["params"]["id"], id, "{frame}");
        assert_eq!(frame["params"]["error"]["code"], "invalid_input", "{frame}");
        let message = frame["params"]["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{id}: {message}");
    }
    assert!(codecs.finish().is_empty());
}

#[test]
fn encodings_travel_over_nats_and_through_hubs_on_it() {
    use common::nats::{NatsServer, Served};
    let server = NatsServer::start();
    // One instance serving NATS itself, one attached to hub A (which
    // serves it on NATS); hub B has none and forwards over NATS.
    let _direct = Served::start("codecs", &server.url, "codecs-n", &[]);
    let a = Hub::start(&["--nats", &server.url]);
    let _attached = a.attach("codecs", &[("SPOKE_INSTANCE_ID", "codecs-h")]);
    a.wait_for_instances("codecs", 1, READY);
    let b = Hub::start(&["--nats", &server.url]);
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.bin");
    let out_path = out_file.to_str().unwrap();
    let over_nats = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::spoke_bin());
        cmd.env_remove("SPOKE_HUB_URL")
            .env_remove("SPOKE_NATS_CREDS")
            .args(["call", "--nats", &server.url, "codecs"])
            .args(args);
        common::run_with_limit(&mut cmd, Duration::from_secs(60))
    };

    // Raw bytes to and from each instance: `Content-Type` both ways.
    for instance in ["codecs-n", "codecs-h"] {
        std::fs::remove_file(&out_file).ok();
        let out = over_nats(&[
            "reverse",
            "abc",
            "--instance",
            instance,
            "--input-encoding",
            "raw",
            "--output-file",
            out_path,
        ]);
        ok(&out);
        assert_eq!(std::fs::read(&out_file).unwrap(), b"cba", "{instance}");
    }
    // MessagePack in, MessagePack out, on stdout.
    let input = rmp_serde::to_vec_named(&json!({"values": [1.0, 5.0]})).unwrap();
    let input = write(dir.path(), "stats.mpk", &input);
    for instance in ["codecs-n", "codecs-h"] {
        let out = over_nats(&[
            "stats",
            "--instance",
            instance,
            "--input-encoding",
            "msgpack",
            "--input-file",
            &input,
            "--output-encoding",
            "msgpack",
        ]);
        let stats: Stats = rmp_serde::from_slice(&ok(&out).stdout).unwrap();
        assert_eq!(stats.max, Some(5.0), "{instance}");
    }
    // An answer larger than the server carries is an error that says so.
    for instance in ["codecs-n", "codecs-h"] {
        let out = over_nats(&[
            "rows",
            r#"{"count": 100000}"#,
            "--instance",
            instance,
            "--output-encoding",
            "msgpack",
            "--output-file",
            out_path,
        ]);
        assert_eq!(out.status.code(), Some(1), "{instance}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("error[failed_precondition]")
                && stderr(&out).contains("more than this NATS server carries in one message"),
            "{instance}: {}",
            stderr(&out)
        );
    }
    // Hub B forwards over NATS: Protobuf there and back.
    let request = write(dir.path(), "hello.pb", &hello_request("Lin", 1));
    let out = common::run_with_limit(
        b.cli().args([
            "call",
            "codecs",
            "greet",
            "--input-encoding",
            "protobuf",
            "--input-file",
            &request,
            "--output-file",
            out_path,
        ]),
        Duration::from_secs(60),
    );
    ok(&out);
    assert_eq!(
        hello_reply_lines(&std::fs::read(&out_file).unwrap()),
        ["hello Lin (1)"]
    );
}

#[test]
fn a_supervised_sidecar_takes_and_gives_every_encoding_through_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecars.toml");
    std::fs::write(
        &config,
        format!(
            "[[sidecar]]\nname = \"codecs-s\"\ncommand = \"{}\"\n",
            common::example_bin("codecs").display()
        ),
    )
    .unwrap();
    let hub = Hub::start(&["--sidecars", config.to_str().unwrap()]);
    hub.wait_for_instances("codecs", 1, READY);
    let out_file = dir.path().join("out.bin");
    let out_path = out_file.to_str().unwrap();
    let call = |args: &[&str]| {
        common::run_with_limit(
            hub.cli().args(["call", "codecs"]).args(args),
            Duration::from_secs(60),
        )
    };

    // No --output-encoding: the action's preferred, raw bytes, as from a
    // connector attached over gRPC.
    ok(&call(&[
        "reverse",
        "xyz",
        "--input-encoding",
        "raw",
        "--output-file",
        out_path,
    ]));
    assert_eq!(std::fs::read(&out_file).unwrap(), b"zyx");
    // JSON Lines, printed as they are.
    let out = call(&["rows", r#"{"count": 1}"#]);
    assert_eq!(
        stdout(ok(&out)),
        "{\"id\":0,\"name\":\"row 0\",\"score\":0.0}\n"
    );
    // MessagePack both ways.
    let input = rmp_serde::to_vec_named(&json!({"values": [4.0]})).unwrap();
    let input = write(dir.path(), "stats.mpk", &input);
    let out = call(&[
        "stats",
        "--input-encoding",
        "msgpack",
        "--input-file",
        &input,
        "--output-encoding",
        "msgpack",
    ]);
    let stats: Stats = rmp_serde::from_slice(&ok(&out).stdout).unwrap();
    assert_eq!(stats.min, Some(4.0));
    // A result over 1 MiB: base64 on the sidecar's stdout, chunks to the hub.
    ok(&call(&[
        "rows",
        r#"{"count": 100000}"#,
        "--output-encoding",
        "msgpack",
        "--output-file",
        out_path,
    ]));
    let rows: Vec<Value> = rmp_serde::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(rows.len(), 100_000);
    // An encoding the action does not take is refused at the bridge.
    let out = call(&["stats", "x", "--input-encoding", "raw"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "sidecar `codecs-s`: action `stats` takes json or msgpack input, not raw_bytes"
        ),
        "{}",
        stderr(&out)
    );
}
