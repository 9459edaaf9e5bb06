//! Arrow IPC, Parquet and MessagePack through the hub, checked by readers
//! no one here wrote: pyarrow and msgpack from PyPI (a venv `.ci/run` sets
//! up, `target/arrow-venv`). The `table` example is attached to a hub; the
//! `spoke` CLI saves what the hub returns, unchanged, and Python reads it;
//! Python writes Parquet (Snappy) and MessagePack that go the other way.
//! The same through the connector binary's own `call` and through the hub
//! to the connector run as a stdio sidecar (base64 in its lines).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Hub, example, example_bin, stderr, stdout};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(30);

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/arrow-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: .ci/run creates it (python3 -m venv target/arrow-venv && target/arrow-venv/bin/pip install pyarrow==26.0.1 msgpack==1.2.4)",
        venv.display()
    );
    venv
}

/// Runs the reader with `args` (and `input` on stdin); its stdout as JSON,
/// if it printed any.
fn reader(args: &[&str], input: Option<&Value>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/arrow_reader.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input.to_string().as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python {args:?}: {}", stderr(&out));
    let text = stdout(&out);
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// A successful call's JSON answer.
fn json_of(out: &Output) -> Value {
    serde_json::from_str(&stdout(ok(out))).unwrap()
}

fn ok(out: &Output) -> &Output {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    out
}

#[test]
fn pyarrow_and_msgpack_read_what_the_hub_returns_and_write_what_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "id,name,score\n1,Ada,9.5\n2,Grace,8.25\n3,Lin,7.0\n").unwrap();
    let hub = Hub::start(&[]);
    let _table = hub.attach("table", &[("TABLE_PATH", csv.to_str().unwrap())]);
    let _codecs = hub.attach("codecs", &[]);
    hub.wait_for_instances("table", 1, READY);
    hub.wait_for_instances("codecs", 1, READY);
    let call = |args: &[&str]| {
        common::run_with_limit(hub.cli().arg("call").args(args), Duration::from_secs(60))
    };
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    // Arrow IPC and Parquet out: pyarrow reads the rows and their types.
    let expected = json!([
        {"id": 1, "name": "Ada", "score": 9.5},
        {"id": 2, "name": "Grace", "score": 8.25},
        {"id": 3, "name": "Lin", "score": 7.0},
    ]);
    ok(&call(&[
        "table",
        "rows",
        "--output-file",
        &path("rows.arrows"),
    ]));
    let ipc = reader(&["read-ipc", &path("rows.arrows")], None);
    ok(&call(&[
        "table",
        "rows",
        "--output-encoding",
        "parquet",
        "--output-file",
        &path("rows.parquet"),
    ]));
    let parquet = reader(&["read-parquet", &path("rows.parquet")], None);
    for read in [&ipc, &parquet] {
        assert_eq!(read["rows"], 3, "{read}");
        assert_eq!(read["names"], json!(["id", "name", "score"]), "{read}");
        assert_eq!(
            read["types"],
            json!(["int64", "string", "double"]),
            "{read}"
        );
        assert_eq!(read["data"], expected, "{read}");
    }

    // `stats` declares its columns: the hub's manifest lists them, and
    // pyarrow reads a batch of exactly those.
    let out = common::run_with_limit(
        hub.cli().args(["describe", "table"]),
        Duration::from_secs(30),
    );
    let manifest: Value = serde_json::from_str(&stdout(ok(&out))).unwrap();
    let stats = manifest["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "stats")
        .unwrap();
    assert_eq!(
        stats["output_arrow_schema"],
        json!({"fields": [
            {"name": "column", "type": "Utf8", "nullable": false},
            {"name": "type", "type": "Utf8", "nullable": false},
            {"name": "nulls", "type": "Int64", "nullable": false},
        ]})
    );
    ok(&call(&[
        "table",
        "stats",
        "--output-file",
        &path("stats.arrows"),
    ]));
    let read = reader(&["read-ipc", &path("stats.arrows")], None);
    assert_eq!(
        read["types"],
        json!(["string", "string", "int64"]),
        "{read}"
    );
    assert_eq!(
        read["data"][2],
        json!({"column": "score", "type": "Float64", "nulls": 0})
    );

    // Parquet written by pyarrow (Snappy) in: the table grows.
    let more = json!([{"id": 4, "name": "Kay", "score": 6.5}]);
    reader(&["write-parquet", &path("more.parquet")], Some(&more));
    let out = call(&[
        "table",
        "append",
        "--input-encoding",
        "parquet",
        "--input-file",
        &path("more.parquet"),
    ]);
    assert_eq!(json_of(&out), json!({"rows": 1}));
    ok(&call(&[
        "table",
        "rows",
        "--output-file",
        &path("all.arrows"),
    ]));
    let all = reader(&["read-ipc", &path("all.arrows")], None);
    assert_eq!(all["rows"], 4, "{all}");
    assert_eq!(all["data"][3], more[0]);

    // MessagePack both ways, to msgpack's own reader and from its writer.
    reader(
        &["write-msgpack", &path("stats.mpk")],
        Some(&json!({"values": [1.5, 2.5]})),
    );
    ok(&call(&[
        "codecs",
        "stats",
        "--input-encoding",
        "msgpack",
        "--input-file",
        &path("stats.mpk"),
        "--output-encoding",
        "msgpack",
        "--output-file",
        &path("stats.out.mpk"),
    ]));
    let stats = reader(&["read-msgpack", &path("stats.out.mpk")], None);
    assert_eq!(
        stats,
        json!({"count": 2, "min": 1.5, "max": 2.5, "mean": 2.0})
    );

    // A corrupt Parquet file is the connector's invalid_input, not a crash.
    let mut bytes = std::fs::read(path("more.parquet")).unwrap();
    let middle = bytes.len() / 2;
    bytes.truncate(middle);
    std::fs::write(path("cut.parquet"), &bytes).unwrap();
    let out = call(&[
        "table",
        "append",
        "--input-encoding",
        "parquet",
        "--input-file",
        &path("cut.parquet"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error[invalid_input]: $: input is not a Parquet file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn arrow_and_parquet_through_the_connector_cli_and_a_stdio_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let csv = path("people.csv");
    std::fs::write(&csv, "id,name,score\n1,Ada,9.5\n").unwrap();
    let rows = |file: &str| {
        let read = if file.ends_with(".parquet") {
            reader(&["read-parquet", file], None)
        } else {
            reader(&["read-ipc", file], None)
        };
        assert_eq!(
            read["types"],
            json!(["int64", "string", "double"]),
            "{read}"
        );
        read["data"].clone()
    };

    // The connector binary's own `call`, in-process.
    let table = |args: &[&str]| {
        common::run_with_limit(
            example("table")
                .env("TABLE_PATH", &csv)
                .arg("call")
                .args(args),
            Duration::from_secs(60),
        )
    };
    ok(&table(&["rows", "--output-file", &path("cli.arrows")]));
    assert_eq!(
        rows(&path("cli.arrows")),
        json!([{"id": 1, "name": "Ada", "score": 9.5}])
    );
    reader(
        &["write-ipc", &path("grace.arrows")],
        Some(&json!([{"id": 2, "name": "Grace", "score": 8.25}])),
    );
    let out = table(&[
        "append",
        "--input-encoding",
        "arrow",
        "--input-file",
        &path("grace.arrows"),
    ]);
    assert_eq!(json_of(&out), json!({"rows": 1}));
    ok(&table(&[
        "rows",
        "--output-encoding",
        "parquet",
        "--output-file",
        &path("cli.parquet"),
    ]));
    assert_eq!(rows(&path("cli.parquet")).as_array().unwrap().len(), 2);
    // Binary output is never printed to a terminal, nor asked for as JSON.
    let out = table(&["rows", "--output-encoding", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("arrow_ipc"), "{}", stderr(&out));

    // Through the hub to the same connector as a supervised stdio sidecar.
    let config = path("sidecars.toml");
    std::fs::write(
        &config,
        format!(
            "[[sidecar]]\nname = \"table-s\"\ncommand = \"{}\"\nenv = {{ TABLE_PATH = \"{}\" }}\n",
            example_bin("table").display(),
            csv
        ),
    )
    .unwrap();
    let hub = Hub::start(&["--sidecars", &config]);
    hub.wait_for_instances("table", 1, READY);
    let call = |args: &[&str]| {
        common::run_with_limit(
            hub.cli().args(["call", "table"]).args(args),
            Duration::from_secs(60),
        )
    };
    reader(
        &["write-parquet", &path("lin.parquet")],
        Some(&json!([{"id": 3, "name": "Lin", "score": 7.0}])),
    );
    let out = call(&[
        "append",
        "--input-encoding",
        "parquet",
        "--input-file",
        &path("lin.parquet"),
    ]);
    assert_eq!(json_of(&out), json!({"rows": 1}));
    for (encoding, file) in [("arrow_ipc", "side.arrows"), ("parquet", "side.parquet")] {
        ok(&call(&[
            "rows",
            "--output-encoding",
            encoding,
            "--output-file",
            &path(file),
        ]));
        assert_eq!(
            rows(&path(file)),
            json!([
                {"id": 1, "name": "Ada", "score": 9.5},
                {"id": 2, "name": "Grace", "score": 8.25},
                {"id": 3, "name": "Lin", "score": 7.0},
            ]),
            "{encoding}"
        );
    }
    // A corrupt Arrow stream: the connector's invalid_input, through the
    // bridge, and the sidecar lives on.
    std::fs::write(path("junk.arrows"), b"\xff\xff\xff\xffnot arrow").unwrap();
    let out = call(&[
        "append",
        "--input-encoding",
        "arrow",
        "--input-file",
        &path("junk.arrows"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid_input")
            && stderr(&out).contains("input is not an Arrow IPC stream"),
        "{}",
        stderr(&out)
    );
    ok(&call(&["rows", "--output-file", &path("after.arrows")]));
}
