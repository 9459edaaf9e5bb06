//! A connector built with the `stdio` transport alone
//! (`spoke = { default-features = false, features = ["stdio"] }`): the echo
//! example as the `spoke-echo-stdio` package. It compiles none of the gRPC
//! stack, its command line offers only what it was built with, and it serves
//! over stdio as the default build does.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::frames::{invoke, result_ok};
use common::sidecar::Sidecar;
use common::{run_with_limit, stderr, stdout};
use serde_json::json;

/// The crates a stdio-only connector must not compile. (`prost` itself is
/// in the core: Protobuf is one of the payload encodings.)
const GRPC_STACK: [&str; 7] = [
    "tonic",
    "tonic-prost",
    "rustls",
    "ed25519-dalek",
    "spoke-proto",
    "hyper",
    "h2",
];

fn cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// The crates `package` compiles (normal and build dependencies), by name.
fn crates_of(package: &str, features: &[&str]) -> Vec<String> {
    let mut cmd = cargo();
    cmd.args([
        "tree",
        "-p",
        package,
        "-e",
        "normal,build",
        "--prefix",
        "none",
    ]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let out = run_with_limit(&mut cmd, Duration::from_secs(120));
    assert!(out.status.success(), "cargo tree: {}", stderr(&out));
    let mut names: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn a_stdio_only_connector_compiles_none_of_the_grpc_stack() {
    let stdio_only = crates_of("spoke-echo-stdio", &[]);
    assert!(
        stdio_only.iter().any(|c| c == "spoke-runtime"),
        "{stdio_only:?}"
    );
    for name in GRPC_STACK {
        assert!(
            !stdio_only.iter().any(|c| c == name),
            "the stdio-only echo compiles `{name}`: {stdio_only:?}"
        );
    }
    // The default build has them all: the check above can fail.
    let default = crates_of("spoke", &["grpc", "stdio"]);
    for name in ["tonic", "prost", "rustls", "ed25519-dalek", "spoke-proto"] {
        assert!(default.iter().any(|c| c == name), "{name}: {default:?}");
    }
    assert!(
        stdio_only.len() * 10 <= default.len() * 6,
        "the stdio-only echo compiles {} crates, the default build {}: over 60%",
        stdio_only.len(),
        default.len()
    );
}

/// The stdio-only echo binary, built once (on its own: built with the
/// workspace, its features would be unified with the hub's).
fn echo_stdio() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = run_with_limit(
                cargo().args(["build", "-p", "spoke-echo-stdio", "--quiet"]),
                Duration::from_secs(600),
            );
            assert!(out.status.success(), "build: {}", stderr(&out));
            // tests run from target/<profile>/deps/<test>-<hash>
            let exe = std::env::current_exe().unwrap();
            let bin = exe
                .parent()
                .and_then(|d| d.parent())
                .unwrap()
                .join(format!("echo-stdio{}", std::env::consts::EXE_SUFFIX));
            assert!(bin.exists(), "{} not built", bin.display());
            bin
        })
        .clone()
}

fn echo_stdio_cmd() -> Command {
    let mut cmd = Command::new(echo_stdio());
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

#[test]
fn its_help_lists_only_the_transports_compiled_in() {
    let out = run_with_limit(echo_stdio_cmd().arg("--help"), Duration::from_secs(10));
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    assert!(
        help.contains("Transports compiled in: stdio (`stdio`). Not compiled in: grpc"),
        "{help}"
    );
    assert!(help.contains("  stdio "), "{help}");
    assert!(!help.contains("  serve "), "`serve` is not offered: {help}");
    for always in ["describe", "call", "resolve", "check", "actions"] {
        assert!(help.contains(&format!("  {always} ")), "{always}: {help}");
    }
    // The default build offers both.
    let out = run_with_limit(
        common::example("echo").arg("--help"),
        Duration::from_secs(10),
    );
    let help = stdout(&out);
    assert!(
        help.contains(
            "Transports compiled in: grpc (`serve`), stdio (`stdio`), http (`http`), mcp (`mcp`), nats (`nats`)."
        ),
        "{help}"
    );
    assert!(help.contains("  serve "), "{help}");
}

#[test]
fn a_command_whose_transport_is_missing_names_the_feature_to_enable() {
    for args in [&["serve"][..], &[]] {
        let out = run_with_limit(echo_stdio_cmd().args(args), Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("`grpc`"), "{args:?}: {err}");
        assert!(
            err.contains("Transports compiled in: stdio"),
            "{args:?}: {err}"
        );
    }
    // Commands of the core work without any transport's help.
    let out = run_with_limit(
        echo_stdio_cmd().args(["call", "echo", r#"{"text":"hi"}"#]),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "\"hi\"");
}

#[test]
fn it_serves_over_stdio_like_the_default_build() {
    let mut cmd = echo_stdio_cmd();
    cmd.arg("stdio").env("ECHO_PREFIX", "> ");
    let mut echo = Sidecar::spawn(cmd);
    let ready = echo.frame();
    assert_eq!(ready["method"], "ready", "{ready}");
    assert_eq!(ready["params"]["account_id"], "echo");
    echo.send(&json!({"method": "ready_ack"}));
    echo.send(&invoke("1", "echo", json!({"text": "hi"})));
    assert_eq!(echo.frame(), result_ok("1", json!("> hi")));
    assert!(echo.finish().is_empty());
    // `describe` still carries LibreFang's form: it is part of `stdio`.
    let out = run_with_limit(echo_stdio_cmd().arg("--describe"), Duration::from_secs(10));
    let doc = common::stdout_json(&out);
    assert_eq!(doc["fields"][0]["key"], "ECHO_PREFIX", "{doc}");
}

#[test]
fn conformance_runs_it_through_the_transports_it_has() {
    let report = spoke::testing::Conformance::new(echo_stdio())
        .call("echo", serde_json::json!({"text": "hi"}))
        .call("echo", serde_json::json!({}))
        .run()
        .unwrap();
    assert_eq!(report.transports, ["in-process", "stdio"]);
    assert_eq!(
        report.answers[0].1,
        spoke::testing::Answer::Output(serde_json::json!("hi"))
    );
    assert_eq!(
        report.answers[1].1,
        spoke::testing::Answer::Error("invalid_input".into())
    );
}
