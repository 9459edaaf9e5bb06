//! The sync commands of the `spoke` CLI: `sync` (and `sync --cancel`) and
//! `syncs` call the Hub service; `checkpoint get|set|reset` call the Admin
//! service (an admin token, as for the other admin commands).
//!
//! Output contract:
//!
//! - `sync`: the run's events, JSON lines as the hub hands them over, on
//!   stdout (or the `--out` file, created or truncated), flushed as each
//!   batch arrives. On stderr: when the run starts,
//!   ``run <run_id>: sync `<sync>` of `<connector>` on instance <id>, <mode>``
//!   (`, resuming` appended for a resumed run); with `-v`, each checkpoint
//!   the hub stores as `checkpoint: <json>`; when stderr is a terminal, a
//!   progress line (events, rate, elapsed) rewritten at most every 200 ms;
//!   at the end `run <run_id> <status>: <delivered> events (<deleted>
//!   deleted, <failed> failed, <swept> swept) in <secs>s`, then
//!   `error[<code>]: <message>` if the run has an error and
//!   `failed items: <json>` (cut at about 2,000 characters) if it lists
//!   failed items. Exit 0 when the run completed, 1 when it failed or was
//!   cancelled.
//! - `sync`, Ctrl-C: `cancelling run <run_id>…` on stderr, the run is
//!   cancelled through the hub, and the command waits for its end (exit as
//!   above); a second Ctrl-C, or one before the run started, exits at once
//!   with 1 (the hub cancels a run whose caller went away).
//! - `sync --cancel <run_id>`: what the hub did, one line on stdout, exit 0.
//! - `syncs`: a table (`RUN STATUS CONNECTOR SYNC SOURCE MODE INSTANCE
//!   DELIVERED FAILED STARTED`, STARTED in RFC 3339, UTC), or with `--json`
//!   `{"runs": [{"run_id", "tenant", "connector", "sync", "source", "mode",
//!   "resume", "instance", "status", "error": null | {"code", "message"},
//!   "counters": {"scanned", "updated", "emitted", "deleted", "failed",
//!   "delivered", "progress"?, "total"?}, "failures": [...], "swept",
//!   "started_unix_ms", "ended_unix_ms"}]}`: the running runs first, then
//!   the most recent ended ones.
//! - `checkpoint get` and `checkpoint set`: pretty JSON `{"connector",
//!   "sync", "source", "tenant", "checkpoint", "completed", "last_run_id",
//!   "last_mode", "last_status", "updated_unix_ms"}` (`checkpoint` and
//!   `completed` parsed, `null` when there is none); `checkpoint reset`:
//!   what the hub did, one line on stdout.
//! - hub and transport errors (among them `failed_precondition` when the
//!   sync already runs, `not_found`), and a stream that ends before the run
//!   does: stderr `error[<code>]: <message>`, exit 3. Usage errors (an
//!   `--out` file that cannot be made or written, a checkpoint value that is
//!   not JSON): stderr `error: <message>`, exit 2.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use serde_json::{Value, json};
use spoke_proto::prost::bytes::Bytes;
use spoke_proto::v1::{
    CancelSyncRequest, CheckpointInfo, CheckpointRef, ListSyncsRequest, SetCheckpointRequest,
    SyncEvents, SyncRequest, SyncRunInfo, sync_stream_item,
};
use spoke_runtime::sync::Timestamp;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cli::admin_client::{admin, finish, request};
use crate::cli::client::{
    EXIT_ACTION_ERROR, EXIT_OK, Failure, HubTarget, QUICK_TIMEOUT, RouteFlag, columns, connect,
    pretty, print_stdout, route_of,
};

/// How long past its `--timeout` the CLI waits for a run's end: the hub
/// gives a run past its deadline 5 s to end by itself, then cancels it and
/// waits up to 30 s for the instance to say it ended.
pub(super) const RUN_SLACK: Duration = Duration::from_secs(40);
/// How often, at most, the progress line is rewritten.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// About how many characters of the failed items the end of a run prints.
const FAILURES_SHOWN: usize = 2000;

