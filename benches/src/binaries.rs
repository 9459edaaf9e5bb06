//! The programs the benchmarks start: the workspace's example connectors and
//! the `spoke` hub binary, and this package's own helper binaries, all from
//! the same build profile as the harness (built first: cargo brings them up to date, so nothing stale is measured).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `target/<profile>`: where the harness itself lives.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the harness's path");
    let dir = exe.parent().expect("target/<profile>");
    // Under `cargo test` the harness's tests live in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Whether this is a release build.
pub fn is_release() -> bool {
    profile_dir().ends_with("release")
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

static BUILDS: Mutex<()> = Mutex::new(());

fn built(path: PathBuf, cargo_args: &[&str]) -> PathBuf {
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    // Always: a binary left from an older build must not be measured.
    // Cargo does nothing when it is up to date.
    let mut cargo = Command::new(env!("CARGO"));
    // Under `cargo run` the harness has the variables cargo sets for the
    // package it runs; passed on, they count as changes (ring's build
    // script tracks CARGO_MANIFEST_DIR) and what is up to date is built
    // again.
    let package_vars = std::env::vars_os().filter(|(name, _)| {
        let name = name.to_string_lossy();
        name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_CRATE_")
            || name.starts_with("CARGO_BIN_")
            || name == "CARGO_PRIMARY_PACKAGE"
    });
    for (name, _) in package_vars {
        cargo.env_remove(name);
    }
    cargo
        .arg("build")
        .arg("--quiet")
        .args(cargo_args)
        .current_dir(workspace_root());
    if is_release() {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo build");
    assert!(status.success(), "cargo build {cargo_args:?} failed");
    assert!(
        path.exists(),
        "{} is missing after building it",
        path.display()
    );
    path
}

/// An example of the `spoke` package (`echo`, `files`, ...).
pub fn example(name: &str) -> PathBuf {
    let path = profile_dir()
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    built(path, &["-p", "spoke", "--example", name])
}

/// The hub binary, `spoke`.
pub fn hub() -> PathBuf {
    let path = profile_dir().join(format!("spoke{}", std::env::consts::EXE_SUFFIX));
    built(path, &["-p", "spoke-hub", "--bin", "spoke"])
}

/// One of this package's binaries (`raw-line-echo`, `noop`).
pub fn bench_bin(name: &str) -> PathBuf {
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    built(path, &["-p", "spoke-benches", "--bin", name])
}
