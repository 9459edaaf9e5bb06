//! Path 8: documents per second from a sync that emits 100,000 small
//! documents, through the connector's own CLI (`sync-source sync`, to
//! `/dev/null` and to a pipe), and through a hub to a caller (`spoke sync`
//! against `sync-source serve` attached to `spoke hub`, to a pipe), against
//! a baseline that serialises the same documents as the same JSON lines to
//! a pipe (`raw-docs`). All are child processes timed from spawn to exit;
//! the pipes are drained by this process.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{Report, Target};
use crate::stats::median;
use crate::{Opts, binaries};

const PATH: &str = "8 sync";

/// Runs `program args` to its exit with `BULK_COUNT=count`; see [`run_command`].
fn run_once(program: &Path, args: &[&str], count: u64, to_pipe: bool) -> (f64, u64) {
    let mut cmd = Command::new(program);
    cmd.env("BULK_COUNT", count.to_string());
    run_command(cmd, args, to_pipe)
}

/// A hub on loopback and the `bulk` connector (`sync-source serve`)
/// attached to it; both killed when dropped.
struct HubRig {
    url: String,
    children: Vec<Child>,
}

impl Drop for HubRig {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl HubRig {
    /// Starts `spoke hub` (no auth, no TLS, checkpoints in memory) and
    /// `sync-source serve` emitting `count` documents per run, and waits
    /// until the connector is ready.
    fn start(count: u64) -> HubRig {
        let spoke = binaries::hub();
        let mut hub = Command::new(&spoke)
            .args(["hub", "--listen", "127.0.0.1:0", "--insecure", "--no-auth"])
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start spoke hub");
        let mut line = String::new();
        BufReader::new(hub.stdout.take().expect("the hub's stdout"))
            .read_line(&mut line)
            .expect("the hub prints its address");
        let url = line
            .trim()
            .strip_prefix("spoke hub listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of the hub: {line}"))
            .to_owned();
        let connector = Command::new(binaries::bench_bin("sync-source"))
            .arg("serve")
            .env("SPOKE_HUB_URL", &url)
            .env("BULK_COUNT", count.to_string())
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sync-source serve");
        let rig = HubRig {
            url,
            children: vec![hub, connector],
        };
        let started = Instant::now();
        loop {
            let ls = rig.spoke(&["ls", "--json"]).output().expect("spoke ls");
            if String::from_utf8_lossy(&ls.stdout).contains("\"ready\"") {
                return rig;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the bulk connector did not attach"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spoke(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binaries::hub());
        cmd.args(args).env("SPOKE_HUB_URL", &self.url);
        cmd
    }

    /// One full run from nothing through the hub, to a pipe this process
    /// drains: seconds taken (the `spoke sync` process, spawn to exit) and
    /// the lines read.
    fn run_once(&self) -> (f64, u64) {
        // Exits 3 (not found) before the first run: nothing to reset.
        self.spoke(&["checkpoint", "reset", "bulk", "docs"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spoke checkpoint reset");
        let mut cmd = Command::new(binaries::hub());
        cmd.env("SPOKE_HUB_URL", &self.url);
        run_command(cmd, &["sync", "bulk", "docs"], true)
    }
}

/// Runs `cmd args` to its exit, stdout to a pipe this process drains (or
/// `/dev/null`); seconds taken and the lines read.
fn run_command(mut cmd: Command, args: &[&str], to_pipe: bool) -> (f64, u64) {
    let started = Instant::now();
    let mut child = cmd
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(if to_pipe {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut lines = 0;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = out.read(&mut buf).expect("read the pipe");
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    let status = child.wait().expect("wait for the child");
    assert!(status.success(), "{cmd:?} failed: {status}");
    (started.elapsed().as_secs_f64(), lines)
}

pub async fn run(opts: &Opts, report: &mut Report) {
    let count: u64 = if opts.quick { 10_000 } else { 100_000 };
    let raw = binaries::bench_bin("raw-docs");
    let source = binaries::bench_bin("sync-source");
    let (mut baseline, mut null, mut piped, mut hub) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let rig = HubRig::start(count);
    // A warm-up of each, then rounds that alternate them.
    run_once(&raw, &[], count / 10, true);
    run_once(&source, &["sync"], count / 10, false);
    rig.run_once();
    for _ in 0..opts.rounds {
        let (secs, lines) = run_once(&raw, &[], count, true);
        assert_eq!(lines, count, "the baseline wrote every document");
        baseline.push(count as f64 / secs);
        let (secs, _) = run_once(&source, &["sync", "--out", "/dev/null"], count, false);
        null.push(count as f64 / secs);
        let (secs, lines) = run_once(&source, &["sync"], count, true);
        assert_eq!(lines, count, "the sync delivered every document");
        piped.push(count as f64 / secs);
        let (secs, lines) = rig.run_once();
        assert_eq!(lines, count, "the hub delivered every document");
        hub.push(count as f64 / secs);
    }
    drop(rig);
    let case = format!("{}k docs", count / 1000);
    report
        .add(PATH, &format!("{case}, CLI to /dev/null"), "throughput", "docs/s", median(&null))
        .baseline(median(&baseline))
        .target(Target::RatioAtLeast { ratio: 0.7 })
        .note(format!(
            "`sync-source sync --out /dev/null` (buffered 500 at a time, a checkpoint every 1,000, \
             process start included), median of {} rounds; baseline: `raw-docs`, the same JSON lines \
             from serde_json straight to a pipe",
            opts.rounds
        ));
    report
        .add(
            PATH,
            &format!("{case}, CLI to a pipe"),
            "throughput",
            "docs/s",
            median(&piped),
        )
        .baseline(median(&baseline))
        .note("the same run with stdout a pipe this process drains, as the baseline's is");
    report
        .add(
            PATH,
            &format!("{case}, through the hub to a caller"),
            "throughput",
            "docs/s",
            median(&hub),
        )
        .baseline(median(&baseline))
        .target(Target::RatioAtLeast { ratio: 0.4 })
        .note(
            "`spoke sync bulk docs` to a pipe this process drains, against `sync-source serve` \
             attached to `spoke hub` on loopback: every batch goes connector -> hub -> caller and \
             is acknowledged before the next (a checkpoint every 1,000); the checkpoint is reset \
             before each run (untimed)",
        );
}
