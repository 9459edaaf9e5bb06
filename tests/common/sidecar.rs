//! A connector binary running `stdio`, seen from its host: piped stdin and
//! stdout, frames read by a thread, every wait bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ChildGuard, example};

/// The longest a test waits for one frame or for an exit.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A connector binary running `stdio`, seen from its host.
pub struct Sidecar {
    pub process: ChildGuard,
    pub stdin: Option<ChildStdin>,
    pub frames: Receiver<(Instant, Value)>,
    pub stderr: Arc<Mutex<String>>,
}

impl Sidecar {
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Sidecar {
        let mut cmd = example(name);
        cmd.arg("stdio").args(args).envs(env.iter().copied());
        Sidecar::spawn(cmd)
    }

    /// Runs `cmd` (already given its `stdio` argument) with piped stdio.
    pub fn spawn(mut cmd: Command) -> Sidecar {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the sidecar");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut err_pipe = child.stderr.take().expect("stderr");
        let (tx, frames) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let frame =
                    serde_json::from_str(&line).unwrap_or_else(|_| json!({"not json": line}));
                if tx.send((Instant::now(), frame)).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Sidecar {
            process: ChildGuard { child },
            stdin,
            frames,
            stderr,
        }
    }

    /// Starts it and reads its `ready` frame.
    pub fn ready(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Sidecar, Value) {
        let mut sidecar = Sidecar::start(name, args, env);
        let ready = sidecar.frame();
        assert_eq!(ready["method"], "ready", "first frame: {ready}");
        (sidecar, ready)
    }

    /// Starts it, reads `ready` and acknowledges it.
    pub fn acked(name: &str) -> Sidecar {
        let (mut sidecar, _) = Sidecar::ready(name, &[], &[]);
        sidecar.send(&json!({"method": "ready_ack"}));
        sidecar
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    pub fn send(&mut self, frame: &Value) {
        let mut line = serde_json::to_vec(frame).unwrap();
        line.push(b'\n');
        self.write(&line);
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next frame with when it arrived; fails after [`LIMIT`].
    pub fn timed_frame(&mut self) -> (Instant, Value) {
        match self.frames.recv_timeout(LIMIT) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no frame within {LIMIT:?}; stderr:\n{}", self.stderr())
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "stdout ended while a frame was expected; stderr:\n{}",
                    self.stderr()
                )
            }
        }
    }

    pub fn frame(&mut self) -> Value {
        self.timed_frame().1
    }

    /// The next frame if one comes within `wait`.
    pub fn frame_within(&mut self, wait: Duration) -> Option<Value> {
        self.frames.recv_timeout(wait).ok().map(|(_, f)| f)
    }

    /// Waits for the exit; returns its status and every frame not read yet.
    pub fn exit(mut self) -> (ExitStatus, Vec<Value>) {
        let status = self
            .process
            .wait_for(LIMIT)
            .unwrap_or_else(|| panic!("did not exit within {LIMIT:?}; stderr:\n{}", self.stderr()));
        let mut rest = Vec::new();
        while let Ok((_, frame)) = self.frames.recv_timeout(Duration::from_secs(5)) {
            rest.push(frame);
        }
        (status, rest)
    }

    /// Closes stdin and expects exit code 0; returns the frames not read yet.
    pub fn finish(mut self) -> Vec<Value> {
        self.close_stdin();
        let stderr = Arc::clone(&self.stderr);
        let (status, rest) = self.exit();
        assert_eq!(
            status.code(),
            Some(0),
            "exit status {status:?}; stderr:\n{}",
            stderr.lock().unwrap()
        );
        rest
    }
}
