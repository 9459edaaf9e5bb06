//! `serve`: attach a running connector to a Spoke hub and answer its calls,
//! forever, until a signal or the hub's Drain says to stop.
//!
//! This is the default command of every connector binary (`<bin>` or
//! `<bin> serve`); it reads its settings from `SPOKE_*` variables (see
//! [`hub_env`](crate::grpc::env)). Embedders and tests call [`run`] or
//! [`run_until`] with [`AttachOptions`] directly.
//!
//! What it does, following the protocol in `proto/spoke/v1/spoke.proto`:
//!
//! - **Attach.** Dial the hub, open `ConnectorHub.Attach`, send Register
//!   (manifest, protocol and SDK versions, tenant, instance identity,
//!   `max_in_flight`, and the last session token so the hub can resume the
//!   session) and wait for Registered. Any failure, or the loss of an
//!   established stream, is logged once at WARN with the delay before the
//!   next attempt; attempts back off exponentially with jitter
//!   ([`AttachOptions::backoff`], 200 ms doubling to at most 1 s by
//!   default) and the backoff restarts after each successful registration.
//!   There is no limit on attempts, and with the default backoff a
//!   connector re-registers within about a second of the hub's return,
//!   however long the hub was gone.
//! - **Identity.** Before the first dial, the instance's Ed25519 key is
//!   loaded or made ([`AttachOptions::key`], see [`identity`](crate::grpc::identity))
//!   and its fingerprint logged; every Register carries fresh credentials
//!   signed with it, plus [`AttachOptions::registration_token`] until the
//!   hub first answers ACTIVE. `https://` hub URLs are dialed over TLS
//!   ([`AttachOptions::tls`], see [`hub_tls`](crate::grpc::tls)).
//! - **Approval.** `Registered{PENDING_APPROVAL}` is logged as a warning
//!   naming the command an administrator runs (`spoke approve <instance>`)
//!   and the key's fingerprint; the stream stays up (heartbeats) and no
//!   calls arrive. A later `Registered{ACTIVE}` on the same stream is logged
//!   ("approved") and calls start arriving, with no reconnect.
//! - **Refusals.** A stream the hub ends with PERMISSION_DENIED (the
//!   instance was rejected or revoked) is logged as an error with the hub's
//!   message and `serve` stops with [`ServeError::Refused`] (the command
//!   line exits 4). UNAUTHENTICATED (the proof was refused: a key other than
//!   the recorded one, a used registration token, a clock far off) is
//!   logged as an error and retried, slowly: [`AttachOptions::auth_backoff`],
//!   1 s doubling to at most 30 s by default.
//! - **Invocations.** Each Invoke runs in its own task with a [`Context`]
//!   carrying the request id, a deadline (`timeout_ms` after it was read), a
//!   cancellation token (fired by the hub's Cancel), the Invoke's metadata
//!   ([`Context::metadata`]: `caller`, `traceparent`, ...) and an event
//!   channel whose events become Event frames (kind `progress`, `log` or
//!   `custom`, the event as JSON). A search-operator Invoke (payload
//!   `{"value": ".."}`) resolves the operator. The Result carries the output
//!   JSON or the error's code, message and details, and the time since the
//!   Invoke was read. An Invoke answered without running (shutting down,
//!   at capacity, cancelled while queued) has the details
//!   `{"started": false}`, which lets the hub retry it elsewhere.
//! - **Backpressure without starving heartbeats.** At most `max_in_flight`
//!   invocations run at once. The stream's reader never waits for a slot: it
//!   answers Ping at once, applies Cancel and Drain at once, and queues each
//!   Invoke; a dispatcher starts the oldest queued Invoke each time a slot
//!   (a semaphore permit) is free. So a connector whose every slot is busy
//!   still answers heartbeats and still cancels. A call stops counting
//!   against the hub's `max_in_flight` when its Result is queued, so a hub
//!   that keeps to it never has more than `max_in_flight` calls waiting; an
//!   Invoke beyond `2 × max_in_flight` unanswered calls (as many running as
//!   waiting) is answered `unavailable` (never started) at once.
//! - **The outbox.** Results are queued in order with the events before
//!   them and survive reconnects: while no stream is up they wait (at most
//!   [`AttachOptions::outbox_capacity`], one per request id, oldest dropped
//!   with an error log) and are sent first on the next stream. A sent result
//!   is kept until the hub's Pong to a later Ping proves the hub read it;
//!   when the stream dies first, it is sent again after reconnecting
//!   (at-least-once). Events are only sent while a stream is up.
//! - **Resume.** Register carries the last session token. If the hub
//!   resumes (`resumed = true`), queued and running calls carry on and their
//!   results go out on the new stream. The hub then re-sends the Invoke of
//!   every call it still waits for (one sent on the lost stream may never
//!   have arrived); an Invoke whose request id is already known in the
//!   session (queued, running, or its result in the outbox or not yet
//!   acknowledged) is ignored, so each call runs once. If it starts a new
//!   session instead,
//!   it no longer knows the old calls: queued ones are dropped, running ones
//!   finish but their results are not sent, and old results in the outbox
//!   are discarded (a restarted hub may reuse request ids).
//! - **Heartbeats.** Ping every `heartbeat_interval_ms` (from Registered;
//!   5 s if the hub says 0), answer every Ping, and drop the stream when
//!   nothing at all arrived for two intervals.
//! - **Shutdown** (SIGINT/SIGTERM, or the future given to [`run_until`]):
//!   take no new work (Invokes get `unavailable`, "connector is shutting
//!   down", with details `{"started": false}`), wait up to
//!   [`AttachOptions::shutdown_grace`] for running calls, then cancel what
//!   is left and give it 1 s to answer (anything still running is answered
//!   `cancelled`), flush the outbox (a last Ping whose
//!   Pong proves the hub read every result), send Goodbye, close the stream
//!   and return [`ServeOutcome::Shutdown`]. If the stream is down at that
//!   point, results still undelivered get [`LEAVE_WINDOW`] of reconnect
//!   attempts; then they are given up with an error log. When no hub
//!   listens at all (the connection is refused), there is nobody to wait
//!   for: the results' callers went with the hub, so the connector leaves at
//!   once, with a warning that counts them.
//! - **Drain** from the hub does the same, with the Drain's `grace_ms` (when
//!   non-zero) as the grace period, and returns [`ServeOutcome::Drained`]:
//!   the process exits 0 and its supervisor decides whether to restart it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use crate::grpc::options::{
    AttachOptions, DEFAULT_HUB_URL, DEFAULT_MAX_IN_FLIGHT, DEFAULT_SHUTDOWN_GRACE,
    InstanceIdentity, default_auth_backoff, default_backoff,
};

