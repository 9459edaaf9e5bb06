//! A binary that registers no connector warns at start-up and exits with a
//! usage error, instead of doing nothing silently. The test re-runs its own
//! executable as that binary (`harness = false`).

use std::process::Command;

const CHILD: &str = "SPOKE_TEST_EMPTY_REGISTRY_CHILD";

fn main() -> std::process::ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return spoke::main();
    }
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg("describe")
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("no connector is registered in this binary"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("WARN"),
        "the start-up warning is logged: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
    println!("1 passed, 0 failed");
    std::process::ExitCode::SUCCESS
}
