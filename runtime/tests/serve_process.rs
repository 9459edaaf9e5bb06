//! `serve` as the example binaries run it: a real process attached to the
//! scripted hub over loopback, stopped with SIGTERM.
#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use spoke_proto::v1::Goodbye;
use spoke_proto::v1::connector_frame::Frame;
use support::*;

/// Includes building the examples the first time.
const LIMIT: Duration = Duration::from_secs(300);

/// The path of an example binary of the root `spoke` package, built once.
fn example_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    // tests run from target/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    BUILT.get_or_init(|| {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        // Not this test's CARGO_MANIFEST_DIR: ring's build script tracks
        // it, and everything above ring would be built again.
        let status = Command::new(env!("CARGO"))
            .env_remove("CARGO_MANIFEST_DIR")
            .env_remove("CARGO_MANIFEST_PATH")
            .args(["build", "-p", "spoke", "--examples", "--quiet"])
            .current_dir(workspace)
            .status()
            .expect("cargo build --examples");
        assert!(status.success(), "building the examples failed");
    });
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "example binary {} not found", bin.display());
    bin
}

/// A connector process; killed if still running when dropped.
struct Connector {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// Its HOME, where its key is made (`~/.spoke/keys`).
    home: tempfile::TempDir,
}

impl Connector {
    /// Starts an example with a clean environment (HOME a new temporary
    /// directory) plus `env`.
    fn start(example: &str, args: &[&str], env: &[(&str, &str)]) -> Connector {
        Connector::start_in(tempfile::tempdir().unwrap(), example, args, env)
    }

