//! The stdio sidecar transport: `<bin> stdio` serves the connector over
//! stdin/stdout, for a host that runs it as a child process (the Spoke hub's
//! supervisor, or LibreFang as a channel sidecar).
//!
//! # Spoke stdio protocol v1
//!
//! This is the contract; the transport implements exactly this and the hub
//! supervisor relies on it.
//!
//! **Framing**: one JSON object per line (UTF-8, `\n`-terminated),
//! `{"method": "...", "params": {...}}` (`params` optional). The connector
//! writes frames ONLY to stdout (one writer task, bounded channel: writers
//! wait, never drop); logs go to stderr. Started as `<bin> stdio`.
//!
//! ## Host to connector (stdin)
//!
//! - `invoke` `{id: string, action: string, input: object (default {}),
//!   deadline_ms?: u64 (milliseconds from receipt), metadata?: {string:
//!   string} (what the host knows about the call: `caller`, `traceparent`,
//!   ...; the action reads it as `ctx.metadata()`)}` → exactly one `result`
//!   with the same id, in any order. Invokes run CONCURRENTLY (bounded by
//!   `SPOKE_MAX_IN_FLIGHT`, default 64; when full, stop reading stdin =
//!   backpressure).
//!   Payloads other than JSON (see the manifest's `input_encodings` and
//!   `output_encodings`): `input_encoding?: string` (default `"json"`)
//!   with `input_base64: string` (standard base64, padded) instead of
//!   `input`, and `accept?: [string]` (the output encodings the host
//!   reads, the preferred first; absent: `["json"]`, what a host from
//!   before encodings reads; `[]`: the action's preferred, its first). A bad `input_encoding`, `input_base64` or `accept` is one
//!   `result` error `invalid_input`.
//! - `resolve` `{id, operator, value: string, deadline_ms?, metadata?}` →
//!   exactly one `result` (search operator).
//! - `cancel` `{id}` → cancels that invocation's token (unknown id: ignored).
//! - `heartbeat` → accepted silently (liveness is the pipe itself).
//! - `ready_ack` → stops the `ready` re-sends.
//! - `shutdown` (or stdin EOF) → take no new work (later invokes get result
//!   error code `"unavailable"`, message `"connector is shutting down"`,
//!   details `{"started": false}`), finish in-flight work within
//!   `SPOKE_SHUTDOWN_GRACE` (default 10s; then cancel), flush, exit 0.
//! - LibreFang action methods WITHOUT an id: `send`, `typing`, `reaction`,
//!   `interactive`, `stream_start`, `stream_delta`, `stream_end` → invoke the
//!   connector's action of that name with `params` as input. These run
//!   SEQUENTIALLY in arrival order (`stream_delta` ordering matters) on one
//!   queue, separate from Spoke invokes. Failure, invalid input or panic →
//!   `{"method":"error","params":{"message":"<action>: <error message>"}}`.
//!   Success output is discarded (LibreFang expects no reply). If the
//!   connector has no such action, it is an unknown method.
//! - Unknown methods: tolerated (debug log, no reply). A line that is not a
//!   JSON object, or lacks a string `method`, or an `invoke` missing
//!   `id`/`action`, or an id already in flight →
//!   `{"method":"error","params":{"message":"line <n>: <what was wrong>"}}`
//!   and skipped. A line longer than the limit (`SPOKE_STDIO_MAX_LINE` bytes,
//!   default 64 MiB, as LibreFang's host reads; flag `--max-line-bytes`) →
//!   error frame `line <n>: longer than <limit> bytes; skipped` and the rest
//!   of that line is discarded WITHOUT buffering it. Never a crash.
//! - Memory: a line is read whole (up to the limit), then an `invoke`'s
//!   `input` or a LibreFang command's `params` is decoded straight from it
//!   into the action's input type (a file LibreFang sends whole becomes a
//!   [`librefang::FileData`](crate::stdio::librefang::FileData) of bytes), and the
//!   line is freed. An `input_base64` is decoded into bytes when the line is
//!   parsed, and those bytes are held, as the line would be, until the
//!   action's input is decoded from them. Lines not yet decoded (queued commands, invocations
//!   waiting for a slot) hold at most one limit's worth of bytes in all;
//!   beyond that stdin is not read until they are. So the input held at once
//!   is at most about twice the limit (those lines and the one being read),
//!   besides what running actions decoded.
//!
//! ## Connector to host (stdout)
//!
//! - `ready` params = `{"protocol_version": 1, "capabilities": [LibreFang
//!   capabilities the connector supports: "typing" if it has a typing action,
//!   "reaction" for reaction, "interactive" for interactive, "streaming" if it
//!   has stream_start+stream_delta+stream_end, "thread" if its send input has
//!   a thread_id property], "account_id": <see [account_id](#account_id)>,
//!   "suppress_error_responses": false,
//!   "notification_recipients": [], "header_rules": [], "spoke": {"name",
//!   "version", "display_name", "actions": [names], "search_operators":
//!   [names], "capabilities": [manifest capabilities], "max_in_flight":
//!   <SPOKE_MAX_IN_FLIGHT>}, "manifest": <the full Spoke manifest>}`. Sent at start, and RE-SENT every 2 s until `ready_ack`
//!   arrives, at most 5 times in total.
//! - `result` `{id, output}`, `{id, output_encoding: string, output_base64:
//!   string}` (an output in another encoding, only when the host's
//!   `accept` allowed it) or `{id, error: {code, message, details?}}`.
//! - `event` `{id?: request id (absent for producers and LibreFang
//!   commands), event: <Spoke Event JSON: {"request_id","action",
//!   "type":"progress"|"log"|"custom",...}>}` for Spoke events
//!   (`ctx.progress` / emit). EVERY event of an `invoke` or `resolve` is an
//!   `event` frame with its id, LibreFang events included (a custom event
//!   named `librefang` whose data is the LibreFang frame): only Spoke hosts
//!   send `invoke`, and they relay events to the caller.
//! - LibreFang events of producers and LibreFang commands (which have no id)
//!   as their own methods, built by the typed builders of
//!   [`librefang`](crate::stdio::librefang): `message` `{user_id, user_name, text,
//!   content?: {"Text": text}` (`MessageBuilder` fills `content` and mirrors
//!   `text`), `channel_id?, platform?, thread_id?...}`, `typing` `{user_id,
//!   user_name, is_typing}`, `qr_ready` `{qr_code, qr_url?, message?,
//!   expires_at?}`, `qr_status` `{status, message?}`, `error` `{message}`.
//!   Optional fields are omitted when unset (compared to LibreFang's corpus
//!   by structural JSON equality).
//! - A producer that fails or panics (reported by the runtime as an
//!   `error`-level log event, written as an `event` frame without an id) is
//!   ALSO reported as an `error` frame with the same message, e.g.
//!   ``{"method":"error","params":{"message":"producer `listen` failed:
//!   unavailable: connection refused; restarting in 500ms"}}``, so LibreFang
//!   sees it; so is any `error`-level log event of a producer. The session
//!   goes on and the producer is restarted.
//! - `heartbeat` is never sent by the connector.
//!
//! ## Describe
//!
//! `<bin> --describe` / `<bin> describe` (no config needed, stdin may be
//! closed, well under 5 s) prints ONE JSON object: the Spoke manifest's keys
//! (`spoke`, `name`, `version`, `display_name`, `description`, `config`,
//! `actions`, `search_operators`, `capabilities`) PLUS LibreFang's `fields`:
//! `[{key (the environment variable the field is read from: LibreFang
//! stores the value typed into its form under that name), label (label, or
//! the field's name in Title Case), type: "secret" (secret fields) | "bool" |
//! "number" (integer/number) | "list" (array) | "select" (schema has enum;
//! then options: the enum values as strings) | "text", required, placeholder
//! (placeholder, else the default as typed, else the example, else ""),
//! advanced, options? (select only)}]` from the `#[config_field]`s in
//! declaration order; see [`describe_form`](crate::stdio::describe_form).
//!
//! ## Details the contract leaves open
//!
//! - Line numbers count every line read, from 1, including blank and
//!   skipped ones. A `\r` before the `\n` is dropped; a last line without a
//!   `\n` still counts; blank (whitespace-only) lines are ignored without an
//!   error. The limit counts the bytes before the `\n`.
//! - An `invoke` or `resolve` with a usable `id` but an unusable
//!   `deadline_ms` (not a non-negative integer) or, for `resolve`, a `value`
//!   that is not a string, is answered with one `result` error
//!   `invalid_input` for that id rather than an `error` frame, so the host is
//!   never left waiting. `input` that is not an object is the action's
//!   `invalid_input` error, as on every transport. `params` that are not an
//!   object (for `invoke`, `resolve`, `cancel`) and a `cancel` without an
//!   `id` are `line <n>` errors.
//! - A `deadline_ms` too far away to represent means no deadline.
//! - LibreFang commands arriving after shutdown began, or still queued when
//!   the grace is over, are not run: each gets an `error` frame
//!   `<action>: connector is shutting down`.
//! - `event` frames of LibreFang commands carry no `id` (LibreFang gave
//!   none). From a producer or a LibreFang command, a custom event named
//!   [`librefang::EVENT_NAME`](crate::stdio::librefang::EVENT_NAME) whose data is a
//!   frame with a method a connector may send (`message`, `typing`,
//!   `qr_ready`, `qr_status`, `error`) and object `params` is written as that
//!   frame; any other (e.g. a forged `result`) is written as an ordinary
//!   `event` frame, with a warning. From an invocation it is always an
//!   `event` frame with the invocation's id.
//! - `metadata` that is not an object of strings is answered like an
//!   unusable `deadline_ms`: one `result` error `invalid_input`.
//! - After the shutdown grace, cancelled work gets the instance's cancel grace
//!   (2 s) and one more second; an invocation still running then is
//!   abandoned and answered with a `cancelled` result.
//! - `spoke.actions` lists the visible (not `hidden`) actions; the manifest
//!   lists them all.
//! - Exit codes of `<bin> stdio`: 0 after shutdown or EOF; 2 for usage,
//!   configuration and start-up errors; 1 when stdout or stdin fails (the
//!   host has gone away).
//! - A connector that cannot start (a bad `SPOKE_*` variable, invalid
//!   configuration, its init hook failing or panicking) writes ONE frame
//!   before it exits 2: `{"method":"error","params":{"message":"<what is
//!   wrong>"}}`, the same message as on stderr (every config problem, with
//!   its field and variable; secrets' values never shown), so a supervisor
//!   that keeps a sidecar's last error (LibreFang's channel status, the
//!   Spoke hub's `spoke ls`) names the cause. No `ready` precedes it.
//!
//! # `account_id`
//!
//! LibreFang keys approvals and agent routing of a sidecar channel by the
//! `name` it is configured under (`[[sidecar_channels]] name = "..."`), so
//! `account_id` must be that name. LibreFang does not tell the child its name
//! (it passes the configured `args`, the inherited environment, `secrets.env`
//! and the channel's `env` table, nothing else), so the first of these wins:
//!
//! 1. `SPOKE_ACCOUNT_ID`, set in the channel's `env` to its `name`;
//! 2. the connector's name (right when the channel is named after it).
//!
//! The connector logs which one it used at start.
//!
//! # Environment
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `SPOKE_STDIO_MAX_LINE` | longest input line, in bytes (`--max-line-bytes` overrides it) | `67108864` (64 MiB) |
//! | `SPOKE_ACCOUNT_ID` | `account_id` of the `ready` frame (see [above](#account_id)) | the connector's name |
//! | `SPOKE_MAX_IN_FLIGHT` | invocations run at once | `64` |
//! | `SPOKE_SHUTDOWN_GRACE` | how long in-flight work may take after shutdown, e.g. `30s` | `10s` |
//!
//! An empty variable counts as unset; a value that does not parse is an
//! [`EnvError`] (a usage error, exit code 2).
//!
//! # In-process use
//!
//! [`run`] serves any reader and writer, e.g. the two ends of
//! [`tokio::io::duplex`] pipes in tests:
//!
//! ```no_run
//! # async fn demo(instance: spoke::Instance) -> Result<(), spoke::stdio::StdioError> {
//! use spoke::stdio::{StdioOptions, run};
//! // The host writes to `to_connector` and reads `from_connector`.
//! let (to_connector, connector_stdin) = tokio::io::duplex(64 * 1024);
//! let (connector_stdout, from_connector) = tokio::io::duplex(64 * 1024);
//! # drop((to_connector, from_connector));
//! run(instance, connector_stdin, connector_stdout, StdioOptions::default()).await
//! # }
//! ```

