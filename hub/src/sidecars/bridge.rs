//! One run of a supervised sidecar: spawn it, wait for its `ready`, then
//! bridge it to the hub's own gRPC address as an ordinary connector
//! (`ConnectorHub.Attach`), translating frames between the wire protocol and
//! the stdio protocol (`spoke_runtime::stdio`).
//!
//! - **Registering**: the manifest of `ready` (or one made from its `spoke`
//!   summary), with `spoke.max_in_flight` when declared, else 64.
//! - **Calls**: an Invoke becomes `invoke` (or `resolve`) with the caller's
//!   deadline (`deadline_ms`) and the Invoke's metadata (`metadata`); a
//!   Cancel becomes `cancel`. Lines for stdin are queued (at most
//!   [`STDIN_QUEUE`]; a call that finds the queue full fails at once with
//!   `unavailable`, `started: false`) and numbered the way the stdio side
//!   numbers what it reads, so an `error` frame `line <n>: ...` about a
//!   call's line fails that call (`invalid_input` when the line was too
//!   long, else `internal`; `started: false`). A call with a deadline that
//!   gets no result within [`EXPIRY_MARGIN`] after it fails with
//!   `deadline_exceeded` (and is cancelled at the sidecar).
//! - **Reading the sidecar**: stdout and stderr are read as bytes, by line,
//!   up to [`MAX_LINE`] (stderr [`MAX_STDERR_LINE`]): bytes that are not
//!   UTF-8 become U+FFFD with a warning, longer lines are skipped without
//!   being kept, and both pipes are read to their end, so the sidecar never
//!   writes to a closed pipe.
//! - **Events**: `event` frames are relayed as Events (with their request
//!   id, empty for producers); bare LibreFang `message`, `typing`, `qr_ready`
//!   and `qr_status` frames (a producer's or a LibreFang command's; a Spoke
//!   sidecar writes an invoke's as `event` frames) as Events without a
//!   request id whose JSON is the SDK's custom `librefang` event with the
//!   frame as data. The hub only logs Events without a request id (debug
//!   level); the bridge logs each such frame at info.
//! - **The end**: the run ends when stdout ends, or [`STDOUT_AFTER_EXIT`]
//!   after the process exited (a process it started may keep stdout open);
//!   the stdin writer stops then too, even in the middle of a write.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Map, Value, json};
use spoke_proto::v1::connector_hub_client::ConnectorHubClient;
use spoke_proto::v1::{
    ConnectorFrame, Encoding, Error as WireError, Event, Goodbye, HubFrame, InstanceInfo, Invoke,
    InvokeKind, Pong, Register, Result as WireResult, connector_frame, hub_frame, result,
};
use spoke_runtime::encoding::input_refused;
use spoke_runtime::grpc::tls::{HubTls, connect_error, hub_endpoint};
use spoke_runtime::grpc::wire_encoding::{accept_from_wire, from_wire, to_wire};
use spoke_runtime::manifest::{ActionManifest, MANIFEST_VERSION};
use spoke_runtime::{Event as SpokeEvent, EventKind, Manifest, Mode, librefang};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use crate::sidecars::config::SidecarSpec;
use crate::sidecars::status::StatusMap;

/// How long the hub has to answer Register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an exiting sidecar has to be reaped once its stdout closed.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);
/// The `max_in_flight` the bridge registers when the sidecar's `ready` does
/// not declare one (the stdio default).
const MAX_IN_FLIGHT: u32 = 64;
/// The longest stdout line taken from a sidecar (the stdio side's default
/// limit); a longer one is skipped.
const MAX_LINE: usize = spoke_runtime::stdio::DEFAULT_MAX_LINE_BYTES;
/// The longest stderr line logged; a longer one is skipped.
const MAX_STDERR_LINE: usize = 64 * 1024;
/// How long stdout may stay open after the process exited.
const STDOUT_AFTER_EXIT: Duration = Duration::from_millis(500);
/// How long after a call's deadline the bridge still waits for its result.
const EXPIRY_MARGIN: Duration = Duration::from_secs(1);
/// Lines that may wait for the sidecar's stdin; beyond that a call fails
/// at once (the sidecar is not reading).
const STDIN_QUEUE: usize = 4096;

/// What a sidecar run needs from its supervisor.
#[derive(Debug, Clone)]
pub(crate) struct RunContext {
    /// The hub's own address (loopback).
    pub(crate) hub: SocketAddr,
    /// The hub's shutdown grace.
    pub(crate) grace: Duration,
    /// Cancelled when the hub shuts down.
    pub(crate) stopping: CancellationToken,
    /// Where the run reports its state.
    pub(crate) statuses: StatusMap,
    /// With auth: the key the bridge proves its identity with.
    pub(crate) key: Option<std::sync::Arc<spoke_runtime::grpc::identity::InstanceKey>>,
    /// With TLS on the hub: how the bridge checks the hub's certificate.
    pub(crate) tls: Option<std::sync::Arc<HubTls>>,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// How long the process ran.
    pub(crate) uptime: Duration,
    /// Why it ended.
    pub(crate) cause: String,
}

/// Runs `spec` once, until its process has exited.
pub(crate) async fn run_once(spec: &SidecarSpec, ctx: &RunContext) -> Outcome {
    let started = Instant::now();
    let cause = run(spec, ctx).await;
    Outcome {
        uptime: started.elapsed(),
        cause,
    }
}

/// `10s`, `500ms`.
pub(crate) fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