    /// Starts an example with this HOME.
    fn start_in(
        home: tempfile::TempDir,
        example: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Connector {
        let bin = example_bin(example);
        let mut cmd = Command::new(bin);
        cmd.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        let mut child = cmd
            .args(args)
            .env("HOME", home.path())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the example");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Connector {
            child,
            stderr,
            home,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, failing the test after `limit`.
    async fn exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the stderr thread catch up.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the connector did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until stderr contains `text`.
    async fn wait_for_log(&self, text: &str, limit: Duration) {
        let started = Instant::now();
        while !self.stderr().contains(text) {
            assert!(
                started.elapsed() < limit,
                "no `{text}` in stderr within {limit:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_example_serves_by_default_and_exits_0_on_sigterm() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        // No subcommand: `serve` is the default.
        let mut echo = Connector::start(
            "echo",
            &[],
            &[
                ("SPOKE_HUB_URL", &hub.url),
                ("SPOKE_INSTANCE_ID", "echo-1"),
                ("SPOKE_TAGS", "blue, green"),
                ("SPOKE_METADATA_ZONE", "a"),
                ("ECHO_PREFIX", "> "),
            ],
        );
        let (mut conn, register) = hub.attach(registered("e-tok", 10_000, false)).await;
        let instance = register.instance.unwrap();
        assert_eq!(
            (instance.id.as_str(), instance.display_name.as_str()),
            ("echo-1", "Echo")
        );
        assert_eq!(instance.tags, ["blue", "green"]);
        assert_eq!(instance.metadata["zone"], "a");
        assert_eq!(register.max_in_flight, 64);
        let manifest: spoke_runtime::Manifest =
            serde_json::from_str(&register.manifest_json).unwrap();
        assert_eq!(manifest.name, "echo");

        conn.invoke("r1", "echo", json!({"text": "hi"}), 0).await;
        assert_eq!(ok_json(&conn.result().await), json!("> hi"));
        echo.wait_for_log("registered with the hub", STEP).await;

        echo.signal("TERM");
        match conn.next().await {
            Some(Frame::Goodbye(Goodbye { reason })) => assert_eq!(reason, "shutting down"),
            other => panic!("expected Goodbye, got {other:?}"),
        }
        drop(conn);
        let status = echo.exit(STEP).await;
        assert_eq!(status.code(), Some(0), "stderr:\n{}", echo.stderr());
        assert!(
            echo.stderr().contains("SIGTERM received"),
            "{}",
            echo.stderr()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_call_delivers_the_result_then_goodbye_then_exits_0() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        // `echo` answers at once; `faults`' `sleep` gives SIGTERM a call to land in.
        let mut faults = Connector::start(
            "faults",
            &["serve"],
            &[
                ("SPOKE_HUB_URL", &hub.url),
                ("SPOKE_INSTANCE_ID", "faults-1"),
            ],
        );
        let (mut conn, _) = hub.attach(registered("f-tok", 10_000, false)).await;
        conn.invoke("nap", "sleep", json!({"ms": 1_000}), 0).await;
        let started = conn.event_of("nap").await;
        assert_eq!(started.kind, "custom");

        faults.signal("TERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.invoke("late", "add", json!({"a": 1, "b": 2}), 0).await;

        let r = conn.result().await;
        assert_eq!(r.request_id, "late");
        let e = error_of(&r);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("unavailable", "connector is shutting down")
        );
        let r = conn.result().await;
        assert_eq!(r.request_id, "nap");
        assert_eq!(ok_json(&r), json!({"slept_ms": 1_000}));
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        assert_eq!(conn.next().await, None);
        drop(conn);
        let status = faults.exit(STEP).await;
        assert_eq!(status.code(), Some(0), "stderr:\n{}", faults.stderr());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_shutdown_and_late_calls_are_answered_cancelled() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let mut faults = Connector::start(
            "faults",
            &[],
            &[
                ("SPOKE_HUB_URL", &hub.url),
                ("SPOKE_INSTANCE_ID", "faults-2"),
                ("SPOKE_SHUTDOWN_GRACE", "300ms"),
            ],
        );
        let (mut conn, _) = hub.attach(registered("g-tok", 10_000, false)).await;
        conn.invoke("long", "sleep", json!({"ms": 60_000}), 0).await;
        conn.event_of("long").await;
        let asked = Instant::now();
        faults.signal("INT");
        let e = error_of(&conn.result().await);
        assert_eq!(e.code, "cancelled");
        assert!(matches!(conn.next().await, Some(Frame::Goodbye(_))));
        drop(conn);
        assert_eq!(faults.exit(STEP).await.code(), Some(0));
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "took {:?}",
            asked.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hub_is_retried_with_backoff_and_sigterm_still_exits_0() {
    bounded(LIMIT, async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let mut echo = Connector::start("echo", &["serve"], &[("SPOKE_HUB_URL", &url)]);
        echo.wait_for_log("reconnecting in", STEP).await;
        let log = echo.stderr();
        assert!(
            log.contains("SPOKE_INSTANCE_ID is not set"),
            "warns about the generated id:\n{log}"
        );
        echo.signal("TERM");
        assert_eq!(echo.exit(STEP).await.code(), Some(0), "{}", echo.stderr());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_spoke_variables_and_bad_config_are_usage_errors() {
    bounded(LIMIT, async {
        for (var, value) in [
            ("SPOKE_MAX_IN_FLIGHT", "many"),
            ("SPOKE_SHUTDOWN_GRACE", "soon"),
            ("SPOKE_HUB_URL", "ftp://hub:7700"),
            ("SPOKE_TLS_CA", "/no/such/ca.pem"),
        ] {
            let mut echo = Connector::start("echo", &["serve"], &[(var, value)]);
            let status = echo.exit(STEP).await;
            let err = echo.stderr();
            assert_eq!(status.code(), Some(2), "{var}={value}: {err}");
            assert!(
                err.contains(&format!("error: {var}: ")),
                "{var}={value}: {err}"
            );
        }
        // A config error (the files connector needs FILES_ROOT) stops `serve` before attaching.
        let mut files = Connector::start("files", &[], &[("SPOKE_HUB_URL", "http://127.0.0.1:9")]);
        let status = files.exit(STEP).await;
        assert_eq!(status.code(), Some(2), "{}", files.stderr());
        assert!(files.stderr().contains("FILES_ROOT"), "{}", files.stderr());
        // A hub is never dialled: nothing says "reconnecting".
        assert!(
            !files.stderr().contains("reconnecting"),
            "{}",
            files.stderr()
        );
    })
    .await;
}

/// The fingerprint the log line `loaded`/`generated ... instance key` shows.
fn logged_fingerprint(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("instance key"))
        .unwrap_or_else(|| panic!("no key line in:\n{log}"));
    let at = line.find("fingerprint=").expect("fingerprint=") + "fingerprint=".len();
    line[at..at + 16].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_made_once_in_home_0600_and_proves_the_same_identity_after_a_restart() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let url = hub.url.clone();
        let env = [
            ("SPOKE_HUB_URL", url.as_str()),
            ("SPOKE_INSTANCE_ID", "echo/eu 1"),
            ("SPOKE_REGISTRATION_TOKEN", "reg-8c1f-secret"),
            ("RUST_LOG", "debug"),
        ];
        let mut echo = Connector::start("echo", &[], &env);
        let (conn, register) = hub.attach(registered_pending("e-tok", 10_000)).await;
        let first = verified(&register);
        assert_eq!(
            register.credentials.as_ref().unwrap().registration_token,
            "reg-8c1f-secret"
        );
        let path = echo.home.path().join(".spoke/keys/echo_echo_eu_1.pem");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        echo.wait_for_log("pending approval", STEP).await;
        let log = echo.stderr();
        assert!(log.contains("generated a new instance key"), "{log}");
        assert_eq!(logged_fingerprint(&log), first.fingerprint());
        assert!(
            log.contains("spoke approve echo/eu 1"),
            "names the command to run:\n{log}"
        );
        echo.signal("TERM");
        drop(conn);
        assert_eq!(echo.exit(STEP).await.code(), Some(0));
        assert!(
            !echo.stderr().contains("reg-8c1f-secret"),
            "the registration token is never logged:\n{}",
            echo.stderr()
        );

        // Restarted with the same HOME: the same key, loaded.
        let home = std::mem::replace(&mut echo.home, tempfile::tempdir().unwrap());
        let mut echo = Connector::start_in(home, "echo", &[], &env);
        let (conn, register) = hub.attach(registered("e-tok2", 10_000, false)).await;
        assert_eq!(verified(&register).public_key, first.public_key);
        echo.wait_for_log("loaded the instance key", STEP).await;
        echo.signal("TERM");
        drop(conn);
        assert_eq!(echo.exit(STEP).await.code(), Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unprotected_key_file_is_a_start_up_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("mounted.pem");
        let missing_text = missing.display().to_string();
        let mut echo = Connector::start(
            "echo",
            &[],
            &[
                ("SPOKE_HUB_URL", "http://127.0.0.1:9"),
                ("SPOKE_KEY_PATH", &missing_text),
            ],
        );
        assert_eq!(echo.exit(STEP).await.code(), Some(2), "{}", echo.stderr());
        let err = echo.stderr();
        assert!(
            err.contains(&format!(
                "error: SPOKE_KEY_PATH `{missing_text}`: cannot read"
            )),
            "{err}"
        );
        assert!(!err.contains("reconnecting"), "never dialled:\n{err}");

        // A key file others may read is refused, as ssh does.
        spoke_runtime::InstanceKey::load_or_generate(&missing).unwrap();
        std::fs::set_permissions(&missing, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut echo = Connector::start(
            "echo",
            &[],
            &[
                ("SPOKE_HUB_URL", "http://127.0.0.1:9"),
                ("SPOKE_KEY_PATH", &missing_text),
            ],
        );
        assert_eq!(echo.exit(STEP).await.code(), Some(2), "{}", echo.stderr());
        assert!(echo.stderr().contains("chmod 600"), "{}", echo.stderr());

        // No HOME and no SPOKE_KEY_PATH: nowhere to keep a key.
        let bin = example_bin("echo");
        let out = Command::new(bin)
            .env_clear()
            .env("SPOKE_HUB_URL", "http://127.0.0.1:9")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("HOME is not set"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_instance_exits_4_with_the_hubs_message() {
    bounded(LIMIT, async {
        let mut hub = ScriptedHub::start().await;
        let mut echo = Connector::start(
            "echo",
            &[],
            &[
                ("SPOKE_HUB_URL", &hub.url),
                ("SPOKE_INSTANCE_ID", "echo-1"),
            ],
        );
        let mut conn = hub.next_conn().await;
        verified(&conn.register().await);
        conn.refuse(tonic::Status::permission_denied(
            "instance echo-1 was revoked by an administrator",
        ))
        .await;
        let status = echo.exit(STEP).await;
        let err = echo.stderr();
        assert_eq!(status.code(), Some(4), "{err}");
        assert!(
            err.contains("error: the hub refused this instance: instance echo-1 was revoked by an administrator"),
            "{err}"
        );
        assert!(err.contains("ERROR"), "logged as an error:\n{err}");
    })
    .await;
}
