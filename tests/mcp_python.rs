//! The examples as MCP servers, driven by a client no one here wrote: the
//! Python `mcp` package (2.3.x, from PyPI) through
//! `tests/mcp_client/drive.py`, over stdio in both protocol eras (the
//! handshake of 2025-11-25 and the stateless 2026-07-28) and over
//! Streamable HTTP with bearer tokens.
//!
//! The client lives in a venv that `.ci/run` makes:
//! `python3 -m venv target/mcp-venv && target/mcp-venv/bin/pip install
//! mcp==2.3.0`. `SPOKE_TEST_MCP_PYTHON` names another interpreter that has
//! it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::mcp_client::drive;
use common::{ChildGuard, example, example_bin};

fn bin(name: &str) -> String {
    example_bin(name).display().to_string()
}

#[test]
fn echo_over_stdio_in_both_eras() {
    for era in ["legacy", "modern"] {
        drive(&["echo-stdio", &bin("echo"), era]);
    }
}

#[test]
fn admin_only_and_hidden_tools_over_stdio() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), "a").unwrap();
    let root_arg = root.path().display().to_string();
    for (era, admin) in [
        ("legacy", "admin"),
        ("modern", "no-admin"),
        ("modern", "admin"),
        ("legacy", "no-admin"),
    ] {
        drive(&["files-stdio", &bin("files"), &root_arg, era, admin]);
    }
    // Only the administrator's calls wrote and deleted: nothing is left.
    assert!(!root.path().join("new.txt").exists());
}

#[test]
fn progress_cancellation_errors_and_panics_over_stdio() {
    for era in ["legacy", "modern"] {
        let log = drive(&["faults-stdio", &bin("faults"), era]);
        // The client's cancel reached the action's token: it stopped early
        // and said how long it had slept (of 30 s).
        let line = log
            .lines()
            .find(|l| l.contains("sleep stopped after"))
            .unwrap_or_else(|| panic!("the cancel never reached the action ({era}):\n{log}"));
        let slept: u64 = line
            .split("sleep stopped after ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no duration in {line}"));
        assert!((900..10_000).contains(&slept), "{line}");
        assert!(line.contains("call ended: cancelled"), "{line}");
    }
}

/// `<files> mcp --http 127.0.0.1:0` with tokens; its URL from its log.
fn files_over_http(root: &std::path::Path) -> (ChildGuard, String) {
    let mut child = ChildGuard {
        child: example("files")
            .args(["mcp", "--http", "127.0.0.1:0"])
            .env("FILES_ROOT", root)
            .env("SPOKE_MCP_TOKEN", "user-token")
            .env("SPOKE_MCP_ADMIN_TOKEN", "admin-token")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn files mcp --http"),
    };
    let mut lines = BufReader::new(child.child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let url = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("`files mcp --http` exited before serving:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(at) = line.find("serving MCP at ") {
            break line[at + "serving MCP at ".len()..].trim().to_owned();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

#[test]
fn streamable_http_with_tokens_in_both_eras() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), "a").unwrap();
    let (_server, url) = files_over_http(root.path());
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    for era in ["legacy", "modern"] {
        drive(&["http", &url, "user-token", "admin-token", era]);
    }
}
