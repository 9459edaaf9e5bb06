//! A secret planted in a connector's config never shows in any byte of
//! output of a full session: the hub's log and stdout, the connector's log,
//! every `spoke` command's output, over the hub and over stdio, with every
//! log line on, through successful calls, action errors that format the
//! secret with `{:?}` and `{}`, a panic that does the same, bad input, and
//! an unknown action.
//!
//! The test re-runs its own executable as the connector binary
//! (`harness = false`).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ChildGuard, run_with_limit, spoke_bin, stderr, stdout};
use serde_json::{Value, json};
use spoke::prelude::*;

const CHILD: &str = "SPOKE_TEST_SECRETS_SESSION_CHILD";

/// The planted secret: distinctive, so any copy of it is found.
const API_KEY: &str = "sk-planted-Q7x9VaultKey-31337";
/// The planted secret number.
const PIN: &str = "8675309421";

/// Keeps two secrets.
#[connector(name = "vault")]
pub struct Vault {
    /// The API key.
    #[config_field(secret, env = "VAULT_API_KEY")]
    api_key: Secret<String>,
    /// A pin.
    #[config_field(secret, env = "VAULT_PIN")]
    pin: Option<Secret<u64>>,
}

#[connector]
impl Vault {
    /// Whether `guess` is the key (the key itself is never returned).
    #[action(read)]
    fn check_key(&self, guess: String) -> bool {
        guess == *self.api_key.expose()
    }

    /// Fails with an error that formats both secrets.
    #[action(read)]
    fn fail(&self) -> Result<(), ActionError> {
        Err(ActionError::failed_precondition(format!(
            "key {:?} / {} and pin {:?} refused",
            self.api_key, self.api_key, self.pin
        )))
    }

    /// Panics with a message that formats the secret.
    #[action(read)]
    fn boom(&self) {
        panic!("boom with {:?} and {}", self.api_key, self.api_key);
    }

    /// Takes a number.
    #[action(read)]
    fn double(&self, n: i64) -> i64 {
        n * 2
    }
}

/// Everything one process wrote, collected by reader threads.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn drain(&self, mut from: impl Read + Send + 'static) {
        let into = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.0.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// Fails if `bytes` (from `what`) contain a secret, in any letter case.