async fn run(spec: &SidecarSpec, ctx: &RunContext) -> String {
    let name = spec.name.as_str();
    let mut child = match Command::new(&spec.command)
        .args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return format!("cannot start `{}`: {e}", spec.command),
    };
    tracing::info!(sidecar = %name, pid = child.id().unwrap_or(0), "sidecar started");
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(log_stderr(name.to_owned(), stderr));
    }
    let (Some(child_stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill().await;
        return "cannot take the sidecar's pipes".into();
    };
    // The writer stops when this run ends, whatever the sidecar does.
    let stop_writer = CancellationToken::new();
    let _stop_writer = stop_writer.clone().drop_guard();
    let mut stdin = Stdin::new(spawn_writer(child_stdin, stop_writer));
    let mut lines = LineReader::new(stdout, MAX_LINE);

    // Wait for `ready`.
    let ready = tokio::select! {
        ready = tokio::time::timeout(spec.ready_timeout, wait_ready(&mut lines, &mut child, name)) => ready,
        () = ctx.stopping.cancelled() => {
            stop_child(&mut child, &mut stdin, ctx.grace, name).await;
            return "stopped".into();
        }
    };
    let params = match ready {
        Err(_) => {
            let _ = child.kill().await;
            return format!(
                "never sent ready within {}",
                show_duration(spec.ready_timeout)
            );
        }
        Ok(Ready::Ended { status, error }) => {
            let status = match status {
                Some(status) => status,
                None => reap(&mut child).await,
            };
            return match error {
                Some(error) => format!("exited ({status}) before sending ready: {error}"),
                None => format!("exited ({status}) before sending ready"),
            };
        }
        Ok(Ready::Params(params)) => params,
    };
    stdin.control(&json!({"method": "ready_ack"}), name);

    let manifest_json = match manifest_of(&params, name) {
        Ok(m) => m,
        Err(e) => {
            stop_child(&mut child, &mut stdin, ctx.grace, name).await;
            return e;
        }
    };
    if let Ok(m) = serde_json::from_str::<Value>(&manifest_json)
        && let Some(connector) = m.get("name").and_then(Value::as_str)
    {
        let connector = connector.to_owned();
        ctx.statuses.update(name, |s| s.connector = connector);
    }

    let encodings = ActionPayloads::of(&manifest_json);
    let max_in_flight = max_in_flight_of(&params);
    // The hub's own address: over TLS (trusting the hub's own
    // certificate) when the hub serves TLS.
    let (up, mut down) = match attach(
        ctx.hub,
        ctx.tls.as_deref(),
        name,
        manifest_json,
        max_in_flight,
        ctx.key.as_deref(),
    )
    .await
    {
        Ok(link) => link,
        Err(e) => {
            stop_child(&mut child, &mut stdin, ctx.grace, name).await;
            return e;
        }
    };
    tracing::info!(sidecar = %name, max_in_flight, "sidecar attached to the hub");
    ctx.statuses.update(name, |s| s.state = "attached");

    let mut bridge = Bridge::new(name, up.clone(), stdin, encodings);
    let mut hub_open = true;
    let mut lost_hub: Option<String> = None;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    // Set once the process has exited; its stdout then has a little while
    // to reach its end (a process it started may still hold it open).
    let mut exit_status: Option<String> = None;
    let mut stdout_until: Option<Instant> = None;
    loop {
        let kill_timer = async {
            match kill_at {
                Some(at) if !killed => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        let next_expiry = bridge.next_expiry();
        tokio::select! {
            line = lines.next() => match line {
                Ok(Some(Line::Data(bytes))) => bridge.on_sidecar_line(&bytes).await,
                Ok(Some(Line::TooLong)) => tracing::warn!(
                    sidecar = %name,
                    "a stdout line is longer than {MAX_LINE} bytes; skipped"
                ),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(sidecar = %name, "cannot read the sidecar's stdout: {e}");
                    break;
                }
            },
            status = child.wait(), if exit_status.is_none() => {
                exit_status = Some(match status {
                    Ok(status) => show_status(status),
                    Err(e) => format!("unknown status: {e}"),
                });
                stdout_until = Some(Instant::now() + STDOUT_AFTER_EXIT);
            }
            () = sleep_until_opt(stdout_until) => {
                tracing::warn!(
                    sidecar = %name,
                    "its stdout is still open {} after it exited (a process it started may hold it); not waiting for it",
                    show_duration(STDOUT_AFTER_EXIT)
                );
                break;
            }
            () = sleep_until_opt(next_expiry) => bridge.expire(Instant::now()).await,
            frame = down.message(), if hub_open => match frame {
                Ok(Some(frame)) => {
                    if !bridge.on_hub_frame(frame).await {
                        hub_open = false;
                    }
                }
                Ok(None) | Err(_) => hub_open = false,
            },
            () = ctx.stopping.cancelled(), if kill_at.is_none() => {
                bridge.shutdown();
                kill_at = Some(Instant::now() + ctx.grace);
            }
            () = kill_timer => {
                tracing::warn!(sidecar = %name, "sidecar did not stop in time; killing it");
                let _ = child.start_kill();
                killed = true;
            }
        }
        if !hub_open && lost_hub.is_none() && !ctx.stopping.is_cancelled() {
            lost_hub = Some("lost its stream to the hub".into());
            tracing::warn!(sidecar = %name, "the hub closed the sidecar's stream; stopping it");
            bridge.shutdown();
            kill_at.get_or_insert(Instant::now() + Duration::from_secs(1));
        }
    }
    let status = match exit_status {
        Some(status) => status,
        None => reap(&mut child).await,
    };
    tracing::info!(sidecar = %name, "sidecar exited ({status})");
    bridge.fail_in_flight(&status).await;
    let _ = up
        .send(frame(connector_frame::Frame::Goodbye(Goodbye {
            reason: format!("sidecar `{name}` exited ({status})"),
        })))
        .await;
    drop(bridge);
    drop(up);
    // Let the hub take the last frames and close the stream.
    if hub_open {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(Some(_)) = down.message().await {}
        })
        .await;
    }
    if ctx.stopping.is_cancelled() {
        return "stopped".into();
    }
    lost_hub.unwrap_or_else(|| format!("exited ({status})"))
}

/// How waiting for `ready` ended.
enum Ready {
    /// The `ready` frame's params.
    Params(Value),
    /// Stdout ended first, or the process exited and its stdout did not
    /// bring `ready` soon after.
    Ended {
        /// How it exited, when it did.
        status: Option<String>,
        /// The message of the last `error` frame it wrote (a connector that
        /// cannot start says why in one).
        error: Option<String>,
    },
}

/// Reads stdout until a `ready` frame (its params), the end of stdout, or a
/// little after the process exited.
async fn wait_ready(lines: &mut LineReader<ChildStdout>, child: &mut Child, name: &str) -> Ready {
    let mut exited = None;
    let mut until = None;
    let mut error = None;
    loop {
        tokio::select! {
            biased;
            line = lines.next() => match line {
                Ok(Some(Line::Data(bytes))) => {
                    let line = decode(name, &bytes);
                    match serde_json::from_str::<Value>(&line) {
                        Ok(v) if v.get("method").and_then(Value::as_str) == Some("ready") => {
                            return Ready::Params(v.get("params").cloned().unwrap_or(Value::Null));
                        }
                        Ok(v) if v.get("method").and_then(Value::as_str) == Some("error") => {
                            // Kept as the sidecar's last error: whole (a connector's
                            // config problems), within reason.
                            let message = v.pointer("/params/message").and_then(Value::as_str);
                            let message = message.map_or_else(|| shorten(&line), |m| shorten_to(m, 4000));
                            tracing::warn!(sidecar = %name, "sidecar error before ready: {message}");
                            error = Some(message);
                        }
                        _ => tracing::debug!(sidecar = %name, "before ready, ignoring: {}", shorten(&line)),
                    }
                }
                Ok(Some(Line::TooLong)) => tracing::warn!(
                    sidecar = %name,
                    "a stdout line is longer than {MAX_LINE} bytes; skipped"
                ),
                Ok(None) => return Ready::Ended { status: exited, error },
                Err(e) => {
                    tracing::warn!(sidecar = %name, "cannot read the sidecar's stdout: {e}");
                    return Ready::Ended { status: exited, error };
                }
            },
            status = child.wait(), if exited.is_none() => {
                exited = Some(match status {
                    Ok(status) => show_status(status),
                    Err(e) => format!("unknown status: {e}"),
                });
                until = Some(Instant::now() + STDOUT_AFTER_EXIT);
            }
            () = sleep_until_opt(until) => return Ready::Ended { status: exited, error },
        }
    }
}

/// Logs the sidecar's stderr, line by line, until its end: bytes that are
/// not UTF-8 are shown as U+FFFD, and a line too long to log is skipped. It
/// keeps reading whatever comes, so the sidecar never writes to a closed
/// pipe.
async fn log_stderr(name: String, stderr: ChildStderr) {
    let mut lines = LineReader::new(stderr, MAX_STDERR_LINE);
    loop {
        match lines.next().await {
            Ok(Some(Line::Data(bytes))) => {
                tracing::info!(sidecar = %name, "{}", String::from_utf8_lossy(&bytes));
            }
            Ok(Some(Line::TooLong)) => tracing::warn!(
                sidecar = %name,
                "a stderr line is longer than {MAX_STDERR_LINE} bytes; not logged"
            ),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(sidecar = %name, "cannot read the sidecar's stderr: {e}");
                return;
            }
        }
    }
}

