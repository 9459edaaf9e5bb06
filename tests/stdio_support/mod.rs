//! Drives the stdio transport in-process over `tokio::io::duplex` pipes.
#![allow(dead_code)]

use std::time::Duration;

#[path = "../frames/mod.rs"]
pub mod frames;
pub use frames::invoke;

use serde_json::Value;
use spoke::stdio::{StdioError, StdioOptions};
use spoke::{ConfigSource, Instance, Registry};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;

/// How long a test waits for a frame before failing. Under paused time this
/// is virtual time, so it only bounds how far the clock may jump.
pub const WAIT: Duration = Duration::from_secs(30);

/// Starts the connector registered in this test binary under `name`.
pub async fn instance(name: &str) -> Instance {
    let registry = Registry::from_inventory().expect("registry");
    let ty = registry.get(name).expect("connector registered").clone();
    Instance::start(ty, ConfigSource::from_vars::<&str, &str>([]))
        .await
        .expect("starts")
}

/// The default options, except that `ready` is sent once: a slow test
/// machine must not see re-sends where a test expects silence. Tests of the
/// re-sends use the defaults.
pub fn quiet() -> StdioOptions {
    let mut options = StdioOptions::default();
    options.ready_max_sends = 1;
    options
}

/// A stdio session seen from the host's side.
pub struct Host {
    stdin: Option<DuplexStream>,
    stdout: Lines<BufReader<DuplexStream>>,
    pub session: JoinHandle<Result<(), StdioError>>,
}

impl Host {
    /// Runs `instance` over fresh pipes.
    pub fn start(instance: Instance, options: StdioOptions) -> Host {
        let (stdin, connector_in) = tokio::io::duplex(1 << 20);
        let (connector_out, stdout) = tokio::io::duplex(1 << 20);
        let session = tokio::spawn(spoke::stdio::run(
            instance,
            connector_in,
            connector_out,
            options,
        ));
        Host {
            stdin: Some(stdin),
            stdout: BufReader::new(stdout).lines(),
            session,
        }
    }

    /// Runs `name` with [`quiet`] options and reads its `ready` frame.
    pub async fn ready(name: &str) -> (Host, Value) {
        Self::ready_with(name, quiet()).await
    }

    /// Runs `name` with these options and reads its `ready` frame.
    pub async fn ready_with(name: &str, options: StdioOptions) -> (Host, Value) {
        let mut host = Host::start(instance(name).await, options);
        let ready = host.frame().await;
        assert_eq!(ready["method"], "ready", "first frame: {ready}");
        (host, ready)
    }

    /// Writes raw bytes to the connector's stdin.
    pub async fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).await.expect("write stdin");
    }

    /// Writes one frame (a line).
    pub async fn send(&mut self, frame: &Value) {
        let mut line = serde_json::to_vec(frame).unwrap();
        line.push(b'\n');
        self.write(&line).await;
    }

    /// Closes the connector's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next frame; fails after [`WAIT`] or at the end of stdout.
    pub async fn frame(&mut self) -> Value {
        match self.next().await {
            Some(frame) => frame,
            None => panic!("stdout ended while a frame was expected"),
        }
    }

    /// The next frame, or `None` at the end of stdout; fails after [`WAIT`].
    pub async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("a frame within the wait")
            .expect("read stdout")?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }

    /// The next frame if one arrives within `wait`.
    pub async fn frame_within(&mut self, wait: Duration) -> Option<Value> {
        let line = tokio::time::timeout(wait, self.stdout.next_line())
            .await
            .ok()?;
        let line = line.expect("read stdout")?;
        Some(serde_json::from_str(&line).unwrap())
    }

    /// Frames until stdout ends.
    pub async fn rest(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }

    /// Closes stdin, reads every remaining frame and the session's outcome.
    pub async fn finish(mut self) -> (Vec<Value>, Result<(), StdioError>) {
        self.close_stdin();
        let frames = self.rest().await;
        let outcome = tokio::time::timeout(WAIT, self.session)
            .await
            .expect("the session ends")
            .expect("the session does not panic");
        (frames, outcome)
    }
}
