//! `<bin> sync` through the `files` example's own binary: full then
//! incremental runs with a state file, a resume after SIGKILL, failed
//! items against the error budget, and the errors of a bad state or a bad
//! command line.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::sync_events::{self, kinds, lines, pair};
use serde_json::Value;

/// A directory tree for the `files` connector, and where its state goes.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new(files: &[&str]) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        let tree = Tree { dir };
        for f in files {
            tree.write(f, &format!("text of {f}"));
        }
        tree
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("files.state")
    }

    fn write(&self, rel: &str, text: &str) {
        sync_events::write_file(&self.root(), rel, text);
    }

    /// Sets a file's modification time `secs` from now.
    fn touch(&self, rel: &str, secs: u64) {
        sync_events::touch(&self.root(), rel, secs);
    }

    fn sync(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = common::example("files");
        cmd.env("FILES_ROOT", self.root())
            .arg("sync")
            .args(["--state", self.state().to_str().unwrap()])
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> (Vec<Value>, String, Option<i32>) {
        let Output {
            status,
            stdout,
            stderr,
        } = self.sync(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        eprintln!("{stderr}");
        (lines(&stdout), stderr, status.code())
    }

    fn checkpoint(&self) -> Value {
        let state: Value = serde_json::from_slice(&fs::read(self.state()).unwrap()).unwrap();
        state["entries"][0]["checkpoint"]["checkpoint"].clone()
    }
}

#[test]
fn an_incremental_run_after_a_full_one_emits_only_changes_and_deletions() {
    let tree = Tree::new(&["a.txt", "b.txt", "docs/c.md"]);
    let (events, stderr, code) = tree.run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        kinds(&events),
        [
            pair("document_created", "a.txt"),
            pair("document_created", "b.txt"),
            pair("document_created", "docs/c.md"),
        ]
    );
    assert_eq!(events[0]["content"]["text"], "text of a.txt");
    assert_eq!(events[0]["permissions"]["public"], true);
    assert!(stderr.contains("sync `files` completed"), "{stderr}");
    assert!(
        tree.checkpoint()["last_path"].is_null(),
        "the walk finished"
    );

    tree.write("b.txt", "b changed");
    tree.touch("b.txt", 60);
    tree.write("d.txt", "new");
    tree.touch("d.txt", 60);
    fs::remove_file(tree.root().join("docs/c.md")).unwrap();
    let (events, stderr, code) = tree.run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        kinds(&events),
        [
            pair("document_updated", "b.txt"),
            pair("document_updated", "d.txt"),
            pair("document_deleted", "docs/c.md"),
        ],
        "incremental: the changes, then what the sweep found gone"
    );
    assert!(stderr.contains("1 by the sweep"), "{stderr}");

    // Nothing changed: nothing to say.
    let (events, _, code) = tree.run(&[]);
    assert_eq!((events.len(), code), (0, Some(0)));
    // A full run asked for emits everything again.
    let (events, _, code) = tree.run(&["--mode", "full"]);
    assert_eq!(code, Some(0));
    assert_eq!(events.len(), 3);
}

#[test]
fn a_run_killed_half_way_resumes_after_its_last_checkpoint() {
    let names: Vec<String> = (0..600).map(|n| format!("f{n:04}.txt")).collect();
    let tree = Tree::new(&[]);
    let filler = "x".repeat(400);
    for name in &names {
        tree.write(name, &filler);
    }
    // Nobody reads the pipe beyond a few pages: the run blocks writing,
    // mid-walk, and is killed there.
    let mut child = tree
        .sync(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = Vec::new();
    let mut line = String::new();
    while first.len() < 120 {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the run went on");
        first.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    // The kill may cut a write short: a torn last line is no document.
    let whole = rest
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    first.extend(lines(&rest[..whole]));
    let delivered: BTreeSet<String> = first
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();

    let checkpoint = tree.checkpoint();
    let last = checkpoint["last_path"]
        .as_str()
        .expect("a checkpoint mid-walk")
        .to_owned();
    assert!(
        last.as_str() < names.last().unwrap().as_str(),
        "killed before the end"
    );
    for name in names.iter().filter(|n| n.as_str() <= last.as_str()) {
        assert!(
            delivered.contains(name),
            "{name} is before the checkpoint ({last}) but was not delivered"
        );
    }

    let (events, stderr, code) = tree.run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("resuming the interrupted full run"),
        "{stderr}"
    );
    let resumed: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let after: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n > last.as_str())
        .collect();
    assert_eq!(
        resumed, after,
        "the second run starts right after the checkpoint"
    );
}

