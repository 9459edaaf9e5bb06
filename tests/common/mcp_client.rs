//! The Python `mcp` client (2.3.x, from PyPI) that drives the MCP tests,
//! through `tests/mcp_client/drive.py`.
//!
//! The client lives in a venv that `.ci/run` makes:
//! `python3 -m venv target/mcp-venv && target/mcp-venv/bin/pip install
//! mcp==2.3.0`. `SPOKE_TEST_MCP_PYTHON` names another interpreter that has
//! it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{run_with_limit, stderr, stdout};

/// The Python that has the `mcp` package.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SPOKE_TEST_MCP_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv/bin/python");
    assert!(
        venv.exists(),
        "the MCP client tests need the Python `mcp` package in a venv: run \
         `python3 -m venv target/mcp-venv && target/mcp-venv/bin/pip install mcp==2.3.0` \
         (as .ci/run does), or set SPOKE_TEST_MCP_PYTHON to a python that has it"
    );
    venv
}

/// Runs a scenario of the driver; fails the test with its output unless
/// it passes. Returns the driver's stderr (the connector's log goes there).
pub fn drive(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client/drive.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args(args).stdin(Stdio::null());
    let out = run_with_limit(&mut cmd, Duration::from_secs(90));
    assert!(
        out.status.success() && stdout(&out).trim() == "ok",
        "scenario {args:?} failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}
