//! Process tests of `<bin> stdio`: the real example binaries with piped
//! stdin and stdout, the way a supervisor or LibreFang runs them. Every wait
//! is bounded; a stuck child is killed when its guard drops.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ChildGuard, example};
use serde_json::{Value, json};

/// The longest a test waits for one frame or for an exit.
const LIMIT: Duration = Duration::from_secs(20);

/// A connector binary running `stdio`, seen from its host.
struct Sidecar {
    process: ChildGuard,
    stdin: Option<ChildStdin>,
    frames: Receiver<(Instant, Value)>,
    stderr: Arc<Mutex<String>>,
}

impl Sidecar {
    fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Sidecar {
        let mut cmd = example(name);
        cmd.arg("stdio")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the sidecar");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut err_pipe = child.stderr.take().expect("stderr");
        let (tx, frames) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let frame =
                    serde_json::from_str(&line).unwrap_or_else(|_| json!({"not json": line}));
                if tx.send((Instant::now(), frame)).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Sidecar {
            process: ChildGuard { child },
            stdin,
            frames,
            stderr,
        }
    }

    /// Starts it and reads its `ready` frame.
    fn ready(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Sidecar, Value) {
        let mut sidecar = Sidecar::start(name, args, env);
        let ready = sidecar.frame();
        assert_eq!(ready["method"], "ready", "first frame: {ready}");
        (sidecar, ready)
    }

    /// Starts it, reads `ready` and acknowledges it.
    fn acked(name: &str) -> Sidecar {
        let (mut sidecar, _) = Sidecar::ready(name, &[], &[]);
        sidecar.send(&json!({"method": "ready_ack"}));
        sidecar
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    fn send(&mut self, frame: &Value) {
        let mut line = serde_json::to_vec(frame).unwrap();
        line.push(b'\n');
        self.write(&line);
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next frame with when it arrived; fails after [`LIMIT`].
    fn timed_frame(&mut self) -> (Instant, Value) {
        match self.frames.recv_timeout(LIMIT) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no frame within {LIMIT:?}; stderr:\n{}", self.stderr())
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "stdout ended while a frame was expected; stderr:\n{}",
                    self.stderr()
                )
            }
        }
    }

    fn frame(&mut self) -> Value {
        self.timed_frame().1
    }

    /// The next frame if one comes within `wait`.
    fn frame_within(&mut self, wait: Duration) -> Option<Value> {
        self.frames.recv_timeout(wait).ok().map(|(_, f)| f)
    }

    /// Waits for the exit; returns its status and every frame not read yet.
    fn exit(mut self) -> (ExitStatus, Vec<Value>) {
        let status = self
            .process
            .wait_for(LIMIT)
            .unwrap_or_else(|| panic!("did not exit within {LIMIT:?}; stderr:\n{}", self.stderr()));
        let mut rest = Vec::new();
        while let Ok((_, frame)) = self.frames.recv_timeout(Duration::from_secs(5)) {
            rest.push(frame);
        }
        (status, rest)
    }

    /// Closes stdin and expects exit code 0; returns the frames not read yet.
    fn finish(mut self) -> Vec<Value> {
        self.close_stdin();
        let stderr = Arc::clone(&self.stderr);
        let (status, rest) = self.exit();
        assert_eq!(
            status.code(),
            Some(0),
            "exit status {status:?}; stderr:\n{}",
            stderr.lock().unwrap()
        );
        rest
    }
}

fn invoke(id: &str, action: &str, input: Value) -> Value {
    json!({"method": "invoke", "params": {"id": id, "action": action, "input": input}})
}

fn result_ok(id: &str, output: Value) -> Value {
    json!({"method": "result", "params": {"id": id, "output": output}})
}

#[track_caller]
fn error_code(frame: &Value, id: &str) -> String {
    assert_eq!(frame["method"], "result", "{frame}");
    assert_eq!(frame["params"]["id"], id, "{frame}");
    frame["params"]["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error result: {frame}"))
        .to_owned()
}

