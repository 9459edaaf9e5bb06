//! `spoke hub --sidecars FILE.toml`: real sidecar processes (small Python
//! scripts written by the tests, and the `echo` example) supervised by the
//! real hub.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Hub, cli};

/// A generic stdio sidecar; `MODE` picks its behavior: `echo` (answers
/// `echo`), `crash` (exits 1 right after `ready`), `silent` (never sends
/// `ready`), `die_on_invoke` (exits 3 while running a call), `stubborn`
/// (ignores `shutdown`), `full` (declares `max_in_flight: 1`, an action
/// `hold` answered only when cancelled, and a search operator `upper`),
/// `dirty` (writes bytes that are not UTF-8 to stdout and stderr, a bare
/// LibreFang `message` after `ready`, and a stderr line per call) and
/// `orphan` (starts a `sleep` that inherits its stdout, its pid appended to
/// `$ORPHAN_PID`, then exits 3 while running a call). Each start is
/// appended to `$COUNTER`, its pid written to `$PID_FILE`; a received
/// `shutdown` is appended to `$SHUTDOWN_FILE`, the params of each `invoke`
/// to `$INVOKES_FILE` and the id of each `cancel` to `$CANCEL_FILE`, one
/// JSON per line. It says hello on stderr.
const SIDECAR_PY: &str = r#"
import json, os, subprocess, sys, time
mode = os.environ.get("MODE", "echo")
def record(var, value):
    if os.environ.get(var):
        with open(os.environ[var], "a") as f: f.write(json.dumps(value) + "\n")
if os.environ.get("COUNTER"):
    with open(os.environ["COUNTER"], "a") as f: f.write("start\n")
if os.environ.get("PID_FILE"):
    with open(os.environ["PID_FILE"], "w") as f: f.write(str(os.getpid()))
sys.stderr.write("hello from " + os.environ.get("CONNECTOR", "py") + " on stderr\n"); sys.stderr.flush()
def send(method, params):
    sys.stdout.write(json.dumps({"method": method, "params": params}) + "\n"); sys.stdout.flush()
def bad_bytes(stream, data):
    stream.flush(); stream.buffer.write(data); stream.buffer.flush()
if mode == "silent":
    sys.stdin.read(); sys.exit(0)
def action(name):
    return {"name": name, "description": name, "mode": "read", "admin_only": False, "hidden": False,
            "timeout_ms": None, "input_schema": {"type": "object"}, "output_schema": {}}
actions = [action("echo")]
operators = []
if mode == "full":
    actions.append(action("hold"))
    operators.append({"operator": "upper", "attribute_key": "upper", "value_type": "text",
                      "description": "upper-cases"})
manifest = {"spoke": 1, "name": os.environ.get("CONNECTOR", "py"), "version": "1.0.0", "display_name": "Py",
            "description": "a Python sidecar", "config": {}, "actions": actions, "search_operators": operators,
            "capabilities": ["actions"]}
ready = {"protocol_version": 1, "manifest": manifest}
if mode == "full":
    ready["spoke"] = {"max_in_flight": 1}
send("ready", ready)
if mode == "crash": sys.exit(1)
if mode == "dirty":
    bad_bytes(sys.stdout, b"\xff\xfe not utf-8 \xc3\n")
    bad_bytes(sys.stderr, b"\xff\xfe bad bytes on stderr\n")
    send("message", {"user_id": "u1", "user_name": "Ann", "text": "from the platform"})
if mode == "orphan":
    grandchild = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL)
    with open(os.environ["ORPHAN_PID"], "a") as f: f.write(str(grandchild.pid) + "\n")