pub mod describe_form;
pub mod librefang;
mod line_reader;
pub(crate) mod output;
#[cfg(test)]
mod props;
mod request;
mod session;
pub(crate) mod threads;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::env::{self, EnvError, MAX_IN_FLIGHT, SHUTDOWN_GRACE};
use crate::instance::Instance;
use session::Session;

/// `SPOKE_STDIO_MAX_LINE`: the longest input line, in bytes.
pub const MAX_LINE: &str = "SPOKE_STDIO_MAX_LINE";
/// `SPOKE_ACCOUNT_ID`: the `account_id` of the `ready` frame.
pub const ACCOUNT_ID: &str = "SPOKE_ACCOUNT_ID";

/// The default line limit: 64 MiB, the longest line LibreFang's host reads
/// (a `send` carrying a file holds its bytes twice, as JSON numbers).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// How long the writer may take to flush the last frames after the session.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// How a stdio session behaves; [`Default`] is the contract's defaults,
/// [`StdioOptions::from_env`] reads the variables.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StdioOptions {
    /// The longest input line, in bytes (not counting the `\n`).
    pub max_line_bytes: usize,
    /// Invocations (`invoke`, `resolve`) run at once.
    pub max_in_flight: usize,
    /// How long in-flight work may take after shutdown before it is cancelled.
    pub shutdown_grace: Duration,
    /// The `account_id` of the `ready` frame (default: the connector's name).
    pub account_id: Option<String>,
    /// How often `ready` is re-sent until `ready_ack`.
    pub ready_interval: Duration,
    /// How many `ready` frames are sent at most, the first included.
    pub ready_max_sends: u32,
}

