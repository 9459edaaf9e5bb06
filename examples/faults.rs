//! Faults: a connector that fails on purpose, to show how errors, panics,
//! deadlines, cancellation, progress and events behave.
//!
//! Every action here is a small lesson; the process tests in `tests/cli.rs`
//! reach every [`ErrorCode`] through them. Try:
//!
//! ```text
//! cargo run --example faults -- actions
//! cargo run --example faults -- call fail '{"code":"not_found","message":"no such issue"}'
//! cargo run --example faults -- call panic '{"message":"boom"}'
//! cargo run --example faults -- resolve panic boom
//! cargo run --example faults -- call sleep '{"ms":10000}' --timeout 300ms
//! cargo run --example faults -- call slow
//! cargo run --example faults -- call progress '{"steps":3}'
//! cargo run --example faults -- call whole '{"customer":{"name":"Ada"},"items":[{"sku":"a","qty":1},{"sku":"b","qty":-1}]}'
//! ```
//!
//! What the runtime guarantees, and where to see it:
//!
//! - **Errors** carry a stable code, a message and optional JSON details
//!   (`fail`). Return `ActionError` directly, or any error that converts into
//!   it: `std::io::Error` maps to the closest code (`io_error`), `anyhow::Error`
//!   becomes `internal` with its whole context chain (`anyhow_error`).
//! - **Bad input** never reaches your code: decoding fails with
//!   `invalid_input` and `details.path` naming the field (`whole`).
//! - **Panics** are isolated: a panicking action, async (`panic`) or sync
//!   (`panic_blocking`), or a panicking search operator (`resolve panic
//!   <message>`), becomes a `panicked` error with the panic message, and the
//!   connector keeps serving.
//! - **Deadlines**: the earlier of the caller's deadline (`--timeout`) and the
//!   action's own `timeout` (`slow`). When it passes, the context is
//!   cancelled, the caller gets `deadline_exceeded` at once and the action's
//!   future is dropped.
//! - **Cancellation**: when the caller cancels (Ctrl-C on the CLI), the
//!   context's token fires. An action that watches `ctx.cancelled()` (`sleep`)
//!   stops cleanly and reports what it likes; one that does not (`stubborn`)
//!   gets a grace period, then is dropped and the caller gets `cancelled`.
//! - **Progress and events** go to the caller while the action runs
//!   (`progress`); the CLI prints them on stderr as `event: <json>` lines.
//! - **Syncs** are isolated the same way: one that ignores its cancellation
//!   (`ignores_cancel`) is dropped after the grace and its slot is free; one
//!   that panics (`panics`) fails its run with `panicked`; and a checkpoint
//!   written by an older version of a sync is brought over by its `migrate`
//!   fn (`migrated`); an idle buffer is flushed on age alone (`trickle`).
//!   Try `cargo run --example faults -- sync panics`.
//!
//! Sync (non-async) actions (`add`, `io_error`, `panic_blocking`,
//! `sleep_blocking`, `slow_blocking`) run on the blocking pool, so they may
//! block without stalling other calls. Nothing can interrupt a thread, though:
//! a long sync action should poll `ctx.is_cancelled()` (`sleep_blocking`).

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use spoke::prelude::*;

/// Fails on purpose, in every way the runtime knows.
#[connector(name = "faults")]
pub struct Faults {
    /// A label put in front of every progress message.
    #[config_field(env = "FAULTS_LABEL")]
    label: Option<String>,
}

/// The codes an action may choose itself. The others (`deadline_exceeded`,
/// `cancelled`, `panicked`) are the runtime's to report.
const CHOOSABLE: [ErrorCode; 6] = [
    ErrorCode::InvalidInput,
    ErrorCode::NotFound,
    ErrorCode::Unauthorized,
    ErrorCode::FailedPrecondition,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
];

/// What `sleep` and `slow` return when they finish.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Slept {
    /// How long the action slept.
    pub slept_ms: u64,
}

/// An order, to show how nested input is decoded and how errors name the
/// exact field (`$.items[1].qty`).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// Who ordered.
    pub customer: Customer,
    /// What they ordered.
    pub items: Vec<Item>,
    /// A free-form note.
    pub note: Option<String>,
}

/// The customer of an `Order`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Their name.
    pub name: String,
    /// Their e-mail address, if known.
    pub email: Option<String>,
}

/// One line of an `Order`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The product.
    pub sku: String,
    /// How many (a `u32`: negative numbers are rejected while decoding).
    pub qty: u32,
}

#[connector]
impl Faults {
    /// Fail with the error code you ask for.
    ///
    /// The error carries `details: {"requested": code}`, to show how
    /// structured details reach the caller.
    ///
    /// # Arguments
    ///
    /// * `code` - one of `invalid_input`, `not_found`, `unauthorized`,
    ///   `failed_precondition`, `unavailable`, `internal`.
    /// * `message` - the error's message.
    #[action(read)]
    async fn fail(&self, code: String, message: String) -> Result<(), ActionError> {
        let chosen = ErrorCode::parse(&code).filter(|c| CHOOSABLE.contains(c));
        let Some(chosen) = chosen else {
            let allowed: Vec<&str> = CHOOSABLE.iter().map(|c| c.as_str()).collect();
            // Input the schema cannot rule out: check it yourself and name the field.
            return Err(ActionError::invalid_input_at(
                "$.code",
                format!(
                    "`{code}` is not a code an action may choose; use one of: {}",
                    allowed.join(", ")
                ),
            ));
        };
        Err(ActionError::new(chosen, message).with_details(json!({ "requested": code })))
    }

