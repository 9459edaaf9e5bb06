//! Path 8: documents per second from a sync that emits 100,000 small
//! documents, through the connector's own CLI (`sync-source sync`, to
//! `/dev/null` and to a pipe), against a baseline that serialises the same
//! documents as the same JSON lines to a pipe (`raw-docs`). Both are child
//! processes timed from spawn to exit; the pipes are drained by this
//! process.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::report::{Report, Target};
use crate::stats::median;
use crate::{Opts, binaries};

const PATH: &str = "8 sync";

/// Runs `program args` to its exit with `BULK_COUNT=count`, stdout to a
/// pipe this process drains (or `/dev/null`); seconds taken and the lines
/// read.
fn run_once(program: &Path, args: &[&str], count: u64, to_pipe: bool) -> (f64, u64) {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env("BULK_COUNT", count.to_string())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(if to_pipe {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
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
    assert!(
        status.success(),
        "{} {args:?} failed: {status}",
        program.display()
    );
    (started.elapsed().as_secs_f64(), lines)
}

pub async fn run(opts: &Opts, report: &mut Report) {
    let count: u64 = if opts.quick { 10_000 } else { 100_000 };
    let raw = binaries::bench_bin("raw-docs");
    let source = binaries::bench_bin("sync-source");
    let (mut baseline, mut null, mut piped) = (Vec::new(), Vec::new(), Vec::new());
    // A warm-up of each, then rounds that alternate them.
    run_once(&raw, &[], count / 10, true);
    run_once(&source, &["sync"], count / 10, false);
    for _ in 0..opts.rounds {
        let (secs, lines) = run_once(&raw, &[], count, true);
        assert_eq!(lines, count, "the baseline wrote every document");
        baseline.push(count as f64 / secs);
        let (secs, _) = run_once(&source, &["sync", "--out", "/dev/null"], count, false);
        null.push(count as f64 / secs);
        let (secs, lines) = run_once(&source, &["sync"], count, true);
        assert_eq!(lines, count, "the sync delivered every document");
        piped.push(count as f64 / secs);
    }
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
}
