//! Helpers for integration tests that run example binaries as real processes.
#![allow(dead_code)]

#[path = "../frames/mod.rs"]
pub mod frames;
pub mod mcp_client;
pub mod nats;
pub mod omni;
pub mod peer;
pub mod proxy;
pub mod sidecar;
pub mod sync_events;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>`, where the binaries of this test run live.
fn profile_dir() -> PathBuf {
    // tests run from target/<profile>/deps/<test>-<hash>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf()
}

/// Runs `cargo build <args>` once per test process (per `once` cell).
fn build_once(once: &'static OnceLock<()>, args: &[&str], what: &str) {
    once.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        // Not the variables cargo set for this test's package: inherited,
        // they count as changes (ring's build script tracks
        // CARGO_MANIFEST_DIR), and everything above ring is built again.
        for (name, _) in std::env::vars_os() {
            if is_set_for_a_package(&name.to_string_lossy()) {
                cargo.env_remove(&name);
            }
        }
        let status = cargo
            .arg("build")
            .args(args)
            .arg("--quiet")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build");
        assert!(status.success(), "building {what} failed");
    });
}

/// Whether cargo sets the variable `name` for the package it builds or
/// runs (rather than for itself).
fn is_set_for_a_package(name: &str) -> bool {
    let prefixes = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_",
    ];
    prefixes.iter().any(|p| name.starts_with(p))
        || matches!(
            name,
            "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// The path of a built binary in `target/<profile>/<subdir>`.
fn binary(subdir: &str, name: &str) -> PathBuf {
    let bin = profile_dir()
        .join(subdir)
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "binary {} not found", bin.display());
    bin
}

/// The path of a built example binary, building all examples once if needed.
pub fn example_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    build_once(&BUILT, &["--examples"], "the examples");
    binary("examples", name)
}

/// A command for an example with a clean environment (no inherited config
/// vars) and a `HOME` of this test process's own, so the instance keys the
/// SDK makes (`~/.spoke/keys`) stay under the target directory.
pub fn example(name: &str) -> Command {
    let mut cmd = Command::new(example_bin(name));
    cmd.env_clear();
    for keep in ["PATH", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("HOME", test_home());
    cmd.stdin(Stdio::null());
    cmd
}

/// A `HOME` for the connectors this test process starts, under
/// `CARGO_TARGET_TMPDIR`, emptied when the process first asks for it.
pub fn test_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let name = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("test");
        let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("home-{name}"));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).expect("create the test HOME");
        home
    })
}

/// Runs the command to completion, failing the test if it takes longer than
/// `limit`. stdout and stderr are drained while it runs, so a chatty child
/// never blocks on a full pipe.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            panic!(
                "process did not exit within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs with a 60 s limit.
pub fn run(cmd: &mut Command) -> Output {
    run_with_limit(cmd, Duration::from_secs(60))
}

/// stdout as UTF-8.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as UTF-8.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout parsed as JSON, with a helpful failure.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            stdout(out),
            stderr(out)
        )
    })
}

/// The `spoke` binary (the hub and its CLI), built once.
pub fn spoke_bin() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    build_once(&BUILT, &["-p", "spoke-hub", "--bin", "spoke"], "the hub");
    binary("", "spoke")
}

/// A child process killed when dropped.
pub struct ChildGuard {
    pub child: std::process::Child,
}

impl ChildGuard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `limit`; `None` if it did not.
    pub fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` with its stderr (its log) collected into the returned
