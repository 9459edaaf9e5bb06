mod common;

// Process tests of the command line every connector binary gets, against the
// `echo` and `faults` examples: exit codes, the `error[<code>]: <message>` and
// `details: <json>` lines, `event: <json>` lines, deadlines, panics and
// Ctrl-C. Every process runs under a time limit.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{example, run, run_with_limit, stderr, stdout, stdout_json};
use serde_json::{Value, json};

// ---------------------------------------------------------------- helpers

/// Runs an example with these arguments (60 s limit).
fn cli(name: &str, args: &[&str]) -> Output {
    run(example(name).args(args))
}

/// Asserts the exit code, showing both streams when it differs.
#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// The one `error[<code>]: <message>` line of stderr, split into code and message.
#[track_caller]
fn error_line(out: &Output) -> (String, String) {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error[")).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one `error[..]` line in stderr:\n{err}"
    );
    let (code, message) = lines[0]["error[".len()..]
        .split_once("]: ")
        .unwrap_or_else(|| panic!("malformed error line: {}", lines[0]));
    (code.to_owned(), message.to_owned())
}

/// The `details: <json>` line of stderr, parsed (at most one may be present).
#[track_caller]
fn details(out: &Output) -> Option<Value> {
    let err = stderr(out);
    let lines: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("details: "))
        .collect();
    assert!(lines.len() <= 1, "several details lines:\n{err}");
    lines.first().map(|l| {
        serde_json::from_str(l).unwrap_or_else(|e| panic!("details are not JSON ({e}): {l}"))
    })
}

/// The `event: <json>` lines of some stderr text, parsed, in order.
#[track_caller]
fn events_in(err: &str) -> Vec<Value> {
    err.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event is not JSON ({e}): {l}")))
        .collect()
}

/// Asserts a failed action: exit 1, nothing on stdout, this error code; returns the message.
#[track_caller]
fn action_error(out: &Output, code: &str) -> String {
    assert_exit(out, 1);
    assert_eq!(stdout(out), "", "a failed call prints nothing on stdout");
    let (got, message) = error_line(out);
    assert_eq!(got, code, "stderr: {}", stderr(out));
    message
}

/// Asserts a usage, config or start-up error: exit 2, nothing on stdout; returns stderr.
#[track_caller]
fn usage_error(out: &Output) -> String {
    assert_exit(out, 2);
    assert_eq!(stdout(out), "", "a usage error prints nothing on stdout");
    stderr(out)
}

/// Asserts the process ended by itself rather than being killed by a signal (abort, SIGINT).
#[track_caller]
fn assert_not_signalled(out: &Output) {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            None,
            "killed by a signal: {:?}",
            out.status
        );
    }
    assert!(
        out.status.code().is_some(),
        "no exit code: {:?}",
        out.status
    );
}

/// Waits for a spawned child, draining its pipes; kills it and fails after `limit`.
fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Runs the command with `input` on its stdin (60 s limit).
fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin); // EOF
    wait_with_limit(child, Duration::from_secs(60))
}

