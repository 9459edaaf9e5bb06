//! Path 7, transport features: the echo connector built with the `stdio`
//! transport alone against the default build (`grpc` + `stdio`). Both are
//! the `spoke-echo-stdio` package (`examples/stdio-only`: the echo example),
//! without and with its `grpc` feature, so nothing but the transports
//! differs; each is built from clean in a target directory of its own.
//! Figures: crates in the dependency tree, units compiled, clean debug and
//! release build times, the stripped release binary, `describe`'s peak RSS;
//! and, as a sidecar, the stdio-only build's idle RSS once `ready` is out
//! and the time from spawn to `ready`, also built with the `small` profile
//! (`opt-level = "s"`, LTO, one codegen unit, stripped).
//!
//! The default build is also compared with itself before issue 12 (one
//! runtime for every transport, the `.proto` compiled at build time, tonic's
//! server side and axum in every connector): the same echo, as a package
//! depending on `spoke` with its default features, built from clean against
//! the sources of commit [`BEFORE`] (taken with `git archive`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{Report, Target};
use crate::stats::median;
use crate::{Opts, binaries, cold_start};

const PATH: &str = "7 transport features";

/// The package built, and its binary.
const PACKAGE: &str = "spoke-echo-stdio";
const BINARY: &str = "echo-stdio";

/// The last commit before issue 12's changes to the layout and features.
const BEFORE: &str = "7456bbc8aad53d371100aee32d6a05e05de76be4";

/// A build of the package: its case, its cargo features.
#[derive(Clone, Copy)]
struct Variant {
    case: &'static str,
    dir: &'static str,
    features: &'static [&'static str],
}

const STDIO_ONLY: Variant = Variant {
    case: "stdio only",
    dir: "stdio",
    features: &[],
};
const DEFAULT: Variant = Variant {
    case: "default (grpc + stdio)",
    dir: "default",
    features: &["grpc"],
};

/// The default echo before issue 12, built from clean: seconds and units.
/// Its sources are those of [`BEFORE`]; the package around `echo.rs` is
/// made here, outside the workspace.
fn before_build() -> (f64, usize) {
    let root = target_dir("before");
    let _ = std::fs::remove_dir_all(&root);
    let sources = root.join("spoke");
    let package = root.join("echo");
    std::fs::create_dir_all(&sources).expect("create the sources' folder");
    std::fs::create_dir_all(package.join("src")).expect("create the package");
    let archive = Command::new("git")
        .args(["archive", "--format=tar", BEFORE])
        .current_dir(binaries::workspace_root())
        .output()
        .expect("run git archive");
    assert!(archive.status.success(), "git archive {BEFORE} failed");
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&sources)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run tar");
    std::io::Write::write_all(&mut tar.stdin.take().expect("tar's stdin"), &archive.stdout)
        .expect("unpack the sources");
    assert!(tar.wait().expect("tar").success(), "tar failed");
    std::fs::copy(
        sources.join("examples/echo.rs"),
        package.join("src/main.rs"),
    )
    .expect("the echo example");
    std::fs::copy(sources.join("Cargo.lock"), package.join("Cargo.lock")).expect("its lock file");
    std::fs::write(
        package.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{BINARY}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nspoke = {{ path = {:?} }}\n\n[workspace]\n",
            sources.display().to_string()
        ),
    )
    .expect("write the package");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build").current_dir(&package);
    timed_build(cmd, &root.join("target"), "the build before issue 12")
}

/// Runs the `cargo build` of `cmd` into `target` (CARGO_INCREMENTAL=0):
/// seconds and units compiled.
fn timed_build(mut cmd: Command, target: &Path, what: &str) -> (f64, usize) {
    cmd.arg("--target-dir")
        .arg(target)
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_TERM_COLOR", "never")
        .stdout(Stdio::null());
    let started = Instant::now();
    let out = cmd.output().expect("run cargo build");
    let secs = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{log}");
    let units = log
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count();
    (secs, units)
}

/// `<target>/bench-features/<dir>`: a variant's own target directory.
fn target_dir(dir: &str) -> PathBuf {
    binaries::profile_dir()
        .parent()
        .expect("the target directory")
        .join("bench-features")
        .join(dir)
}