/// Waits for an exiting child, killing it if it takes too long.
async fn reap(child: &mut Child) -> String {
    match tokio::time::timeout(REAP_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => show_status(status),
        Ok(Err(e)) => format!("unknown status: {e}"),
        Err(_) => {
            let _ = child.start_kill();
            match child.wait().await {
                Ok(status) => show_status(status),
                Err(e) => format!("unknown status: {e}"),
            }
        }
    }
}

fn show_status(status: ExitStatus) -> String {
    status.to_string()
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends `shutdown`, waits the grace, then kills.
async fn stop_child(child: &mut Child, stdin: &mut Stdin, grace: Duration, sidecar: &str) {
    stdin.control(&json!({"method": "shutdown"}), sidecar);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// The task that writes lines to the sidecar's stdin, in order. It ends
/// when every sender is gone (closing stdin), when a write fails, or when
/// `stop` is cancelled, even in the middle of a write that cannot proceed
/// (a sidecar that no longer reads, or a process it started holding the
/// pipe open).
fn spawn_writer(mut stdin: ChildStdin, stop: CancellationToken) -> mpsc::Sender<String> {
    let (tx, mut rx) = mpsc::channel::<String>(STDIN_QUEUE);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                line = rx.recv() => match line {
                    Some(line) => line,
                    None => break,
                },
            };
            let write = async {
                stdin.write_all(line.as_bytes()).await?;
                stdin.write_all(b"\n").await?;
                stdin.flush().await
            };
            let written = tokio::select! {
                () = stop.cancelled() => break,
                written = write => written,
            };
            if written.is_err() {
                break;
            }
        }
    });
    tx
}

/// Why a line was not queued for the sidecar's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsent {
    /// [`STDIN_QUEUE`] lines are already waiting: the sidecar is not reading.
    Full,
    /// The writer has stopped: stdin is closed or broken.
    Closed,
}

/// The sidecar's stdin as the bridge sees it: lines queued for the writer
/// task, numbered the way the stdio side numbers the lines it reads (from 1,
/// every line: `ready_ack`, `invoke`, `resolve`, `cancel`, `shutdown`), so
/// an `error` frame `line <n>: ...` names the line it is about. Queuing
/// never waits: the bridge must go on reading the sidecar and the hub.
struct Stdin {
    tx: mpsc::Sender<String>,
    /// Lines queued so far (the number of the last one).
    queued: u64,
}

impl Stdin {
    fn new(tx: mpsc::Sender<String>) -> Stdin {
        Stdin { tx, queued: 0 }
    }

    /// Queues one frame as one line; its line number.
    fn send(&mut self, frame: &Value) -> Result<u64, Unsent> {
        // serde_json escapes newlines in strings: one frame is one line.
        match self.tx.try_send(frame.to_string()) {
            Ok(()) => {
                self.queued += 1;
                Ok(self.queued)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(Unsent::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Unsent::Closed),
        }
    }

    /// Queues a frame that answers nothing (`ready_ack`, `cancel`,
    /// `shutdown`); one that cannot be queued is logged and dropped.
    fn control(&mut self, frame: &Value, sidecar: &str) {
        let method = frame["method"].as_str().unwrap_or_default();
        match self.send(frame) {
            Ok(_) => {}
            Err(Unsent::Full) => tracing::warn!(
                sidecar,
                "the sidecar is not reading its stdin ({STDIN_QUEUE} lines waiting); `{method}` dropped"
            ),
            Err(Unsent::Closed) => {
                tracing::debug!(sidecar, "the sidecar's stdin is closed; `{method}` dropped");
            }
        }
    }
}

/// One line of a sidecar's output.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line within the limit, without its `\n` (nor a `\r` before it).
    Data(Vec<u8>),
    /// A line longer than the limit: it is skipped, up to its `\n`, without
    /// being kept.
    TooLong,
}

/// Reads a sidecar's output as lines of bytes, whatever the bytes are, with
/// a length limit. `next` is cancel-safe (what was read is kept in `self`),
/// so it can be used in `select!`.
struct LineReader<R> {
    input: BufReader<R>,
    limit: usize,
    partial: Vec<u8>,
    skipping: bool,
    done: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(input: R, limit: usize) -> Self {
        LineReader {
            input: BufReader::new(input),
            limit,
            partial: Vec::new(),
            skipping: false,
            done: false,
        }
    }

    /// The next line; `None` at the end. A last line without a `\n` counts.
    async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.skipping {
                let chunk = self.input.fill_buf().await?;
                if chunk.is_empty() {
                    self.done = true;
                    continue;
                }
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        self.input.consume(at + 1);
                        self.skipping = false;
                    }
                    None => {
                        let all = chunk.len();
                        self.input.consume(all);
                    }
                }
                continue;
            }
            // At most one byte past the limit, to tell a line of exactly the
            // limit from a longer one.
            let room = (self.limit + 1).saturating_sub(self.partial.len());
            let read = (&mut self.input)
                .take(u64::try_from(room).unwrap_or(u64::MAX))
                .read_until(b'\n', &mut self.partial)
                .await?;
            if self.partial.last() == Some(&b'\n') {
                self.partial.pop();
                if self.partial.last() == Some(&b'\r') {
                    self.partial.pop();
                }
                return Ok(Some(Line::Data(std::mem::take(&mut self.partial))));
            }
            if self.partial.len() > self.limit {
                self.partial = Vec::new();
                self.skipping = true;
                return Ok(Some(Line::TooLong));
            }
            if read == 0 {
                self.done = true;
                if self.partial.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Line::Data(std::mem::take(&mut self.partial))));
            }
        }
    }
}

/// A line as text: bytes that are not UTF-8 become U+FFFD, with a warning.
fn decode<'a>(sidecar: &str, bytes: &'a [u8]) -> Cow<'a, str> {
    let text = String::from_utf8_lossy(bytes);
    if matches!(text, Cow::Owned(_)) {
        tracing::warn!(
            sidecar,
            "a stdout line is not valid UTF-8; reading it with U+FFFD for the bad bytes"
        );
    }
    text
}

/// At most the first 200 characters of a line, for the log.
fn shorten(line: &str) -> String {
    shorten_to(line, 200)
}

/// `text` cut to `max` characters, saying how long it was.
fn shorten_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

/// The `max_in_flight` to register: `ready.params.spoke.max_in_flight` when
/// the sidecar declares a positive one, else [`MAX_IN_FLIGHT`].
fn max_in_flight_of(params: &Value) -> u32 {
    params
        .pointer("/spoke/max_in_flight")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .unwrap_or(MAX_IN_FLIGHT)
}

/// The `<n>` of an `error` frame's message `line <n>: ...`.
fn line_number(message: &str) -> Option<u64> {
    let (number, _) = message.strip_prefix("line ")?.split_once(':')?;
    number.parse().ok()
}