    /// Panic with the given message (async action).
    ///
    /// The caller gets a `panicked` error carrying the message; the process
    /// and the connector survive.
    #[action(read)]
    async fn panic(&self, message: String) {
        panic!("{message}");
    }

    /// Panic with the given message (sync action, on the blocking pool).
    #[action(read)]
    fn panic_blocking(&self, message: String) {
        panic!("{message}");
    }

    /// Sleep for `ms` milliseconds, stopping early when cancelled.
    ///
    /// It emits a `sleeping` event first, so a caller knows it has started.
    /// A well-behaved long action watches `ctx.cancelled()`: it is cancelled
    /// when the caller cancels *and* when the deadline passes.
    #[action(read)]
    async fn sleep(&self, ctx: &Context, ms: u64) -> Result<Slept, ActionError> {
        let started = Instant::now();
        ctx.emit_custom("sleeping", json!({ "ms": ms })).await?;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(Slept { slept_ms: ms }),
            () = ctx.cancelled() => Err(ActionError::cancelled(format!(
                "sleep stopped after {} ms of {ms}",
                started.elapsed().as_millis()
            ))),
        }
    }

    /// Sleep for `ms` milliseconds in a sync action, stopping early when cancelled.
    ///
    /// A sync action runs on a thread of the blocking pool, which nothing can
    /// interrupt: poll `ctx.is_cancelled()` between slices of work.
    #[action(read)]
    fn sleep_blocking(&self, ctx: &Context, ms: u64) -> Result<Slept, ActionError> {
        let started = Instant::now();
        let total = Duration::from_millis(ms);
        while started.elapsed() < total {
            if ctx.is_cancelled() {
                return Err(ActionError::cancelled(format!(
                    "sleep_blocking stopped after {} ms of {ms}",
                    started.elapsed().as_millis()
                )));
            }
            let left = total.saturating_sub(started.elapsed());
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
        Ok(Slept { slept_ms: ms })
    }

    /// Sleep for 5 s, well past this action's own 200 ms timeout.
    ///
    /// It ignores cancellation on purpose: when the deadline passes the
    /// runtime reports `deadline_exceeded` at once and drops the future.
    #[action(read, timeout = "200ms")]
    async fn slow(&self) -> Slept {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Slept { slept_ms: 5_000 }
    }

    /// Sleep for 5 s in a sync action, past its own 200 ms timeout.
    ///
    /// It ignores cancellation on purpose. The caller still gets
    /// `deadline_exceeded` on time, but the thread cannot be stopped: it runs
    /// to completion in the background. Prefer `sleep_blocking`'s pattern.
    #[action(read, timeout = "200ms")]
    fn slow_blocking(&self) -> Slept {
        std::thread::sleep(Duration::from_secs(5));
        Slept { slept_ms: 5_000 }
    }

    /// Sleep for `ms` milliseconds, ignoring cancellation.
    ///
    /// It emits a `sleeping` event first. When the caller cancels, the
    /// runtime gives it a grace period (2 s by default) to return, then drops
    /// it and reports `cancelled` itself.
    #[action(read)]
    async fn stubborn(&self, ctx: &Context, ms: u64) -> Result<Slept, ActionError> {
        ctx.emit_custom("sleeping", json!({ "ms": ms })).await?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Slept { slept_ms: ms })
    }

    /// Report progress `steps` times, then emit a custom `done` event.
    ///
    /// Returns the number of steps. Emitting waits while the caller is slow
    /// to read (backpressure) and fails only when the caller has gone away or
    /// cancelled: treat that as cancellation.
    #[action(read)]
    async fn progress(&self, ctx: &Context, steps: u32) -> Result<u32, ActionError> {
        let label = self
            .label
            .as_deref()
            .map(|l| format!("{l}: "))
            .unwrap_or_default();
        for i in 1..=steps {
            let message = format!("{label}step {i} of {steps}");
            ctx.progress(f64::from(i), Some(f64::from(steps)), message)
                .await?;
        }
        ctx.emit_custom("done", json!({ "steps": steps })).await?;
        Ok(steps)
    }

    /// Fail through `anyhow`: the error becomes `internal`.
    ///
    /// Its message is the whole context chain: "reading the answer: invalid
    /// digit found in string". (An `anyhow::Error` that wraps an
    /// `ActionError` keeps that error's code.)
    #[action(read)]
    async fn anyhow_error(&self) -> anyhow::Result<u32> {
        use anyhow::Context as _;
        let answer: u32 = "forty-two".parse().context("reading the answer")?;
        Ok(answer)
    }

    /// Read a file that does not exist: the `std::io::Error` becomes `not_found`.
    ///
    /// `?` converts it; permission errors become `unauthorized`, timeouts
    /// `deadline_exceeded`, and so on.
    #[action(read)]
    fn io_error(&self) -> Result<String, ActionError> {
        let path = std::env::temp_dir()
            .join("spoke-faults-does-not-exist")
            .join("missing.txt");
        let text = std::fs::read_to_string(path)?;
        Ok(text)
    }

    /// Return the order as received: the whole input is one `#[input]` type.
    ///
    /// Send a bad nested field to see the exact path in `details.path`.
    #[action(read)]
    async fn whole(&self, #[input] order: Order) -> Order {
        order
    }

    /// Who asked: the `actor_email` the host vouches for (Omni's
    /// `/action` sends one), or null.
    #[action(read)]
    async fn whoami(&self, ctx: &Context) -> Option<String> {
        ctx.metadata().get("actor_email").cloned()
    }

    /// Add two numbers (a plain sync fn with a plain return; saturates at `u64::MAX`).
    ///
    /// # Arguments
    ///
    /// * `a` - the first number.
    /// * `b` - the second number.
    #[action(read)]
    fn add(&self, a: u64, b: u64) -> u64 {
        a.saturating_add(b)
    }

    /// Resolve `code:<name>` to a stable error code, e.g. `code:NotFound` to `not_found`.
    #[search_operator(attribute = "error_code")]
    async fn code(&self, value: String) -> Result<String, ActionError> {
        let key = |s: &str| -> String {
            s.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        ErrorCode::ALL
            .into_iter()
            .find(|c| key(c.as_str()) == key(&value))
            .map(|c| c.as_str().to_owned())
            .ok_or_else(|| ActionError::not_found(format!("no error code `{value}`")))
    }

    /// Panic while resolving `panic:<message>`, with the value as the panic message.
    ///
    /// Search operators are isolated like actions: the caller gets a
    /// `panicked` error and the connector keeps serving.
    // Operators and actions have separate names, but fns share one impl
    // block: the fn needs a name other than the `panic` action's.
    #[search_operator(name = "panic", attribute = "panic_message")]
    async fn panic_operator(&self, value: String) -> String {
        panic!("{value}");
    }
}