fn cargo(args: &[&str], features: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(args).current_dir(binaries::workspace_root());
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    cmd
}

/// The crates in the variant's tree (normal and build dependencies).
fn crates(variant: Variant) -> usize {
    let out = cargo(
        &[
            "tree",
            "-p",
            PACKAGE,
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ],
        variant.features,
    )
    .output()
    .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree failed");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names.len()
}

/// Builds the variant from clean with `profile_args`: seconds and units
/// compiled; its binary.
fn clean_build(variant: Variant, profile_args: &[&str], dir: &str) -> (f64, usize, PathBuf) {
    let target = target_dir(&format!("{}-{dir}", variant.dir));
    let _ = std::fs::remove_dir_all(&target);
    let mut args = vec!["build", "-p", PACKAGE];
    args.extend_from_slice(profile_args);
    let (secs, units) = timed_build(
        cargo(&args, variant.features),
        &target,
        &format!("cargo build {args:?}"),
    );
    let bin = target
        .join(dir)
        .join(format!("{BINARY}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} not built", bin.display());
    (secs, units, bin)
}

/// The size of `bin` stripped, in MiB.
fn stripped_mib(bin: &Path) -> f64 {
    let stripped = bin.with_extension("stripped");
    let status = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(bin)
        .status()
        .expect("run strip");
    assert!(status.success(), "strip {} failed", bin.display());
    let bytes = std::fs::metadata(&stripped)
        .expect("the stripped binary")
        .len();
    bytes as f64 / (1024.0 * 1024.0)
}

/// One `<bin> stdio` start: milliseconds from spawn to its `ready` line,
/// and its RSS (MiB) once idle after it.
fn sidecar_once(bin: &Path) -> (f64, f64) {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("stdio")
        .env_clear()
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read `ready`");
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(line.contains("\"ready\""), "first line: {line}");
    std::thread::sleep(Duration::from_millis(200));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .expect("the sidecar's /proc status");
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    drop(child.stdin.take());
    let exited = child.wait().expect("wait for the sidecar");
    assert!(exited.success(), "the sidecar exited with {exited}");
    (ready_ms, rss_kib / 1024.0)
}

/// Medians of `runs` sidecar starts (after two warm-up starts).
fn sidecar(bin: &Path, runs: usize) -> (f64, f64) {
    for _ in 0..2 {
        sidecar_once(bin);
    }
    let (ready, rss): (Vec<f64>, Vec<f64>) = (0..runs).map(|_| sidecar_once(bin)).unzip();
    (median(&ready), median(&rss))
}

/// `<bin> describe`'s peak RSS (MiB), median of `runs`.
fn describe_rss(bin: &Path, runs: usize) -> f64 {
    let peaks: Vec<f64> = (0..runs)
        .map(|_| cold_start::peak_rss(bin, &["describe"]))
        .collect();
    median(&peaks)
}

struct Measured {
    crates: usize,
    debug: (f64, usize),
    release: (f64, usize),
    stripped: f64,
    describe_rss: f64,
    release_bin: PathBuf,
}

fn measure(variant: Variant, runs: usize) -> Measured {
    eprintln!("  {}: clean builds", variant.case);
    let crates = crates(variant);
    let (debug_s, debug_units, _) = clean_build(variant, &[], "debug");
    let (release_s, release_units, release_bin) = clean_build(variant, &["--release"], "release");
    Measured {
        crates,
        debug: (debug_s, debug_units),
        release: (release_s, release_units),
        stripped: stripped_mib(&release_bin),
        describe_rss: describe_rss(&release_bin, runs),
        release_bin,
    }
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    let runs: usize = if opts.quick { 5 } else { 30 };
    let started = Instant::now();
    let (stdio, default, before, small, sidecars) = tokio::task::spawn_blocking(move || {
        let stdio = measure(STDIO_ONLY, runs);
        let default = measure(DEFAULT, runs);
        eprintln!("  default before issue 12 ({BEFORE}): a clean debug build");
        let before = before_build();
        eprintln!("  stdio only: the `small` profile");
        let (_, _, small_bin) = clean_build(STDIO_ONLY, &["--profile", "small"], "small");
        let small = (stripped_mib(&small_bin), sidecar(&small_bin, runs));
        let sidecars = (
            sidecar(&stdio.release_bin, runs),
            sidecar(&default.release_bin, runs),
        );
        (stdio, default, before, small, sidecars)
    })
    .await
    .expect("the transport-feature builds");

    let builds = "clean, in a target directory of its own, CARGO_INCREMENTAL=0, one build";
    report
        .add(PATH, "stdio only vs default", "crates", "crates", stdio.crates as f64)
        .baseline(default.crates as f64)
        .target(Target::RatioAtMost { ratio: 0.6 })
        .note("`cargo tree -e normal,build`, distinct crates: none of tonic, prost, rustls, ed25519-dalek in the stdio-only tree");
    report
        .add(
            PATH,
            "stdio only vs default",
            "units compiled (debug)",
            "units",
            stdio.debug.1 as f64,
        )
        .baseline(default.debug.1 as f64)
        .note(format!(
            "`Compiling` lines of the clean debug builds; {builds}"
        ));
    report
        .add(
            PATH,
            "stdio only vs default",
            "clean debug build",
            "s",
            stdio.debug.0,
        )
        .baseline(default.debug.0)
        .target(Target::RatioAtMost { ratio: 0.6 })
        .note(builds);
    report
        .add(
            PATH,
            "stdio only vs default",
            "clean release build",
            "s",
            stdio.release.0,
        )
        .baseline(default.release.0)
        .note(builds);
    report
        .add(
            PATH,
            "default, after vs before issue 12",
            "units compiled (debug)",
            "units",
            default.debug.1 as f64,
        )
        .baseline(before.1 as f64)
        .target(Target::RatioAtMost { ratio: 0.999 })
        .note(format!(
            "before: the same echo package against the sources of {BEFORE}; {builds}"
        ));
    report
        .add(
            PATH,
            "default, after vs before issue 12",
            "clean debug build",
            "s",
            default.debug.0,
        )
        .baseline(before.0)
        .note(format!("before: as above; {builds}"));
    report
        .add(PATH, "stdio only, release", "stripped release binary", "MiB", stdio.stripped)
        .baseline(default.stripped)
        .target(Target::AtMost { value: 3.0 })
        .note("`strip` of the release build; baseline: the default build; LibreFang's Rust sidecar SDK echo: 0.93 MiB");
    for (variant, m) in [(STDIO_ONLY, &stdio), (DEFAULT, &default)] {
        report
            .add(
                PATH,
                variant.case,
                "describe peak RSS",
                "MiB",
                m.describe_rss,
            )
            .note(format!("`describe`, median of {runs}"));
    }
    let ((stdio_ready, stdio_rss), (default_ready, default_rss)) = sidecars;
    report
        .add(PATH, "stdio only, release", "idle RSS after ready", "MiB", stdio_rss)
        .baseline(default_rss)
        .target(Target::AtMost { value: 4.0 })
        .note(format!("`stdio`, VmRSS 200 ms after `ready`, median of {runs}; baseline: the default build; LibreFang's SDK echo: 2.6 MiB"));
    report
        .add(PATH, "stdio only, release", "spawn to ready", "ms", stdio_ready)
        .baseline(default_ready)
        .target(Target::AtMost { value: 2.0 })
        .note(format!("from spawn to the `ready` line read, median of {runs}; baseline: the default build; LibreFang's SDK echo: 1.6 ms"));
    let (small_size, (small_ready, small_rss)) = small;
    report
        .add(
            PATH,
            "stdio only, profile small",
            "stripped release binary",
            "MiB",
            small_size,
        )
        .target(Target::AtMost { value: 3.0 })
        .note("`--profile small`: opt-level s, LTO, one codegen unit, stripped");
    report
        .add(
            PATH,
            "stdio only, profile small",
            "idle RSS after ready",
            "MiB",
            small_rss,
        )
        .target(Target::AtMost { value: 4.0 })
        .note(format!("as above, median of {runs}"));
    report
        .add(
            PATH,
            "stdio only, profile small",
            "spawn to ready",
            "ms",
            small_ready,
        )
        .target(Target::AtMost { value: 2.0 })
        .note(format!("as above, median of {runs}"));
    eprintln!(
        "  (transport features in all {:.1} s; builds in {})",
        started.elapsed().as_secs_f64(),
        target_dir("").display()
    );
}