use crate::grpc::attach::{DrainRequest, Link, Phase, SessionEnd};
use crate::grpc::dispatch::Dispatch;
use crate::grpc::identity::KeyError;
use crate::grpc::outbox::{DEFAULT_EVENT_CAPACITY, Outbox};
use crate::grpc::syncs::SyncLink;
use crate::grpc::tls::hub_endpoint;
use crate::instance::Instance;

#[cfg(doc)]
use crate::context::Context;

/// On shutdown, how long `serve` keeps trying to reach the hub to deliver
/// results still in the outbox.
pub const LEAVE_WINDOW: Duration = Duration::from_secs(5);
/// After the grace period, how long cancelled calls get to answer before
/// they are answered `cancelled` by `serve` itself.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// Why [`run`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeOutcome {
    /// A signal, or the `shutdown` future of [`run_until`], asked to stop.
    Shutdown,
    /// The hub sent Drain.
    Drained,
}

/// Why [`run`] could not start, or stopped on the hub's refusal. Short of
/// that refusal, once attaching, `serve` never gives up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// The hub URL is not a usable `https://` or `http://host[:port]`
    /// address, or its TLS settings are unusable.
    #[error("invalid hub URL `{url}`: {message}")]
    InvalidHubUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// `max_in_flight` is 0.
    #[error("max_in_flight must be at least 1")]
    ZeroMaxInFlight,
    /// The instance key could not be read or made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The hub refused this instance (PERMISSION_DENIED: an administrator
    /// rejected or revoked it); retrying would not help.
    #[error("the hub refused this instance: {message}")]
    Refused {
        /// The hub's message.
        message: String,
    },
}