/// The manifest JSON to register: `ready.params.manifest`, or one made from
/// `ready.params.spoke`.
pub(crate) fn manifest_of(params: &Value, sidecar: &str) -> Result<String, String> {
    if let Some(manifest) = params.get("manifest").filter(|m| m.is_object()) {
        return Ok(manifest.to_string());
    }
    let spoke = params.get("spoke").cloned().unwrap_or(Value::Null);
    let text = |key: &str| spoke.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = text("name").unwrap_or_else(|| sidecar.to_owned());
    let actions = spoke
        .get("actions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    if actions.is_empty() {
        return Err("its ready frame has neither a manifest nor any spoke.actions".into());
    }
    let mut actions: Vec<ActionManifest> = actions
        .into_iter()
        .map(|a| ActionManifest {
            name: a.to_owned(),
            description: String::new(),
            mode: Mode::Write,
            admin_only: false,
            hidden: false,
            destructive: true,
            idempotent: false,
            timeout_ms: None,
            input_schema: json!({"type": "object"}),
            output_schema: json!({}),
            // Only a manifest says otherwise.
            input_encodings: vec![spoke_runtime::Encoding::Json],
            output_encodings: vec![spoke_runtime::Encoding::Json],
            input_message_type: None,
            output_message_type: None,
            input_arrow_schema: None,
            output_arrow_schema: None,
        })
        .collect();
    actions.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = Manifest {
        spoke: MANIFEST_VERSION,
        display_name: text("display_name").unwrap_or_else(|| name.clone()),
        name,
        version: text("version").unwrap_or_else(|| "0.0.0".to_owned()),
        description: String::new(),
        source_types: Vec::new(),
        config: json!({"type": "object"}),
        actions,
        search_operators: Vec::new(),
        syncs: Vec::new(),
        buckets: Vec::new(),
        capabilities: vec!["actions".to_owned()],
    };
    serde_json::to_string(&manifest).map_err(|e| format!("cannot build its manifest: {e}"))
}

fn frame(frame: connector_frame::Frame) -> ConnectorFrame {
    ConnectorFrame { frame: Some(frame) }
}

/// Attaches to the hub and registers; the up channel and the down stream.
/// With `tls`, the hub is dialed at `https://<hub>` and its certificate
/// checked as `tls` says (the hub's own certificate as `ca_pem`, and the
/// name in it as `server_name`); without, at `http://<hub>`.
async fn attach(
    hub: SocketAddr,
    tls: Option<&HubTls>,
    name: &str,
    manifest_json: String,
    max_in_flight: u32,
    key: Option<&spoke_runtime::grpc::identity::InstanceKey>,
) -> Result<(mpsc::Sender<ConnectorFrame>, Streaming<HubFrame>), String> {
    let credentials = match key {
        None => None,
        Some(key) => {
            let connector = serde_json::from_str::<Value>(&manifest_json)
                .ok()
                .and_then(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            Some(crate::sidecars::identity::credentials(
                key, &connector, name,
            )?)
        }
    };
    let (url, tls) = match tls {
        Some(tls) => (format!("https://{hub}"), tls.clone()),
        None => (format!("http://{hub}"), HubTls::default()),
    };
    let channel = hub_endpoint(&url, &tls, REGISTER_TIMEOUT)?
        .connect()
        .await
        .map_err(|e| connect_error(&url, &e))?;
    let mut client = ConnectorHubClient::new(channel);
    let (up, rx) = mpsc::channel(256);
    let register = Register {
        manifest_json,
        protocol_version: 1,
        sdk_version: concat!("spoke-hub-supervisor/", env!("CARGO_PKG_VERSION")).to_owned(),
        tenant: String::new(),
        instance: Some(InstanceInfo {
            id: name.to_owned(),
            display_name: name.to_owned(),
            tags: Vec::new(),
            metadata: HashMap::from([("transport".to_owned(), "stdio".to_owned())]),
        }),
        session_token: String::new(),
        credentials,
        max_in_flight,
    };
    let _ = up
        .send(frame(connector_frame::Frame::Register(register)))
        .await;
    let mut down = client
        .attach(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("the hub refused the attach: {}", s.message()))?
        .into_inner();
    let first = tokio::time::timeout(REGISTER_TIMEOUT, down.message())
        .await
        .map_err(|_| "the hub did not answer Register in time".to_owned())?
        .map_err(|s| format!("the hub refused it: {}", s.message()))?;
    match first.and_then(|f| f.frame) {
        Some(hub_frame::Frame::Registered(_)) => Ok((up, down)),
        Some(hub_frame::Frame::Goodbye(g)) => Err(format!("the hub refused it: {}", g.reason)),
        _ => Err("the hub did not answer Register".into()),
    }
}

/// A `result`'s output: `output` (JSON), or `output_base64` in
/// `output_encoding`; or what is wrong with it.
fn output_of(params: &Value) -> Result<(spoke_runtime::Encoding, Vec<u8>), String> {
    let Some(base64) = params.get("output_base64") else {
        let output = params.get("output").unwrap_or(&Value::Null);
        let json =
            serde_json::to_vec(output).map_err(|e| format!("an output that is not JSON: {e}"))?;
        return Ok((spoke_runtime::Encoding::Json, json));
    };
    let encoding = match params.get("output_encoding") {
        Some(Value::String(name)) => spoke_runtime::Encoding::parse(name)
            .map_err(|e| format!("an `output_encoding` that is not one: {e}"))?,
        _ => return Err("`output_base64` without a string `output_encoding`".to_owned()),
    };
    let Value::String(text) = base64 else {
        return Err("an `output_base64` that is not a string".to_owned());
    };
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("an `output_base64` that is not base64: {e}"))?;
    Ok((encoding, bytes))
}

/// The input and output encodings of each action of a sidecar, from its
/// manifest: a non-JSON input goes only to an action that says it takes
/// it.
#[derive(Debug, Default)]
struct ActionPayloads(
    HashMap<String, (Vec<spoke_runtime::Encoding>, Vec<spoke_runtime::Encoding>)>,
);

