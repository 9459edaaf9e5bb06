//! Path 10: `tools/call` over MCP stdio. The echo example serving its
//! actions as MCP tools (`echo mcp`, a child process), against a minimal
//! rmcp server with one hand-written `echo` tool (`raw-mcp-echo`, a child
//! process too, same rmcp version and transport). The client is the same
//! for both: the MCP handshake (`initialize` at protocol 2025-06-18, then
//! `notifications/initialized`), then `tools/call` requests of `echo` as
//! newline-delimited JSON-RPC with a fixed number in flight, each answer
//! matched to its request by id and checked.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::payload::echo_input;
use crate::report::{Report, Runs, Target};
use crate::stats::{Run, cpu_us};
use crate::stdio_pipes::write_stdin;
use crate::{Opts, binaries};

const PATH: &str = "10 mcp stdio";

/// The protocol revision the client asks for (a handshake revision).
const PROTOCOL: &str = "2025-06-18";

/// The calls-in-flight levels.
const IN_FLIGHT: [usize; 2] = [1, 16];

/// The size of the tool's arguments, `{"text":"aaa…"}`.
const SIZE: usize = 64;

/// A side's round stops sending here whatever happens (the calls answered
/// so far count).
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// The longest the client waits for any one answer before it gives up.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// An MCP server under test: a child process over its stdin and stdout,
/// killed when dropped.
struct McpLink {
    _child: Child,
    pid: u32,
    name: &'static str,
    /// To the task that writes the child's stdin (lines queued behind one go
    /// out in the same write).
    lines_in: mpsc::UnboundedSender<String>,
    lines: Lines<BufReader<ChildStdout>>,
    /// The arguments every call sends, as JSON text.
    arguments: String,
    /// The structured content every answer must carry.
    expected: Value,
    /// Request ids are unique for the whole session: each call's is this
    /// plus its number in the round.
    id_base: u64,
}

/// The fields of an answer the client checks.
#[derive(Deserialize)]
struct Answer {
    id: Option<u64>,
    result: Option<ToolResult>,
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult {
    structured_content: Option<Value>,
    is_error: Option<bool>,
}

impl McpLink {
    /// Starts `program args` and does the handshake.
    async fn start(name: &'static str, program: &Path, args: &[&str]) -> McpLink {
        let mut child = Command::new(program)
            .args(args)
            // `<echo> mcp` logs at `info` unless told otherwise, as it
            // would run for an agent; nothing is logged per call.
            .env_remove("RUST_LOG")
            .env_remove("SPOKE_MCP_TIMEOUT")
            .env_remove("SPOKE_MAX_IN_FLIGHT")
            .env_remove("ECHO_PREFIX")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Its logs, marked with its name, drained to the end so that the
        // child never waits on a full pipe.
        let mut logs = BufReader::new(child.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = logs.next_line().await {
                eprintln!("  [{name}] {line}");
            }
        });
        let (lines_in, queued) = mpsc::unbounded_channel();
        tokio::spawn(write_stdin(stdin, queued));
        let input = String::from_utf8(echo_input(SIZE)).expect("ASCII");
        let text: Value = serde_json::from_str::<Value>(&input).expect("JSON")["text"].clone();
        let mut link = McpLink {
            pid: child.id().expect("the child's pid"),
            _child: child,
            name,
            lines_in,
            lines,
            arguments: input,
            expected: json!({ "result": text }),
            id_base: 1,
        };
        link.handshake().await;
        link
    }

    fn write(&self, line: String) {
        self.lines_in.send(line).expect("the child's stdin");
    }

    async fn read(&mut self) -> String {
        let name = self.name;
        tokio::time::timeout(ANSWER_LIMIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer within {ANSWER_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("{name}: reading its stdout: {e}"))
            .unwrap_or_else(|| panic!("{name}: ended (stdout closed)"))
    }

    /// `initialize`, its answer checked, then `notifications/initialized`;
    /// then `tools/list` must list `echo`.
    async fn handshake(&mut self) {
        let name = self.name;
        let initialize = json!({
            "jsonrpc": "2.0", "id": "initialize", "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "spoke-bench", "version": "0.1.0"},
            },
        });
        self.write(format!("{initialize}\n"));
        let line = self.read().await;
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{name}: the initialize answer is not JSON ({e}): {line}"));
        assert_eq!(answer["id"], "initialize", "{name}: {line}");
        assert_eq!(
            answer["result"]["protocolVersion"], PROTOCOL,
            "{name}: {line}"
        );
        assert!(
            answer["result"]["capabilities"]["tools"].is_object(),
            "{name}: {line}"
        );
        self.write("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n".to_owned());
        self.write("{\"jsonrpc\":\"2.0\",\"id\":\"list\",\"method\":\"tools/list\"}\n".to_owned());
        let line = self.read().await;
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{name}: the tools/list answer is not JSON ({e}): {line}"));
        assert_eq!(answer["id"], "list", "{name}: {line}");
        let tools = answer["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: tools/list: {line}"));
        assert!(
            tools.iter().any(|t| t["name"] == "echo"),
            "{name}: no echo tool: {line}"
        );
    }

    /// Sends call `n` of the round.
    fn send(&self, n: u64) {
        self.write(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{}}}}}\n",
            self.id_base + n,
            self.arguments
        ));
    }

    /// The next answer, checked: a success whose structured content is the
    /// echo of the arguments. Its call's number in the round.
    async fn recv(&mut self) -> u64 {
        let name = self.name;
        let line = self.read().await;
        let answer: Answer = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{name}: not a JSON-RPC answer ({e}): {line}"));
        let (Some(id), Some(result), None) = (answer.id, answer.result, answer.error) else {
            panic!("{name}: not a successful answer: {line}");
        };
        assert_eq!(result.is_error, Some(false), "{name}: {line}");
        assert_eq!(
            result.structured_content.as_ref(),
            Some(&self.expected),
            "{name}: wrong structured content: {line}"
        );
        id.checked_sub(self.id_base)
            .unwrap_or_else(|| panic!("{name}: an answer to an earlier round: {line}"))
    }
}

