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
/// (ignores `shutdown`). Each start is appended to `$COUNTER`, its pid
/// written to `$PID_FILE`; a received `shutdown` is appended to
/// `$SHUTDOWN_FILE`. It says hello on stderr.
const SIDECAR_PY: &str = r#"
import json, os, sys, time
mode = os.environ.get("MODE", "echo")
if os.environ.get("COUNTER"):
    with open(os.environ["COUNTER"], "a") as f: f.write("start\n")
if os.environ.get("PID_FILE"):
    with open(os.environ["PID_FILE"], "w") as f: f.write(str(os.getpid()))
sys.stderr.write("hello from " + os.environ.get("CONNECTOR", "py") + " on stderr\n"); sys.stderr.flush()
def send(method, params):
    sys.stdout.write(json.dumps({"method": method, "params": params}) + "\n"); sys.stdout.flush()
if mode == "silent":
    sys.stdin.read(); sys.exit(0)
action = {"name": "echo", "description": "echo", "mode": "read", "admin_only": False, "hidden": False,
          "timeout_ms": None, "input_schema": {"type": "object"}, "output_schema": {}}
manifest = {"spoke": 1, "name": os.environ.get("CONNECTOR", "py"), "version": "1.0.0", "display_name": "Py",
            "description": "a Python sidecar", "config": {}, "actions": [action], "search_operators": [],
            "capabilities": ["actions"]}
send("ready", {"protocol_version": 1, "manifest": manifest})
if mode == "crash": sys.exit(1)
for line in sys.stdin:
    msg = json.loads(line); method = msg.get("method"); p = msg.get("params") or {}
    if method == "invoke":
        if mode == "die_on_invoke":
            time.sleep(0.2); sys.exit(3)
        send("result", {"id": p["id"], "output": {"text": p["input"].get("text")}})
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
                 SHUTDOWN_FILE = \"{}\"\nPID_FILE = \"{}\"\n\n",
                self.path("sidecar.py").display(),
                self.path(&format!("{name}.count")).display(),
                self.path(&format!("{name}.shutdown")).display(),
                self.path(&format!("{name}.pid")).display(),
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

    let (code, out, _) = cli(&["ls", "--hub", &hub.url], None).await;
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

    let (code, out, _) = cli(&["ls", "--hub", &hub.url], None).await;
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

/// The `echo` example binary, built if missing; None if it cannot be.
/// The real `echo` example binary, built if missing; a failed build fails the test.
fn echo_example() -> PathBuf {
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
        .join(format!("echo{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "echo", "--quiet"])
            .current_dir(&root)
            .status()
            .expect("cargo build --example echo");
        assert!(status.success(), "building the echo example failed");
    }
    assert!(path.exists(), "{} not found after building", path.display());
    path
}

#[tokio::test]
async fn the_echo_example_runs_as_a_sidecar() {
    let echo = tokio::task::spawn_blocking(echo_example).await.unwrap();
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