/// What `spoke sync` runs.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// The connector.
    pub connector: String,
    /// The sync; `None` for the connector's only one.
    pub sync: Option<String>,
    /// `full`, `incremental` or `realtime`; `None`: the hub picks (resume,
    /// else incremental after a completed run, else the first mode).
    pub mode: Option<String>,
    /// The source; `None` for none.
    pub source: Option<String>,
    /// `--instance` or `--display-name` (never a tag); `None`: round-robin.
    pub route: Option<RouteFlag>,
    /// How long the run may take; `None`: no deadline.
    pub timeout: Option<Duration>,
    /// Do not resume an interrupted run.
    pub fresh: bool,
    /// Where the events go: a file, or `-` (and `None`) for stdout.
    pub out: Option<PathBuf>,
    /// Print the stored checkpoints on stderr.
    pub verbose: bool,
}

/// Where `spoke sync` writes the events.
pub(super) enum Output {
    Stdout,
    File { path: PathBuf, file: std::fs::File },
}

impl Output {
    /// Stdout for `None` or `-`, else the file, created or truncated.
    pub(super) fn open(out: Option<&Path>) -> Result<Output, Failure> {
        match out {
            None => Ok(Output::Stdout),
            Some(path) if path == Path::new("-") => Ok(Output::Stdout),
            Some(path) => match std::fs::File::create(path) {
                Ok(file) => Ok(Output::File {
                    path: path.to_owned(),
                    file,
                }),
                Err(e) => Err(Failure::Usage(format!(
                    "cannot create the --out file `{}`: {e}",
                    path.display()
                ))),
            },
        }
    }

    /// Writes a batch of events and flushes it.
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Output::File { file, .. } => {
                file.write_all(bytes)?;
                file.flush()
            }
        }
    }

    /// The place, for messages.
    fn name(&self) -> String {
        match self {
            Output::Stdout => "stdout".to_owned(),
            Output::File { path, .. } => format!("`{}`", path.display()),
        }
    }
}

/// Writes the events on a thread of its own, one batch at a time, so that
/// a reader of stdout that does not keep up holds back the run (the next
/// batch is read only once this one is written) but not Ctrl-C.
pub(super) struct Writer {
    batches: std::sync::mpsc::Sender<Bytes>,
    written: mpsc::UnboundedReceiver<std::io::Result<()>>,
    /// Whether a batch is being written.
    pub(super) busy: bool,
    /// Where the events go, for messages.
    pub(super) name: String,
}

impl Writer {
    pub(super) fn start(mut output: Output) -> Writer {
        let name = output.name();
        let (batches, to_write) = std::sync::mpsc::channel::<Bytes>();
        let (done, written) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for bytes in to_write {
                let result = output.write(&bytes);
                let failed = result.is_err();
                if done.send(result).is_err() || failed {
                    break;
                }
            }
        });
        Writer {
            batches,
            written,
            busy: false,
            name,
        }
    }

    /// Hands a batch to the thread.
    pub(super) fn write(&mut self, bytes: Bytes) {
        self.busy = true;
        // Should the thread be gone, `written` says so.
        let _ = self.batches.send(bytes);
    }

    /// Waits until the batch handed over is written.
    pub(super) async fn written(&mut self) -> std::io::Result<()> {
        let result = self
            .written
            .recv()
            .await
            .unwrap_or_else(|| Err(std::io::Error::other("the writing thread stopped")));
        self.busy = false;
        result
    }
}