/// Serves until SIGINT or SIGTERM (Ctrl-C only, off Unix), then shuts down
/// gracefully. A second signal during the graceful shutdown ends the
/// process at once with exit code 1.
pub async fn run(instance: Instance, options: AttachOptions) -> Result<ServeOutcome, ServeError> {
    let signals = Arc::new(crate::signals::Signals::install());
    let impatient = Arc::new(std::sync::Mutex::new(None::<AbortOnDrop<()>>));
    let watcher = Arc::clone(&impatient);
    let result = run_until(instance, options, async move {
        let name = signals.next().await;
        tracing::info!("{name} received: shutting down");
        let second = tokio::spawn(async move {
            let name = signals.next().await;
            tracing::error!("second {name}: exiting without finishing in-flight work");
            std::process::exit(1);
        });
        *watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(AbortOnDrop(second));
    })
    .await;
    // Once `serve` is done, a later signal is no business of ours.
    drop(impatient.lock().unwrap_or_else(|e| e.into_inner()).take());
    result
}

/// Serves until `shutdown` completes (or the hub sends Drain), then shuts
/// down gracefully; see the module docs.
pub async fn run_until(
    instance: Instance,
    options: AttachOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ServeOutcome, ServeError> {
    let endpoint = hub_endpoint(&options.hub_url, &options.tls, options.connect_timeout).map_err(
        |message| ServeError::InvalidHubUrl {
            url: options.hub_url.clone(),
            message,
        },
    )?;
    if options.max_in_flight == 0 {
        return Err(ServeError::ZeroMaxInFlight);
    }
    // Once per process, before the first dial.
    let key = options
        .key
        .load(&instance.manifest().name, &options.instance.id)?;
    let manifest_json = serde_json::to_string(instance.manifest()).unwrap_or_default();
    let instance_name = instance.manifest().name.clone();
    let outbox = Arc::new(Outbox::new(options.outbox_capacity, DEFAULT_EVENT_CAPACITY));
    let dispatch = Dispatch::new(
        instance.clone(),
        Arc::clone(&outbox),
        options.max_in_flight as usize,
    );
    let syncs = SyncLink::new(instance.clone(), Arc::clone(&outbox));
    let _dispatcher = AbortOnDrop(dispatch.spawn());
    let (phase_tx, phase) = watch::channel(Phase::Serving);
    let (drain_tx, drain_rx) = mpsc::unbounded_channel();
    let mut closer = AbortOnDrop(tokio::spawn(close_when_asked(
        shutdown,
        drain_rx,
        Arc::clone(&dispatch),
        Arc::clone(&syncs),
        phase_tx,
        options.shutdown_grace,
    )));
    let link = Link {
        endpoint,
        key,
        manifest_json,
        connector: instance_name,
        approved_once: std::sync::atomic::AtomicBool::new(false),
        options: options.clone(),
        dispatch,
        syncs,
        outbox: Arc::clone(&outbox),
        phase: phase.clone(),
        drain: drain_tx,
    };
    if let Err(message) = attach_forever(&link, &options, phase).await {
        return Err(ServeError::Refused { message });
    }
    let outcome = match (&mut closer.0).await {
        Ok(outcome) => outcome,
        Err(_) => ServeOutcome::Shutdown,
    };
    Ok(outcome)
}

/// Attaches, re-attaching after every loss, until a session ends with
/// Goodbye or the connector leaves with nothing left to deliver (`Ok`), or
/// the hub refuses the instance (`Err` with the hub's message).
async fn attach_forever(
    link: &Link,
    options: &AttachOptions,
    mut phase: watch::Receiver<Phase>,
) -> Result<(), String> {
    let mut schedule = options.backoff.schedule();
    let mut auth_schedule = options.auth_backoff.schedule();
    let mut session_token = String::new();
    let mut give_up_at: Option<Instant> = None;
    loop {
        let (reason, delay, hub_gone) = match link.session(&mut session_token).await {
            SessionEnd::Left => return Ok(()),
            SessionEnd::Refused { message } => {
                tracing::error!(
                    hub = %options.hub_url,
                    instance = %options.instance.id,
                    "the hub refused this instance (rejected or revoked by an administrator): {message}; stopping"
                );
                return Err(message);
            }
            SessionEnd::NotAccepted { what, message } => {
                let delay = auth_schedule
                    .next_delay()
                    .unwrap_or(options.auth_backoff.max());
                (format!("{what}: {message}"), Some(delay), false)
            }
            SessionEnd::Lost {
                registered,
                reason,
                hub_gone,
            } => {
                if registered {
                    schedule.reset();
                    auth_schedule.reset();
                }
                (reason, None, hub_gone)
            }
        };
        if matches!(*phase.borrow_and_update(), Phase::Leaving(_)) {
            if link.outbox.is_settled() {
                return Ok(());
            }
            if hub_gone {
                // Nothing listens where the hub was: the callers of the
                // results waiting here went with it, and a hub that starts
                // later cannot take them. Nobody to wait for.
                let undelivered = link.outbox.undelivered();
                tracing::warn!(
                    hub = %options.hub_url,
                    undelivered,
                    "leaving while no hub listens: the results of {undelivered} call(s) are dropped (their callers went with the hub)"
                );
                return Ok(());
            }
            let at = *give_up_at.get_or_insert_with(|| Instant::now() + LEAVE_WINDOW);
            if Instant::now() >= at {
                tracing::error!(
                    undelivered = link.outbox.undelivered(),
                    "leaving without reaching the hub: results not delivered"
                );
                return Ok(());
            }
        }
        let refused = delay.is_some();
        let delay = delay.unwrap_or_else(|| schedule.next_delay().unwrap_or(options.backoff.max()));
        // Whole milliseconds read better in the log.
        let delay = Duration::from_millis(delay.as_millis().try_into().unwrap_or(u64::MAX));
        if refused {
            tracing::error!(hub = %options.hub_url, "{reason}; trying again in {delay:?}");
        } else {
            tracing::warn!(hub = %options.hub_url, "{reason}; reconnecting in {delay:?}");
        }
        // When leaving, the last attempt starts no later than the give-up time.
        let mut wake = Instant::now() + delay;
        if let Some(at) = give_up_at {
            wake = wake.min(at);
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => break,
                changed = phase.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(wake).await;
                        break;
                    }
                    if matches!(*phase.borrow_and_update(), Phase::Leaving(_)) {
                        if link.outbox.is_settled() {
                            return Ok(());
                        }
                        let at = *give_up_at.get_or_insert_with(|| Instant::now() + LEAVE_WINDOW);
                        wake = wake.min(at);
                    }
                }
            }
        }
    }
}

