//! A binary that registers several connectors makes the caller pick one with
//! `--connector NAME`: without it every command is a usage error naming them
//! all, with it each connector describes, checks and runs as if it were alone,
//! and an unknown name is a usage error naming those that exist.
//!
//! `beta` also has a secret field: whether its value is valid or not, no
//! command ever prints it, on stdout or stderr, even with every log line on.
//!
//! The test re-runs its own executable as that binary (`harness = false`).

use std::process::{Command, Output};

use serde_json::{Value, json};
use spoke::prelude::*;

const CHILD: &str = "SPOKE_TEST_SEVERAL_CONNECTORS_CHILD";

/// The first connector.
#[connector(name = "alpha")]
pub struct Alpha {}

#[connector]
impl Alpha {
    /// Says which connector answered.
    #[action(read)]
    fn whoami(&self) -> String {
        "alpha".into()
    }
}

/// The second connector.
#[connector(name = "beta")]
pub struct Beta {
    /// What beta says.
    #[config_field(env = "BETA_GREETING", default = "hello")]
    greeting: String,
    /// A secret number, never shown.
    #[config_field(secret, env = "BETA_PIN")]
    pin: Option<Secret<u64>>,
}

#[connector]
impl Beta {
    /// Says which connector answered, and its greeting.
    #[action(read)]
    fn whoami(&self) -> String {
        format!("beta says {}", self.greeting)
    }

    /// Whether the pin is set (its value stays hidden).
    #[action(read)]
    fn has_pin(&self) -> bool {
        self.pin.is_some()
    }
}

/// A secret `u64` that does not parse: an error must not quote it.
const BAD_PIN: &str = "sekrit-0xDEADBEEF";
/// A secret `u64` that parses: nothing may print it either.
const GOOD_PIN: &str = "9081726354";

/// Runs this executable as the connector binary with `args` and `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current exe");
    Command::new(exe)
        .args(args)
        .env_clear()
        .env(CHILD, "1")
        .envs(env.iter().copied())
        .output()
        .expect("run child")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

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

/// Asserts a usage error (exit 2, nothing on stdout) and returns stderr.
#[track_caller]
fn usage_error(out: &Output) -> String {
    assert_exit(out, 2);
    assert_eq!(stdout(out), "", "a usage error prints nothing on stdout");
    stderr(out)
}

