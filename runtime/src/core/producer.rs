//! Producers: long-running tasks a connector declares with `#[producer]`,
//! which emit events for as long as the connector runs (a chat connector
//! listening for incoming messages, a watcher tailing a directory).
//!
//! A transport starts them with [`spawn_producers`] once the [`Instance`] is
//! built, giving the channel their events go to and the token that stops
//! them. The supervisor then guarantees:
//!
//! - **one task per producer**, each with its own [`Context`]: request id
//!   `""`, action = the producer's name, events = the transport's channel,
//!   cancellation = a child of the shutdown token;
//! - **failures are reported and retried**: a producer that returns `Err` or
//!   panics (the panic is caught, its message kept) is reported as an event
//!   `EventKind::Log { level: "error", message }` whose `action` is the
//!   producer's name and whose message names the producer, the cause and the
//!   delay before the restart, e.g.
//!   ``producer `listen` failed: unavailable: connection refused; restarting in 500ms``
//!   or ``producer `listen` panicked: socket gone; restarting in 1.0s``.
//!   It is then restarted after a delay from the runtime's default
//!   [`Backoff`] (500 ms, doubling, at most 30 s, 20 % jitter); a run that
//!   lasted [`HEALTHY_UPTIME`] (60 s) or more resets the schedule;
//! - **returning `Ok`** ends a producer with [`Restart::OnFailure`] (the
//!   default) for good; with [`Restart::Always`] it is restarted after the
//!   same backoff, so one that returns at once cannot spin;
//! - **nothing takes the process down**: every failure stays in the
//!   producer's task;
//! - **shutdown**: when the shutdown token is cancelled (or the receiver of
//!   events goes away, since nothing could be delivered any more), each
//!   producer sees its context cancelled and has the instance's cancel grace
//!   (2 s by default, [`Instance::with_cancel_grace`]) to return; then it is
//!   dropped. What a producer returns during shutdown is not reported and it
//!   is not restarted.
//!
//! Events a producer emits go through [`Context::emit`], which waits while the
//! channel is full and errs when it is closed or the producer is cancelled:
//! nothing is dropped silently.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::connector::{AnyConnector, ProducerDef};
use crate::context::{Context, Event, EventKind};
use crate::error::{ActionError, ErrorCode};
use crate::instance::{Instance, panic_message};

/// A run at least this long counts as healthy: the next failure is retried
/// after the initial delay again.
pub const HEALTHY_UPTIME: Duration = Duration::from_secs(60);

/// When a stopped producer is started again (`#[producer(restart = "...")]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Restart {
    /// `"on_failure"`, the default: after an error or a panic, not after it
    /// returns `Ok`.
    #[default]
    OnFailure,
    /// `"always"`: also after it returns `Ok`.
    Always,
}

impl Restart {
    /// The name used in `#[producer(restart = "...")]`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Restart::OnFailure => "on_failure",
            Restart::Always => "always",
        }
    }
}

/// Starts every producer of `instance`'s connector, each in its own task,
/// under the supervision described in the [module docs](self). Call it from
/// within a Tokio runtime.
///
/// Events the producers emit, and the `error` events that report their
/// failures, go to `events`. Cancelling `shutdown` stops them: each gets its
/// context cancelled and the instance's cancel grace to return. The returned
/// handle completes when every producer has stopped for good: at once for a
/// connector with no producers (or a `shutdown` already cancelled), after
/// shutdown otherwise (or earlier, when every producer returned `Ok` with
/// `restart = "on_failure"`).
///
/// ```
/// use spoke::{CancellationToken, Instance, producer::spawn_producers};
///
/// async fn run(instance: &Instance) {
///     let (events, mut received) = tokio::sync::mpsc::channel(64);
///     let shutdown = CancellationToken::new();
///     let producers = spawn_producers(instance, events, shutdown.clone());
///     tokio::spawn(async move {
///         while let Some(event) = received.recv().await {
///             println!("{}", serde_json::to_string(&event).unwrap());
///         }
///     });
///     // ... serve until asked to stop, then:
///     shutdown.cancel();
///     producers.await.unwrap();
/// }
/// ```
pub fn spawn_producers(
    instance: &Instance,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let connector_name = instance.connector_type().name();
    let producers = instance.connector_type().producers().to_vec();
    let connector = instance.connector_handle().clone();
    let grace = instance.cancel_grace();
    let store = instance.store().clone();
    tokio::spawn(async move {
        if producers.is_empty() || shutdown.is_cancelled() {
            return;
        }
        // Stops on shutdown, or when nobody is left to receive events.
        let stop = shutdown.child_token();
        let mut tasks = JoinSet::new();
        for def in producers {
            tracing::debug!(target: "spoke::producer", connector = connector_name, producer = def.name, "starting producer");
            tasks.spawn(supervise(Supervised {
                def,
                connector_name,
                connector: connector.clone(),
                events: events.clone(),
                stop: stop.clone(),
                grace,
                store: store.clone(),
            }));
        }
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(())) => {}
                    // The supervisor isolates producer panics; this would be a bug in Spoke.
                    Some(Err(e)) => tracing::error!(target: "spoke::producer", connector = connector_name, "producer supervisor failed: {e}"),
                },
                () = events.closed(), if !stop.is_cancelled() => {
                    tracing::warn!(target: "spoke::producer", connector = connector_name, "the receiver of producer events is gone; stopping producers");
                    stop.cancel();
                }
            }
        }
    })
}

