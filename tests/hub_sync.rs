//! Syncs through the hub, with real processes on loopback: the `files`
//! example attached with `serve`, a `spoke hub`, and `spoke sync`,
//! `spoke syncs`, `spoke sync --cancel` and `spoke checkpoint` as a user
//! runs them. Full then incremental runs with deletions swept from the
//! ids the hub keeps; a second start of a running sync refused; a cancel
//! that frees the slot; a connector killed mid-run whose run fails after
//! the resume window and whose next run resumes after the last stored
//! checkpoint; checkpoints read, replaced (checked against the schema) and
//! reset.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::sync_events::{self, kinds, lines, pair};
use common::{ChildGuard, Hub};
use serde_json::Value;

/// A directory tree the `files` connector serves, and the hub it attaches to.
struct Setup {
    dir: tempfile::TempDir,
    hub: Hub,
}

impl Setup {
    /// A hub keeping its sync store in a temporary directory, and a tree
    /// with `files` (each a 400-byte text).
    fn new(files: &[String]) -> Setup {
        Setup::with_hub_args(files, &[])
    }

    /// [`Setup::new`] with more `spoke hub` arguments.
    fn with_hub_args(files: &[String], extra: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        let data = dir.path().join("data");
        let mut args = vec!["--data", data.to_str().unwrap()];
        args.extend_from_slice(extra);
        let hub = Hub::start(&args);
        let setup = Setup { dir, hub };
        for f in files {
            setup.write(f, &"x".repeat(400));
        }
        setup
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn write(&self, rel: &str, text: &str) {
        sync_events::write_file(&self.root(), rel, text);
    }

    /// Sets a file's modification time `secs` from now.
    fn touch(&self, rel: &str, secs: u64) {
        sync_events::touch(&self.root(), rel, secs);
    }

    /// Attaches the `files` connector and waits until it is ready.
    fn attach(&self) -> ChildGuard {
        self.attach_at(&self.hub.url)
    }

    /// Attaches the `files` connector dialing `url` (the hub, or a proxy
    /// to it) and waits until it is ready.
    fn attach_at(&self, url: &str) -> ChildGuard {
        let connector = self.hub.attach(
            "files",
            &[
                ("FILES_ROOT", self.root().to_str().unwrap()),
                ("SPOKE_INSTANCE_ID", "files-1"),
                ("SPOKE_HUB_URL", url),
            ],
        );
        self.hub
            .wait_for_instances("files", 1, Duration::from_secs(30));
        connector
    }

    fn spoke(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.hub.cli();
        cmd.args(args);
        cmd
    }

    /// `spoke sync files ARGS`: the events, stderr and exit code.
    fn sync(&self, args: &[&str]) -> (Vec<Value>, String, Option<i32>) {
        let mut cmd = self.spoke(&["sync", "files"]);
        cmd.args(args);
        let Output {
            status,
            stdout,
            stderr,
        } = common::run_with_limit(&mut cmd, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        eprintln!("spoke sync: {stderr}");
        (lines(&stdout), stderr, status.code())
    }

    /// `spoke sync files` with its stdout on a pipe nobody reads until the
    /// test does: the run stalls once the pipe and the buffers fill.
    fn sync_stalled(&self) -> Child {
        self.spoke(&["sync", "files"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `spoke checkpoint get files files`, parsed.
    fn checkpoint(&self) -> Value {
        let out = common::run(&mut self.spoke(&["checkpoint", "get", "files", "files"]));
        assert!(out.status.success(), "{}", common::stderr(&out));
        common::stdout_json(&out)
    }

    /// The runs `spoke syncs --json` lists.
    fn runs(&self) -> Vec<Value> {
        runs(&self.hub)
    }

    /// Waits until `spoke syncs` shows a running run; its id.
    fn running_run(&self) -> String {
        running_run(&self.hub)
    }
}

/// The runs `spoke syncs --json` lists.
fn runs(hub: &Hub) -> Vec<Value> {
    let out = common::run(hub.cli().args(["syncs", "--json"]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    common::stdout_json(&out)["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until `spoke syncs` shows a running run; its id.
fn running_run(hub: &Hub) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(run) = runs(hub).iter().find(|r| r["status"] == "running") {
            return run["run_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no run shows as running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A hub (checkpoints in memory) with the `faults` example attached.
fn faults_hub() -> (Hub, ChildGuard) {
    let hub = Hub::start(&[]);
    let connector = hub.attach("faults", &[("SPOKE_INSTANCE_ID", "faults-1")]);
    hub.wait_for_instances("faults", 1, Duration::from_secs(30));
    (hub, connector)
}

/// `spoke sync faults SYNC` with stdout and stderr on pipes.
fn spawn_sync(hub: &Hub, sync: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = hub
        .cli()
        .args(["sync", "faults", sync])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn names(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("f{n:04}.txt")).collect()
}

/// Reads `count` JSON lines from a stalled run's stdout.
fn read_events(out: &mut BufReader<std::process::ChildStdout>, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut line = String::new();
    while events.len() < count {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the run ended early");
        events.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    events
}

/// Reads a stalled run's stdout and stderr to their end: the events
/// added to `delivered`, its stderr and exit code.
fn read_to_end(
    mut caller: Child,
    mut out: BufReader<std::process::ChildStdout>,
    delivered: &mut Vec<Value>,
) -> (String, Option<i32>) {
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    delivered.extend(lines(&rest));
    let mut stderr = String::new();
    caller
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (stderr, caller.wait().unwrap().code())
}

#[test]
fn a_full_run_then_an_incremental_one_through_the_hub() {
    let setup = Setup::new(&["a.txt".into(), "b.txt".into(), "docs/c.md".into()]);
    let _connector = setup.attach();
    let (events, stderr, code) = setup.sync(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        kinds(&events),
        [
            pair("document_created", "a.txt"),
            pair("document_created", "b.txt"),
            pair("document_created", "docs/c.md"),
        ]
    );
    assert!(stderr.contains("on instance files-1, full"), "{stderr}");
    assert!(stderr.contains(" completed: 3 events"), "{stderr}");
    let stored = setup.checkpoint();
    assert_eq!(stored["last_status"], "completed");
    assert_eq!(stored["last_mode"], "full");
    assert_eq!(stored["checkpoint"], stored["completed"]);
    assert_eq!(stored["checkpoint"]["version"], 1);
    assert!(stored["checkpoint"]["checkpoint"]["last_path"].is_null());

    setup.write("b.txt", "b changed");
    setup.touch("b.txt", 60);
    setup.write("d.txt", "new");
    setup.touch("d.txt", 60);
    fs::remove_file(setup.root().join("docs/c.md")).unwrap();
    let (events, stderr, code) = setup.sync(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("incremental"), "{stderr}");
    assert_eq!(
        kinds(&events),
        [
            pair("document_updated", "b.txt"),
            pair("document_updated", "d.txt"),
            pair("document_deleted", "docs/c.md"),
        ],
        "the changes, then the deletion the sweep found from the ids the hub keeps"
    );
    let runs = setup.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["status"], "completed");
    assert_eq!(runs[0]["mode"], "incremental");
    assert_eq!(runs[0]["swept"], 1);
    assert_eq!(runs[0]["counters"]["delivered"], 3);
    assert_eq!(runs[1]["mode"], "full");

    // Nothing changed: nothing to say, and nothing swept.
    let (events, stderr, code) = setup.sync(&[]);
    assert_eq!((events.len(), code), (0, Some(0)), "{stderr}");
}

#[test]
fn a_second_start_is_refused_and_a_cancel_frees_the_slot() {
    let setup = Setup::new(&names(3000));
    let _connector = setup.attach();
    let mut first = setup.sync_stalled();
    let mut out = BufReader::new(first.stdout.take().unwrap());
    read_events(&mut out, 10);
    let run_id = setup.running_run();

    let (_, stderr, code) = setup.sync(&[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("error[failed_precondition]")
            && stderr.contains(&format!("already running as run {run_id}")),
        "{stderr}"
    );

    let cancel = common::run(&mut setup.spoke(&["sync", "--cancel", &run_id]));
    assert!(cancel.status.success(), "{}", common::stderr(&cancel));
    assert!(common::stdout(&cancel).contains(&format!("cancelling run {run_id}")));
    // The stalled caller reads on and sees its run end cancelled.
    let (stderr, code) = read_to_end(first, out, &mut Vec::new());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("run {run_id} cancelled")),
        "{stderr}"
    );

    let ended = setup.runs();
    assert_eq!(ended[0]["run_id"], run_id.as_str());
    assert_eq!(ended[0]["status"], "cancelled");
    // The slot is free: the next run starts (and resumes the cancelled
    // run from its last checkpoint, if it stored one).
    let (events, stderr, code) = setup.sync(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!events.is_empty());
    let unknown = common::run(&mut setup.spoke(&["sync", "--cancel", "run-nope"]));
    assert_eq!(unknown.status.code(), Some(3));
    assert!(common::stderr(&unknown).contains("error[not_found]"));
}

#[test]
fn a_connector_killed_mid_run_fails_the_run_and_the_next_resumes_after_the_checkpoint() {
    let all = names(3000);
    let setup = Setup::new(&all);
    // Documents of 4 KB: the run (12 MB) cannot fit in the pipe, the
    // caller's and the hub's HTTP/2 windows (about 1 MB) and end before
    // the kill, as 3000 documents of 400 bytes sometimes did.
    for f in &all {
        setup.write(f, &"x".repeat(4000));
    }
    let mut connector = setup.attach();
    let mut caller = setup.sync_stalled();
    let mut out = BufReader::new(caller.stdout.take().unwrap());
    let mut delivered = read_events(&mut out, 120);
    // Let the run fill the buffers and stall, then kill the connector.
    std::thread::sleep(Duration::from_millis(300));
    connector.signal("KILL");
    connector.wait_for(Duration::from_secs(10));
    let (stderr, code) = read_to_end(caller, out, &mut delivered);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(" failed: ") && stderr.contains("left during the run"),
        "the run fails once the resume window passed: {stderr}"
    );

    let stored = setup.checkpoint();
    assert_eq!(stored["last_status"], "failed");
    let last = stored["checkpoint"]["checkpoint"]["last_path"]
        .as_str()
        .expect("a checkpoint mid-walk")
        .to_owned();
    assert!(
        last.as_str() < all.last().unwrap().as_str(),
        "killed before the end"
    );
    let ids: BTreeSet<String> = delivered
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    for name in all.iter().filter(|n| n.as_str() <= last.as_str()) {
        assert!(
            ids.contains(name),
            "{name} is before the stored checkpoint ({last}) but did not reach the caller"
        );
    }

    let _connector = setup.attach();
    let (events, stderr, code) = setup.sync(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("full, resuming"), "{stderr}");
    let resumed: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let after: Vec<&str> = all
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
fn a_cut_shorter_than_the_resume_window_loses_and_repeats_nothing() {
    let all = names(3000);
    let setup = Setup::with_hub_args(
        &all,
        &["--heartbeat-interval", "1s", "--resume-window", "3s"],
    );
    let proxy = common::proxy::Proxy::start(setup.hub.authority());
    let _connector = setup.attach_at(&proxy.url);
    let mut caller = setup.sync_stalled();
    let mut out = BufReader::new(caller.stdout.take().unwrap());
    let mut delivered = read_events(&mut out, 200);
    // Frames in flight both ways are lost with the connection.
    proxy.cut();
    std::thread::sleep(Duration::from_millis(500));
    proxy.open();
    let (stderr, code) = read_to_end(caller, out, &mut delivered);
    assert_eq!(code, Some(0), "{stderr}");
    let ids: Vec<&str> = delivered
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_eq!(
        ids, expected,
        "every document once, in order, across the cut (frames sent again keep their sequence numbers)"
    );
}

#[test]
fn checkpoints_are_read_replaced_against_the_schema_and_reset() {
    let setup = Setup::new(&["a.txt".into(), "b.txt".into()]);
    let _connector = setup.attach();
    let missing = common::run(&mut setup.spoke(&["checkpoint", "get", "files", "files"]));
    assert_eq!(missing.status.code(), Some(3));
    assert!(
        common::stderr(&missing)
            .contains("error[not_found]: no checkpoint is stored for sync `files`")
    );
    assert_eq!(setup.sync(&[]).2, Some(0));

    let bad = common::run(&mut setup.spoke(&[
        "checkpoint",
        "set",
        "files",
        "files",
        r#"{"last_path": 42}"#,
    ]));
    assert_eq!(bad.status.code(), Some(3));
    let text = common::stderr(&bad);
    assert!(
        text.contains("error[invalid_argument]") && text.contains("/last_path"),
        "{text}"
    );

    // Replaced with "resume after a.txt" as the completed state: the next
    // run is incremental from it, and finds nothing modified since.
    let set = common::run(&mut setup.spoke(&[
        "checkpoint",
        "set",
        "files",
        "files",
        r#"{"last_path": null, "modified_after": "2100-01-01T00:00:00Z"}"#,
    ]));
    assert!(set.status.success(), "{}", common::stderr(&set));
    let stored = setup.checkpoint();
    assert_eq!(
        stored["completed"]["checkpoint"]["modified_after"],
        "2100-01-01T00:00:00Z"
    );
    let (events, stderr, code) = setup.sync(&["--mode", "incremental"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        events.iter().all(|e| e["type"] != "document_updated"),
        "nothing is newer than the replaced checkpoint: {events:?}"
    );

    let reset = common::run(&mut setup.spoke(&["checkpoint", "reset", "files", "files"]));
    assert!(reset.status.success(), "{}", common::stderr(&reset));
    let (events, stderr, code) = setup.sync(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("on instance files-1, full"),
        "a reset sync starts over: {stderr}"
    );
    assert_eq!(events.len(), 2);
}

#[test]
fn a_sync_that_ignores_its_cancel_frees_its_slot_within_the_grace() {
    let (hub, _connector) = faults_hub();
    let (first, mut out) = spawn_sync(&hub, "ignores_cancel");
    read_events(&mut out, 3);
    let run_id = running_run(&hub);
    let cancelled_at = Instant::now();
    let cancel = common::run(hub.cli().args(["sync", "--cancel", &run_id]));
    assert!(cancel.status.success(), "{}", common::stderr(&cancel));
    let (stderr, code) = read_to_end(first, out, &mut Vec::new());
    let took = cancelled_at.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("run {run_id} cancelled")),
        "{stderr}"
    );
    // The connector's cancel grace is 2 s; the sync never looks at its token.
    assert!(
        took < Duration::from_secs(5),
        "the run ended {took:?} after the cancel"
    );
    // Its slot is free: the same sync starts again at once.
    let (mut again, mut out) = spawn_sync(&hub, "ignores_cancel");
    let events = read_events(&mut out, 3);
    assert_eq!(events[0]["id"], "doc-0");
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn a_panicking_sync_fails_its_run_and_the_connector_goes_on() {
    let (hub, _connector) = faults_hub();
    let out = common::run_with_limit(
        hub.cli().args(["sync", "faults", "panics"]),
        Duration::from_secs(60),
    );
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error[panicked]")
            && stderr.contains("the sync fell over after document 0"),
        "{stderr}"
    );
    assert_eq!(
        kinds(&lines(&out.stdout)),
        [pair("document_created", "doc-0")]
    );
    let runs = runs(&hub);
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["error"]["code"], "panicked");
    let call = common::run(
        hub.cli()
            .args(["call", "faults", "add", r#"{"a": 1, "b": 2}"#]),
    );
    assert!(call.status.success(), "{}", common::stderr(&call));
    assert_eq!(common::stdout_json(&call), serde_json::json!(3));
}