impl Default for StdioOptions {
    fn default() -> Self {
        StdioOptions {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_in_flight: env::DEFAULT_MAX_IN_FLIGHT,
            shutdown_grace: env::DEFAULT_SHUTDOWN_GRACE,
            account_id: None,
            ready_interval: Duration::from_secs(2),
            ready_max_sends: 5,
        }
    }
}

impl StdioOptions {
    /// The defaults, overridden by this process's variables; see the
    /// [module docs](self#environment).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_vars(env::read(&[
            MAX_LINE,
            ACCOUNT_ID,
            MAX_IN_FLIGHT,
            SHUTDOWN_GRACE,
        ])?)
    }

    /// The defaults, overridden by the variables among `vars` (others are
    /// ignored).
    ///
    /// ```
    /// use std::time::Duration;
    /// use spoke::stdio::StdioOptions;
    /// let o = StdioOptions::from_vars([
    ///     ("SPOKE_STDIO_MAX_LINE", "1024"),
    ///     ("SPOKE_SHUTDOWN_GRACE", "3s"),
    ///     ("SPOKE_ACCOUNT_ID", "bot-1"),
    /// ])?;
    /// assert_eq!(o.max_line_bytes, 1024);
    /// assert_eq!(o.shutdown_grace, Duration::from_secs(3));
    /// assert_eq!(o.account_id.as_deref(), Some("bot-1"));
    /// assert_eq!(o.max_in_flight, 64);
    /// assert!(StdioOptions::from_vars([("SPOKE_MAX_IN_FLIGHT", "0")]).is_err());
    /// # Ok::<(), spoke::env::EnvError>(())
    /// ```
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, EnvError> {
        let mut options = StdioOptions::default();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref().trim());
            if value.is_empty() {
                continue;
            }
            match name {
                MAX_LINE => options.max_line_bytes = env::positive(name, value)?,
                MAX_IN_FLIGHT => options.max_in_flight = env::positive(name, value)?,
                SHUTDOWN_GRACE => options.shutdown_grace = env::duration(name, value)?,
                ACCOUNT_ID => options.account_id = Some(value.to_owned()),
                _ => {}
            }
        }
        Ok(options)
    }
}

