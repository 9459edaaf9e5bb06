//! Sync tests' shared pieces: the JSON lines of sync events as `<bin>
//! sync` and `spoke sync` print them, and the files of a tree the `files`
//! example syncs.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Each line as JSON (a line that is not JSON fails the test).
pub fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `(type, id)` of each event.
pub fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// An expected `(type, id)`.
pub fn pair(kind: &str, id: &str) -> (String, String) {
    (kind.to_owned(), id.to_owned())
}

/// Writes `root/rel`, making its directories.
pub fn write_file(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
}

/// Sets the modification time of `root/rel` to `secs` from now.
pub fn touch(root: &Path, rel: &str, secs: u64) {
    let file = std::fs::File::options()
        .write(true)
        .open(root.join(rel))
        .unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(secs))
        .unwrap();
}