/// The progress line on stderr (when it is a terminal): events so far,
/// their rate and the time since the run started.
struct Progress {
    /// Whether stderr is a terminal.
    shown: bool,
    /// Whether the line is on the screen now.
    drawn: bool,
    started: Instant,
    events: u64,
}

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress {
            shown: std::io::stderr().is_terminal(),
            drawn: false,
            started: Instant::now(),
            events: 0,
        }
    }

    fn draw(&mut self) {
        if !self.shown {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        eprint!(
            "\r\x1b[K{} events, {:.0}/s, {secs:.1}s",
            self.events,
            self.events as f64 / secs.max(0.001)
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    /// Takes the line off the screen, before another line is printed.
    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }
}

/// The request of `spoke sync`: a gRPC deadline only with `--timeout`.
fn sync_request(options: &SyncOptions) -> tonic::Request<SyncRequest> {
    let mut request = tonic::Request::new(SyncRequest {
        connector: options.connector.clone(),
        sync: options.sync.clone().unwrap_or_default(),
        mode: options.mode.clone().unwrap_or_default(),
        source_id: options.source.clone().unwrap_or_default(),
        route: options.route.clone().map(route_of),
        timeout_ms: options
            .timeout
            .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        fresh: options.fresh,
    });
    if let Some(timeout) = options.timeout {
        request.set_timeout(timeout + RUN_SLACK);
    }
    request
}

/// `spoke sync <connector> [sync] ...`: runs the sync, its events on
/// stdout (or `--out`), its start, progress and end on stderr; the exit
/// code says how the run ended.
pub async fn sync(hub: &HubTarget, options: SyncOptions) -> u8 {
    let mut writer = match Output::open(options.out.as_deref()) {
        Ok(output) => Writer::start(output),
        Err(failure) => return failure.report(),
    };
    let mut client = match connect(hub).await {
        Ok(client) => client,
        Err(failure) => return failure.report(),
    };
    let deadline = options.timeout.map(|t| Instant::now() + t + RUN_SLACK);
    let mut interrupts = interrupts();
    let mut stream = tokio::select! {
        answer = client.sync(sync_request(&options)) => match answer {
            Ok(response) => response.into_inner(),
            Err(status) => return Failure::from_status(&status).report(),
        },
        Some(()) = interrupts.recv() => {
            eprintln!("cancelled before the run started");
            return EXIT_ACTION_ERROR;
        }
    };
    let mut progress = Progress::new();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut too_late = pin!(crate::deadline::sleep_until(deadline));
    // The run's id once it started; whether it is being cancelled, and the
    // hub's answer to the cancel while it is awaited.
    let mut run_id: Option<String> = None;
    let mut cancelling = false;
    let mut cancel_answer: Option<tokio::task::JoinHandle<Result<String, Failure>>> = None;
    loop {
        tokio::select! {
            item = stream.message(), if !writer.busy => {
                let item = match item {
                    Ok(Some(item)) => item.item,
                    Ok(None) => {
                        progress.clear();
                        return Failure::Hub {
                            code: "internal",
                            message: "the hub ended the stream before the run ended".to_owned(),
                        }
                        .report();
                    }
                    Err(status) => {
                        progress.clear();
                        return Failure::from_status(&status).report();
                    }
                };
                match item {
                    Some(sync_stream_item::Item::Started(info)) => {
                        progress.clear();
                        eprintln!("{}", started_line(&info));
                        progress.started = Instant::now();
                        run_id = Some(info.run_id);
                    }
                    Some(sync_stream_item::Item::Events(events)) => {
                        progress.events += event_count(&events);
                        writer.write(events.events);
                    }
                    Some(sync_stream_item::Item::Checkpoint(stored)) if options.verbose => {
                        progress.clear();
                        eprintln!("checkpoint: {}", one_line(&stored.checkpoint_json));
                    }
                    Some(sync_stream_item::Item::Ended(info)) => {
                        progress.clear();
                        for line in end_lines(&info) {
                            eprintln!("{line}");
                        }
                        return end_code(&info);
                    }
                    Some(sync_stream_item::Item::Checkpoint(_)) | None => {}
                }
            }
            written = writer.written(), if writer.busy => {
                if let Err(e) = written {
                    progress.clear();
                    // Leaving drops the stream: the hub cancels the run.
                    return Failure::Usage(format!(
                        "cannot write the events to {}: {e}; the run is cancelled",
                        writer.name
                    ))
                    .report();
                }
            }
            Some(()) = interrupts.recv() => {
                progress.clear();
                let Some(id) = run_id.clone() else {
                    eprintln!("cancelled before the run started");
                    return EXIT_ACTION_ERROR;
                };
                if cancelling {
                    eprintln!("stopped waiting for run {id} to end");
                    return EXIT_ACTION_ERROR;
                }
                cancelling = true;
                eprintln!("cancelling run {id}…");
                let mut client = client.clone();
                cancel_answer = Some(tokio::spawn(async move {
                    let mut request = tonic::Request::new(CancelSyncRequest { run_id: id });
                    request.set_timeout(QUICK_TIMEOUT);
                    client
                        .cancel_sync(request)
                        .await
                        .map(|r| r.into_inner().message)
                        .map_err(|s| Failure::from_status(&s))
                }));
            }
            answer = async { cancel_answer.as_mut().expect("guarded").await }, if cancel_answer.is_some() => {
                cancel_answer = None;
                let failure = match answer {
                    Ok(Ok(_)) => None,
                    Ok(Err(Failure::Hub { code, message })) => Some(format!("error[{code}]: {message}")),
                    Ok(Err(Failure::Usage(message))) => Some(message),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = failure {
                    progress.clear();
                    eprintln!(
                        "cannot cancel run {}: {why}; still waiting for its end (Ctrl-C again to stop waiting)",
                        run_id.as_deref().unwrap_or_default()
                    );
                }
            }
            _ = tick.tick(), if progress.shown && run_id.is_some() => progress.draw(),
            () = &mut too_late => {
                progress.clear();
                return run_too_late(options.timeout);
            }
        }
    }
}

/// A run that did not end in its `--timeout` and [`RUN_SLACK`] more: said,
/// and its exit code.
pub(super) fn run_too_late(timeout: Option<Duration>) -> u8 {
    let timeout = timeout.unwrap_or_default();
    Failure::Hub {
        code: "deadline_exceeded",
        message: format!(
            "the run did not end within its timeout of {timeout:?} and {RUN_SLACK:?} more (raise it with --timeout)"
        ),
    }
    .report()
}

/// Ctrl-C presses, as they come (none if the signal cannot be listened to).
pub(super) fn interrupts() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}

/// How many events a batch holds (its count, else its lines).
fn event_count(events: &SyncEvents) -> u64 {
    if events.count > 0 || events.events.is_empty() {
        return u64::from(events.count);
    }
    events.events.iter().filter(|b| **b == b'\n').count() as u64
}

/// JSON text on one line: compacted when it is JSON, else its words.
fn one_line(text: &str) -> String {
    let text = text.trim();
    if !text.contains(['\n', '\r']) {
        return text.to_owned();
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => value.to_string(),
        Err(_) => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// The stderr line that says the run started.
pub(super) fn started_line(info: &SyncRunInfo) -> String {
    format!(
        "run {}: sync `{}` of `{}` on instance {}, {}{}",
        info.run_id,
        info.sync,
        info.connector,
        info.instance_id,
        info.mode,
        if info.resume { ", resuming" } else { "" }
    )
}

/// The stderr lines that say how the run ended: the summary, its error,
/// its failed items.
pub(super) fn end_lines(info: &SyncRunInfo) -> Vec<String> {
    let c = info.counters.unwrap_or_default();
    let secs = info.ended_unix_ms.saturating_sub(info.started_unix_ms) as f64 / 1000.0;
    let mut lines = vec![format!(
        "run {} {}: {} events ({} deleted, {} failed, {} swept) in {secs:.1}s",
        info.run_id, info.status, c.delivered, c.deleted, c.failed, info.swept
    )];
    if let Some(error) = &info.error {
        lines.push(format!("error[{}]: {}", error.code, error.message));
    }
    if !info.failures_json.trim().is_empty() {
        let failures = one_line(&info.failures_json);
        let line = match failures.char_indices().nth(FAILURES_SHOWN) {
            None => failures,
            Some((cut, _)) => format!(
                "{}… (cut; `spoke syncs --json` lists them all)",
                &failures[..cut]
            ),
        };
        lines.push(format!("failed items: {line}"));
    }
    lines
}

/// The exit code of an ended run: 0 when it completed, else 1.
pub(super) fn end_code(info: &SyncRunInfo) -> u8 {
    if info.status == "completed" {
        EXIT_OK
    } else {
        EXIT_ACTION_ERROR
    }
}

/// `spoke sync --cancel <run_id>`.
pub async fn cancel(hub: &HubTarget, run_id: String) -> u8 {
    let result: Result<String, Failure> = async {
        let mut client = connect(hub).await?;
        let mut request = tonic::Request::new(CancelSyncRequest { run_id });
        request.set_timeout(QUICK_TIMEOUT);
        let answer = client
            .cancel_sync(request)
            .await
            .map_err(|s| Failure::from_status(&s))?;
        Ok(answer.into_inner().message)
    }
    .await;
    match result {
        Ok(message) => {
            print_stdout(message.as_bytes(), true);
            EXIT_OK
        }
        Err(failure) => failure.report(),
    }
}

/// `spoke syncs [--connector NAME] [--recent N] [--json]`.
pub async fn list(hub: &HubTarget, connector: Option<String>, recent: u32, as_json: bool) -> u8 {
    let result: Result<Vec<SyncRunInfo>, Failure> = async {
        let mut client = connect(hub).await?;
        let mut request = tonic::Request::new(ListSyncsRequest {
            connector: connector.unwrap_or_default(),
            recent,
        });
        request.set_timeout(QUICK_TIMEOUT);
        let answer = client
            .list_syncs(request)
            .await
            .map_err(|s| Failure::from_status(&s))?;
        Ok(answer.into_inner().runs)
    }
    .await;
    match result {
        Ok(runs) => {
            let text = if as_json {
                let runs: Vec<Value> = runs.iter().map(run_json).collect();
                pretty(&json!({ "runs": runs }))
            } else {
                runs_table(&runs)
            };
            print_stdout(text.as_bytes(), true);
            EXIT_OK
        }
        Err(failure) => failure.report(),
    }
}

/// JSON text as a value: parsed, `null` when empty, the text itself when
/// it is not JSON.
fn json_or_null(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A run as `spoke syncs --json` shows it.
fn run_json(info: &SyncRunInfo) -> Value {
    let counters = crate::wire::sync_counters_json(&info.counters.unwrap_or_default());
    let failures = match json_or_null(&info.failures_json) {
        Value::Null => json!([]),
        failures => failures,
    };
    json!({
        "run_id": info.run_id,
        "tenant": info.tenant,
        "connector": info.connector,
        "sync": info.sync,
        "source": info.source_id,
        "mode": info.mode,
        "resume": info.resume,
        "instance": info.instance_id,
        "status": info.status,
        "error": info.error.as_ref().map(|e| json!({ "code": e.code, "message": e.message })),
        "counters": counters,
        "failures": failures,
        "swept": info.swept,
        "started_unix_ms": info.started_unix_ms,
        "ended_unix_ms": info.ended_unix_ms,
    })
}

/// A time in Unix milliseconds as RFC 3339 in UTC, whole seconds; `-` for 0.
fn rfc3339(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "-".to_owned();
    }
    i64::try_from(unix_ms / 1000)
        .ok()
        .and_then(Timestamp::from_unix_seconds)
        .map_or_else(|| format!("unix ms {unix_ms}"), |t| t.to_string())
}

/// `spoke syncs` without `--json`.
fn runs_table(runs: &[SyncRunInfo]) -> String {
    if runs.is_empty() {
        return "no sync runs".to_owned();
    }
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut rows: Vec<[String; 10]> = vec![
        [
            "RUN",
            "STATUS",
            "CONNECTOR",
            "SYNC",
            "SOURCE",
            "MODE",
            "INSTANCE",
            "DELIVERED",
            "FAILED",
            "STARTED",
        ]
        .map(str::to_owned),
    ];
    for r in runs {
        let c = r.counters.unwrap_or_default();
        rows.push([
            r.run_id.clone(),
            or_dash(&r.status),
            r.connector.clone(),
            or_dash(&r.sync),
            or_dash(&r.source_id),
            or_dash(&r.mode),
            or_dash(&r.instance_id),
            c.delivered.to_string(),
            c.failed.to_string(),
            rfc3339(r.started_unix_ms),
        ]);
    }
    columns(&rows).join("\n")
}

/// `spoke checkpoint get <connector> <sync> [--source ID] [--tenant T]`.
pub async fn get_checkpoint(hub: &HubTarget, target: CheckpointRef) -> u8 {
    finish(
        async {
            let mut client = admin(hub).await?;
            let info = client
                .get_checkpoint(request(target))
                .await
                .map_err(|s| Failure::from_status(&s))?
                .into_inner();
            Ok(pretty(&checkpoint_json(&info)))
        }
        .await,
    )
}

/// `spoke checkpoint set <connector> <sync> <value> [--source ID] [--tenant T]`:
/// the value is JSON text, `-` (stdin) or `@FILE`, checked here to be JSON
/// (and by the hub against the sync's checkpoint schema).
pub async fn set_checkpoint(hub: &HubTarget, target: CheckpointRef, value: &str) -> u8 {
    let value_json = match checkpoint_value(value, std::io::stdin()) {
        Ok(value) => value,
        Err(failure) => return failure.report(),
    };
    finish(
        async {
            let mut client = admin(hub).await?;
            let info = client
                .set_checkpoint(request(SetCheckpointRequest {
                    checkpoint: Some(target),
                    value_json,
                }))
                .await
                .map_err(|s| Failure::from_status(&s))?
                .into_inner();
            Ok(pretty(&checkpoint_json(&info)))
        }
        .await,
    )
}

/// `spoke checkpoint reset <connector> <sync> [--source ID] [--tenant T]`.
pub async fn reset_checkpoint(hub: &HubTarget, target: CheckpointRef) -> u8 {
    finish(
        async {
            let mut client = admin(hub).await?;
            let answer = client
                .reset_checkpoint(request(target))
                .await
                .map_err(|s| Failure::from_status(&s))?;
            Ok(answer.into_inner().message)
        }
        .await,
    )
}

/// The checkpoint value of `checkpoint set`, as compact JSON: `arg` is the
/// JSON text, `-` to read it from `stdin`, or `@FILE` to read it from FILE.
fn checkpoint_value(arg: &str, mut stdin: impl Read) -> Result<String, Failure> {
    let (text, from) = if arg == "-" {
        let mut text = String::new();
        stdin.read_to_string(&mut text).map_err(|e| {
            Failure::Usage(format!("cannot read the checkpoint value from stdin: {e}"))
        })?;
        (text, "read from stdin".to_owned())
    } else if let Some(path) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::Usage(format!(
                "cannot read the checkpoint value from `{path}`: {e}"
            ))
        })?;
        (text, format!("in `{path}`"))
    } else {
        (arg.to_owned(), "given".to_owned())
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        Failure::Usage(format!(
            "the checkpoint value {from} is not valid JSON: {e}; pass JSON such as '{{\"page\": 3}}', - to read it from stdin, or @FILE"
        ))
    })?;
    Ok(value.to_string())
}

