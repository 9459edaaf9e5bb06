//! LibreFang running a Spoke connector as a sidecar channel, as it really
//! does: the values an operator types into the `--describe` form reach the
//! connector, a file sent whole (a line of some 20 MB) is delivered, the
//! `ready` frame's `account_id` is the channel's name, and a connector that
//! cannot start says why on stdout. The real example binaries, with piped
//! stdin and stdout; every wait is bounded.
//!
//! How LibreFang behaves here is taken from its source (`librefang-api`'s
//! `configure_sidecar_channel` and `SidecarForm`, `librefang-channels`'
//! `sidecar.rs`): each form value is trimmed and, when not empty, stored as
//! an environment variable named by the field's `key`; every input but
//! `select` is a text box; a `send` with a file carries the file's bytes as a
//! JSON array of numbers, twice (in `content`, and in `text` as that
//! content's JSON); it reads event lines up to 64 MiB.

mod common;

use std::time::{Duration, Instant};

use common::frames::fixture;
use common::sidecar::Sidecar;
use common::{example, run_with_limit, stderr, stdout, stdout_json};
use serde_json::{Value, json};

/// What an operator types into LibreFang's form for `--describe`'s fields,
/// by label: the environment LibreFang spawns the sidecar with.
fn typed_into_the_form(connector: &str, typed: &[(&str, &str)]) -> Vec<(String, String)> {
    let out = run_with_limit(example(connector).arg("--describe"), Duration::from_secs(5));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = stdout_json(&out);
    let fields = doc["fields"].as_array().expect("a form");
    typed
        .iter()
        .map(|(label, value)| {
            let field = fields
                .iter()
                .find(|f| f["label"] == *label)
                .unwrap_or_else(|| panic!("no field labelled {label}: {doc}"));
            let key = field["key"].as_str().expect("a key").to_owned();
            (key, value.trim().to_owned())
        })
        .collect()
}

