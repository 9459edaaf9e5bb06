//! `<echo> mcp` over stdio, driven with raw JSON lines and no MCP library:
//! the handshake era, the stateless 2026-07-28 era, and that stdout
//! carries protocol frames only.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{example, stdout};
use serde_json::{Value, json};

/// Sends `lines` to `<echo> mcp`, closes stdin, and returns every line it
/// wrote to stdout (each must be JSON), its exit status and its log.
fn exchange(lines: &[Value]) -> (Vec<Value>, std::process::ExitStatus, String) {
    let mut child = example("echo")
        .arg("mcp")
        .env("ECHO_PREFIX", "> ")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn echo mcp");
    let mut input = String::new();
    for line in lines {
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).unwrap();
        // Give the answers time to come before the client leaves.
        std::thread::sleep(Duration::from_millis(500));
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.expect("echo mcp output"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("`echo mcp` did not exit within 30 s of its stdin closing");
        }
    };
    let frames = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON frame: {l}: {e}")))
        .collect();
    (frames, out.status, common::stderr(&out))
}

fn answer(frames: &[Value], id: u64) -> &Value {
    frames
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no answer to {id} in {frames:#?}"))
}

#[test]
fn the_handshake_era_lists_and_calls_with_stdout_kept_to_frames() {
    let (frames, status, log) = exchange(&[
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": "hi"}}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": 5}}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
               "params": {"name": "nope", "arguments": {}}}),
    ]);
    // The client closed stdin: the server exits 0.
    assert!(status.success(), "{status}\n{log}");
    // Every stdout line was a JSON-RPC frame (parsed above), one per request.
    assert_eq!(frames.len(), 5, "{frames:#?}");
    let init = &answer(&frames, 1)["result"];
    assert_eq!(init["protocolVersion"], "2025-06-18");
    assert_eq!(init["serverInfo"]["name"], "echo");
    assert_eq!(init["capabilities"]["tools"], json!({}));
    let tools = &answer(&frames, 2)["result"]["tools"];
    assert_eq!(tools.as_array().unwrap().len(), 1);
    assert_eq!(tools[0]["name"], "echo");
    assert_eq!(tools[0]["annotations"]["readOnlyHint"], true);
    assert_eq!(
        tools[0]["inputSchema"]["properties"]["text"]["type"],
        "string"
    );
    let ok = &answer(&frames, 3)["result"];
    assert_eq!(ok["structuredContent"], json!({"result": "> hi"}));
    assert_eq!(ok["isError"], false);
    let bad = &answer(&frames, 4)["result"];
    assert_eq!(bad["isError"], true);
    assert!(bad.get("structuredContent").is_none(), "{bad}");
    assert!(
        bad["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("error[invalid_input]: $.text: invalid type: integer `5`"),
        "{bad}"
    );
    let unknown = &answer(&frames, 5)["error"];
    assert_eq!(unknown["code"], -32602);
    assert_eq!(
        unknown["message"],
        "unknown tool `nope`; the tools are: echo"
    );
}

#[test]
fn the_stateless_era_needs_no_handshake() {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    });
    let (frames, status, log) = exchange(&[
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"_meta": meta, "name": "echo", "arguments": {"text": "now"}}}),
        // No protocol metadata: refused as invalid params.
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {}}),
    ]);
    assert!(status.success(), "{status}\n{log}");
    let discover = &answer(&frames, 1)["result"];
    let versions = discover["supportedVersions"].as_array().unwrap();
    for v in ["2026-07-28", "2025-11-25", "2025-06-18", "2024-11-05"] {
        assert!(versions.contains(&json!(v)), "{discover}");
    }
    let list = &answer(&frames, 2)["result"];
    assert_eq!(list["tools"][0]["name"], "echo");
    assert_eq!(list["cacheScope"], "private");
    assert_eq!(
        answer(&frames, 3)["result"]["structuredContent"],
        json!({"result": "> now"})
    );
    assert!(answer(&frames, 4).get("error").is_some(), "{frames:#?}");
}