/// A stored checkpoint as `checkpoint get` and `set` print it.
fn checkpoint_json(info: &CheckpointInfo) -> Value {
    let target = info.checkpoint.clone().unwrap_or_default();
    json!({
        "connector": target.connector,
        "sync": target.sync,
        "source": target.source_id,
        "tenant": target.tenant,
        "checkpoint": json_or_null(&info.checkpoint_json),
        "completed": json_or_null(&info.completed_json),
        "last_run_id": info.last_run_id,
        "last_mode": info.last_mode,
        "last_status": info.last_status,
        "updated_unix_ms": info.updated_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use spoke_proto::v1::{Error, SyncCounters};

    use super::*;

    fn run() -> SyncRunInfo {
        SyncRunInfo {
            run_id: "run-1a2b".into(),
            tenant: "default".into(),
            connector: "files".into(),
            sync: "files".into(),
            source_id: String::new(),
            mode: "full".into(),
            resume: true,
            instance_id: "files-1".into(),
            status: "failed".into(),
            error: Some(Error {
                code: "unavailable".into(),
                message: "instance files-1 left".into(),
                details_json: String::new(),
            }),
            counters: Some(SyncCounters {
                scanned: 10,
                updated: 9,
                emitted: 8,
                deleted: 2,
                failed: 1,
                delivered: 7,
                progress: Some(0.5),
                total: None,
            }),
            failures_json: r#"[{"id": "a.md", "error": "unreadable"}]"#.into(),
            swept: 1,
            started_unix_ms: 1_764_493_200_000,
            ended_unix_ms: 1_764_493_202_500,
        }
    }

    #[test]
    fn a_run_renders_as_json() {
        assert_eq!(
            run_json(&run()),
            json!({
                "run_id": "run-1a2b", "tenant": "default", "connector": "files",
                "sync": "files", "source": "", "mode": "full", "resume": true,
                "instance": "files-1", "status": "failed",
                "error": {"code": "unavailable", "message": "instance files-1 left"},
                "counters": {"scanned": 10, "updated": 9, "emitted": 8, "deleted": 2,
                             "failed": 1, "delivered": 7, "progress": 0.5},
                "failures": [{"id": "a.md", "error": "unreadable"}],
                "swept": 1,
                "started_unix_ms": 1_764_493_200_000_u64,
                "ended_unix_ms": 1_764_493_202_500_u64,
            })
        );
        let bare = run_json(&SyncRunInfo::default());
        assert_eq!(bare["error"], Value::Null);
        assert_eq!(bare["failures"], json!([]));
        assert_eq!(bare["counters"]["delivered"], 0);
        assert!(bare["counters"].get("progress").is_none());
    }

    #[test]
    fn the_table_has_one_row_per_run() {
        let table = runs_table(&[run()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        let head: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            head,
            [
                "RUN",
                "STATUS",
                "CONNECTOR",
                "SYNC",
                "SOURCE",
                "MODE",
                "INSTANCE",
                "DELIVERED",
                "FAILED",
                "STARTED"
            ]
        );
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "run-1a2b",
                "failed",
                "files",
                "files",
                "-",
                "full",
                "files-1",
                "7",
                "1",
                "2025-11-30T09:00:00Z"
            ]
        );
        assert_eq!(runs_table(&[]), "no sync runs");
    }

    #[test]
    fn the_end_of_a_run_says_how_it_went() {
        let info = run();
        assert_eq!(
            end_lines(&info),
            [
                "run run-1a2b failed: 7 events (2 deleted, 1 failed, 1 swept) in 2.5s",
                "error[unavailable]: instance files-1 left",
                r#"failed items: [{"id": "a.md", "error": "unreadable"}]"#,
            ]
        );
        assert_eq!(end_code(&info), EXIT_ACTION_ERROR);
        let done = SyncRunInfo {
            status: "completed".into(),
            error: None,
            failures_json: String::new(),
            ..run()
        };
        assert_eq!(
            end_lines(&done),
            ["run run-1a2b completed: 7 events (2 deleted, 1 failed, 1 swept) in 2.5s"]
        );
        assert_eq!(end_code(&done), EXIT_OK);
        let cancelled = SyncRunInfo {
            status: "cancelled".into(),
            ..run()
        };
        assert_eq!(end_code(&cancelled), EXIT_ACTION_ERROR);
    }

    #[test]
    fn many_failed_items_are_cut() {
        let many: Vec<Value> = (0..500)
            .map(|i| json!({"id": format!("doc-{i}"), "error": "bad"}))
            .collect();
        let info = SyncRunInfo {
            failures_json: Value::Array(many).to_string(),
            ..run()
        };
        let lines = end_lines(&info);
        let last = lines.last().unwrap();
        assert!(last.starts_with("failed items: [{"), "{last}");
        assert!(
            last.ends_with("… (cut; `spoke syncs --json` lists them all)"),
            "{last}"
        );
        assert!(last.chars().count() < FAILURES_SHOWN + 100);
    }

    #[test]
    fn the_start_line_names_run_sync_connector_instance_and_mode() {
        assert_eq!(
            started_line(&run()),
            "run run-1a2b: sync `files` of `files` on instance files-1, full, resuming"
        );
        let fresh = SyncRunInfo {
            resume: false,
            mode: "incremental".into(),
            ..run()
        };
        assert_eq!(
            started_line(&fresh),
            "run run-1a2b: sync `files` of `files` on instance files-1, incremental"
        );
    }

    #[test]
    fn a_checkpoint_renders_as_json() {
        let info = CheckpointInfo {
            checkpoint: Some(CheckpointRef {
                connector: "files".into(),
                sync: "files".into(),
                source_id: "docs".into(),
                tenant: "acme".into(),
            }),
            checkpoint_json: r#"{"version":1,"checkpoint":{"page":3}}"#.into(),
            completed_json: String::new(),
            last_run_id: "run-1".into(),
            last_mode: "full".into(),
            last_status: "failed".into(),
            updated_unix_ms: 42,
        };
        assert_eq!(
            checkpoint_json(&info),
            json!({
                "connector": "files", "sync": "files", "source": "docs", "tenant": "acme",
                "checkpoint": {"version": 1, "checkpoint": {"page": 3}},
                "completed": null,
                "last_run_id": "run-1", "last_mode": "full", "last_status": "failed",
                "updated_unix_ms": 42,
            })
        );
    }

    fn usage(result: Result<String, Failure>) -> String {
        match result {
            Err(Failure::Usage(message)) => message,
            other => panic!("not a usage error: {other:?}"),
        }
    }

    #[test]
    fn checkpoint_values_come_from_the_argument_stdin_or_a_file() {
        let no_stdin = std::io::empty();
        assert_eq!(
            checkpoint_value(r#"{ "page": 3 }"#, no_stdin).unwrap(),
            r#"{"page":3}"#
        );
        assert_eq!(checkpoint_value("-", &b"[1, 2]\n"[..]).unwrap(), "[1,2]");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        std::fs::write(&path, "{\"page\": 7}\n").unwrap();
        assert_eq!(
            checkpoint_value(&format!("@{}", path.display()), std::io::empty()).unwrap(),
            r#"{"page":7}"#
        );

        let bad = usage(checkpoint_value("{\"page\": }", std::io::empty()));
        assert!(
            bad.starts_with(
                "the checkpoint value given is not valid JSON: expected value at line 1 column 10"
            ),
            "{bad}"
        );
        let bad = usage(checkpoint_value("-", &b"{\n  \"page\" 3\n}"[..]));
        assert!(
            bad.starts_with("the checkpoint value read from stdin is not valid JSON: expected `:` at line 2 column 10"),
            "{bad}"
        );
        std::fs::write(&path, "page=3").unwrap();
        let bad = usage(checkpoint_value(
            &format!("@{}", path.display()),
            std::io::empty(),
        ));
        assert!(
            bad.starts_with(&format!(
                "the checkpoint value in `{}` is not valid JSON: expected value at line 1 column 1",
                path.display()
            )),
            "{bad}"
        );
        let missing = dir.path().join("missing.json");
        let bad = usage(checkpoint_value(
            &format!("@{}", missing.display()),
            std::io::empty(),
        ));
        assert!(
            bad.starts_with(&format!(
                "cannot read the checkpoint value from `{}`",
                missing.display()
            )),
            "{bad}"
        );
    }

    #[test]
    fn the_out_file_must_be_creatable() {
        assert!(matches!(Output::open(None), Ok(Output::Stdout)));
        assert!(matches!(
            Output::open(Some(Path::new("-"))),
            Ok(Output::Stdout)
        ));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/events.jsonl");
        match Output::open(Some(&missing)) {
            Err(Failure::Usage(message)) => assert!(
                message.starts_with(&format!(
                    "cannot create the --out file `{}`",
                    missing.display()
                )),
                "{message}"
            ),
            _ => panic!("created {}", missing.display()),
        }
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let mut output = Output::open(Some(&path)).unwrap();
        output.write(b"{\"type\":\"x\"}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"type\":\"x\"}\n"
        );
    }

    #[tokio::test]
    async fn the_writer_writes_batches_in_order_and_says_when() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut writer = Writer::start(Output::open(Some(&path)).unwrap());
        assert_eq!(writer.name, format!("`{}`", path.display()));
        for line in ["{\"n\":1}\n", "{\"n\":2}\n"] {
            writer.write(Bytes::from_static(line.as_bytes()));
            assert!(writer.busy);
            writer.written().await.unwrap();
            assert!(!writer.busy);
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n"
        );
    }

    #[test]
    fn the_request_has_a_deadline_only_with_a_timeout() {
        let options = SyncOptions {
            connector: "files".into(),
            route: Some(RouteFlag::Name("Files".into())),
            ..SyncOptions::default()
        };
        let request = sync_request(&options);
        assert!(request.metadata().get("grpc-timeout").is_none());
        assert_eq!(request.get_ref().timeout_ms, 0);
        assert_eq!(request.get_ref().sync, "");
        let timed = SyncOptions {
            timeout: Some(Duration::from_secs(60)),
            mode: Some("full".into()),
            fresh: true,
            ..options
        };
        let request = sync_request(&timed);
        assert!(request.metadata().get("grpc-timeout").is_some());
        let message = request.into_inner();
        assert_eq!(message.timeout_ms, 60_000);
        assert_eq!(message.mode, "full");
        assert!(message.fresh);
    }
}