held = set()
for line in sys.stdin:
    msg = json.loads(line); method = msg.get("method"); p = msg.get("params") or {}
    if method == "invoke":
        record("INVOKES_FILE", p)
        if mode in ("die_on_invoke", "orphan"):
            time.sleep(0.2); sys.exit(3)
        if p["action"] == "hold":
            held.add(p["id"]); continue
        if mode == "dirty":
            bad_bytes(sys.stdout, b"\x80\x81\n")
            sys.stderr.write("serving " + str(p["input"].get("text")) + "\n"); sys.stderr.flush()
        send("result", {"id": p["id"], "output": {"text": p["input"].get("text")}})
    elif method == "resolve":
        record("INVOKES_FILE", p)
        send("result", {"id": p["id"], "output": p["value"].upper()})
    elif method == "cancel":
        record("CANCEL_FILE", p["id"])
        if p["id"] in held:
            held.discard(p["id"])
            send("result", {"id": p["id"], "error": {"code": "cancelled", "message": "held call cancelled"}})
    elif method == "shutdown":
        if os.environ.get("SHUTDOWN_FILE"):
            with open(os.environ["SHUTDOWN_FILE"], "a") as f: f.write("shutdown\n")
        if mode == "stubborn":
            continue
        break
"#;

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "spoke-sidecars-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sidecar.py"), SIDECAR_PY).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `sidecars.toml` with one Python sidecar per `(name, mode, extra)`.
    fn config(&self, sidecars: &[(&str, &str, &str)]) -> String {
        let mut text = String::new();
        for (name, mode, extra) in sidecars {
            text.push_str(&format!(
                "[[sidecar]]\nname = \"{name}\"\ncommand = \"python3\"\nargs = [\"{}\"]\n{extra}\n\
                 [sidecar.env]\nMODE = \"{mode}\"\nCONNECTOR = \"{name}\"\nCOUNTER = \"{}\"\n\
                 SHUTDOWN_FILE = \"{}\"\nPID_FILE = \"{}\"\nINVOKES_FILE = \"{}\"\n\
                 CANCEL_FILE = \"{}\"\nORPHAN_PID = \"{}\"\n\n",
                self.path("sidecar.py").display(),
                self.path(&format!("{name}.count")).display(),
                self.path(&format!("{name}.shutdown")).display(),
                self.path(&format!("{name}.pid")).display(),
                self.path(&format!("{name}.invokes")).display(),
                self.path(&format!("{name}.cancels")).display(),
                self.path(&format!("{name}.orphans")).display(),
            ));
        }
        let path = self.path("sidecars.toml");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether process `pid` is running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // "<pid> (<comm>) <state> ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn pid_in(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// `spoke ls --json`, parsed.
async fn ls(hub: &Hub) -> Value {
    let (code, out, err) = cli(&["ls", "--json", "--hub", &hub.url], None).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The `ls --json` entry of instance `id`, once `check` accepts it (bounded).
async fn wait_instance(
    hub: &Hub,
    id: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let listing = ls(hub).await;
        let found = listing["connectors"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["instances"].as_array().cloned().unwrap_or_default())
            .find(|i| i["id"] == id);
        if let Some(instance) = found.filter(|i| check(i)) {
            return instance;
        }
        assert!(
            started.elapsed() < limit,
            "instance {id} not as expected within {limit:?}; ls: {listing}\nhub log:\n{}",
            hub.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_python_sidecar_is_supervised_callable_and_shut_down() {
    let dir = TempDir::new();
    let config = dir.config(&[("py", "echo", "")]);
    let mut hub = Hub::start(&["--sidecars", &config, "--shutdown-grace", "2s"]);
    let instance = wait_instance(&hub, "py", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    assert_eq!(instance["metadata"]["transport"], "stdio");

    let (code, out, err) = cli(
        &["call", "py", "echo", r#"{"text":"hi"}"#, "--hub", &hub.url],
        None,
    )
    .await;
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let output: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(output["text"], "hi");

    let (code, out, _) = cli(&["ls", "--table", "--hub", &hub.url], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("py") && out.contains("ready"), "{out}");

    // SIGTERM: the sidecar is told to shut down, the hub exits cleanly.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &hub.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = hub.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}; log:\n{}", hub.logs());
    assert_eq!(
        lines_in(&dir.path("py.shutdown")),
        1,
        "log:\n{}",
        hub.logs()
    );
    assert_eq!(lines_in(&dir.path("py.count")), 1);
    // Its stderr went to the hub's log, under its name.
    let logs = hub.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("hello from py on stderr"))
        .unwrap_or_else(|| panic!("no stderr line in the log:\n{logs}"));
    assert!(line.contains("sidecar=py"), "{line}");
}

#[tokio::test]
async fn with_auth_a_sidecar_attaches_with_its_own_trusted_key() {
    let dir = TempDir::new();
    let config = dir.config(&[("py", "echo", "")]);
    let data = dir.path("data");
    let data_arg = data.display().to_string();
    let hub = Hub::start(&["--sidecars", &config, "--data", &data_arg]);
    let token = std::fs::read_to_string(data.join("operator.token")).unwrap();
    let token = token.trim();
    let ready = |hub: &Hub| {
        let hub_url = hub.url.clone();
        async move {
            let (code, out, err) =
                cli(&["ls", "--json", "--hub", &hub_url, "--token", token], None).await;
            assert_eq!(code, 0, "{err}");
            out.contains("\"ready\"")
        }
    };
    let started = Instant::now();
    while !ready(&hub).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sidecar is not ready; log:\n{}",
            hub.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out, err) = cli(
        &[
            "call",
            "py",
            "echo",
            r#"{"text":"hi"}"#,
            "--hub",
            &hub.url,
            "--token",
            token,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(data.join("keys/sidecar_py.pem").exists());
    // Without a token the hub refuses the client.
    let (code, _, err) = cli(
        &["ls", "--hub", &hub.url, "--data", &data_arg, "--token", ""],
        None,
    )
    .await;
    assert_eq!(
        code, 0,
        "the operator token file is read when --token is empty: {err}"
    );
    let (code, _, err) = cli(&["ls", "--hub", &hub.url, "--data", "/nonexistent"], None).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("unauthenticated"), "{err}");
}

#[tokio::test]
async fn with_tls_and_auth_a_sidecar_dials_the_hubs_own_listener() {
    let dir = TempDir::new();
    let config = dir.config(&[("py", "echo", "")]);
    // The certificate names a host, not the loopback address dialed: the
    // bridge checks the name in it.
    let made = rcgen::generate_simple_self_signed(vec!["hub.internal".to_owned()]).unwrap();
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    let data = dir.path("data");
    let hub = Hub::start(&[
        "--sidecars",
        &config,
        "--data",
        &data.display().to_string(),
        "--tls-cert",
        &cert.display().to_string(),
        "--tls-key",
        &key.display().to_string(),
    ]);
    assert!(hub.url.starts_with("https://"), "{}", hub.url);
    let started = Instant::now();
    while !hub
        .logs()
        .contains("instance `py` of connector `py` attached")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sidecar did not attach over TLS; log:\n{}",
            hub.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !hub.logs().contains("pending an administrator"),
        "{}",
        hub.logs()
    );
}

#[tokio::test]
async fn a_sidecar_that_ignores_shutdown_is_killed_after_the_grace() {
    let dir = TempDir::new();
    let config = dir.config(&[("stubborn", "stubborn", "")]);
    let mut hub = Hub::start(&["--sidecars", &config, "--shutdown-grace", "1s"]);
    wait_instance(&hub, "stubborn", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    let pid = pid_in(&dir.path("stubborn.pid"));
    assert!(alive(pid));
    let stopped = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &hub.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = hub.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}; log:\n{}", hub.logs());
    // Told to shut down, given the grace, then killed.
    assert_eq!(lines_in(&dir.path("stubborn.shutdown")), 1);
    assert!(
        stopped.elapsed() >= Duration::from_secs(1),
        "no grace given"
    );
    assert!(!alive(pid), "sidecar {pid} outlived the hub");
    assert!(
        hub.logs().contains("did not stop in time"),
        "{}",
        hub.logs()
    );
}

#[tokio::test]
async fn a_crashing_sidecar_is_restarted_then_the_breaker_trips() {
    let dir = TempDir::new();
    let config = dir.config(&[("crashy", "crash", "max_failures = 3")]);
    let hub = Hub::start(&["--sidecars", &config]);
    let instance = wait_instance(&hub, "crashy", Duration::from_secs(15), |i| {
        i["state"] == "broken"
    })
    .await;
    let last_error = instance["metadata"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(last_error.contains("exited (exit status: 1)"), "{instance}");
    // Started three times, then never again.
    assert_eq!(lines_in(&dir.path("crashy.count")), 3);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(lines_in(&dir.path("crashy.count")), 3);

    let (code, out, _) = cli(&["ls", "--table", "--hub", &hub.url], None).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("crashy/crashy (broken): last error: exited (exit status: 1)"),
        "{out}"
    );
    assert!(hub.logs().contains("not restarting"), "{}", hub.logs());
}

#[tokio::test]
async fn a_sidecar_that_never_says_ready_times_out_and_is_reported() {
    let dir = TempDir::new();
    let config = dir.config(&[(
        "mute",
        "silent",
        "ready_timeout = \"500ms\"\nmax_failures = 1",
    )]);
    let started = Instant::now();
    let hub = Hub::start(&["--sidecars", &config]);
    let instance = wait_instance(&hub, "mute", Duration::from_secs(10), |i| {
        i["state"] == "broken"
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        instance["metadata"]["last_error"], "never sent ready within 500ms",
        "{instance}"
    );
}

#[tokio::test]
async fn a_sidecar_that_cannot_start_is_reported_with_its_reason() {
    let echo_channel = example_bin("echo_channel").await;
    let dir = TempDir::new();
    let config = binary_config(
        &dir,
        "chan",
        &echo_channel,
        "ECHO_CHANNEL_MAX_ECHOES = \"lots\"",
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "max_failures = 1\n",
    )
    .unwrap();
    let hub = Hub::start(&["--sidecars", &config]);
    let instance = wait_instance(&hub, "chan", Duration::from_secs(15), |i| {
        i["state"] == "broken"
    })
    .await;
    // The connector's own `error` frame, not just its exit code.
    assert_eq!(
        instance["metadata"]["last_error"],
        "exited (exit status: 2) before sending ready: invalid configuration for connector \
         `echo_channel` (1 problem):\n  - `max_echoes` (env ECHO_CHANNEL_MAX_ECHOES): \
         invalid value \"lots\": invalid digit found in string",
        "{instance}"
    );
}

#[tokio::test]
async fn a_call_in_flight_when_its_sidecar_exits_fails_promptly() {
    let dir = TempDir::new();
    let config = dir.config(&[("dies", "die_on_invoke", "")]);
    let hub = Hub::start(&["--sidecars", &config]);
    wait_instance(&hub, "dies", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    let started = Instant::now();
    let (code, out, err) = cli(
        &[
            "call",
            "dies",
            "echo",
            r#"{"text":"hi"}"#,
            "--timeout",
            "30s",
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "not prompt");
    assert!(code == 1 || code == 3, "code {code}: {out} {err}");
    let text = format!("{out}{err}");
    assert!(text.contains("sidecar `dies` exited"), "{text}");
    assert!(text.contains("unavailable"), "{text}");
    // It is restarted and serves again.
    wait_instance(&hub, "dies", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    assert!(lines_in(&dir.path("dies.count")) >= 2);
}

/// The real example binary `name`, built (once per test run, so it is never
/// stale: cargo does nothing when it is up to date); a failed build fails
/// the test.
fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    // tests run from target/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        // Not this test's CARGO_MANIFEST_DIR: ring's build script tracks
        // it, and everything above ring would be built again.
        let status = std::process::Command::new(env!("CARGO"))
            .env_remove("CARGO_MANIFEST_DIR")
            .env_remove("CARGO_MANIFEST_PATH")
            .args(["build", "--example", name, "--quiet"])
            .current_dir(&root)
            .status()
            .unwrap_or_else(|e| panic!("cargo build --example {name}: {e}"));
        assert!(status.success(), "building the {name} example failed");
        built.push(name.to_owned());
    }
    assert!(path.exists(), "{} not found after building", path.display());
    path
}

async fn example_bin(name: &'static str) -> PathBuf {
    tokio::task::spawn_blocking(move || example(name))
        .await
        .unwrap()
}

/// Writes `sidecars.toml` with one sidecar running `command` (`stdio`).
fn binary_config(dir: &TempDir, name: &str, command: &Path, env: &str) -> String {
    let path = dir.path("sidecars.toml");
    std::fs::write(
        &path,
        format!(
            "[[sidecar]]\nname = \"{name}\"\ncommand = \"{}\"\nenv = {{ {env} }}\n",
            command.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The JSON lines of a file the Python sidecar records to.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (bounded) until `check` accepts the records in `path`.
async fn wait_records(hub: &Hub, path: &Path, what: &str, check: impl Fn(&[Value]) -> bool) {
    let started = Instant::now();
    loop {
        let found = records(path);
        if check(&found) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} not seen in {}: {found:?}\nhub log:\n{}",
            path.display(),
            hub.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_echo_example_runs_as_a_sidecar() {
    let echo = example_bin("echo").await;
    let dir = TempDir::new();
    let config = dir.path("sidecars.toml");
    std::fs::write(
        &config,
        format!(
            "[[sidecar]]\nname = \"echo-1\"\ncommand = \"{}\"\nenv = {{ ECHO_PREFIX = \"> \" }}\n",
            echo.display()
        ),
    )
    .unwrap();
    let hub = Hub::start(&["--sidecars", &config.display().to_string()]);
    wait_instance(&hub, "echo-1", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    let (code, out, err) = cli(
        &[
            "call",
            "echo",
            "echo",
            r#"{"text":"hi"}"#,
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("> hi"), "{out}");
}

#[tokio::test]
async fn bytes_that_are_not_utf8_on_stdout_and_stderr_do_not_stop_a_sidecar() {
    let dir = TempDir::new();
    let config = dir.config(&[("dirty", "dirty", "")]);
    let hub = Hub::start(&["--sidecars", &config]);
    wait_instance(&hub, "dirty", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    for text in ["hi", "again"] {
        let input = format!(r#"{{"text":"{text}"}}"#);
        let (code, out, err) =
            cli(&["call", "dirty", "echo", &input, "--hub", &hub.url], None).await;
        assert_eq!(
            code,
            0,
            "stdout {out} stderr {err}\nhub log:\n{}",
            hub.logs()
        );
        let output: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(output["text"], text);
    }
    // Never restarted: the bad bytes cost a warning each, nothing more.
    assert_eq!(lines_in(&dir.path("dirty.count")), 1);
    let logs = hub.logs();
    assert!(logs.contains("not valid UTF-8"), "{logs}");
    // Its stderr is still read (and logged) after the bad bytes there, so
    // the sidecar never writes to a closed pipe.
    assert!(logs.contains("bad bytes on stderr"), "{logs}");
    assert!(logs.contains("serving again"), "{logs}");
    // A bare LibreFang frame (what a producer writes) is relayed, not ignored.
    assert!(
        logs.contains(
            "a `message` frame (no request id) relayed to the hub as a `librefang` event"
        ),
        "{logs}"
    );
    assert!(!logs.contains("ignoring `message`"), "{logs}");
}

#[tokio::test]
async fn cancel_resolve_metadata_and_max_in_flight_relay_through_a_sidecar() {
    let dir = TempDir::new();
    let config = dir.config(&[("full", "full", "")]);
    let hub = Hub::start(&["--sidecars", &config]);
    wait_instance(&hub, "full", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    let invokes = dir.path("full.invokes");

    // The call's metadata and deadline reach the sidecar.
    let (code, out, err) = cli(
        &[
            "call",
            "full",
            "echo",
            r#"{"text":"hi"}"#,
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    let first = records(&invokes).pop().expect("the invoke was recorded");
    assert_eq!(first["metadata"]["caller"], "spoke-cli", "{first}");
    let deadline = first["deadline_ms"].as_u64().expect("a deadline");
    assert!((5_000..=10_000).contains(&deadline), "{first}");

    // A search operator resolves through the hub.
    let (code, out, err) = cli(
        &[
            "call",
            "full",
            "upper",
            "rs",
            "--operator",
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), "RS");
    let resolve = records(&invokes).pop().unwrap();
    assert_eq!(resolve["operator"], "upper", "{resolve}");
    assert_eq!(resolve["metadata"]["caller"], "spoke-cli", "{resolve}");

    // A call the sidecar holds takes its only slot (`max_in_flight: 1` in
    // its ready frame): the next call waits in the hub and times out there.
    let url = hub.url.clone();
    let held = tokio::spawn(async move {
        cli(
            &[
                "call",
                "full",
                "hold",
                "{}",
                "--timeout",
                "3s",
                "--hub",
                &url,
            ],
            None,
        )
        .await
    });
    wait_records(&hub, &invokes, "the hold invoke", |r| {
        r.iter().any(|i| i["action"] == "hold")
    })
    .await;
    let (code, out, err) = cli(
        &[
            "call",
            "full",
            "echo",
            r#"{"text":"queued"}"#,
            "--timeout",
            "1s",
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    assert_ne!(code, 0, "the second call got a slot: {out} {err}");
    assert!(
        !records(&invokes)
            .iter()
            .any(|i| i["input"]["text"] == "queued"),
        "the sidecar got a second call at once: {:?}",
        records(&invokes)
    );
    // The held call's deadline passes: the hub cancels it, the bridge
    // relays the `cancel`.
    let (code, out, err) = held.await.unwrap();
    assert_ne!(code, 0, "{out} {err}");
    let hold_id = records(&invokes)
        .iter()
        .find(|i| i["action"] == "hold")
        .map(|i| i["id"].clone())
        .unwrap();
    wait_records(&hub, &dir.path("full.cancels"), "the cancel", |r| {
        r.contains(&hold_id)
    })
    .await;
}

#[tokio::test]
async fn a_call_the_sidecar_rejects_fails_promptly_with_its_reason() {
    let echo = example_bin("echo").await;
    let dir = TempDir::new();
    let config = binary_config(&dir, "tight", &echo, "SPOKE_STDIO_MAX_LINE = \"300\"");
    let hub = Hub::start(&["--sidecars", &config]);
    wait_instance(&hub, "tight", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    let (code, out, err) = cli(
        &[
            "call",
            "echo",
            "echo",
            r#"{"text":"short"}"#,
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out} {err}");
    // Longer than the sidecar takes: its `error` frame names the line, and
    // the bridge answers the call with it instead of leaving it waiting.
    let input = serde_json::json!({ "text": "x".repeat(1000) }).to_string();
    let started = Instant::now();
    let (code, out, err) = cli(
        &[
            "call",
            "echo",
            "echo",
            &input,
            "--timeout",
            "15s",
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not prompt: {:?}",
        started.elapsed()
    );
    assert_eq!(code, 1, "{out} {err}");
    let text = format!("{out}{err}");
    assert!(text.contains("invalid_input"), "{text}");
    assert!(text.contains("longer than 300 bytes"), "{text}");
    assert!(text.contains("sidecar `tight` rejected the call"), "{text}");
    // And it goes on serving.
    let (code, out, err) = cli(
        &[
            "call",
            "echo",
            "echo",
            r#"{"text":"after"}"#,
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out} {err}");
}

#[tokio::test]
async fn a_sidecar_whose_child_keeps_its_stdout_open_is_still_seen_to_exit() {
    let dir = TempDir::new();
    let config = dir.config(&[("orphan", "orphan", "")]);
    let hub = Hub::start(&["--sidecars", &config]);
    wait_instance(&hub, "orphan", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    let started = Instant::now();
    let (code, out, err) = cli(
        &[
            "call",
            "orphan",
            "echo",
            r#"{"text":"hi"}"#,
            "--timeout",
            "15s",
            "--hub",
            &hub.url,
        ],
        None,
    )
    .await;
    let elapsed = started.elapsed();
    let text = format!("{out}{err}");
    // Kill the `sleep`s first, whatever the outcome.
    let orphans = std::fs::read_to_string(dir.path("orphan.orphans")).unwrap_or_default();
    let kill_orphans = |pids: &str| {
        for pid in pids.lines() {
            let _ = std::process::Command::new("kill").arg(pid).status();
        }
    };
    assert!(
        elapsed < Duration::from_secs(5),
        "not prompt: {elapsed:?}; {text}"
    );
    assert!(code == 1 || code == 3, "code {code}: {text}");
    assert!(text.contains("sidecar `orphan` exited"), "{text}");
    // Restarted.
    wait_instance(&hub, "orphan", Duration::from_secs(10), |i| {
        i["state"] == "ready"
    })
    .await;
    assert!(lines_in(&dir.path("orphan.count")) >= 2);
    assert!(
        hub.logs().contains("its stdout is still open"),
        "{}",
        hub.logs()
    );
    kill_orphans(&orphans);
    kill_orphans(&std::fs::read_to_string(dir.path("orphan.orphans")).unwrap_or_default());
}

/// The events of one `send` through the hub's InvokeStream, routed to
/// `instance`, and its result's outcome.
async fn send_events(
    hub: &Hub,
    instance: &str,
) -> (Vec<spoke_proto::v1::Event>, spoke_proto::v1::InstanceResult) {
    use spoke_proto::v1::invoke_stream_item::Item;
    use spoke_proto::v1::{Encoding, InvokeRequest, Route, route};
    let send = serde_json::json!({
        "channel_id": "c1", "text": "hello", "thread_id": "t1",
        "user": {"platform_id": "c1", "display_name": "Alice", "librefang_user": null}
    });
    let request = InvokeRequest {
        connector: "echo_channel".into(),
        action: "send".into(),
        payload: send.to_string().into_bytes().into(),
        encoding: Encoding::Json.into(),
        route: Some(Route {
            target: Some(route::Target::Instance(instance.into())),
        }),
        ..Default::default()
    };
    let mut client = hub.client().await;
    let mut stream = client
        .invoke_stream(request)
        .await
        .unwrap_or_else(|s| panic!("{instance}: {s:?}"))
        .into_inner();
    let mut events = Vec::new();
    let mut result = None;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("in time")
        .unwrap()
    {
        match item.item.unwrap() {
            Item::Event(e) => events.push(e),
            Item::Result(r) => result = Some(r),
            Item::Chunk(c) => panic!("unexpected chunk {c:?}"),
        }
    }
    (events, result.expect("a result"))
}

#[tokio::test]
async fn librefang_events_of_a_call_reach_the_caller_as_from_a_grpc_instance() {
    let channel = example_bin("echo_channel").await;
    let dir = TempDir::new();
    let config = binary_config(&dir, "side", &channel, "");
    let hub = Hub::start(&["--sidecars", &config]);
    // The same connector attached over gRPC, for comparison.
    let _grpc = tokio::process::Command::new(&channel)
        .arg("serve")
        .env("SPOKE_HUB_URL", &hub.url)
        .env("SPOKE_INSTANCE_ID", "grpc")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start echo_channel serve");
    for id in ["side", "grpc"] {
        wait_instance(&hub, id, Duration::from_secs(10), |i| i["state"] == "ready").await;
    }
    let mut seen = Vec::new();
    for instance in ["side", "grpc"] {
        let (events, result) = send_events(&hub, instance).await;
        assert_eq!(result.instance_id, instance);
        assert!(
            matches!(
                result.outcome,
                Some(spoke_proto::v1::instance_result::Outcome::Payload(_))
            ),
            "{instance}: {result:?}"
        );
        assert_eq!(events.len(), 1, "{instance}: {events:?}");
        let event = &events[0];
        assert_eq!(event.kind, "custom", "{instance}");
        assert!(!event.request_id.is_empty(), "{instance}");
        let mut json: Value = serde_json::from_str(&event.json).unwrap();
        assert_eq!(json["request_id"], event.request_id.as_str(), "{instance}");
        assert_eq!(json["action"], "send", "{instance}: {json}");
        assert_eq!(json["name"], "librefang", "{instance}: {json}");
        assert_eq!(
            json["data"],
            serde_json::json!({"method": "message", "params": {
                "user_id": "c1", "user_name": "Alice",
                "text": "echo: hello", "content": {"Text": "echo: hello"},
                "channel_id": "c1", "platform": "echo_channel", "thread_id": "t1"
            }}),
            "{instance}"
        );
        json["request_id"] = Value::Null;
        seen.push(json);
    }
    // Alike, whichever transport the instance is on.
    assert_eq!(seen[0], seen[1]);
}
