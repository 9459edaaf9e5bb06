//! Path 3: stdio. Calls through the stdio transport of a child process (the
//! echo example, `echo stdio`), against a child that answers the same lines
//! with plain serde_json (`raw-line-echo`). The host side is the same code
//! for both.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::payload::{IN_FLIGHT, SIZES, echo_input};
use crate::report::{Report, Runs, Target};
use crate::stats::Run;
use crate::window::{Link, drive};
use crate::{Opts, binaries};

const PATH: &str = "3 stdio";

struct PipeLink {
    _child: Child,
    /// To the task that writes the child's stdin, so that sending never
    /// waits for the child to read while its answers wait to be read.
    lines_in: mpsc::UnboundedSender<String>,
    lines: Lines<BufReader<ChildStdout>>,
    input: String,
}

/// Writes lines to the child's stdin, the lines queued behind one in the
/// same write (path 10 writes its MCP requests with it too).
pub(crate) async fn write_stdin(mut stdin: ChildStdin, mut lines: mpsc::UnboundedReceiver<String>) {
    let mut batch = String::new();
    while let Some(line) = lines.recv().await {
        batch.push_str(&line);
        while let Ok(more) = lines.try_recv() {
            batch.push_str(&more);
        }
        if stdin.write_all(batch.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
        batch.clear();
    }
}

impl PipeLink {
    async fn spawn(program: &Path, args: &[&str], speaks_first: bool) -> PipeLink {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (lines_in, queued) = mpsc::unbounded_channel();
        tokio::spawn(write_stdin(stdin, queued));
        if speaks_first {
            let ready = lines
                .next_line()
                .await
                .expect("stdout")
                .expect("a ready line");
            assert!(ready.contains(r#""method":"ready""#), "{ready}");
            lines_in
                .send("{\"method\":\"ready_ack\"}\n".to_owned())
                .expect("stdin");
        }
        PipeLink {
            _child: child,
            lines_in,
            lines,
            input: String::new(),
        }
    }
}

impl Link for PipeLink {
    async fn send(&mut self, id: u64) {
        let line = format!(
            "{{\"method\":\"invoke\",\"params\":{{\"id\":\"{id}\",\"action\":\"echo\",\"input\":{}}}}}\n",
            self.input
        );
        self.lines_in.send(line).expect("the child's stdin");
    }

    async fn recv(&mut self) -> u64 {
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .expect("stdout")
                .expect("the child stays");
            let frame: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            if frame["method"] == "result" {
                assert!(frame["params"]["output"].is_string(), "{line}");
                let id = frame["params"]["id"].as_str().expect("an id");
                return id.parse().expect("a numeric id");
            }
        }
    }
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let echo = binaries::example("echo");
    let raw = binaries::bench_bin("raw-line-echo");
    let mut spoke_link = PipeLink::spawn(&echo, &["stdio"], true).await;
    let mut raw_link = PipeLink::spawn(&raw, &[], false).await;
    for (size, size_name) in SIZES {
        let input = String::from_utf8(echo_input(size)).expect("ASCII");
        spoke_link.input.clone_from(&input);
        raw_link.input = input;
        for window in IN_FLIGHT {
            let calls = opts.calls(window) / 2;
            drive(&mut spoke_link, calls / 4 + 1, window).await;
            drive(&mut raw_link, calls / 4 + 1, window).await;
            let (mut spoke_runs, mut raw_runs): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
            for _ in 0..opts.rounds {
                if !crate::spoke_only() {
                    raw_runs.push(drive(&mut raw_link, calls, window).await);
                }
                spoke_runs.push(drive(&mut spoke_link, calls, window).await);
            }
            let case = format!("{size_name}, {window} in flight");
            report.add_runs(
                PATH,
                &case,
                Runs {
                    throughput: Some(Target::RatioAtLeast { ratio: 0.7 }),
                    note: "baseline: a child answering the same lines with serde_json".to_owned(),
                    ..Runs::new(&spoke_runs, &raw_runs, "calls/s")
                },
            );
        }
    }
}