/// Up to `calls` calls over `link`, `window` at a time (a new call goes out
/// each time an answer comes back); no new call after [`ROUND_LIMIT`].
async fn drive(link: &mut McpLink, calls: u64, window: usize) -> Run {
    let mut sent_at: Vec<Option<Instant>> = vec![None; calls as usize];
    let mut latencies = Vec::with_capacity(calls as usize);
    let started = Instant::now();
    let deadline = started + ROUND_LIMIT;
    let mut next = 0u64;
    let mut in_flight = 0usize;
    while next < calls && in_flight < window {
        sent_at[next as usize] = Some(Instant::now());
        link.send(next);
        next += 1;
        in_flight += 1;
    }
    while in_flight > 0 {
        let n = link.recv().await;
        let at = sent_at
            .get_mut(n as usize)
            .and_then(Option::take)
            .unwrap_or_else(|| panic!("{}: an answer to call {n}, not in flight", link.name));
        latencies.push(at.elapsed());
        in_flight -= 1;
        if next < calls && Instant::now() < deadline {
            sent_at[next as usize] = Some(Instant::now());
            link.send(next);
            next += 1;
            in_flight += 1;
        }
    }
    let elapsed = started.elapsed();
    link.id_base += calls;
    Run::of_round(link.name, calls, ROUND_LIMIT, elapsed, latencies)
}

/// A measured round and the CPU time it cost the server, in microseconds.
struct Measured {
    run: Run,
    server_cpu: f64,
}

async fn measured(link: &mut McpLink, calls: u64, window: usize) -> Measured {
    let pid = link.pid.to_string();
    let at = cpu_us(&pid);
    let run = drive(link, calls, window).await;
    Measured {
        server_cpu: cpu_us(&pid) - at,
        run,
    }
}

/// Server CPU per call over all rounds, in microseconds.
fn cpu_per_call(rounds: &[Measured]) -> f64 {
    let answered: u64 = rounds.iter().map(|m| m.run.calls).sum();
    rounds.iter().map(|m| m.server_cpu).sum::<f64>() / answered as f64
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let echo = binaries::example("echo");
    let raw = binaries::bench_bin("raw-mcp-echo");
    let mut spoke = McpLink::start("echo mcp", &echo, &["mcp"]).await;
    let mut baseline = McpLink::start("raw-mcp-echo", &raw, &[]).await;
    for window in IN_FLIGHT {
        let calls = opts.calls(window);
        drive(&mut spoke, calls / 4 + 1, window).await;
        drive(&mut baseline, calls / 4 + 1, window).await;
        let (mut spoke_rounds, mut raw_rounds): (Vec<Measured>, Vec<Measured>) =
            (Vec::new(), Vec::new());
        for i in 0..opts.rounds {
            // Which goes first alternates, so neither always follows the other.
            if i % 2 == 1 {
                spoke_rounds.push(measured(&mut spoke, calls, window).await);
            }
            if !crate::spoke_only() {
                raw_rounds.push(measured(&mut baseline, calls, window).await);
            }
            if i % 2 == 0 {
                spoke_rounds.push(measured(&mut spoke, calls, window).await);
            }
        }
        let (spoke_cpu, raw_cpu) = (cpu_per_call(&spoke_rounds), cpu_per_call(&raw_rounds));
        let spoke_runs: Vec<Run> = spoke_rounds.into_iter().map(|m| m.run).collect();
        let raw_runs: Vec<Run> = raw_rounds.into_iter().map(|m| m.run).collect();
        let case = format!("echo 64 B, {window} in flight");
        report.add_runs(
            PATH,
            &case,
            Runs {
                throughput: Some(Target::RatioAtLeast { ratio: 0.8 }),
                note: format!(
                    "`echo mcp` (a child process), tools/call of echo over stdio (protocol \
                     {PROTOCOL}), {calls} calls per round, {window} in flight, median of {} \
                     rounds; baseline: `raw-mcp-echo`, a child serving one hand-written rmcp tool",
                    opts.rounds
                ),
                ..Runs::new(&spoke_runs, &raw_runs, "calls/s")
            },
        );
        report
            .add(PATH, &case, "server cpu per call", "us", spoke_cpu)
            .baseline(raw_cpu)
            .note(
                "user + system CPU time of the server process (/proc/<pid>/stat, clock-tick \
                 resolution) over all measured rounds, divided by the calls answered",
            );
    }
}