impl ActionPayloads {
    fn of(manifest_json: &str) -> ActionPayloads {
        let manifest = serde_json::from_str::<spoke_runtime::Manifest>(manifest_json).ok();
        ActionPayloads(
            manifest
                .map(|m| {
                    m.actions
                        .into_iter()
                        .map(|a| (a.name, (a.input_encodings, a.output_encodings)))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// The refusal of an input in `encoding` that `action` does not take.
    /// An action the manifest does not have is the sidecar's to refuse.
    fn refuse(
        &self,
        action: &str,
        encoding: spoke_runtime::Encoding,
    ) -> Option<spoke_runtime::ActionError> {
        let (taken, _) = self.0.get(action)?;
        (!taken.contains(&encoding)).then(|| input_refused(action, encoding, taken))
    }

    /// Whether `action` answers JSON unless asked otherwise (an action the
    /// manifest does not have: yes).
    fn prefers_json(&self, action: &str) -> bool {
        self.0.get(action).is_none_or(|(_, output)| {
            output
                .first()
                .is_none_or(|e| *e == spoke_runtime::Encoding::Json)
        })
    }
}

/// A call sent to the sidecar and not answered yet.
#[derive(Debug)]
struct Pending {
    /// When it was sent.
    sent: Instant,
    /// The number of its line on the sidecar's stdin.
    line: u64,
    /// The caller's deadline (`Invoke.timeout_ms`), 0 for none.
    timeout_ms: u64,
    /// When the bridge stops waiting for its result: a little after the
    /// deadline.
    expires: Option<Instant>,
}

/// The relay between one attach stream and one sidecar process.
struct Bridge<'a> {
    name: &'a str,
    up: mpsc::Sender<ConnectorFrame>,
    stdin: Stdin,
    /// Calls sent to the sidecar and not answered, by request id.
    in_flight: HashMap<String, Pending>,
    /// The request id of each of those calls by the number of its line.
    lines: HashMap<u64, String>,
    /// What each action's input may be, from the sidecar's manifest.
    encodings: ActionPayloads,
    shutdown_sent: bool,
}

impl<'a> Bridge<'a> {
    fn new(
        name: &'a str,
        up: mpsc::Sender<ConnectorFrame>,
        stdin: Stdin,
        encodings: ActionPayloads,
    ) -> Self {
        Bridge {
            name,
            up,
            stdin,
            in_flight: HashMap::new(),
            lines: HashMap::new(),
            encodings,
            shutdown_sent: false,
        }
    }

    fn shutdown(&mut self) {
        if !self.shutdown_sent {
            self.shutdown_sent = true;
            self.stdin
                .control(&json!({"method": "shutdown"}), self.name);
        }
    }

    async fn send_up(&self, f: connector_frame::Frame) {
        let _ = self.up.send(frame(f)).await;
    }

    async fn send_error(&self, request_id: String, code: &str, message: String, details: Value) {
        self.send_up(connector_frame::Frame::Result(WireResult {
            request_id,
            outcome: Some(result::Outcome::Error(WireError {
                code: code.to_owned(),
                message,
                details_json: if details.is_null() {
                    String::new()
                } else {
                    details.to_string()
                },
            })),
            encoding: Encoding::Json as i32,
            duration_us: 0,
            chunked: false,
        }))
        .await;
    }

    /// The call out of the books: it has its answer.
    fn settle(&mut self, id: &str) -> Option<Pending> {
        let pending = self.in_flight.remove(id)?;
        self.lines.remove(&pending.line);
        Some(pending)
    }

    /// When the next call expires, if any has a deadline.
    fn next_expiry(&self) -> Option<Instant> {
        self.in_flight.values().filter_map(|p| p.expires).min()
    }

    /// Answers `deadline_exceeded` for every call whose expiry has come
    /// without a result (and tells the sidecar to cancel it).
    async fn expire(&mut self, now: Instant) {
        let due: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, p)| p.expires.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(pending) = self.settle(&id) else {
                continue;
            };
            tracing::warn!(
                sidecar = %self.name,
                request_id = %id,
                "no result {} after the call's deadline ({} ms); giving up on it",
                show_duration(EXPIRY_MARGIN),
                pending.timeout_ms
            );
            self.stdin.control(
                &json!({"method": "cancel", "params": {"id": id}}),
                self.name,
            );
            let message = format!(
                "sidecar `{}` did not answer within the call's deadline ({} ms)",
                self.name, pending.timeout_ms
            );
            self.send_error(id, "deadline_exceeded", message, Value::Null)
                .await;
        }
    }

    /// An action's `invoke` params besides its id and deadline: its input
    /// (JSON as `input`; another encoding base64 in the line, for a sidecar
    /// whose manifest says the action takes it: one from before encodings
    /// would read no `input` as `{}`) and, when it matters, `accept`. Or
    /// why the call cannot go, and the error's details.
    fn action_params(
        &self,
        invoke: &Invoke,
        params: &mut Map<String, Value>,
    ) -> Result<(), (String, Map<String, Value>)> {
        let refused = |message: String| (message, Map::new());
        let encoding = from_wire(invoke.encoding).map_err(|e| refused(e.message().to_owned()))?;
        if encoding == spoke_runtime::Encoding::Json {
            let input = if invoke.payload.is_empty() {
                json!({})
            } else {
                serde_json::from_slice::<Value>(&invoke.payload)
                    .map_err(|e| refused(format!("the input is not JSON: {e}")))?
            };
            params.insert("input".into(), input);
        } else {
            if let Some(refused) = self.encodings.refuse(&invoke.action, encoding) {
                let details = match refused.details() {
                    Some(Value::Object(details)) => details.clone(),
                    _ => Map::new(),
                };
                return Err((
                    format!("sidecar `{}`: {}", self.name, refused.message()),
                    details,
                ));
            }
            use base64::Engine as _;
            params.insert("input_encoding".into(), json!(encoding));
            params.insert(
                "input_base64".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(&invoke.payload)),
            );
        }
        // No `accept` means JSON to a sidecar, where an empty list here
        // means the action's preferred: say so when that is not JSON
        // (plain calls keep their frames as they were).
        let accept =
            accept_from_wire(&invoke.accept).map_err(|e| refused(e.message().to_owned()))?;
        if !accept.is_empty() || !self.encodings.prefers_json(&invoke.action) {
            params.insert("accept".into(), json!(accept));
        }
        Ok(())
    }

    /// Handles one hub frame; false when the hub said Goodbye.
    async fn on_hub_frame(&mut self, f: HubFrame) -> bool {
        match f.frame {
            Some(hub_frame::Frame::Invoke(invoke)) => self.invoke(invoke).await,
            Some(hub_frame::Frame::Cancel(cancel)) => {
                self.stdin.control(
                    &json!({"method": "cancel", "params": {"id": cancel.request_id}}),
                    self.name,
                );
            }
            Some(hub_frame::Frame::Ping(ping)) => {
                self.send_up(connector_frame::Frame::Pong(Pong { nonce: ping.nonce }))
                    .await;
            }
            Some(hub_frame::Frame::Drain(_)) => self.shutdown(),
            Some(hub_frame::Frame::Goodbye(_)) => return false,
            _ => {}
        }
        true
    }

    /// An Invoke becomes an `invoke` (or `resolve`) line, with the caller's
    /// deadline and the call's metadata.
    async fn invoke(&mut self, invoke: Invoke) {
        let id = invoke.request_id.clone();
        if self.in_flight.contains_key(&id) {
            tracing::warn!(sidecar = %self.name, request_id = %id, "an Invoke for a call already in flight; ignored");
            return;
        }
        let mut params = Map::new();
        params.insert("id".into(), json!(id));
        let method = if invoke.kind == InvokeKind::SearchOperator as i32 {
            let value = match serde_json::from_slice::<Value>(&invoke.payload) {
                Ok(Value::Object(mut o)) => o.remove("value").unwrap_or(Value::Null),
                Ok(other) => other,
                Err(_) => Value::String(String::from_utf8_lossy(&invoke.payload).into()),
            };
            let value = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            params.insert("operator".into(), json!(invoke.action));
            params.insert("value".into(), json!(value));
            "resolve"
        } else {
            if let Err((message, mut details)) = self.action_params(&invoke, &mut params) {
                details.insert("started".into(), json!(false));
                self.send_error(id, "invalid_input", message, Value::Object(details))
                    .await;
                return;
            }
            params.insert("action".into(), json!(invoke.action));
            "invoke"
        };
        if invoke.timeout_ms > 0 {
            params.insert("deadline_ms".into(), json!(invoke.timeout_ms));
        }
        if !invoke.metadata.is_empty() {
            let metadata: BTreeMap<&String, &String> = invoke.metadata.iter().collect();
            params.insert("metadata".into(), json!(metadata));
        }
        let sent = Instant::now();
        match self
            .stdin
            .send(&json!({"method": method, "params": params}))
        {
            Ok(line) => {
                let expires = (invoke.timeout_ms > 0)
                    .then(|| sent.checked_add(Duration::from_millis(invoke.timeout_ms)))
                    .flatten()
                    .and_then(|at| at.checked_add(EXPIRY_MARGIN));
                self.lines.insert(line, id.clone());
                self.in_flight.insert(
                    id,
                    Pending {
                        sent,
                        line,
                        timeout_ms: invoke.timeout_ms,
                        expires,
                    },
                );
            }
            Err(why) => {
                let message = match why {
                    Unsent::Full => format!(
                        "sidecar `{}` is not reading its stdin ({STDIN_QUEUE} lines are waiting); the call was not sent",
                        self.name
                    ),
                    Unsent::Closed => format!(
                        "the stdin of sidecar `{}` is closed; the call was not sent",
                        self.name
                    ),
                };
                tracing::warn!(sidecar = %self.name, request_id = %id, "{message}");
                self.send_error(id, "unavailable", message, json!({"started": false}))
                    .await;
            }
        }
    }