fn fixture(kind: &str, name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/librefang/{kind}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path} is missing: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

// -------------------------------------------------------------------- echo

#[test]
fn echo_serves_invokes_over_stdio() {
    let (mut echo, ready) = Sidecar::ready("echo", &[], &[]);
    let p = &ready["params"];
    assert_eq!(p["protocol_version"], 1);
    assert_eq!(p["capabilities"], json!([]));
    assert_eq!(p["account_id"], "echo");
    assert_eq!(p["spoke"]["name"], "echo");
    assert_eq!(p["spoke"]["actions"], json!(["echo"]));
    assert_eq!(p["manifest"]["name"], "echo");
    assert_eq!(p["manifest"]["actions"][0]["name"], "echo");
    echo.send(&json!({"method": "ready_ack"}));
    echo.send(&invoke("1", "echo", json!({"text": "hello"})));
    assert_eq!(echo.frame(), result_ok("1", json!("hello")));
    assert!(echo.finish().is_empty());
}

#[test]
fn the_environment_configures_the_session() {
    let (echo, ready) = Sidecar::ready(
        "echo",
        &[],
        &[("SPOKE_ACCOUNT_ID", "bot-9"), ("ECHO_PREFIX", "> ")],
    );
    assert_eq!(ready["params"]["account_id"], "bot-9");
    let mut echo = echo;
    echo.send(&json!({"method": "ready_ack"}));
    echo.send(&invoke("1", "echo", json!({"text": "hi"})));
    assert_eq!(echo.frame(), result_ok("1", json!("> hi")));
    echo.finish();

    for (var, value) in [
        ("SPOKE_MAX_IN_FLIGHT", "none"),
        ("SPOKE_STDIO_MAX_LINE", "0"),
        ("SPOKE_SHUTDOWN_GRACE", "soon"),
    ] {
        let sidecar = Sidecar::start("echo", &[], &[(var, value)]);
        let stderr = Arc::clone(&sidecar.stderr);
        let (status, frames) = sidecar.exit();
        assert_eq!(status.code(), Some(2), "{var}={value}");
        assert!(frames.is_empty(), "nothing on stdout: {frames:?}");
        assert!(
            stderr.lock().unwrap().contains(var),
            "{var}: {}",
            stderr.lock().unwrap()
        );
    }
}

#[test]
fn a_config_error_exits_2_before_any_frame() {
    let sidecar = Sidecar::start("files", &[], &[]);
    let stderr = Arc::clone(&sidecar.stderr);
    let (status, frames) = sidecar.exit();
    assert_eq!(status.code(), Some(2));
    assert!(frames.is_empty(), "{frames:?}");
    assert!(
        stderr.lock().unwrap().contains("FILES_ROOT"),
        "{}",
        stderr.lock().unwrap()
    );
}

