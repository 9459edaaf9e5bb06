//! The hub as one MCP server, driven by the Python `mcp` client (see
//! `common::mcp_client`): `spoke hub --mcp ADDR` over Streamable HTTP and
//! `spoke mcp` over stdio, each in both protocol eras, on a hub with auth
//! holding two connectors (two tagged echo instances and tickets). Client
//! tokens of three scopes: everything read-only, echo only, and `--write`.
//! The files connector attaches and leaves during a session: the client is
//! told, and the list follows.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::mcp_client::drive;
use common::{ChildGuard, Hub, example, example_bin, spoke_bin};

/// A free loopback port (for `--mcp`; the hub reports only its gRPC one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `spoke <args>` with the operator token; its stdout.
fn spoke(hub: &Hub, args: &[&str]) -> String {
    hub.operator(&[], args)
}

/// Attaches an example with a registration token, as instance `id`.
fn attach(hub: &Hub, home: &Path, name: &str, id: &str, env: &[(&str, &str)]) -> ChildGuard {
    let token = spoke(hub, &["token", "create", "--connector", name]);
    let child = example(name)
        .arg("serve")
        .env("SPOKE_HUB_URL", &hub.url)
        .env("HOME", home)
        .env("SPOKE_INSTANCE_ID", id)
        .env("SPOKE_REGISTRATION_TOKEN", &token)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start connector");
    ChildGuard { child }
}

/// Waits until `spoke ls` shows these instances ready.
fn wait_ready(hub: &Hub, ids: &[&str]) {
    let started = Instant::now();
    loop {
        let ls = spoke(hub, &["ls"]);
        let v: serde_json::Value = serde_json::from_str(&ls).unwrap();
        let ready: Vec<String> = v["connectors"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["instances"].as_array().cloned().unwrap_or_default())
            .filter(|i| i["state"] == "ready")
            .filter_map(|i| i["id"].as_str().map(str::to_owned))
            .collect();
        if ids.iter().all(|id| ready.iter().any(|r| r == id)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready after 30 s: {ids:?}; ls: {ls}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_hub_serves_its_connectors_as_one_mcp_server() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let files_root = dir.path().join("files");
    std::fs::create_dir_all(&files_root).unwrap();
    std::fs::write(files_root.join("a.txt"), "a").unwrap();
    let mcp_addr = format!("127.0.0.1:{}", free_port());
    let hub = Hub::start_secure(
        &dir.path().join("data"),
        &[
            "--insecure",
            "--heartbeat-interval",
            "500ms",
            "--mcp",
            &mcp_addr,
        ],
    );
    let _eu = attach(
        &hub,
        &home,
        "echo",
        "echo-eu",
        &[("SPOKE_TAGS", "eu"), ("ECHO_PREFIX", "eu: ")],
    );
    let _us = attach(
        &hub,
        &home,
        "echo",
        "echo-us",
        &[("SPOKE_TAGS", "us"), ("ECHO_PREFIX", "us: ")],
    );
    let _tickets = attach(&hub, &home, "tickets", "tickets-1", &[]);
    wait_ready(&hub, &["echo-eu", "echo-us", "tickets-1"]);

    let tokens = serde_json::json!({
        "read": spoke(&hub, &["client-token", "create", "--connectors", "*"]),
        "echo": spoke(&hub, &["client-token", "create", "--connectors", "echo"]),
        "write": spoke(&hub, &["client-token", "create", "--connectors", "*", "--write"]),
    })
    .to_string();
    // The files connector, which the driver starts and stops mid-session
    // (approved by its registration token the first time, by its key after).
    let files_token = spoke(&hub, &["token", "create", "--connector", "files"]);
    let files = serde_json::json!({
        "argv": [example_bin("files"), "serve"],
        "env": {
            "SPOKE_HUB_URL": hub.url,
            "HOME": home,
            "SPOKE_INSTANCE_ID": "files-1",
            "SPOKE_REGISTRATION_TOKEN": files_token,
            "FILES_ROOT": files_root,
        },
    })
    .to_string();
    let http = format!("http://{mcp_addr}/mcp");
    let stdio = serde_json::json!({"spoke": spoke_bin(), "hub": hub.url}).to_string();
    for (transport, target) in [("http", &http), ("stdio", &stdio)] {
        for era in ["legacy", "modern"] {
            drive(&["hub", transport, era, target, &tokens, &files]);
        }
    }
    // The hub logged the MCP calls like any other: routed by tag to
    // echo-eu, and the write refused before routing.
    let log = hub.log_text();
    hub.wait_log(&[
        "connector=echo",
        "instance=echo-eu",
        "action=echo",
        "outcome=ok",
    ]);
    hub.wait_log(&[
        "connector=tickets",
        "instance=-",
        "action=create",
        "outcome=permission_denied",
    ]);
    // No token reached the log.
    let tokens: serde_json::Value = serde_json::from_str(&tokens).unwrap();
    for token in tokens.as_object().unwrap().values() {
        assert!(!log.contains(token.as_str().unwrap()), "a token was logged");
    }
}

#[test]
fn spoke_mcp_with_a_bad_token_says_so_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_secure(dir.path(), &["--insecure"]);
    let out = hub
        .cli()
        .env("SPOKE_TOKEN", "spk_not-a-token")
        .arg("mcp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stdout.is_empty(), "stdout carries frames only: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error[unauthenticated]: the client token is not known to this hub"),
        "{stderr}"
    );
}

#[test]
fn an_mcp_endpoint_beyond_loopback_needs_auth() {
    let out = std::process::Command::new(spoke_bin())
        .args([
            "hub",
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--no-auth",
            "--mcp",
            "0.0.0.0:0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--mcp 0.0.0.0:0 listens beyond this machine on a hub without auth"),
        "{stderr}"
    );
}