/// Keys named like references anywhere in `value`, as JSON pointers.
fn refs_in(value: &Value, at: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{at}/{key}");
                if ["$ref", "$defs", "definitions", "$dynamicRef"].contains(&key.as_str()) {
                    found.push(here.clone());
                }
                refs_in(child, &here, found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                refs_in(child, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

#[track_caller]
fn assert_no_refs(value: &Value) {
    let mut found = Vec::new();
    refs_in(value, "", &mut found);
    assert!(
        found.is_empty(),
        "schemas must be self-contained, found {found:?}"
    );
}

/// What an interrupted `call` left behind.
struct Interrupted {
    out: Output,
    /// From just before SIGINT was sent to the process's exit.
    after_signal: Duration,
}

/// Starts `faults call <action> <input>`, waits for its `sleeping` event (so
/// the action, and the CLI's Ctrl-C handler, are running), sends SIGINT with
/// the `kill` command and waits (10 s limit) for the process to exit.
#[cfg(unix)]
fn interrupt(action: &str, input: &str) -> Interrupted {
    let mut child = example("faults")
        .args(["call", action, input])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn faults");
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let (tx, rx) = mpsc::channel::<String>();
    let err_pipe = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        for line in BufReader::new(err_pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut err_lines = Vec::new();
    let waiting_since = Instant::now();
    loop {
        let left = Duration::from_secs(30).saturating_sub(waiting_since.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let started = events_in(&line)
                    .first()
                    .is_some_and(|e| e["type"] == "custom" && e["name"] == "sleeping");
                err_lines.push(line);
                if started {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{action}` never reported that it started; stderr so far:\n{}",
                    err_lines.join("\n")
                );
            }
        }
    }
    // The handler is installed before the action starts; leave a margin anyway.
    std::thread::sleep(Duration::from_millis(100));

    let signalled = Instant::now();
    let kill = Command::new("sh")
        .args(["-c", "kill -INT \"$0\"", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -INT failed: {kill:?}");
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{action}` did not exit within 10 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let after_signal = signalled.elapsed();
    err_reader.join().expect("stderr reader");
    err_lines.extend(rx.try_iter());
    let mut stderr = err_lines.join("\n");
    stderr.push('\n');
    Interrupted {
        out: Output {
            status,
            stdout: out_reader.join().expect("stdout reader"),
            stderr: stderr.into_bytes(),
        },
        after_signal,
    }
}

// ------------------------------------------------------------------- echo

#[test]
fn echo_describe_prints_the_manifest() {
    let out = cli("echo", &["describe"]);
    assert_exit(&out, 0);
    let m = stdout_json(&out);
    let keys: BTreeSet<&str> = m
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "spoke",
        "name",
        "version",
        "display_name",
        "description",
        "config",
        "actions",
        "search_operators",
        "capabilities",
        "fields",
    ]
    .into();
    assert_eq!(keys, expected);
    // LibreFang's config form, from the `#[config_field]`s.
    assert_eq!(
        m["fields"],
        json!([{"key": "ECHO_PREFIX", "label": "Prefix", "type": "text", "required": false, "placeholder": "", "advanced": false}])
    );
    assert_eq!(m["spoke"], json!(1));
    assert_eq!(m["name"], "echo");
    assert_eq!(m["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["display_name"], "Echo");
    assert_eq!(m["description"], "Echoes text back.");
    assert_eq!(m["search_operators"], json!([]));
    assert_eq!(m["config"]["properties"]["prefix"]["x-env"], "ECHO_PREFIX");
    assert_eq!(m["config"]["required"], json!([]));

    let actions = m["actions"].as_array().expect("actions is an array");
    assert_eq!(actions.len(), 1, "{actions:#?}");
    let echo = &actions[0];
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["mode"], "read");
    assert_eq!(echo["description"], "Return the text, prefixed.");
    assert_eq!(echo["admin_only"], false);
    assert_eq!(echo["hidden"], false);
    assert_eq!(echo["timeout_ms"], Value::Null);
    let input = &echo["input_schema"];
    assert_eq!(input["type"], "object");
    assert_eq!(input["required"], json!(["text"]));
    assert_eq!(input["additionalProperties"], false);
    assert_eq!(
        *input,
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
            "additionalProperties": false,
        })
    );
    assert_eq!(echo["output_schema"]["type"], "string");
    assert_no_refs(&m);
}

#[test]
fn echo_describe_flag_prints_the_same_manifest() {
    let sub = cli("echo", &["describe"]);
    let flag = cli("echo", &["--describe"]);
    assert_exit(&sub, 0);
    assert_exit(&flag, 0);
    assert!(!stdout(&sub).is_empty());
    assert_eq!(stdout(&flag), stdout(&sub));
}

#[test]
fn echo_call_prints_the_output_as_json() {
    let out = cli("echo", &["call", "echo", r#"{"text":"hello"}"#]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "\"hello\"\n");
    assert_eq!(stderr(&out), "");
}

#[test]
fn echo_prefix_comes_from_the_environment() {
    let out = run(example("echo").env("ECHO_PREFIX", ">> ").args([
        "call",
        "echo",
        r#"{"text":"hello"}"#,
    ]));
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), json!(">> hello"));
}

#[test]
fn echo_reads_its_input_from_stdin_with_a_dash() {
    let out = run_with_stdin(
        example("echo").args(["call", "echo", "-"]),
        "{\"text\": \"from stdin\"}\n",
    );
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), json!("from stdin"));
}

#[test]
fn echo_missing_field_is_invalid_input() {
    let out = cli("echo", &["call", "echo", "{}"]);
    let message = action_error(&out, "invalid_input");
    // The path names the missing field itself, not its parent object.
    assert!(
        message.starts_with("$.text: missing field `text`"),
        "{message}"
    );
    assert_eq!(details(&out), Some(json!({"path": "$.text"})));
}

#[test]
fn echo_no_input_means_an_empty_object() {
    let out = cli("echo", &["call", "echo"]);
    let message = action_error(&out, "invalid_input");
    assert!(message.contains("missing field `text`"), "{message}");
}

#[test]
fn echo_wrong_type_names_the_field() {
    let out = cli("echo", &["call", "echo", r#"{"text": 1}"#]);
    let message = action_error(&out, "invalid_input");
    assert!(
        message.starts_with("$.text: invalid type: integer `1`, expected a string"),
        "{message}"
    );
    assert_eq!(details(&out), Some(json!({"path": "$.text"})));
}

#[test]
fn echo_unknown_field_is_invalid_input() {
    let out = cli("echo", &["call", "echo", r#"{"text": "a", "txet": "b"}"#]);
    let message = action_error(&out, "invalid_input");
    assert!(
        message.starts_with("$.txet: unknown field `txet`"),
        "{message}"
    );
    assert_eq!(details(&out), Some(json!({"path": "$.txet"})));
}

#[test]
fn echo_unknown_action_is_not_found_with_a_suggestion() {
    let out = cli("echo", &["call", "ecoh", r#"{"text":"x"}"#]);
    let message = action_error(&out, "not_found");
    assert_eq!(
        message,
        "connector `echo` has no action `ecoh`; did you mean `echo`? (actions: echo)"
    );
    assert_eq!(details(&out), Some(json!({"actions": ["echo"]})));
}

#[test]
fn echo_malformed_json_is_invalid_input_with_line_and_column() {
    let out = cli("echo", &["call", "echo", "{\"text\": \"hi\"\n\"more\": 1}"]);
    let message = action_error(&out, "invalid_input");
    assert!(message.ends_with("at line 2 column 1"), "{message}");

    let out = cli("echo", &["call", "echo", "not json"]);
    let message = action_error(&out, "invalid_input");
    assert_eq!(
        message,
        "$: input is not valid JSON: expected ident at line 1 column 2"
    );
}

#[test]
fn echo_check_accepts_the_default_config() {
    let out = cli("echo", &["check"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert_eq!(
        text.lines().next(),
        Some("config ok: connector `echo`, 1 field(s)"),
        "{text}"
    );
    let prefix = text
        .lines()
        .find(|l| l.trim_start().starts_with("prefix "))
        .expect("a line for `prefix`");
    assert!(
        prefix.contains("ECHO_PREFIX") && prefix.ends_with("default"),
        "{prefix}"
    );
}

#[test]
fn echo_check_reports_a_set_variable() {
    let out = run(example("echo").env("ECHO_PREFIX", "x").arg("check"));
    assert_exit(&out, 0);
    let text = stdout(&out);
    let prefix = text
        .lines()
        .find(|l| l.trim_start().starts_with("prefix "))
        .expect("a line for `prefix`");
    assert!(prefix.ends_with("set"), "{prefix}");
}

#[test]
fn echo_actions_lists_echo() {
    let out = cli("echo", &["actions"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "actions:", "{text}");
    let echo: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(echo, ["echo"], "{text}");
    assert!(
        lines[1].contains(" read ") && lines[1].ends_with("Return the text, prefixed."),
        "{text}"
    );
}

#[test]
fn help_lists_every_command() {
    let out = cli("echo", &["--help"]);
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    // The first word of each line of the `Commands:` section.
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "serve", "stdio", "http", "mcp", "nats", "describe", "call", "resolve", "check",
            "sync", "actions"
        ],
        "{text}"
    );
    for option in ["--connector <NAME>", "--config <FILE>", "--describe"] {
        assert!(text.contains(option), "{option}: {text}");
    }
}

#[test]
fn help_names_the_connector_and_its_description() {
    for (example_name, first) in [
        (
            "echo",
            "Spoke connector `echo` (Echo 0.1.0): Echoes text back.",
        ),
        (
            "files",
            "Spoke connector `files` (Files 0.1.0): Files in a local directory tree.",
        ),
    ] {
        for flag in ["--help", "-h"] {
            let out = cli(example_name, &[flag]);
            assert_exit(&out, 0);
            let text = stdout(&out);
            assert_eq!(
                text.lines().next(),
                Some(first),
                "{example_name} {flag}: {text}"
            );
        }
    }
    // `check --help` says that the init hook runs, and how to skip it.
    let text = stdout(&cli("files", &["check", "--help"]));
    assert!(text.contains("and run the init hook"), "{text}");
    assert!(text.contains("--no-init"), "{text}");
}

/// The lines of some stderr text that are log lines of this level (`INFO`, `DEBUG`...).
fn log_lines<'a>(err: &'a str, level: &str) -> Vec<&'a str> {
    let level = format!(" {level} ");
    err.lines().filter(|l| l.contains(&level)).collect()
}

#[test]
fn rust_log_overrides_the_default_log_filter() {
    // `stdio` logs at info by default. A `cancel` for an id that is not in
    // flight is a debug line, shown only when RUST_LOG asks for it.
    let stdio = |rust_log: Option<&str>| {
        let mut cmd = example("echo");
        cmd.arg("stdio");
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        run_with_stdin(
            &mut cmd,
            "{\"method\":\"cancel\",\"params\":{\"id\":\"not-in-flight\"}}\n",
        )
    };
    let default = stdio(None);
    let debug = stdio(Some("debug"));
    let quiet = stdio(Some("warn"));
    for out in [&default, &debug, &quiet] {
        assert_exit(out, 0);
    }
    let (default_err, debug_err, quiet_err) = (stderr(&default), stderr(&debug), stderr(&quiet));
    assert!(!log_lines(&default_err, "INFO").is_empty(), "{default_err}");
    assert_eq!(
        log_lines(&default_err, "DEBUG"),
        [] as [&str; 0],
        "{default_err}"
    );
    assert!(!log_lines(&debug_err, "INFO").is_empty(), "{debug_err}");
    assert!(!log_lines(&debug_err, "DEBUG").is_empty(), "{debug_err}");
    assert_eq!(quiet_err, "", "RUST_LOG=warn hides the info lines");
    // Logs never touch stdout, which belongs to the protocol.
    assert!(stdout(&default).starts_with("{\"method\":\"ready\""));
    assert_eq!(stdout(&debug), stdout(&default));
    assert_eq!(stdout(&quiet), stdout(&default));

    // `call` logs only warnings by default; any filter leaves its stdout alone.
    let call = |rust_log: Option<&str>| {
        let mut cmd = example("echo");
        cmd.args(["call", "echo", r#"{"text":"hi"}"#]);
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        run(&mut cmd)
    };
    let quiet = call(None);
    assert_exit(&quiet, 0);
    assert_eq!(stderr(&quiet), "");
    for filter in ["debug", "trace"] {
        let out = call(Some(filter));
        assert_exit(&out, 0);
        assert_eq!(stdout(&out), "\"hi\"\n", "RUST_LOG={filter}");
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let err = usage_error(&cli("echo", &["frobnicate"]));
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
}

#[test]
fn no_subcommand_means_serve_and_bad_serve_settings_are_usage_errors() {
    // With no subcommand the connector serves; a bad SPOKE_* variable stops it
    // before it dials the hub, naming the variable.
    let out = run(example("echo").env("SPOKE_MAX_IN_FLIGHT", "0"));
    let err = usage_error(&out);
    assert!(err.starts_with("error: SPOKE_MAX_IN_FLIGHT:"), "{err}");
}

#[test]
fn unknown_connector_is_a_usage_error_naming_the_known_ones() {
    let err = usage_error(&cli("echo", &["--connector", "nope", "describe"]));
    assert_eq!(
        err,
        "error: no connector named `nope`; this binary has: echo\n"
    );
    let err = usage_error(&cli("echo", &["--connector", "ecoh", "describe"]));
    assert!(err.contains("did you mean `echo`?"), "{err}");
}

#[test]
fn named_connector_works() {
    let out = cli(
        "echo",
        &["--connector", "echo", "call", "echo", r#"{"text":"hi"}"#],
    );
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), json!("hi"));
}

#[test]
fn config_file_replaces_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"prefix": ">"}"#).unwrap();
    let out = run(example("echo").env("ECHO_PREFIX", "ignored ").args([
        "--config",
        good.to_str().unwrap(),
        "call",
        "echo",
        r#"{"text":"hello"}"#,
    ]));
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), json!(">hello"));
}

#[test]
fn config_file_with_an_unknown_key_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"prefx": 1}"#).unwrap();
    let path = bad.to_str().unwrap();
    for command in [&["check"][..], &["call", "echo", r#"{"text":"hi"}"#][..]] {
        let out = run(example("echo").args(["--config", path]).args(command));
        let err = usage_error(&out);
        assert!(
            err.contains("invalid configuration for connector `echo` (1 problem)"),
            "{err}"
        );
        assert!(err.contains("`prefx`: unknown config key"), "{err}");
    }
}

#[test]
fn config_file_that_is_not_json_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "prefix = 1").unwrap();
    let path = bad.to_str().unwrap();
    let err = usage_error(&cli("echo", &["--config", path, "check"]));
    assert!(
        err.starts_with(&format!("error: config file `{path}` is not valid JSON")),
        "{err}"
    );
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    let err = usage_error(&cli("echo", &["--config", missing, "check"]));
    assert!(
        err.starts_with(&format!("error: cannot read config file `{missing}`")),
        "{err}"
    );
}

// ----------------------------------------------------------------- faults

const CHOOSABLE: [&str; 6] = [
    "invalid_input",
    "not_found",
    "unauthorized",
    "failed_precondition",
    "unavailable",
    "internal",
];

#[test]
fn faults_manifest_lists_every_lesson() {
    let out = cli("faults", &["describe"]);
    assert_exit(&out, 0);
    let m = stdout_json(&out);
    assert_eq!(m["name"], "faults");
    assert_eq!(m["display_name"], "Faults");
    assert_eq!(
        m["config"]["required"],
        json!([]),
        "faults must start with no environment"
    );
    let names: Vec<&str> = m["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "add",
            "anyhow_error",
            "fail",
            "io_error",
            "panic",
            "panic_blocking",
            "progress",
            "sleep",
            "sleep_blocking",
            "slow",
            "slow_blocking",
            "stubborn",
            "whoami",
            "whole",
        ]
    );
    for action in m["actions"].as_array().unwrap() {
        let expected = if ["slow", "slow_blocking"].contains(&action["name"].as_str().unwrap()) {
            json!(200)
        } else {
            Value::Null
        };
        assert_eq!(action["timeout_ms"], expected, "{}", action["name"]);
        assert_eq!(
            action["input_schema"]["type"], "object",
            "{}",
            action["name"]
        );
    }
    let whole = m["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "whole")
        .unwrap();
    let schema = &whole["input_schema"];
    assert_eq!(schema["required"], json!(["customer", "items"]));
    assert_eq!(
        schema["properties"]["items"]["items"]["properties"]["qty"]["type"],
        "integer"
    );
    assert_eq!(
        schema["properties"]["customer"]["required"],
        json!(["name"])
    );
    let operators: Vec<Value> = m["search_operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| json!([o["operator"], o["attribute_key"], o["value_type"]]))
        .collect();
    assert_eq!(
        operators,
        [
            json!(["code", "error_code", "text"]),
            json!(["panic", "panic_message", "text"]),
        ]
    );
    assert_no_refs(&m);
}

#[test]
fn faults_check_needs_no_environment() {
    let out = cli("faults", &["check"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("config ok: connector `faults`, 1 field(s)\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn every_choosable_code_reaches_the_cli_with_details() {
    for code in CHOOSABLE {
        let input = json!({"code": code, "message": format!("failed with {code}")}).to_string();
        let out = cli("faults", &["call", "fail", &input]);
        let message = action_error(&out, code);
        assert_eq!(message, format!("failed with {code}"));
        assert_eq!(details(&out), Some(json!({"requested": code})), "{code}");
    }
}

#[test]
fn runtime_codes_cannot_be_chosen() {
    for code in ["deadline_exceeded", "cancelled", "panicked", "bogus"] {
        let input = json!({"code": code, "message": "m"}).to_string();
        let out = cli("faults", &["call", "fail", &input]);
        let message = action_error(&out, "invalid_input");
        assert!(
            message.starts_with(&format!(
                "$.code: `{code}` is not a code an action may choose"
            )),
            "{message}"
        );
        assert_eq!(details(&out), Some(json!({"path": "$.code"})));
    }
}

#[test]
fn an_async_panic_becomes_panicked_and_the_process_exits_normally() {
    let out = cli(
        "faults",
        &["call", "panic", r#"{"message":"boom: the async kind"}"#],
    );
    assert_not_signalled(&out);
    let message = action_error(&out, "panicked");
    assert_eq!(message, "boom: the async kind");
    assert_eq!(details(&out), None);
}

#[test]
fn a_blocking_panic_becomes_panicked_and_the_process_exits_normally() {
    let out = cli(
        "faults",
        &[
            "call",
            "panic_blocking",
            r#"{"message":"boom: the blocking kind"}"#,
        ],
    );
    assert_not_signalled(&out);
    let message = action_error(&out, "panicked");
    assert_eq!(message, "boom: the blocking kind");
}

#[test]
fn sleep_finishes_when_given_time() {
    let out = cli("faults", &["call", "sleep", r#"{"ms": 20}"#]);
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), json!({"slept_ms": 20}));
}

#[test]
fn the_callers_timeout_gives_deadline_exceeded_promptly() {
    let started = Instant::now();
    let out = run_with_limit(
        example("faults").args(["call", "sleep", r#"{"ms": 10000}"#, "--timeout", "300ms"]),
        Duration::from_secs(2),
    );
    let took = started.elapsed();
    let message = action_error(&out, "deadline_exceeded");
    assert_eq!(message, "`sleep` did not finish before its deadline");
    assert!(
        took >= Duration::from_millis(300),
        "gave up early, after {took:?}"
    );
}

#[test]
fn a_blocking_action_that_polls_cancellation_meets_the_deadline() {
    let started = Instant::now();
    let out = run_with_limit(
        example("faults").args([
            "call",
            "sleep_blocking",
            r#"{"ms": 10000}"#,
            "--timeout",
            "300ms",
        ]),
        Duration::from_secs(2),
    );
    let took = started.elapsed();
    let message = action_error(&out, "deadline_exceeded");
    assert_eq!(
        message,
        "`sleep_blocking` did not finish before its deadline"
    );
    assert!(
        took >= Duration::from_millis(300),
        "gave up early, after {took:?}"
    );
}

#[test]
fn an_actions_own_timeout_gives_deadline_exceeded() {
    let started = Instant::now();
    let out = run_with_limit(
        example("faults").args(["call", "slow"]),
        Duration::from_secs(2),
    );
    let took = started.elapsed();
    let message = action_error(&out, "deadline_exceeded");
    assert_eq!(message, "`slow` did not finish before its deadline");
    assert!(
        took >= Duration::from_millis(200),
        "gave up early, after {took:?}"
    );
}

#[test]
fn the_earlier_deadline_wins() {
    // A longer caller timeout does not extend the action's own 200 ms.
    let out = run_with_limit(
        example("faults").args(["call", "slow", "--timeout", "30s"]),
        Duration::from_secs(2),
    );
    let message = action_error(&out, "deadline_exceeded");
    assert_eq!(message, "`slow` did not finish before its deadline");
}

#[test]
fn a_blocking_action_past_its_timeout_does_not_hold_the_process() {
    let out = run_with_limit(
        example("faults").args(["call", "slow_blocking"]),
        Duration::from_secs(2),
    );
    let message = action_error(&out, "deadline_exceeded");
    assert_eq!(
        message,
        "`slow_blocking` did not finish before its deadline"
    );
}

#[test]
fn progress_events_are_printed_on_stderr_in_order() {
    let out = run(example("faults").env("FAULTS_LABEL", "batch").args([
        "call",
        "progress",
        r#"{"steps": 4}"#,
    ]));
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), json!(4));
    let events = events_in(&stderr(&out));
    assert_eq!(events.len(), 5, "{}", stderr(&out));
    let request_id = events[0]["request_id"].as_str().expect("a request id");
    assert!(request_id.starts_with("cli-"), "{request_id}");
    for (i, event) in events[..4].iter().enumerate() {
        let step = i + 1;
        assert_eq!(
            *event,
            json!({
                "request_id": request_id,
                "action": "progress",
                "type": "progress",
                "progress": step as f64,
                "total": 4.0,
                "message": format!("batch: step {step} of 4"),
            })
        );
    }
    assert_eq!(
        events[4],
        json!({
            "request_id": request_id,
            "action": "progress",
            "type": "custom",
            "name": "done",
            "data": {"steps": 4},
        })
    );
}

#[test]
fn progress_without_a_label() {
    let out = cli("faults", &["call", "progress", r#"{"steps": 1}"#]);
    assert_exit(&out, 0);
    let events = events_in(&stderr(&out));
    assert_eq!(events[0]["message"], "step 1 of 1");
}

#[test]
fn anyhow_errors_are_internal_with_the_context_chain() {
    let out = cli("faults", &["call", "anyhow_error"]);
    let message = action_error(&out, "internal");
    assert_eq!(message, "reading the answer: invalid digit found in string");
    assert_eq!(details(&out), None);
}

#[test]
fn io_not_found_becomes_not_found() {
    let out = cli("faults", &["call", "io_error"]);
    let message = action_error(&out, "not_found");
    #[cfg(unix)]
    assert!(message.ends_with("(os error 2)"), "{message}");
    assert!(!message.is_empty());
}

#[test]
fn whole_input_round_trips() {
    let input = json!({
        "customer": {"name": "Ada", "email": "ada@example.com"},
        "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}],
        "note": "fragile",
    });
    let out = cli("faults", &["call", "whole", &input.to_string()]);
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), input);

    let out = cli(
        "faults",
        &[
            "call",
            "whole",
            r#"{"customer": {"name": "Ada"}, "items": []}"#,
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(
        stdout_json(&out),
        json!({"customer": {"name": "Ada", "email": null}, "items": [], "note": null})
    );
}

#[test]
fn a_bad_nested_field_is_named_by_its_path() {
    let input = r#"{"customer": {"name": "Ada"}, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": -1}]}"#;
    let out = cli("faults", &["call", "whole", input]);
    let message = action_error(&out, "invalid_input");
    assert!(
        message.starts_with("$.items[1].qty: invalid value: integer `-1`, expected u32"),
        "{message}"
    );
    assert_eq!(details(&out), Some(json!({"path": "$.items[1].qty"})));

    let out = cli(
        "faults",
        &["call", "whole", r#"{"customer": {}, "items": []}"#],
    );
    let message = action_error(&out, "invalid_input");
    assert!(
        message.starts_with("$.customer.name: missing field `name`"),
        "{message}"
    );
    assert_eq!(details(&out), Some(json!({"path": "$.customer.name"})));

    let out = cli(
        "faults",
        &[
            "call",
            "whole",
            r#"{"customer": {"name": "A", "nmae": "B"}, "items": []}"#,
        ],
    );
    action_error(&out, "invalid_input");
    assert_eq!(details(&out), Some(json!({"path": "$.customer.nmae"})));
}

#[test]
fn add_returns_a_plain_number() {
    let out = cli("faults", &["call", "add", r#"{"a": 2, "b": 3}"#]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "5\n");

    let out = cli("faults", &["call", "add", r#"{"a": "2", "b": 3}"#]);
    action_error(&out, "invalid_input");
    assert_eq!(details(&out), Some(json!({"path": "$.a"})));
}

#[cfg(unix)]
#[test]
fn sigint_cancels_a_running_call_promptly() {
    let Interrupted { out, after_signal } = interrupt("sleep", r#"{"ms": 30000}"#);
    assert_not_signalled(&out);
    let message = action_error(&out, "cancelled");
    // The action saw its token and stopped itself, well inside the grace period.
    assert!(
        message.starts_with("sleep stopped after ") && message.ends_with(" ms of 30000"),
        "{message}"
    );
    assert!(
        after_signal < Duration::from_millis(1500),
        "took {after_signal:?} after SIGINT"
    );
}

#[cfg(unix)]
#[test]
fn sigint_drops_an_action_that_ignores_it_after_the_grace_period() {
    let Interrupted { out, after_signal } = interrupt("stubborn", r#"{"ms": 30000}"#);
    assert_not_signalled(&out);
    let message = action_error(&out, "cancelled");
    assert_eq!(message, "`stubborn` was cancelled");
    // The default grace period is 2 s.
    assert!(
        after_signal >= Duration::from_millis(1900) && after_signal < Duration::from_secs(5),
        "took {after_signal:?} after SIGINT"
    );
}

#[test]
fn resolve_runs_a_search_operator() {
    let out = cli("faults", &["resolve", "code", "NotFound"]);
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), json!("not_found"));

    let out = cli("faults", &["resolve", "code", "no-such-code"]);
    let message = action_error(&out, "not_found");
    assert_eq!(message, "no error code `no-such-code`");
}

#[test]
fn a_panicking_search_operator_becomes_panicked_and_the_process_exits_normally() {
    let out = cli("faults", &["resolve", "panic", "boom: the operator kind"]);
    assert_not_signalled(&out);
    let message = action_error(&out, "panicked");
    assert_eq!(message, "boom: the operator kind");
    assert_eq!(details(&out), None);
}

#[test]
fn resolve_of_an_unknown_operator_is_not_found() {
    let out = cli("faults", &["resolve", "cod", "x"]);
    let message = action_error(&out, "not_found");
    assert_eq!(
        message,
        "connector `faults` has no search operator `cod`; did you mean `code`? (search_operators: code, panic)"
    );
    assert_eq!(
        details(&out),
        Some(json!({"search_operators": ["code", "panic"]}))
    );

    let out = cli("echo", &["resolve", "ext", "rs"]);
    let message = action_error(&out, "not_found");
    assert_eq!(
        message,
        "connector `echo` has no search operator `ext` (search_operators: none)"
    );
    assert_eq!(details(&out), Some(json!({"search_operators": []})));
}

#[test]
fn faults_unknown_action_lists_the_actions() {
    let out = cli("faults", &["call", "sleeep", "{}"]);
    let message = action_error(&out, "not_found");
    assert!(
        message.starts_with("connector `faults` has no action `sleeep`; did you mean `sleep`?"),
        "{message}"
    );
    let listed = details(&out).expect("details")["actions"]
        .as_array()
        .expect("a list")
        .len();
    assert_eq!(listed, 14);
}

#[test]
fn a_bad_timeout_is_a_usage_error() {
    let err = usage_error(&cli(
        "faults",
        &["call", "sleep", r#"{"ms": 1}"#, "--timeout", "soon"],
    ));
    assert!(err.contains("--timeout"), "{err}");
}

#[test]
fn inputs_that_are_not_objects_are_rejected_at_the_root() {
    for input in ["[2, 3]", "5", "\"x\""] {
        let out = cli("faults", &["call", "add", input]);
        let message = action_error(&out, "invalid_input");
        assert!(
            message.starts_with("$: input must be a JSON object, got "),
            "{input}: {message}"
        );
        assert_eq!(details(&out), Some(json!({"path": "$"})), "{input}");
    }
    let out = cli("echo", &["call", "echo", r#"{"text":"hi",}"#]);
    assert_eq!(
        details(&out),
        Some(json!({"path": "$"})),
        "a syntax error is not blamed on a field"
    );
}

#[test]
fn the_store_keeps_values_in_local_files_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = |tenant: &str, args: &[&str]| {
        run(example("accounts")
            .env("SPOKE_STORE_DIR", dir.path())
            .env("SPOKE_TENANT", tenant)
            .arg("call")
            .args(args))
    };
    let out = accounts("default", &["note", r#"{"account":"a-1","text":"first"}"#]);
    assert_exit(&out, 0);
    let revision = stdout_json(&out)["revision"].as_u64().unwrap();
    assert!(
        dir.path().join("accounts/default/notes.json").is_file(),
        "the bucket's file"
    );

    // A second process: the note is there, and a second create loses.
    let out = accounts("default", &["note", r#"{"account":"a-1","text":"again"}"#]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out)
            .starts_with("error[failed_precondition]: bucket `notes`, key `a-1`: it exists"),
        "{}",
        stderr(&out)
    );
    let swap = format!(r#"{{"account":"a-1","text":"second","revision":{revision}}}"#);
    assert_exit(&accounts("default", &["note", &swap]), 0);
    let out = accounts("default", &["note", &swap]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("not "),
        "a stale revision: {}",
        stderr(&out)
    );
    let out = accounts("default", &["notes", r#"{"account":"a-1"}"#]);
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out)["text"], "second");

    // Another tenant has its own keys.
    let out = accounts("acme", &["notes", r#"{"account":"a-1"}"#]);
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), json!(null));
}