    /// Handles one stdout line of the sidecar.
    async fn on_sidecar_line(&mut self, bytes: &[u8]) {
        let line = decode(self.name, bytes);
        if line.trim().is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            tracing::warn!(sidecar = %self.name, "not a JSON frame on stdout: {}", shorten(&line));
            return;
        };
        let params = v.get("params").cloned().unwrap_or(Value::Null);
        match v.get("method").and_then(Value::as_str).unwrap_or("") {
            "result" => {
                let Some(id) = params.get("id").and_then(Value::as_str) else {
                    tracing::warn!(sidecar = %self.name, "a result without an id: {}", shorten(&line));
                    return;
                };
                let Some(pending) = self.settle(id) else {
                    tracing::debug!(sidecar = %self.name, "a result for unknown call {id}");
                    return;
                };
                let duration_us =
                    u64::try_from(pending.sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut wire_encoding = Encoding::Json as i32;
                let outcome = match params.get("error").filter(|e| e.is_object()) {
                    Some(error) => {
                        let text = |k: &str| {
                            error
                                .get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned()
                        };
                        result::Outcome::Error(WireError {
                            code: match text("code") {
                                c if c.is_empty() => "internal".to_owned(),
                                c => c,
                            },
                            message: text("message"),
                            details_json: error
                                .get("details")
                                .filter(|d| !d.is_null())
                                .map(Value::to_string)
                                .unwrap_or_default(),
                        })
                    }
                    None => match output_of(&params) {
                        Ok((encoding, payload)) => {
                            wire_encoding = to_wire(encoding);
                            result::Outcome::Payload(payload.into())
                        }
                        Err(why) => result::Outcome::Error(WireError {
                            code: "internal".to_owned(),
                            message: format!("sidecar `{}` answered {why}", self.name),
                            details_json: String::new(),
                        }),
                    },
                };
                let frame = frame(connector_frame::Frame::Result(WireResult {
                    request_id: id.to_owned(),
                    outcome: Some(outcome),
                    encoding: wire_encoding,
                    duration_us,
                    chunked: false,
                }));
                // A large output goes up in chunks, as a connector's does.
                for piece in spoke_proto::chunks::in_pieces(frame) {
                    let _ = self.up.send(piece).await;
                }
            }
            "event" => {
                let event = params.get("event").cloned().unwrap_or(Value::Null);
                let request_id = params
                    .get("id")
                    .or_else(|| event.get("request_id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let kind = event
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("custom")
                    .to_owned();
                self.send_up(connector_frame::Frame::Event(Event {
                    request_id,
                    kind,
                    json: event.to_string(),
                }))
                .await;
            }
            method @ ("message" | "typing" | "qr_ready" | "qr_status") => {
                // A LibreFang event of a producer or of a LibreFang command
                // (a Spoke sidecar writes those of an invoke as `event`
                // frames): relayed as the custom event the SDK would send.
                tracing::info!(
                    sidecar = %self.name,
                    "a `{method}` frame (no request id) relayed to the hub as a `{}` event",
                    librefang::EVENT_NAME
                );
                self.send_up(connector_frame::Frame::Event(librefang_event(v.clone())))
                    .await;
            }
            "ready" => self
                .stdin
                .control(&json!({"method": "ready_ack"}), self.name),
            "error" => {
                let message = params
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| shorten(&line), str::to_owned);
                let call = line_number(&message).and_then(|n| self.lines.get(&n).cloned());
                let Some(id) = call else {
                    tracing::warn!(sidecar = %self.name, "sidecar error: {message}");
                    return;
                };
                self.settle(&id);
                // The stdio side rejects a line it cannot take before
                // starting anything: too long is the input's fault, anything
                // else the bridge's.
                let code = if message.contains("longer than") {
                    "invalid_input"
                } else {
                    "internal"
                };
                tracing::warn!(sidecar = %self.name, request_id = %id, "the sidecar rejected the call: {message}");
                self.send_error(
                    id,
                    code,
                    format!("sidecar `{}` rejected the call: {message}", self.name),
                    json!({"started": false}),
                )
                .await;
            }
            other => tracing::debug!(sidecar = %self.name, "ignoring `{other}` from the sidecar"),
        }
    }

    /// Answers every call still in flight: the sidecar is gone.
    async fn fail_in_flight(&mut self, status: &str) {
        self.lines.clear();
        let ids: Vec<String> = self.in_flight.drain().map(|(id, _)| id).collect();
        for id in ids {
            self.send_error(
                id,
                "unavailable",
                format!(
                    "sidecar `{}` exited ({status}) while running the call; it may or may not have run",
                    self.name
                ),
                Value::Null,
            )
            .await;
        }
    }
}

/// The Event frame for a LibreFang frame with no request id: the JSON the
/// Rust SDK sends for a custom event named `librefang` whose data is the
/// frame (request id and action empty: the bridge knows neither).
fn librefang_event(frame: Value) -> Event {
    let event = SpokeEvent {
        request_id: String::new(),
        action: String::new(),
        kind: EventKind::Custom {
            name: librefang::EVENT_NAME.to_owned(),
            data: frame,
        },
    };
    Event {
        request_id: String::new(),
        kind: "custom".to_owned(),
        json: serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_plainly() {
        assert_eq!(show_duration(Duration::from_secs(10)), "10s");
        assert_eq!(show_duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn a_manifest_is_synthesized_from_the_spoke_summary() {
        let params = json!({"spoke": {"name": "py", "version": "1.0.0", "actions": ["b", "a"]}});
        let m: Manifest = serde_json::from_str(&manifest_of(&params, "side").unwrap()).unwrap();
        assert_eq!(m.name, "py");
        assert_eq!(m.version, "1.0.0");
        assert_eq!(m.actions.len(), 2);
        assert_eq!(m.actions[0].name, "a");
        assert_eq!(m.actions[0].mode, Mode::Write);
        assert!(manifest_of(&json!({}), "side").is_err());
        let given = json!({"manifest": {"name": "x"}});
        assert_eq!(manifest_of(&given, "side").unwrap(), r#"{"name":"x"}"#);
    }

    // ------------------------------------------------------------ lines

    async fn all_lines(input: &[u8], limit: usize) -> Vec<Line> {
        let mut reader = LineReader::new(input, limit);
        let mut lines = Vec::new();
        while let Some(line) = reader.next().await.unwrap() {
            lines.push(line);
        }
        lines
    }

    fn data(s: &[u8]) -> Line {
        Line::Data(s.to_vec())
    }

    #[tokio::test]
    async fn lines_are_bytes_with_a_limit_and_a_last_line_without_newline() {
        let input: &[u8] = b"one\r\n\xff\xfe not utf-8\n\ntoo long a line\n12345\nlast";
        assert_eq!(
            all_lines(input, 14).await,
            [
                data(b"one"),
                data(b"\xff\xfe not utf-8"),
                data(b""),
                Line::TooLong,
                data(b"12345"),
                data(b"last"),
            ]
        );
        // Exactly the limit is a line; one byte more is not, also at the end.
        assert_eq!(
            all_lines(b"12345\n123456", 5).await,
            [data(b"12345"), Line::TooLong]
        );
    }

    #[tokio::test]
    async fn a_long_line_is_skipped_without_being_kept() {
        let (mut tx, rx) = tokio::io::duplex(4096);
        let mut reader = LineReader::new(rx, 100);
        let writer = tokio::spawn(async move {
            for _ in 0..1000 {
                tx.write_all(&[b'x'; 1000]).await.unwrap();
            }
            tx.write_all(b"\nok\n").await.unwrap();
        });
        assert_eq!(reader.next().await.unwrap(), Some(Line::TooLong));
        assert_eq!(reader.next().await.unwrap(), Some(data(b"ok")));
        assert!(
            reader.partial.capacity() <= 4096,
            "the long line was not kept"
        );
        writer.await.unwrap();
        assert_eq!(reader.next().await.unwrap(), None);
    }

    #[test]
    fn lines_are_decoded_lossily_and_shortened_for_the_log() {
        assert_eq!(decode("s", b"ok"), "ok");
        assert_eq!(decode("s", b"a\xffb"), "a\u{fffd}b");
        assert_eq!(shorten("short"), "short");
        let long = "é".repeat(300);
        let short = shorten(&long);
        assert!(short.starts_with(&"é".repeat(200)), "{short}");
        assert!(short.ends_with("... (600 bytes)"), "{short}");
    }

    // ----------------------------------------------------------- bridge

    struct Rig {
        up: mpsc::Receiver<ConnectorFrame>,
        stdin: mpsc::Receiver<String>,
    }

    fn rig(stdin_queue: usize) -> (Bridge<'static>, Rig) {
        let (up, up_rx) = mpsc::channel(64);
        let (tx, stdin) = mpsc::channel(stdin_queue);
        (
            Bridge::new("side", up, Stdin::new(tx), ActionPayloads::default()),
            Rig { up: up_rx, stdin },
        )
    }

    impl Rig {
        fn written(&mut self) -> Value {
            serde_json::from_str(&self.stdin.try_recv().expect("a line for stdin")).unwrap()
        }

        fn sent_up(&mut self) -> connector_frame::Frame {
            self.up
                .try_recv()
                .expect("a frame for the hub")
                .frame
                .unwrap()
        }

        /// The error of the Result sent up: (request id, code, message, details).
        fn error(&mut self) -> (String, String, String, String) {
            match self.sent_up() {
                connector_frame::Frame::Result(WireResult {
                    request_id,
                    outcome: Some(result::Outcome::Error(e)),
                    ..
                }) => (request_id, e.code, e.message, e.details_json),
                other => panic!("expected an error Result, got {other:?}"),
            }
        }
    }

    fn invoke_frame(id: &str, action: &str, input: Value, timeout_ms: u64) -> HubFrame {
        HubFrame {
            frame: Some(hub_frame::Frame::Invoke(Invoke {
                request_id: id.into(),
                action: action.into(),
                payload: input.to_string().into_bytes().into(),
                encoding: Encoding::Json as i32,
                timeout_ms,
                ..Default::default()
            })),
        }
    }

    #[tokio::test]
    async fn invokes_carry_the_deadline_and_the_metadata() {
        let (mut bridge, mut rig) = rig(16);
        let mut frame = invoke_frame("r1", "echo", json!({"text": "hi"}), 1500);
        if let Some(hub_frame::Frame::Invoke(invoke)) = &mut frame.frame {
            invoke.metadata = HashMap::from([
                ("caller".to_owned(), "spoke-cli".to_owned()),
                ("traceparent".to_owned(), "00-ab-cd-01".to_owned()),
            ]);
        }
        assert!(bridge.on_hub_frame(frame).await);
        assert_eq!(
            rig.written(),
            json!({"method": "invoke", "params": {
                "id": "r1", "action": "echo", "input": {"text": "hi"}, "deadline_ms": 1500,
                "metadata": {"caller": "spoke-cli", "traceparent": "00-ab-cd-01"}
            }})
        );
        let resolve = HubFrame {
            frame: Some(hub_frame::Frame::Invoke(Invoke {
                request_id: "r2".into(),
                action: "upper".into(),
                payload: br#"{"value":"rs"}"#.to_vec().into(),
                kind: InvokeKind::SearchOperator as i32,
                ..Default::default()
            })),
        };
        assert!(bridge.on_hub_frame(resolve).await);
        assert_eq!(
            rig.written(),
            json!({"method": "resolve", "params": {"id": "r2", "operator": "upper", "value": "rs"}})
        );
        assert_eq!(bridge.in_flight.len(), 2);
    }

    #[tokio::test]
    async fn an_error_frame_about_an_invoke_line_fails_that_call() {
        let (mut bridge, mut rig) = rig(16);
        // Line 1 is the ready_ack, as in a real run; every line counts.
        bridge
            .stdin
            .control(&json!({"method": "ready_ack"}), "side");
        bridge
            .on_hub_frame(invoke_frame("r1", "echo", json!({"text": "x"}), 0))
            .await;
        bridge
            .on_hub_frame(invoke_frame("r2", "echo", json!({"text": "y"}), 0))
            .await;
        bridge.shutdown();
        assert_eq!(rig.written()["method"], "ready_ack");
        assert_eq!(rig.written()["params"]["id"], "r1");
        assert_eq!(rig.written()["params"]["id"], "r2");
        assert_eq!(rig.written()["method"], "shutdown");
        // Errors about other lines are only logged.
        for message in [
            "line 1: not valid JSON",
            "line 4: nope",
            "send: platform down",
        ] {
            let line = json!({"method": "error", "params": {"message": message}}).to_string();
            bridge.on_sidecar_line(line.as_bytes()).await;
            assert!(rig.up.try_recv().is_err(), "{message}");
        }
        let line = json!({"method": "error", "params": {"message": "line 3: longer than 10 bytes; skipped"}});
        bridge.on_sidecar_line(line.to_string().as_bytes()).await;
        let (id, code, message, details) = rig.error();
        assert_eq!((id.as_str(), code.as_str()), ("r2", "invalid_input"));
        assert_eq!(
            message,
            "sidecar `side` rejected the call: line 3: longer than 10 bytes; skipped"
        );
        assert_eq!(details, r#"{"started":false}"#);
        assert!(!bridge.in_flight.contains_key("r2"));
        // Anything else wrong with an invoke line is the bridge's fault.
        let line = json!({"method": "error", "params": {"message": "line 2: not valid JSON: eof"}});
        bridge.on_sidecar_line(line.to_string().as_bytes()).await;
        let (id, code, _, _) = rig.error();
        assert_eq!((id.as_str(), code.as_str()), ("r1", "internal"));
        assert!(bridge.in_flight.is_empty() && bridge.lines.is_empty());
        // The line of an answered call no longer names it.
        bridge.on_sidecar_line(line.to_string().as_bytes()).await;
        assert!(rig.up.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_result_settles_its_call_and_its_line() {
        let (mut bridge, mut rig) = rig(16);
        bridge
            .on_hub_frame(invoke_frame("r1", "echo", json!({}), 0))
            .await;
        rig.written();
        bridge
            .on_sidecar_line(br#"{"method":"result","params":{"id":"r1","output":"hi"}}"#)
            .await;
        match rig.sent_up() {
            connector_frame::Frame::Result(r) => {
                assert_eq!(r.request_id, "r1");
                assert_eq!(
                    r.outcome,
                    Some(result::Outcome::Payload(b"\"hi\"".to_vec().into()))
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(bridge.in_flight.is_empty() && bridge.lines.is_empty());
        // A late error about its line changes nothing.
        bridge
            .on_sidecar_line(br#"{"method":"error","params":{"message":"line 1: x"}}"#)
            .await;
        assert!(rig.up.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_call_with_a_deadline_expires_a_little_after_it() {
        let (mut bridge, mut rig) = rig(16);
        let sent = Instant::now();
        bridge
            .on_hub_frame(invoke_frame("r1", "slow", json!({}), 200))
            .await;
        bridge
            .on_hub_frame(invoke_frame("r2", "slow", json!({}), 0))
            .await;
        rig.written();
        rig.written();
        let at = bridge.next_expiry().expect("r1 expires");
        let after = at - sent;
        let expected = Duration::from_millis(200) + EXPIRY_MARGIN;
        assert!(
            after >= expected && after < expected + Duration::from_millis(100),
            "{after:?}"
        );
        bridge.expire(at - Duration::from_millis(1)).await;
        assert!(rig.up.try_recv().is_err(), "not yet");
        bridge.expire(at).await;
        let (id, code, message, details) = rig.error();
        assert_eq!((id.as_str(), code.as_str()), ("r1", "deadline_exceeded"));
        assert!(
            message.contains("within the call's deadline (200 ms)"),
            "{message}"
        );
        assert_eq!(details, "");
        assert_eq!(
            rig.written(),
            json!({"method": "cancel", "params": {"id": "r1"}})
        );
        // A call without a deadline waits for its result (or the exit).
        assert_eq!(bridge.next_expiry(), None);
        assert!(bridge.in_flight.contains_key("r2"));
        // The late result of the expired call is dropped.
        bridge
            .on_sidecar_line(br#"{"method":"result","params":{"id":"r1","output":1}}"#)
            .await;
        assert!(rig.up.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_sidecar_that_does_not_read_its_stdin_fails_new_calls_at_once() {
        let (mut bridge, mut rig) = rig(1);
        bridge
            .on_hub_frame(invoke_frame("r1", "echo", json!({}), 0))
            .await;
        bridge
            .on_hub_frame(invoke_frame("r2", "echo", json!({}), 0))
            .await;
        let (id, code, message, details) = rig.error();
        assert_eq!((id.as_str(), code.as_str()), ("r2", "unavailable"));
        assert!(message.contains("is not reading its stdin"), "{message}");
        assert_eq!(details, r#"{"started":false}"#);
        assert_eq!(rig.written()["params"]["id"], "r1");
        // The line that was not sent did not count.
        bridge
            .on_hub_frame(invoke_frame("r3", "echo", json!({}), 0))
            .await;
        assert_eq!(bridge.in_flight["r3"].line, 2);
    }

    #[tokio::test]
    async fn bare_librefang_frames_are_relayed_as_the_sdks_custom_event() {
        let (mut bridge, mut rig) = rig(16);
        for frame in [
            json!({"method": "message", "params": {"user_id": "u", "user_name": "U", "text": "hi"}}),
            json!({"method": "typing", "params": {"user_id": "u", "user_name": "U", "is_typing": true}}),
            json!({"method": "qr_ready", "params": {"qr_code": "c"}}),
            json!({"method": "qr_status", "params": {"status": "scanning"}}),
        ] {
            bridge.on_sidecar_line(frame.to_string().as_bytes()).await;
            let connector_frame::Frame::Event(event) = rig.sent_up() else {
                panic!("an Event for {frame}")
            };
            assert_eq!(
                (event.request_id.as_str(), event.kind.as_str()),
                ("", "custom")
            );
            let json: Value = serde_json::from_str(&event.json).unwrap();
            assert_eq!(
                json,
                json!({"request_id": "", "action": "", "type": "custom", "name": "librefang", "data": frame})
            );
            // The same shape as the SDK's own serialization of the event.
            let sdk = SpokeEvent {
                request_id: String::new(),
                action: String::new(),
                kind: EventKind::Custom {
                    name: "librefang".into(),
                    data: frame,
                },
            };
            assert_eq!(json, serde_json::to_value(&sdk).unwrap());
        }
        // An invoke's events come as `event` frames, relayed with their id.
        bridge
            .on_sidecar_line(br#"{"method":"event","params":{"id":"r9","event":{"request_id":"r9","action":"send","type":"custom","name":"librefang","data":{}}}}"#)
            .await;
        let connector_frame::Frame::Event(event) = rig.sent_up() else {
            panic!("an Event")
        };
        assert_eq!(
            (event.request_id.as_str(), event.kind.as_str()),
            ("r9", "custom")
        );
        // Lines that are not frames are skipped, bad bytes and all.
        bridge.on_sidecar_line(b"\xff\xfe garbage").await;
        bridge.on_sidecar_line(b"").await;
        assert!(rig.up.try_recv().is_err());
    }

    #[test]
    fn max_in_flight_comes_from_the_ready_frame() {
        assert_eq!(max_in_flight_of(&json!({"spoke": {"max_in_flight": 3}})), 3);
        assert_eq!(max_in_flight_of(&json!({"spoke": {"name": "x"}})), 64);
        assert_eq!(max_in_flight_of(&json!({})), 64);
        assert_eq!(
            max_in_flight_of(&json!({"spoke": {"max_in_flight": 0}})),
            64
        );
        assert_eq!(
            max_in_flight_of(&json!({"spoke": {"max_in_flight": -1}})),
            64
        );
        assert_eq!(
            max_in_flight_of(&json!({"spoke": {"max_in_flight": 1u64 << 40}})),
            64
        );
    }

    #[test]
    fn line_numbers_are_read_from_error_messages() {
        assert_eq!(
            line_number("line 12: longer than 5 bytes; skipped"),
            Some(12)
        );
        assert_eq!(line_number("line x: y"), None);
        assert_eq!(line_number("send: line 1: no"), None);
        assert_eq!(line_number("line 3"), None);
    }
}
