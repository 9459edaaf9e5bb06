//! LibreFang's real daemon supervising Spoke's `echo_channel` example as its
//! sidecar channels, offline.
//!
//! What is real: the `librefang` daemon binary from PyPI (`pip install
//! librefang==2026.10.16`, which `.ci/run` does; `SPOKE_TEST_LIBREFANG`
//! names another binary), started with `librefang start --foreground` and a
//! config of its own, and the built `echo_channel` example, which the daemon
//! spawns itself (`echo_channel stdio`) from `[[sidecar_channels]]`. Nothing
//! is faked: no LLM is configured, so the daemon's agent answers every
//! message with an empty reply (which `echo_channel` does not echo).
//!
//! Why a network namespace: the daemon is a whole agent OS that would reach
//! out to registries and LLM providers. `tests/librefang/daemon_driver.py`
//! runs it under `unshare --net --pid --mount-proc --fork --kill-child`: only
//! a loopback interface (the driver refuses to start the daemon if it sees
//! any other), and the driver is PID 1 of its own PID namespace, so nothing
//! it started outlives it. The driver talks to the daemon's HTTP API on
//! 127.0.0.1, prints what it saw as one JSON object, and this test asserts
//! on it. Every wait is bounded, in the driver and here.
//!
//! Needs `unshare` (util-linux) and, as an unprivileged user, user
//! namespaces (`--map-root-user` is added then).
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{example_bin, run_with_limit};
use serde_json::{Value, json};

/// The daemon version `.ci/run` installs.
const LIBREFANG: &str = "librefang==2026.10.16";
/// What the broken channel (`ECHO_CHANNEL_MAX_ECHOES = "lots"`) says before
/// it exits 2, in its `error` frame.
const BROKEN_MESSAGE: &str = "invalid configuration for connector `echo_channel` (1 problem):\n  - `max_echoes` (env ECHO_CHANNEL_MAX_ECHOES): invalid value \"lots\": invalid digit found in string";
/// The driver's own bounds add up to about 3 minutes at worst.
const DRIVER_LIMIT: Duration = Duration::from_secs(240);

/// One run of the driver, shared by the tests of this file.
struct Run {
    report: Value,
    stderr: String,
}

impl Run {
    /// The driver's report and stderr, for assertion messages.
    fn context(&self) -> String {
        format!(
            "driver report:\n{}\ndriver stderr:\n{}",
            serde_json::to_string_pretty(&self.report).unwrap_or_default(),
            self.stderr
        )
    }