/// buffer and passed on to this test's stderr, each line prefixed `tag: `.
pub fn spawn_logged(
    cmd: &mut Command,
    tag: &str,
) -> (ChildGuard, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::BufRead;
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the process");
    let stderr = child.stderr.take().expect("its stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = std::sync::Arc::clone(&log);
    let tag = tag.to_owned();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{tag}: {line}");
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    (ChildGuard { child }, log)
}

/// How long [`Hub::wait_log`] waits for a log line.
pub const LOG_WAIT: Duration = Duration::from_secs(10);

/// A running hub on a free loopback port.
pub struct Hub {
    pub process: ChildGuard,
    pub url: String,
    /// Everything the hub wrote to stderr (its log), also passed on to
    /// this test's stderr.
    pub logs: std::sync::Arc<std::sync::Mutex<String>>,
    /// With auth: the operator token the hub wrote to its data directory.
    pub operator_token: Option<String>,
}

impl Hub {
    /// Starts `spoke hub --listen 127.0.0.1:0` with extra args and waits for its address.
    pub fn start(extra: &[&str]) -> Hub {
        Self::start_on("127.0.0.1:0", extra)
    }

    /// Starts the hub on a given address (e.g. to restart it on the same
    /// port), without TLS or auth (`--insecure --no-auth`).
    pub fn start_on(listen: &str, extra: &[&str]) -> Hub {
        let mut args = vec!["--insecure", "--no-auth"];
        args.extend_from_slice(extra);
        Self::spawn(listen, &args)
    }

    /// Like [`Hub::start`], logging warnings and errors only (`RUST_LOG=warn`):
    /// for load that would log a line per call.
    pub fn start_quiet(extra: &[&str]) -> Hub {
        let mut args = vec!["--insecure", "--no-auth"];
        args.extend_from_slice(extra);
        Self::spawn_with(
            |cmd| {
                cmd.env("RUST_LOG", "warn");
            },
            "127.0.0.1:0",
            &args,
        )
    }

    /// Starts a hub with auth, keeping its store in `data` (`--data`), on a
    /// free port; `extra` must say `--insecure` or give TLS flags. Its
    /// operator token is in [`Hub::operator_token`].
    pub fn start_secure(data: &std::path::Path, extra: &[&str]) -> Hub {
        let data_arg = data.to_str().expect("a UTF-8 data path").to_owned();
        let mut args = vec!["--data", data_arg.as_str()];
        args.extend_from_slice(extra);
        let mut hub = Self::spawn("127.0.0.1:0", &args);
        let token = std::fs::read_to_string(data.join("operator.token"))
            .expect("the hub writes its operator token");
        hub.operator_token = Some(token.trim().to_owned());
        hub
    }

    /// The hub's log so far.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The first line of the hub's log so far that contains every needle.
    fn log_line(&self, needles: &[&str]) -> Option<String> {
        self.log_text()
            .lines()
            .find(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_owned)
    }

    /// Waits, at most [`LOG_WAIT`], for a line of the hub's log that
    /// contains every needle, and returns it (blocking this thread).
    pub fn wait_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + LOG_WAIT;
        loop {
            if let Some(line) = self.log_line(needles) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no hub log line with {needles:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Hub::wait_log`] for async tests: waits without blocking the runtime.
    pub async fn logged(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + LOG_WAIT;
        loop {
            if let Some(line) = self.log_line(needles) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no hub log line with {needles:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn spawn(listen: &str, args: &[&str]) -> Hub {
        Self::spawn_with(|_| {}, listen, args)
    }

    fn spawn_with(configure: impl FnOnce(&mut Command), listen: &str, args: &[&str]) -> Hub {
        use std::io::BufRead;
        let mut command = Command::new(spoke_bin());
        configure(&mut command);
        let mut child = command
            .args(["hub", "--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hub");
        let stderr = child.stderr.take().expect("hub stderr");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("hub: {line}");
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("hub stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let process = ChildGuard { child };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the hub prints its address");
        let url = line
            .strip_prefix("spoke hub listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .trim()
            .to_owned();
        Hub {
            process,
            url,
            logs,
            operator_token: None,
        }
    }

    /// `host:port` of the hub.
    pub fn authority(&self) -> &str {
        self.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// A `spoke` CLI command aimed at this hub.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(spoke_bin());
        cmd.env_clear()
            .env("SPOKE_HUB_URL", &self.url)
            .stdin(Stdio::null());
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        cmd
    }

    /// Runs `spoke <args>` with the operator token (a hub with auth) and
    /// `env`; its stdout, trimmed. It must succeed.
    pub fn operator(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let out = self
            .cli()
            .env(
                "SPOKE_TOKEN",
                self.operator_token.as_deref().expect("a hub with auth"),
            )
            .envs(env.iter().copied())
            .args(args)
            .output()
            .expect("run spoke");
        assert!(
            out.status.success(),
            "spoke {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts an example connector in `serve` mode attached to this hub.
    pub fn attach(&self, example_name: &str, env: &[(&str, &str)]) -> ChildGuard {
        let mut cmd = example(example_name);
        cmd.arg("serve")
            .env("SPOKE_HUB_URL", &self.url)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        ChildGuard {
            child: cmd.spawn().expect("start connector"),
        }
    }

    /// Like [`Hub::attach`], with the connector's stderr (its log) collected
    /// into the returned buffer.
    pub fn attach_logged(
        &self,
        example_name: &str,
        env: &[(&str, &str)],
    ) -> (ChildGuard, std::sync::Arc<std::sync::Mutex<String>>) {
        let mut cmd = example(example_name);
        cmd.arg("serve")
            .env("SPOKE_HUB_URL", &self.url)
            .envs(env.iter().copied())
            .stdout(Stdio::null());
        spawn_logged(&mut cmd, example_name)
    }

    /// Waits until `spoke ls --json` shows `count` ready instances of `connector`.
    pub fn wait_for_instances(&self, connector: &str, count: usize, limit: Duration) {
        let started = Instant::now();
        loop {
            let out = self
                .cli()
                .args(["ls", "--json"])
                .output()
                .expect("spoke ls");
            let ready = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .map_or(0, |v| ready_instances(&v, connector));
            if ready >= count {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{connector}: {ready} of {count} instances ready after {limit:?}; ls: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Counts ready instances of a connector in `spoke ls --json` output.
pub fn ready_instances(ls: &serde_json::Value, connector: &str) -> usize {
    let connectors = ls.get("connectors").unwrap_or(ls);
    connectors
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == connector)
        .flat_map(|c| c["instances"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["state"] == "ready")
        .count()
}