/// Why a stdio session ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdioError {
    /// Writing to stdout failed: the host has gone away.
    #[error("cannot write to stdout: {0}")]
    Output(#[source] std::io::Error),
    /// Reading stdin failed (in-flight work was drained first).
    #[error("cannot read stdin: {0}")]
    Input(#[source] std::io::Error),
}

/// Serves `instance` over the stdio protocol: requests from `input`, frames
/// to `output`, until `shutdown` or the end of `input`, then drains
/// in-flight work (see the [module docs](self)). `Ok` after a clean
/// shutdown; every frame has been written and flushed by then.
pub async fn run<R, W>(
    instance: Instance,
    input: R,
    output: W,
    options: StdioOptions,
) -> Result<(), StdioError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (frames, writer) = output::channel();
    let failure = writer.failure();
    let finish = CancellationToken::new();
    let mut writer = tokio::spawn(writer.run(output, finish.clone()));
    let outcome = Session::new(instance, options, frames).serve(input).await;
    finish.cancel();
    if tokio::time::timeout(FINAL_FLUSH, &mut writer)
        .await
        .is_err()
    {
        tracing::warn!("stdout did not take the last frames in time; giving up on them");
        writer.abort();
    }
    let failed = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    match failed {
        Some(e) => Err(StdioError::Output(e)),
        None => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_line_limit_is_64_mib_as_librefangs() {
        assert_eq!(DEFAULT_MAX_LINE_BYTES, 67_108_864);
        assert_eq!(StdioOptions::default().max_line_bytes, 64 * 1024 * 1024);
        let from_nothing = StdioOptions::from_vars::<&str, &str>([]).unwrap();
        assert_eq!(from_nothing.max_line_bytes, 64 * 1024 * 1024);
        // An empty variable counts as unset.
        let empty = StdioOptions::from_vars([(MAX_LINE, "")]).unwrap();
        assert_eq!(empty.max_line_bytes, 64 * 1024 * 1024);
        let set = StdioOptions::from_vars([(MAX_LINE, "1048576")]).unwrap();
        assert_eq!(set.max_line_bytes, 1 << 20);
    }
}