    /// A channel's row of `GET /api/channels` at the end of the run.
    fn channel(&self, name: &str) -> &Value {
        &self.report["channels_final"][name]
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An executable ELF file: the daemon itself, not a shim script (pyenv's
/// `librefang` shim would not run with the daemon's empty `PATH`).
fn is_elf_executable(path: &Path) -> bool {
    use std::io::Read;
    if !is_executable(path) {
        return false;
    }
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    read.is_ok() && magic == *b"\x7fELF"
}

/// Where `name` is on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The directories `pip install` puts scripts in for this `python3` (its
/// prefix's and the user's), where `librefang` lands when it is not on `PATH`.
fn python_script_dirs() -> Vec<PathBuf> {
    let script = "import os, sysconfig\n\
                  print(sysconfig.get_path('scripts'))\n\
                  print(sysconfig.get_path('scripts', os.name + '_user'))";
    let Ok(out) = Command::new("python3").args(["-c", script]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// The daemon binary: `SPOKE_TEST_LIBREFANG`, else `librefang` on `PATH` or
/// in python3's script directories. An error saying how to install it when
/// there is none: this test is never skipped.
fn librefang_bin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SPOKE_TEST_LIBREFANG") {
        let path = PathBuf::from(path);
        if !is_elf_executable(&path) {
            return Err(format!(
                "SPOKE_TEST_LIBREFANG={}: not an executable daemon binary",
                path.display()
            ));
        }
        return Ok(path);
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(python_script_dirs())
        .map(|dir| dir.join("librefang"))
        .find(|candidate| is_elf_executable(candidate))
        .ok_or_else(|| {
            format!(
                "LibreFang's daemon (`librefang`) was not found on PATH nor in python3's \
                 script directories, and SPOKE_TEST_LIBREFANG is not set: install it with \
                 `python3 -m pip install {LIBREFANG}` (.ci/run does), or set \
                 SPOKE_TEST_LIBREFANG to the binary"
            )
        })
}

/// The effective user id, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs the driver in its namespaces and parses its report.
fn run_driver() -> Result<Run, String> {
    let librefang = librefang_bin()?;
    let echo_channel = example_bin("echo_channel");
    let unshare = on_path("unshare")
        .ok_or("`unshare` is not on PATH: install util-linux (`apt-get install util-linux`)")?;
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/librefang/daemon_driver.py");
    let workdir =
        std::env::temp_dir().join(format!("spoke-librefang-daemon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&workdir);
    std::fs::create_dir_all(&workdir).map_err(|e| format!("create {}: {e}", workdir.display()))?;

    let mut cmd = Command::new(unshare);
    if effective_uid() != Some(0) {
        // A network namespace needs CAP_NET_ADMIN: in a user namespace of our own.
        cmd.arg("--map-root-user");
    }
    cmd.args([
        "--net",
        "--pid",
        "--mount-proc",
        "--fork",
        "--kill-child",
        "--",
    ])
    .arg("python3")
    .arg(driver)
    .arg("--librefang")
    .arg(&librefang)
    .arg("--echo-channel")
    .arg(echo_channel)
    .arg("--workdir")
    .arg(&workdir)
    .stdin(std::process::Stdio::null());
    let out = run_with_limit(&mut cmd, DRIVER_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "the driver could not run the scenario ({}; daemon {}, workdir {}):\n\
             stderr:\n{stderr}\nstdout:\n{stdout}",
            out.status,
            librefang.display(),
            workdir.display()
        ));
    }
    let report = serde_json::from_str(&stdout).map_err(|e| {
        format!("the driver's stdout is not one JSON object ({e}):\n{stdout}\nstderr:\n{stderr}")
    })?;
    let _ = std::fs::remove_dir_all(&workdir);
    Ok(Run { report, stderr })
}

/// The driver's run, once per test process (a failed run is not retried).
fn scenario() -> &'static Run {
    static RUN: OnceLock<Result<Run, String>> = OnceLock::new();
    match RUN.get_or_init(run_driver) {
        Ok(run) => run,
        Err(message) => panic!("{message}"),
    }
}

#[test]
fn the_daemon_runs_in_a_network_namespace_with_loopback_only_and_leaves_nothing_behind() {
    let run = scenario();
    let r = &run.report;
    let ctx = run.context();
    assert_eq!(r["interfaces"], json!(["lo"]), "{ctx}");
    assert_eq!(r["health"]["status"], "ok", "{ctx}");
    assert_eq!(
        r["daemon_stop"],
        json!({"how": "SIGTERM", "exit_code": 0}),
        "the daemon stops on SIGTERM within the grace: {ctx}"
    );
    assert_eq!(r["leftover_processes"], json!([]), "{ctx}");
}

#[test]
fn the_daemon_pushes_a_send_to_echo_channel_and_receives_its_echo() {
    let run = scenario();
    let r = &run.report;
    let ctx = run.context();
    assert_eq!(r["channels_settled"], true, "both channels settle: {ctx}");
    let before = &r["channels_before_push"]["echo"];
    assert_eq!(before["supervised"], true, "{ctx}");
    assert_eq!(before["connected"], true, "echo_channel sent ready: {ctx}");
    assert_eq!(before["last_error"], Value::Null, "{ctx}");
    assert_eq!(before["messages_received"], 0, "{ctx}");

    // `POST /api/agents/{id}/push` -> the daemon writes a `send` -> the echo
    // ("echo: ping-42") comes back as a `message` the daemon counts.
    assert_eq!(r["push"]["status"], 200, "{ctx}");
    assert_eq!(r["push"]["response"]["success"], true, "{ctx}");
    let first = &r["first_echo"];
    assert_eq!(first["messages_received"], 1, "{ctx}");
    assert!(first["messages_sent"].as_u64() >= Some(1), "{ctx}");
    assert_eq!(first["last_error"], Value::Null, "{ctx}");

    // The daemon hands the echo to its agent, whose reply (with no LLM: an
    // empty streamed reply) is not echoed: one echo, no error, still up.
    // (`max_echoes` would end a loop with an error frame.)
    assert_eq!(r["echo_conversation_over"], true, "{ctx}");
    let echo = run.channel("echo");
    assert_eq!(echo["connected"], true, "{ctx}");
    assert!(echo["messages_sent"].as_u64() >= Some(1), "{ctx}");
    assert_eq!(echo["messages_received"], 1, "{ctx}");
    assert_eq!(echo["last_error"], Value::Null, "{ctx}");
}

#[test]
fn the_daemon_keeps_why_a_channel_cannot_start_as_its_last_error() {
    let run = scenario();
    let ctx = run.context();
    let broken = run.channel("broken");
    assert_eq!(broken["supervised"], true, "{ctx}");
    assert_eq!(broken["connected"], false, "{ctx}");
    assert_eq!(broken["messages_received"], 0, "{ctx}");
    let last_error = broken["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains(r#"invalid value "lots""#), "{ctx}");
    assert!(
        last_error.contains(BROKEN_MESSAGE),
        "the whole message of the error frame: {ctx}"
    );
}
