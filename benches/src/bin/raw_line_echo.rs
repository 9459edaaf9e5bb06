//! The stdio baseline: a child process that answers each invoke line the way
//! a hand-written NDJSON sidecar would, with serde_json and no framework.
//!
//! For each line `{"method":"invoke","params":{"id":..,"input":{"text":..}}}`
//! it writes `{"method":"result","params":{"id":..,"output":<text>}}`. Output
//! is buffered and flushed whenever no more input is waiting, the fastest
//! honest way to answer a pipelined peer.

use std::io::{BufRead, BufReader, BufWriter, Write};

use serde_json::{Value, json};

fn main() -> std::io::Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let Ok(frame) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let params = &frame["params"];
        let answer = json!({
            "method": "result",
            "params": {"id": params["id"], "output": params["input"]["text"]},
        });
        serde_json::to_writer(&mut out, &answer)?;
        out.write_all(b"\n")?;
        if input.buffer().is_empty() {
            out.flush()?;
        }
    }
    out.flush()
}
