//! Process tests of `<bin> stdio`: the real example binaries with piped
//! stdin and stdout, the way a supervisor or LibreFang runs them. Every wait
//! is bounded; a stuck child is killed when its guard drops.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::example;
use common::frames::{error_code, fixture, invoke, result_ok};
use common::sidecar::Sidecar;
use serde_json::{Value, json};

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
        // One frame, the reason, and no `ready`: the host's last error says why.
        let [frame] = &frames[..] else {
            panic!("one error frame: {frames:?}")
        };
        assert_eq!(frame["method"], "error", "{frame}");
        let message = frame["params"]["message"].as_str().unwrap();
        assert!(message.contains(var), "{var}: {message}");
        assert!(
            stderr.lock().unwrap().contains(message),
            "{var}: the same message on stderr: {}",
            stderr.lock().unwrap()
        );
    }
}

#[test]
fn a_config_error_exits_2_after_one_error_frame_and_no_ready() {
    let sidecar = Sidecar::start("files", &[], &[]);
    let stderr = Arc::clone(&sidecar.stderr);
    let (status, frames) = sidecar.exit();
    assert_eq!(status.code(), Some(2));
    let message = "invalid configuration for connector `files` (1 problem):\n  - `root` (env FILES_ROOT): required but not set";
    assert_eq!(
        frames,
        [json!({"method": "error", "params": {"message": message}})]
    );
    assert!(
        stderr.lock().unwrap().contains(message),
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
                {"key": "ECHO_CHANNEL_PREFIX", "label": "Prefix", "type": "text", "required": false, "placeholder": "echo: ", "advanced": false},
                {"key": "ECHO_CHANNEL_MAX_ECHOES", "label": "Max Echoes", "type": "number", "required": false, "placeholder": "100", "advanced": true},
            ])
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