#[test]
fn unreadable_files_are_reported_and_count_against_the_error_budget() {
    let names: Vec<String> = (0..12).map(|n| format!("f{n:02}.txt")).collect();
    let tree = Tree::new(&names.iter().map(String::as_str).collect::<Vec<_>>());
    std::os::unix::fs::symlink(tree.dir.path().join("nowhere"), tree.root().join("broken"))
        .unwrap();
    let (events, stderr, code) = tree.run(&[]);
    assert_eq!(code, Some(0), "1 of 13 is within 10%: {stderr}");
    assert_eq!(events.len(), 12);
    assert!(stderr.contains("failed item broken: "), "{stderr}");

    let small = Tree::new(&["a.txt"]);
    std::os::unix::fs::symlink(
        small.dir.path().join("nowhere"),
        small.root().join("broken"),
    )
    .unwrap();
    let (_, stderr, code) = small.run(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "1 of 2 items failed (50.0%), over the error budget of 10.0% of sync `files`: broken: "
        ),
        "{stderr}"
    );
}

#[test]
fn a_checkpoint_that_no_longer_decodes_stops_the_run_naming_the_field() {
    let tree = Tree::new(&["a.txt"]);
    assert_eq!(tree.run(&[]).2, Some(0));
    let mut state: Value = serde_json::from_slice(&fs::read(tree.state()).unwrap()).unwrap();
    // Where the next run starts: the checkpoint the completed run left.
    state["entries"][0]["completed"]["checkpoint"]["last_path"] = serde_json::json!(42);
    fs::write(tree.state(), serde_json::to_vec(&state).unwrap()).unwrap();
    let (events, stderr, code) = tree.run(&[]);
    assert_eq!((events.len(), code), (0, Some(1)), "{stderr}");
    assert!(
        stderr.contains("the stored checkpoint of sync `files` no longer decodes at `$.last_path`: invalid type: integer `42`"),
        "{stderr}"
    );
}

#[test]
fn bad_command_lines_and_state_files_are_usage_errors() {
    let tree = Tree::new(&["a.txt"]);
    let (_, stderr, code) = tree.run(&["fils"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("has no sync `fils` (did you mean `files`?); its syncs: files"),
        "{stderr}"
    );
    let (_, stderr, code) = tree.run(&["--mode", "realtime"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("sync `files` has no realtime mode; its modes: full, incremental"),
        "{stderr}"
    );
    let (_, stderr, code) = tree.run(&["--mode", "sometimes"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("`sometimes` is not a sync mode"),
        "{stderr}"
    );
    fs::write(tree.state(), "not json").unwrap();
    let (_, stderr, code) = tree.run(&[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("is not a Spoke sync state file"),
        "{stderr}"
    );
}

#[test]
fn a_checkpoint_of_an_older_version_is_migrated_or_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("faults.state");
    let write_state = |checkpoint: Value| {
        let entry = serde_json::json!({
            "sync": "migrated",
            "source": "",
            "checkpoint": {"version": 1, "checkpoint": checkpoint},
            "completed": {"version": 1, "checkpoint": checkpoint},
        });
        let file = serde_json::json!({
            "spoke_sync_state": 1,
            "connector": "faults",
            "entries": [entry],
        });
        fs::write(&state, serde_json::to_vec(&file).unwrap()).unwrap();
    };
    let sync = || {
        let mut cmd = common::example("faults");
        cmd.args(["sync", "migrated", "--state", state.to_str().unwrap()]);
        let out = common::run(&mut cmd);
        let stderr = common::stderr(&out);
        eprintln!("{stderr}");
        (lines(&out.stdout), stderr, out.status.code())
    };

    write_state(serde_json::json!({"page": 5}));
    let (events, stderr, code) = sync();
    assert_eq!(code, Some(0), "{stderr}");
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["doc-5", "doc-6", "doc-7"],
        "it goes on from the migrated checkpoint"
    );
    let stored: Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        stored["entries"][0]["checkpoint"],
        serde_json::json!({"version": 2, "checkpoint": {"next": 8}})
    );

    write_state(serde_json::json!({"pages": 5}));
    let (events, stderr, code) = sync();
    assert_eq!((events.len(), code), (0, Some(1)), "{stderr}");
    assert!(
        stderr.contains("a version-1 checkpoint without a `page` number"),
        "{stderr}"
    );
}

#[test]
fn an_idle_buffer_is_flushed_on_age_alone() {
    let started = std::time::Instant::now();
    let mut child = common::example("faults")
        .args(["sync", "trickle"])
        .env("SPOKE_SYNC_FLUSH_AGE", "200ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let took = started.elapsed();
    // The sync waits 3 s after its first document and emits nothing else
    // meanwhile: only the age timer can have flushed it.
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first document came only at the end ({took:?})"
    );
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(lines(first.as_bytes())[0]["id"], "doc-0");
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    assert_eq!(lines(&rest)[0]["id"], "doc-1");
    assert!(child.wait().unwrap().success());

    // A value that does not parse is refused, naming the variable.
    let out = common::run(
        common::example("faults")
            .args(["sync", "trickle"])
            .env("SPOKE_SYNC_FLUSH_AGE", "soon"),
    );
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("SPOKE_SYNC_FLUSH_AGE"),
        "{}",
        common::stderr(&out)
    );
}