/// Waits (bounded) until the sidecar's stderr contains `needle`.
#[track_caller]
fn wait_stderr(sidecar: &Sidecar, needle: &str) {
    let started = Instant::now();
    while !sidecar.stderr().contains(needle) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stderr never said {needle:?}:\n{}",
            sidecar.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn env_of(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn values_typed_into_the_describe_form_reach_the_connector() {
    let env = typed_into_the_form(
        "echo_channel",
        &[("Prefix", "FORM: "), ("Max Echoes", " 1 ")],
    );
    let (mut channel, _) = Sidecar::ready("echo_channel", &[], &env_of(&env));
    channel.send(&json!({"method": "ready_ack"}));
    channel.send(&fixture("commands", "send_minimal"));
    let message = channel.frame();
    assert_eq!(message["method"], "message", "{message}");
    // LibreFang trims what was typed: "FORM: " arrives as "FORM:".
    assert_eq!(message["params"]["text"], "FORM:hi", "{message}");
    // The advanced number field arrived too: one echo, then no more.
    channel.send(&fixture("commands", "send_minimal"));
    assert_eq!(
        channel.frame(),
        json!({"method": "error", "params": {"message": "send: echoed 1 times already; not echoing any more"}})
    );
    assert!(channel.finish().is_empty());
}

#[test]
fn a_required_field_filled_in_the_form_is_what_the_connector_checks() {
    let root = std::env::temp_dir().join(format!("spoke-form-root-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let root_text = root.display().to_string();
    let env = typed_into_the_form(
        "files",
        &[("Root directory", &root_text), ("Max Bytes", "2048")],
    );
    let out = run_with_limit(
        example("files").arg("check").envs(env_of(&env)),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    for line in [
        "root                 FILES_ROOT                   set",
        "max_bytes            FILES_MAX_BYTES              set",
    ] {
        assert!(report.contains(line), "{report}");
    }
    let _ = std::fs::remove_dir(&root);
}

/// A `send` as LibreFang writes it for a file sent whole.
fn send_with_file(data: &[u8], filename: &str) -> Vec<u8> {
    let content = json!({"FileData": {
        "data": data,
        "filename": filename,
        "mime_type": "application/octet-stream",
    }});
    let frame = json!({"method": "send", "params": {
        "channel_id": "c1",
        "text": content.to_string(),
        "content": content,
        "user": {"platform_id": "c1", "display_name": "Alice", "librefang_user": null},
    }});
    let mut line = serde_json::to_vec(&frame).unwrap();
    line.push(b'\n');
    line
}

/// The most memory the process has held at once, in bytes (Linux).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn a_file_sent_whole_in_a_20_mb_line_reaches_the_connector_in_bounded_memory() {
    // 2.9 MB of varied bytes: 1 to 3 digits each, as LibreFang writes them.
    let data: Vec<u8> = (0..2_900_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let line = send_with_file(&data, "big.bin");
    assert!(line.len() > 20_000_000, "{} bytes", line.len());

    // The default line limit, as LibreFang spawns it.
    let (mut channel, _) = Sidecar::ready("echo_channel", &[], &[]);
    channel.send(&json!({"method": "ready_ack"}));
    channel.write(&line);
    let message = channel.frame();
    assert_eq!(
        message["params"]["text"], "echo: file `big.bin` (2900000 bytes, application/octet-stream)",
        "{message}"
    );
    // Decoded straight from the line: not a `Value` per byte (some 32 bytes
    // each, twice: over 250 MB), nor a second copy of the line.
    if let Some(peak) = peak_rss(channel.process.child.id()) {
        assert!(
            peak < 120 * 1024 * 1024,
            "the connector held {} MiB for a {} MiB line",
            peak >> 20,
            line.len() >> 20
        );
    }
    // Still serving, one line after the other.
    for _ in 0..3 {
        channel.write(&line);
        assert_eq!(channel.frame()["method"], "message");
    }
    channel.send(&fixture("commands", "send_minimal"));
    assert_eq!(channel.frame()["params"]["text"], "echo: hi");
    if let Some(peak) = peak_rss(channel.process.child.id()) {
        assert!(peak < 120 * 1024 * 1024, "{} MiB", peak >> 20);
    }
    assert!(channel.finish().is_empty());
}

#[test]
fn a_line_over_the_limit_is_refused_on_the_wire_and_the_next_is_served() {
    let line = send_with_file(&[7; 1000], "small.bin");
    // One byte short of the line (its `\n` does not count).
    let limit = (line.len() - 2).to_string();
    let (mut channel, _) = Sidecar::ready("echo_channel", &[], &[("SPOKE_STDIO_MAX_LINE", &limit)]);
    channel.send(&json!({"method": "ready_ack"}));
    channel.write(&line);
    assert_eq!(
        channel.frame(),
        json!({"method": "error", "params": {"message": format!("line 2: longer than {limit} bytes; skipped")}})
    );
    channel.send(&fixture("commands", "send_minimal"));
    assert_eq!(channel.frame()["params"]["text"], "echo: hi");
    assert!(channel.finish().is_empty());
}

#[test]
fn account_id_is_the_channel_name_set_by_the_operator_else_the_connector_name() {
    // LibreFang tells the child nothing of its configured name; the operator
    // sets it in the channel's `env` table.
    let (channel, ready) =
        Sidecar::ready("echo_channel", &[], &[("SPOKE_ACCOUNT_ID", "support-bot")]);
    assert_eq!(ready["params"]["account_id"], "support-bot");
    wait_stderr(&channel, "account_id from SPOKE_ACCOUNT_ID");
    assert!(channel.finish().iter().all(|f| f["method"] == "ready"));

    let (channel, ready) = Sidecar::ready("echo_channel", &[], &[]);
    assert_eq!(ready["params"]["account_id"], "echo_channel");
    wait_stderr(&channel, "set SPOKE_ACCOUNT_ID to it if they differ");
    assert!(channel.finish().iter().all(|f| f["method"] == "ready"));
}

/// Starts a connector that cannot start; returns its one frame's message
/// (also asserting exit code 2, no `ready`, and the same message on stderr).
#[track_caller]
fn start_failure(connector: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let sidecar = Sidecar::start(connector, args, env);
    let err = std::sync::Arc::clone(&sidecar.stderr);
    let (status, frames) = sidecar.exit();
    assert_eq!(status.code(), Some(2), "{frames:?}");
    let [frame] = &frames[..] else {
        panic!("exactly one frame, the error: {frames:?}")
    };
    assert_eq!(frame["method"], "error", "{frame}");
    assert_eq!(
        frame["params"].as_object().map(|p| p.len()),
        Some(1),
        "{frame}"
    );
    let message = frame["params"]["message"]
        .as_str()
        .expect("a message")
        .to_owned();
    let started = Instant::now();
    while !err.lock().unwrap().contains(&message) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stderr does not say {message:?}: {}",
            err.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    message
}

#[test]
fn a_connector_that_cannot_start_says_why_on_the_wire() {
    // Every problem of the configuration, with its field and variable.
    let message = start_failure(
        "files",
        &[],
        &[("FILES_MAX_BYTES", "much"), ("SPOKE_ACCOUNT_ID", "x")],
    );
    assert_eq!(
        message,
        "invalid configuration for connector `files` (2 problems):\n  \
         - `root` (env FILES_ROOT): required but not set\n  \
         - `max_bytes` (env FILES_MAX_BYTES): invalid value \"much\": invalid digit found in string"
    );
    // The init hook's failure.
    let message = start_failure(
        "files",
        &[],
        &[("FILES_ROOT", "/nonexistent/spoke-test-dir")],
    );
    assert!(
        message.starts_with("connector `files` failed to initialise: "),
        "{message}"
    );
    assert!(message.contains("/nonexistent/spoke-test-dir"), "{message}");
    // A bad setting of the transport itself.
    let message = start_failure("echo_channel", &[], &[("SPOKE_MAX_IN_FLIGHT", "many")]);
    assert!(message.contains("SPOKE_MAX_IN_FLIGHT"), "{message}");
    // Arguments the command line refuses.
    let message = start_failure("echo_channel", &["--max-line-bytes", "0"], &[]);
    assert!(
        message.starts_with("invalid value '0' for '--max-line-bytes <BYTES>'"),
        "{message}"
    );
    // A config file that cannot be read.
    let message = start_failure(
        "echo_channel",
        &["--config", "/nonexistent/config.json"],
        &[],
    );
    assert!(
        message.starts_with("cannot read config file `/nonexistent/config.json`"),
        "{message}"
    );
}

#[test]
fn describe_and_other_commands_write_no_error_frame() {
    // `check` reports on stderr only: it is not a sidecar session.
    let out = run_with_limit(
        example("files").arg("check").env("FILES_MAX_BYTES", "much"),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    let doc: Value = stdout_json(&run_with_limit(
        example("files").args(["stdio", "--describe"]),
        Duration::from_secs(5),
    ));
    assert_eq!(doc["name"], "files");
}