/// One producer and what its supervisor needs.
struct Supervised {
    def: &'static ProducerDef,
    connector_name: &'static str,
    connector: AnyConnector,
    events: mpsc::Sender<Event>,
    stop: CancellationToken,
    grace: Duration,
    store: std::sync::Arc<crate::store::Store>,
}

async fn supervise(s: Supervised) {
    let mut schedule = Backoff::default().schedule();
    loop {
        let started = Instant::now();
        let Some(result) = s.run_once().await else {
            return;
        };
        if started.elapsed() >= HEALTHY_UPTIME {
            schedule.reset();
        }
        if result.is_ok() && s.def.restart == Restart::OnFailure {
            tracing::info!(target: "spoke::producer", connector = s.connector_name, producer = s.def.name, "producer returned; not restarted (restart = \"on_failure\")");
            return;
        }
        let delay = schedule
            .next_delay()
            .unwrap_or_else(|| schedule.backoff().max());
        match result {
            Ok(()) => {
                tracing::info!(target: "spoke::producer", connector = s.connector_name, producer = s.def.name, "producer returned; restarting in {} (restart = \"always\")", human(delay));
            }
            Err(error) => s.report(&error, delay).await,
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = s.stop.cancelled() => return,
        }
    }
}

impl Supervised {
    /// Runs the producer once. `None` when it was stopped by shutdown.
    async fn run_once(&self) -> Option<Result<(), ActionError>> {
        let ctx = Context::builder("", self.def.name)
            .events(self.events.clone())
            .cancellation(self.stop.child_token())
            .build();
        ctx.attach_store(&self.store);
        let (run, connector) = (self.def.run, self.connector.clone());
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| run(connector, ctx))) {
            Ok(future) => future,
            Err(payload) => return Some(Err(ActionError::panicked(panic_message(&*payload)))),
        };
        let mut future = AssertUnwindSafe(future).catch_unwind();
        let settle = |r: std::thread::Result<Result<(), ActionError>>| {
            r.unwrap_or_else(|p| Err(ActionError::panicked(panic_message(&*p))))
        };
        tokio::select! {
            biased;
            result = &mut future => {
                let result = settle(result);
                if self.stop.is_cancelled() {
                    self.stopped(Some(&result));
                    return None;
                }
                Some(result)
            }
            () = self.stop.cancelled() => {
                match tokio::time::timeout(self.grace, &mut future).await {
                    Ok(result) => self.stopped(Some(&settle(result))),
                    Err(_) => self.stopped(None),
                }
                None
            }
        }
    }

    /// Logs how a producer ended during shutdown (never reported as a failure).
    fn stopped(&self, result: Option<&Result<(), ActionError>>) {
        let (connector, producer) = (self.connector_name, self.def.name);
        match result {
            Some(Ok(())) => {
                tracing::debug!(target: "spoke::producer", connector, producer, "producer stopped")
            }
            Some(Err(e)) => {
                tracing::debug!(target: "spoke::producer", connector, producer, "producer stopped: {e}")
            }
            None => {
                tracing::warn!(target: "spoke::producer", connector, producer, grace = ?self.grace, "producer did not stop within its grace period; dropped")
            }
        }
    }

    /// Reports a failure as an `error` event (and in the log).
    async fn report(&self, error: &ActionError, delay: Duration) {
        let message = failure_message(self.def.name, error, delay);
        tracing::error!(target: "spoke::producer", connector = self.connector_name, producer = self.def.name, "{message}");
        let event = Event {
            request_id: String::new(),
            action: self.def.name.to_owned(),
            kind: EventKind::Log {
                level: "error".to_owned(),
                message,
            },
        };
        tokio::select! {
            biased;
            sent = self.events.send(event) => if sent.is_err() {
                tracing::warn!(target: "spoke::producer", producer = self.def.name, "the receiver of producer events is gone; the failure above was not delivered");
            },
            () = self.stop.cancelled() => {
                tracing::debug!(target: "spoke::producer", producer = self.def.name, "stopping; the failure above was not delivered");
            }
        }
    }
}

/// ``producer `listen` failed: unavailable: refused; restarting in 500ms``.
fn failure_message(producer: &str, error: &ActionError, delay: Duration) -> String {
    let cause = if error.code() == ErrorCode::Panicked {
        format!("panicked: {}", error.message())
    } else {
        format!("failed: {error}")
    };
    format!(
        "producer `{producer}` {cause}; restarting in {}",
        human(delay)
    )
}

/// `487ms`, `1.9s`, `30.0s`.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_name_the_producer_the_cause_and_the_delay() {
        let ms = Duration::from_millis;
        assert_eq!(
            failure_message("listen", &ActionError::unavailable("refused"), ms(487)),
            "producer `listen` failed: unavailable: refused; restarting in 487ms"
        );
        assert_eq!(
            failure_message("listen", &ActionError::panicked("socket gone"), ms(1940)),
            "producer `listen` panicked: socket gone; restarting in 1.9s"
        );
    }

    #[test]
    fn restart_names_match_the_attribute() {
        assert_eq!(Restart::default(), Restart::OnFailure);
        assert_eq!(Restart::OnFailure.as_str(), "on_failure");
        assert_eq!(Restart::Always.as_str(), "always");
    }
}