/// Where a fault sync got to: the next document.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Next {
    /// The number of the next document.
    pub next: u64,
}

/// A document of the fault syncs.
fn numbered(n: u64) -> spoke::sync::Document {
    spoke::sync::Document::new(format!("doc-{n}")).title(format!("Document {n}"))
}

#[connector]
impl Faults {
    /// Emit three documents, a checkpoint after each, then sleep for an
    /// hour, ignoring cancellation.
    ///
    /// A cancel gives it the cancel grace (2 s) to return; then the runtime
    /// drops it, the run ends `cancelled` and the sync can run again.
    #[sync(source_type = "stuck")]
    async fn ignores_cancel(&self, ctx: &SyncContext<Next>) -> Result<(), ActionError> {
        for next in 1..=3 {
            ctx.created(numbered(next - 1)).await?;
            ctx.checkpoint(&Next { next }).await?;
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    }

    /// Emit one document, store a checkpoint, then panic.
    ///
    /// The run fails with `panicked` (and the panic message); its checkpoint
    /// stays, and the connector goes on serving.
    #[sync(source_type = "panicky")]
    async fn panics(&self, ctx: &SyncContext<Next>) -> Result<(), ActionError> {
        ctx.created(numbered(0)).await?;
        ctx.checkpoint(&Next { next: 1 }).await?;
        panic!("the sync fell over after document 0");
    }

    /// Emit one document, wait 3 s, emit another.
    ///
    /// The first reaches the sink while the sync waits, once it is as old
    /// as the flush age allows (`SPOKE_SYNC_FLUSH_AGE`; a full run's
    /// default is 300 s): a timer flushes an idle buffer.
    #[sync(source_type = "trickle")]
    async fn trickle(&self, ctx: &SyncContext) -> Result<(), ActionError> {
        ctx.created(numbered(0)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        ctx.created(numbered(1)).await?;
        Ok(())
    }

    /// Emit three documents from the checkpoint on. Its checkpoint is at
    /// version 2 (`{"next": n}`); version 1 was `{"page": n}`, and
    /// `migrate` brings such a checkpoint over instead of refusing it.
    #[sync(version = 2, migrate = Self::from_pages, source_type = "migrated")]
    async fn migrated(&self, ctx: &SyncContext<Next>) -> Result<(), ActionError> {
        let start = ctx.last_checkpoint().map_or(0, |c| c.next);
        for n in start..start + 3 {
            ctx.created(numbered(n)).await?;
        }
        ctx.checkpoint(&Next { next: start + 3 }).await
    }
}

impl Faults {
    /// `migrated`'s checkpoint from version 1, `{"page": n}`.
    fn from_pages(version: u32, old: serde_json::Value) -> Result<Next, String> {
        match (version, old["page"].as_u64()) {
            (1, Some(page)) => Ok(Next { next: page }),
            _ => Err(format!(
                "a version-{version} checkpoint without a `page` number: {old}"
            )),
        }
    }
}

fn main() -> std::process::ExitCode {
    spoke::main()
}