/// Waits for `shutdown` or a Drain, then closes: no new work, running calls
/// get `grace`, then are cancelled, then abandoned; finally the phase
/// becomes `Leaving`.
async fn close_when_asked(
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut drains: mpsc::UnboundedReceiver<DrainRequest>,
    dispatch: Arc<Dispatch>,
    syncs: Arc<SyncLink>,
    phase: watch::Sender<Phase>,
    default_grace: Duration,
) -> ServeOutcome {
    let (outcome, grace, goodbye) = tokio::select! {
        () = shutdown => (ServeOutcome::Shutdown, default_grace, "shutting down".to_owned()),
        Some(drain) = drains.recv() => {
            tracing::info!(reason = %drain.reason, "the hub asked this instance to drain");
            let reason = if drain.reason.is_empty() { "drained".to_owned() } else { format!("drained: {}", drain.reason) };
            (ServeOutcome::Drained, drain.grace.unwrap_or(default_grace), reason)
        }
    };
    phase.send_replace(Phase::Closing);
    dispatch.close();
    // Sync runs are cancelled at once (their last durable checkpoint is
    // where the next run resumes); they end within the cancel grace and
    // tell the hub how they ended before the instance says Goodbye.
    let runs = syncs.running();
    if runs > 0 {
        tracing::info!(runs, "cancelling the sync runs");
        syncs.cancel_all();
    }
    let running = dispatch.in_flight();
    if running > 0 {
        tracing::info!(running, ?grace, "waiting for running invocations");
    }
    if tokio::time::timeout(grace, dispatch.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            running = dispatch.in_flight(),
            ?grace,
            "invocations still running after the grace period: cancelling them"
        );
        dispatch.cancel_all();
        if tokio::time::timeout(CANCEL_WAIT, dispatch.wait_idle())
            .await
            .is_err()
        {
            dispatch.abandon_all();
        }
    }
    if tokio::time::timeout(syncs.cancel_grace() + CANCEL_WAIT, syncs.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!(
            runs = syncs.running(),
            "sync runs still telling the hub how they ended: leaving without them"
        );
    }
    phase.send_replace(Phase::Leaving(goodbye));
    outcome
}

/// Aborts a task when dropped (when `run` returns or is dropped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