#[track_caller]
fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes).to_lowercase();
    for secret in [API_KEY, PIN, "q7x9vaultkey"] {
        assert!(
            !text.contains(&secret.to_lowercase()),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

fn connector_env(cmd: &mut Command) -> &mut Command {
    let exe_env = [
        (CHILD, "1"),
        ("VAULT_API_KEY", API_KEY),
        ("VAULT_PIN", PIN),
        ("RUST_LOG", "trace"),
    ];
    cmd.env_clear().envs(exe_env)
}

fn through_the_hub() {
    let hub_out = Captured::default();
    let mut hub = Command::new(spoke_bin())
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "200ms",
            "--insecure",
            "--no-auth",
        ])
        .env_clear()
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hub");
    let mut hub_stdout = hub.stdout.take().unwrap();
    hub_out.drain(hub.stderr.take().unwrap());
    let mut hub = ChildGuard { child: hub };
    // The first stdout line is the address; the rest is captured too.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while hub_stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let first = String::from_utf8(first).unwrap();
    hub_out
        .0
        .lock()
        .unwrap()
        .extend_from_slice(first.as_bytes());
    hub_out.drain(hub_stdout);
    let url = first
        .strip_prefix("spoke hub listening on ")
        .unwrap_or_else(|| panic!("the hub's first line: {first:?}"))
        .trim()
        .to_owned();

    let connector_out = Captured::default();
    // The connector makes its instance key under $HOME/.spoke/keys.
    let home = std::env::temp_dir().join(format!("spoke-secrets-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut connector = Command::new(std::env::current_exe().unwrap());
    connector_env(&mut connector)
        .env("HOME", &home)
        .arg("serve")
        .env("SPOKE_HUB_URL", &url)
        .env("SPOKE_INSTANCE_ID", "vault-1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut connector = connector.spawn().expect("start connector");
    connector_out.drain(connector.stdout.take().unwrap());
    connector_out.drain(connector.stderr.take().unwrap());
    let mut connector = ChildGuard { child: connector };

    let mut cli_out = Vec::new();
    let mut spoke = |args: &[&str]| {
        let mut cmd = Command::new(spoke_bin());
        cmd.env_clear()
            .env("SPOKE_HUB_URL", &url)
            .env("RUST_LOG", "trace")
            .args(args);
        let out = run_with_limit(&mut cmd, Duration::from_secs(20));
        cli_out.extend_from_slice(&out.stdout);
        cli_out.extend_from_slice(&out.stderr);
        out
    };

    let started = std::time::Instant::now();
    loop {
        let ls = spoke(&["ls"]);
        if stdout(&ls).contains("\"ready\"") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the connector never became ready:\n{}\n{}",
            stdout(&ls),
            connector_out.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = spoke(&["describe", "vault"]);
    let manifest: Value = serde_json::from_str(&stdout(&out)).expect("describe prints JSON");
    assert_eq!(manifest["name"], "vault");
    assert_eq!(
        manifest["config"]["properties"]["api_key"]["writeOnly"],
        json!(true),
        "{manifest}"
    );

    let out = spoke(&["call", "vault", "check_key", r#"{"guess": "nope"}"#]);
    assert_eq!(stdout(&out).trim(), "false", "{}", stderr(&out));
    let out = spoke(&["call", "vault", "fail"]);
    assert!(
        stderr(&out).contains("failed_precondition"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    let out = spoke(&["call", "vault", "boom"]);
    assert!(stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(stderr(&out).contains("boom with"), "{}", stderr(&out));
    let out = spoke(&["call", "vault", "double", r#"{"n": "two"}"#]);
    assert!(stderr(&out).contains("invalid_input"), "{}", stderr(&out));
    let out = spoke(&["call", "vault", "nosuch"]);
    assert!(stderr(&out).contains("not_found"), "{}", stderr(&out));
    let out = spoke(&["call", "vault", "double", r#"{"n": 21}"#]);
    assert_eq!(stdout(&out).trim(), "42", "{}", stderr(&out));

    connector.signal("TERM");
    assert!(
        connector.wait_for(Duration::from_secs(20)).is_some(),
        "the connector did not stop"
    );
    hub.signal("TERM");
    assert!(
        hub.wait_for(Duration::from_secs(20)).is_some(),
        "the hub did not stop"
    );
    // Let the reader threads take the last bytes.
    std::thread::sleep(Duration::from_millis(100));

    let hub_log = hub_out.bytes();
    let connector_log = connector_out.bytes();
    // The session really happened, and the logs are really on.
    let connector_text = String::from_utf8_lossy(&connector_log);
    assert!(
        connector_text.contains("registered with the hub"),
        "{connector_text}"
    );
    assert!(
        String::from_utf8_lossy(&hub_log).contains("vault"),
        "{}",
        hub_out.text()
    );
    assert_clean("the hub's output", &hub_log);
    assert_clean("the connector's output", &connector_log);
    assert_clean("the spoke CLI's output", &cli_out);
    let _ = std::fs::remove_dir_all(&home);
}

fn over_stdio() {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    connector_env(&mut cmd)
        .arg("stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start stdio connector");
    let mut stdin = child.stdin.take().unwrap();
    let out = Captured::default();
    out.drain(child.stdout.take().unwrap());
    out.drain(child.stderr.take().unwrap());
    let mut child = ChildGuard { child };
    let frames = [
        json!({"method": "ready_ack"}),
        json!({"method": "invoke", "params": {"id": "1", "action": "fail", "input": {}}}),
        json!({"method": "invoke", "params": {"id": "2", "action": "boom", "input": {}}}),
        json!({"method": "invoke", "params": {"id": "3", "action": "check_key", "input": {"guess": 1}}}),
        json!({"method": "invoke", "params": {"id": "4", "action": "double", "input": {"n": 4}}}),
        json!({"method": "shutdown"}),
    ];
    for frame in frames {
        writeln!(stdin, "{frame}").unwrap();
    }
    stdin.flush().unwrap();
    let status = child.wait_for(Duration::from_secs(20));
    assert!(status.is_some(), "the stdio connector did not stop");
    std::thread::sleep(Duration::from_millis(100));
    let text = out.text();
    for id in ["\"1\"", "\"2\"", "\"3\"", "\"4\""] {
        assert!(text.contains(id), "no answer to {id}:\n{text}");
    }
    assert!(text.contains("panicked"), "{text}");
    assert_clean("the stdio connector's output", &out.bytes());

    // `--describe` (the LibreFang config form) too.
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    connector_env(&mut cmd).arg("--describe");
    let out = run_with_limit(&mut cmd, Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean("--describe", &[out.stdout, out.stderr].concat());
}

fn main() -> std::process::ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return spoke::main();
    }
    let tests: [(&str, fn()); 2] = [
        ("through_the_hub", through_the_hub),
        ("over_stdio", over_stdio),
    ];
    for (name, test) in tests {
        eprint!("test {name} ... ");
        test();
        eprintln!("ok");
    }
    std::process::ExitCode::SUCCESS
}