#[test]
fn concurrent_invokes_are_answered_out_of_order_each_once() {
    let mut faults = Sidecar::acked("faults");
    faults.send(&invoke("slow", "sleep", json!({"ms": 1500})));
    faults.send(&invoke("mid", "sleep", json!({"ms": 700})));
    faults.send(&invoke("now", "add", json!({"a": 1, "b": 2})));
    let mut results = Vec::new();
    while results.len() < 3 {
        let frame = faults.frame();
        match frame["method"].as_str() {
            // `sleep` says `sleeping` first.
            Some("event") => assert_eq!(frame["params"]["event"]["name"], "sleeping"),
            Some("result") => results.push(frame),
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert_eq!(
        results,
        [
            result_ok("now", json!(3)),
            result_ok("mid", json!({"slept_ms": 700})),
            result_ok("slow", json!({"slept_ms": 1500})),
        ]
    );
    assert!(faults.finish().is_empty(), "each id answered once");
}

#[test]
fn cancel_and_deadline_ms() {
    let mut faults = Sidecar::acked("faults");
    faults.send(&invoke("c", "sleep", json!({"ms": 30_000})));
    let started = faults.frame();
    assert_eq!(
        started,
        json!({"method": "event", "params": {"id": "c", "event": {
            "request_id": "c", "action": "sleep", "type": "custom", "name": "sleeping", "data": {"ms": 30000}
        }}})
    );
    let sent = Instant::now();
    faults.send(&json!({"method": "cancel", "params": {"id": "c"}}));
    let frame = faults.frame();
    assert_eq!(error_code(&frame, "c"), "cancelled");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );

    let sent = Instant::now();
    faults.send(&json!({"method": "invoke", "params": {"id": "d", "action": "stubborn", "input": {"ms": 30_000}, "deadline_ms": 300}}));
    assert_eq!(faults.frame()["method"], "event");
    assert_eq!(error_code(&faults.frame(), "d"), "deadline_exceeded");
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(faults.finish().is_empty());
}

#[test]
fn bad_lines_unknown_methods_and_oversized_lines_do_not_stop_it() {
    let (mut echo, _) = Sidecar::ready("echo", &["--max-line-bytes", "1024"], &[]);
    echo.send(&json!({"method": "ready_ack"}));
    echo.write(b"this is not json\n");
    let frame = echo.frame();
    assert_eq!(frame["method"], "error");
    assert!(
        frame["params"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2: not valid JSON"),
        "{frame}"
    );
    echo.send(&json!({"method": "frobnicate", "params": {"x": 1}}));
    // 300 KB on one line, written in pieces.
    let piece = vec![b'x'; 30_000];
    for _ in 0..10 {
        echo.write(&piece);
    }
    echo.write(b"\n");
    assert_eq!(
        echo.frame(),
        json!({"method": "error", "params": {"message": "line 4: longer than 1024 bytes; skipped"}})
    );
    echo.send(&invoke("1", "echo", json!({"text": "still serving"})));
    // The unknown method got no reply: the next frame is the result.
    assert_eq!(echo.frame(), result_ok("1", json!("still serving")));
    assert!(echo.finish().is_empty());
}

#[test]
fn shutdown_drains_in_flight_work_and_exits_0() {
    let mut faults = Sidecar::acked("faults");
    faults.send(&invoke("long", "sleep", json!({"ms": 800})));
    assert_eq!(faults.frame()["method"], "event");
    faults.send(&json!({"method": "shutdown"}));
    faults.send(&invoke("late", "add", json!({"a": 1, "b": 1})));
    assert_eq!(
        faults.frame(),
        json!({"method": "result", "params": {"id": "late", "error": {
            "code": "unavailable", "message": "connector is shutting down", "details": {"started": false}
        }}})
    );
    assert_eq!(faults.frame(), result_ok("long", json!({"slept_ms": 800})));
    // stdin is still open: the shutdown frame alone ends the process.
    let (status, rest) = faults.exit();
    assert_eq!(status.code(), Some(0));
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn the_end_of_stdin_exits_0() {
    let echo = Sidecar::acked("echo");
    let started = Instant::now();
    assert!(echo.finish().is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn ready_is_resent_until_ready_ack() {
    let mut echo = Sidecar::start("echo", &[], &[]);
    let (first_at, first) = echo.timed_frame();
    assert_eq!(first["method"], "ready");
    let (second_at, second) = echo.timed_frame();
    assert_eq!(second, first);
    let gap = second_at - first_at;
    assert!(
        gap >= Duration::from_millis(1500) && gap <= Duration::from_millis(3500),
        "re-sent after {gap:?}"
    );
    echo.send(&json!({"method": "ready_ack"}));
    // A re-send already on its way may still arrive just after the ack; none after that.
    let late = echo.frame_within(Duration::from_millis(500));
    assert!(late.is_none() || late == Some(first.clone()), "{late:?}");
    assert_eq!(echo.frame_within(Duration::from_millis(4500)), None);
    assert!(echo.finish().is_empty());
}

// ------------------------------------------------------------ echo_channel

#[test]
fn echo_channel_answers_send_full_with_a_message() {
    let (mut channel, ready) = Sidecar::ready("echo_channel", &[], &[]);
    assert_eq!(
        ready["params"]["capabilities"],
        json!(["typing", "thread", "streaming"])
    );
    channel.send(&fixture("commands", "ready_ack"));
    channel.send(&fixture("commands", "typing"));
    channel.send(&fixture("commands", "send_full"));
    assert_eq!(
        channel.frame(),
        json!({"method": "message", "params": {
            "user_id": "c1", "user_name": "Alice",
            "text": "echo: hello", "content": {"Text": "echo: hello"},
            "channel_id": "c1", "platform": "echo_channel", "thread_id": "t1"
        }})
    );
    channel.send(&fixture("commands", "heartbeat"));
    channel.send(&fixture("commands", "stream_start_threaded"));
    channel.send(&fixture("commands", "stream_delta"));
    channel.send(&json!({"method": "stream_delta", "params": {"stream_id": "s1", "text": "lo"}}));
    channel.send(&fixture("commands", "stream_end"));
    let frame = channel.frame();
    assert_eq!(frame["method"], "message", "{frame}");
    assert_eq!(frame["params"]["text"], "echo: Hello");
    assert_eq!(frame["params"]["thread_id"], "t1");
    channel.send(&fixture("commands", "shutdown"));
    let (status, rest) = channel.exit();
    assert_eq!(status.code(), Some(0));
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn echo_channel_answers_an_invoke_of_send_with_an_event_frame() {
    // A Spoke host (the hub's bridge) calls `send` with an id: the message
    // is an `event` frame with that id, which the host relays to its caller.
    let mut channel = Sidecar::acked("echo_channel");
    let send = fixture("commands", "send_full")["params"].clone();
    channel.send(&invoke("s1", "send", send));
    assert_eq!(
        channel.frame(),
        json!({"method": "event", "params": {"id": "s1", "event": {
            "request_id": "s1", "action": "send", "type": "custom", "name": "librefang",
            "data": {"method": "message", "params": {
                "user_id": "c1", "user_name": "Alice",
                "text": "echo: hello", "content": {"Text": "echo: hello"},
                "channel_id": "c1", "platform": "echo_channel", "thread_id": "t1"
            }}
        }}})
    );
    assert_eq!(channel.frame(), result_ok("s1", Value::Null));
    assert!(channel.finish().is_empty());
}

#[test]
fn a_failing_librefang_action_is_an_error_frame() {
    let mut channel = Sidecar::acked("echo_channel");
    channel.send(&json!({"method": "stream_delta", "params": {"stream_id": "s9", "text": "x"}}));
    assert_eq!(
        channel.frame(),
        json!({"method": "error", "params": {"message": "stream_delta: no stream `s9`"}})
    );
    channel.send(&json!({"method": "send", "params": {"channel_id": "c1"}}));
    let frame = channel.frame();
    assert_eq!(frame["method"], "error");
    assert!(
        frame["params"]["message"]
            .as_str()
            .unwrap()
            .starts_with("send: $.text: missing field `text`"),
        "{frame}"
    );
    // Still serving.
    channel.send(&fixture("commands", "send_minimal"));
    assert_eq!(channel.frame()["params"]["text"], "echo: hi");
    assert!(channel.finish().is_empty());
}

#[test]
fn echo_channel_describes_itself_with_stdin_closed() {
    let started = Instant::now();
    // LibreFang appends `--describe` to a sidecar's configured arguments.
    for args in [&["--describe"][..], &["describe"], &["stdio", "--describe"]] {
        let out =
            common::run_with_limit(example("echo_channel").args(args), Duration::from_secs(5));
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
        let doc = common::stdout_json(&out);
        assert_eq!(doc["name"], "echo_channel", "{args:?}");
        assert_eq!(
            doc["fields"],
            json!([
                {"key": "prefix", "label": "Prefix", "type": "text", "required": false, "placeholder": "echo: ", "advanced": false},
                {"key": "max_echoes", "label": "Max Echoes", "type": "number", "required": false, "placeholder": "", "advanced": true},
            ])
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
