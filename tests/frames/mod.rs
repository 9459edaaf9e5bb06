//! The stdio protocol's frames as tests write and check them, shared by the
//! in-process tests (`stdio_support`) and the process tests
//! (`common::sidecar`).
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{Value, json};

/// An `invoke` frame.
pub fn invoke(id: &str, action: &str, input: Value) -> Value {
    json!({"method": "invoke", "params": {"id": id, "action": action, "input": input}})
}

/// A successful `result` frame.
pub fn result_ok(id: &str, output: Value) -> Value {
    json!({"method": "result", "params": {"id": id, "output": output}})
}

/// A LibreFang `error` frame.
pub fn error_frame(message: &str) -> Value {
    json!({"method": "error", "params": {"message": message}})
}

/// The error code of `frame`, which must be the `result` of `id`.
#[track_caller]
pub fn error_code(frame: &Value, id: &str) -> String {
    assert_eq!(frame["method"], "result", "{frame}");
    assert_eq!(frame["params"]["id"], id, "{frame}");
    frame["params"]["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error result: {frame}"))
        .to_owned()
}

/// The copy of LibreFang's conformance corpus (`tests/fixtures/librefang`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/librefang")
}

/// A fixture frame; a missing or unreadable one fails the test.
pub fn fixture(kind: &str, name: &str) -> Value {
    let path = fixtures_dir().join(kind).join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()))
}