#[track_caller]
fn stdout_json(out: &Output) -> Value {
    assert_exit(out, 0);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

fn without_connector_every_command_names_both() {
    let expected =
        "error: this binary has several connectors (alpha, beta); pick one with --connector NAME\n";
    for args in [
        &["describe"][..],
        &["--describe"],
        &["call", "whoami"],
        &["check"],
        &["actions"],
        &["resolve", "op", "value"],
    ] {
        let err = usage_error(&run(args, &[]));
        assert_eq!(err, expected, "{args:?}");
    }
}

fn help_lists_every_connector() {
    let out = run(&["--help"], &[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let head: Vec<&str> = text.lines().take(3).collect();
    assert_eq!(
        head,
        [
            "A binary with 2 Spoke connectors; pick one with --connector NAME:",
            "  alpha  The first connector.",
            "  beta   The second connector.",
        ],
        "{text}"
    );
}

fn describe_prints_the_picked_connectors_manifest() {
    let alpha = stdout_json(&run(&["--connector", "alpha", "describe"], &[]));
    assert_eq!(alpha["name"], "alpha");
    assert_eq!(alpha["description"], "The first connector.");
    assert_eq!(alpha["config"]["properties"], json!({}));
    let actions: Vec<&Value> = alpha["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["name"])
        .collect();
    assert_eq!(actions, [&json!("whoami")]);

    let beta = stdout_json(&run(&["--connector", "beta", "describe"], &[]));
    assert_eq!(beta["name"], "beta");
    assert_eq!(beta["description"], "The second connector.");
    let actions: Vec<&Value> = beta["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["name"])
        .collect();
    assert_eq!(actions, [&json!("has_pin"), &json!("whoami")]);
    assert_eq!(
        beta["config"]["properties"]["greeting"]["x-env"],
        "BETA_GREETING"
    );

    // The global flag works after the command, too.
    let flag_last = run(&["describe", "--connector", "beta"], &[]);
    assert_eq!(stdout_json(&flag_last), beta);
}

fn call_runs_the_picked_connectors_action() {
    let out = run(&["--connector", "alpha", "call", "whoami"], &[]);
    assert_eq!(stdout_json(&out), json!("alpha"));
    let out = run(&["--connector", "beta", "call", "whoami"], &[]);
    assert_eq!(stdout_json(&out), json!("beta says hello"));
    // Each connector reads its own config.
    let out = run(
        &["call", "whoami", "--connector", "beta"],
        &[("BETA_GREETING", "hi")],
    );
    assert_eq!(stdout_json(&out), json!("beta says hi"));
    // `alpha` has no `has_pin`: the action list is the picked connector's.
    let out = run(&["--connector", "alpha", "call", "has_pin"], &[]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).starts_with("error[not_found]: connector `alpha` has no action `has_pin`"),
        "{}",
        stderr(&out)
    );
}

fn an_unknown_connector_names_those_that_exist() {
    let err = usage_error(&run(&["--connector", "gamma", "describe"], &[]));
    assert_eq!(
        err,
        "error: no connector named `gamma`; this binary has: alpha, beta\n"
    );
    let err = usage_error(&run(&["--connector", "alpah", "call", "whoami"], &[]));
    assert_eq!(
        err,
        "error: no connector named `alpah` (did you mean `alpha`?); this binary has: alpha, beta\n"
    );
}

/// Asserts that neither stream of `out` contains the secret value.
#[track_caller]
fn assert_not_shown(out: &Output, secret: &str, what: &str) {
    for (stream, text) in [("stdout", stdout(out)), ("stderr", stderr(out))] {
        assert!(
            !text.to_lowercase().contains(&secret.to_lowercase()),
            "{what}: the secret is on {stream}:\n{text}"
        );
    }
}

fn secret_values_are_never_printed() {
    // Every log line on: nothing may leak through the log either.
    let all_logs = ("RUST_LOG", "trace");
    fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--connector", "beta"][..], args].concat()
    }

    let bad = [("BETA_PIN", BAD_PIN), all_logs];
    let err = usage_error(&run(&with(&["check"]), &bad));
    assert!(
        err.contains("`pin` (env BETA_PIN): invalid value (not shown: the field is secret)"),
        "{err}"
    );
    assert_not_shown(&run(&with(&["check"]), &bad), BAD_PIN, "check, invalid");
    // The distinctive parts, in case an error quotes only a piece of it.
    for piece in ["sekrit", "deadbeef"] {
        assert_not_shown(&run(&with(&["check"]), &bad), piece, "check, invalid");
    }
    let out = run(&with(&["describe"]), &bad);
    assert_exit(&out, 0);
    assert_not_shown(&out, BAD_PIN, "describe, invalid");
    let out = run(&with(&["call", "has_pin"]), &bad);
    assert!(
        usage_error(&out).contains("`pin` (env BETA_PIN)"),
        "{}",
        stderr(&out)
    );
    assert_not_shown(&out, "deadbeef", "call, invalid");

    let good = [("BETA_PIN", GOOD_PIN), all_logs];
    let out = run(&with(&["check"]), &good);
    assert_exit(&out, 0);
    let pin_line = stdout(&out)
        .lines()
        .find(|l| l.trim_start().starts_with("pin "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("a line for `pin`: {}", stdout(&out)));
    assert!(pin_line.ends_with("set (secret)"), "{pin_line}");
    assert_not_shown(&out, GOOD_PIN, "check, valid");
    for args in [
        &["describe"][..],
        &["check", "--init"],
        &["call", "has_pin"],
    ] {
        let out = run(&with(args), &good);
        assert_exit(&out, 0);
        assert_not_shown(&out, GOOD_PIN, &format!("{args:?}, valid"));
    }
    assert_eq!(
        stdout_json(&run(&with(&["call", "has_pin"]), &good)),
        json!(true)
    );

    // From a config file, too.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.json");
    std::fs::write(&file, json!({ "pin": BAD_PIN }).to_string()).unwrap();
    let path = file.to_str().unwrap();
    let out = run(&with(&["--config", path, "check"]), &[all_logs]);
    assert!(
        usage_error(&out).contains("`pin`: invalid value (not shown"),
        "{}",
        stderr(&out)
    );
    assert_not_shown(&out, "deadbeef", "check --config, invalid");
}

fn main() -> std::process::ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return spoke::main();
    }
    let tests: [(&str, fn()); 6] = [
        (
            "without_connector_every_command_names_both",
            without_connector_every_command_names_both,
        ),
        ("help_lists_every_connector", help_lists_every_connector),
        (
            "describe_prints_the_picked_connectors_manifest",
            describe_prints_the_picked_connectors_manifest,
        ),
        (
            "call_runs_the_picked_connectors_action",
            call_runs_the_picked_connectors_action,
        ),
        (
            "an_unknown_connector_names_those_that_exist",
            an_unknown_connector_names_those_that_exist,
        ),
        (
            "secret_values_are_never_printed",
            secret_values_are_never_printed,
        ),
    ];
    // A panic fails the run (exit 101) right after the name of its test.
    for (name, test) in tests {
        println!("test {name} ...");
        test();
    }
    println!("{} passed, 0 failed", tests.len());
    std::process::ExitCode::SUCCESS
}
