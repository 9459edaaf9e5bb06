//! `serve`: attach a running connector to a Spoke hub and answer its calls,
//! forever, until a signal or the hub's Drain says to stop.
//!
//! This is the default command of every connector binary (`<bin>` or
//! `<bin> serve`); it reads its settings from `SPOKE_*` variables (see
//! [`hub_env`](crate::hub_env)). Embedders and tests call [`run`] or
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
//!   loaded or made ([`AttachOptions::key`], see [`identity`](crate::identity))
//!   and its fingerprint logged; every Register carries fresh credentials
//!   signed with it, plus [`AttachOptions::registration_token`] until the
//!   hub first answers ACTIVE. `https://` hub URLs are dialed over TLS
//!   ([`AttachOptions::tls`], see [`hub_tls`](crate::hub_tls)).
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
//!   attempts; then they are given up with an error log.
//! - **Drain** from the hub does the same, with the Drain's `grace_ms` (when
//!   non-zero) as the grace period, and returns [`ServeOutcome::Drained`]:
//!   the process exits 0 and its supervisor decides whether to restart it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::attach::{Link, SessionEnd};
use crate::backoff::Backoff;
use crate::dispatch::Dispatch;
use crate::hub_tls::{HubTls, hub_endpoint};
use crate::identity::{KeyError, KeySource};
use crate::instance::Instance;
use crate::manifest::Manifest;
use crate::outbox::{DEFAULT_CAPACITY, DEFAULT_EVENT_CAPACITY, Outbox};
use crate::secret::Secret;

#[cfg(doc)]
use crate::context::Context;

/// The hub `serve` dials when `SPOKE_HUB_URL` is not set.
pub const DEFAULT_HUB_URL: &str = "http://127.0.0.1:7700";
/// Invocations run at once when `SPOKE_MAX_IN_FLIGHT` is not set.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 64;
/// How long running calls may take to finish on shutdown, when `SPOKE_SHUTDOWN_GRACE` is not set.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// On shutdown, how long `serve` keeps trying to reach the hub to deliver
/// results still in the outbox.
pub const LEAVE_WINDOW: Duration = Duration::from_secs(5);
/// After the grace period, how long cancelled calls get to answer before
/// they are answered `cancelled` by `serve` itself.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// Who this connector instance is, as shown to the hub and its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// Unique among the connector's instances, and stable across restarts
    /// (the hub resumes sessions by it and its token).
    pub id: String,
    /// A human-friendly name; clients may route by it.
    pub display_name: String,
    /// Free-form tags; clients may broadcast to every instance with a tag.
    pub tags: Vec<String>,
    /// Free-form key-value metadata.
    pub metadata: BTreeMap<String, String>,
}

/// How [`run`] attaches to a hub. [`AttachOptions::new`] gives the defaults;
/// [`AttachOptions::from_env`] reads the `SPOKE_*` variables.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The hub's gRPC address, `https://host:port` or `http://host:port`.
    pub hub_url: String,
    /// How an `https://` hub's certificate is checked.
    pub tls: HubTls,
    /// Where the instance's key comes from.
    pub key: KeySource,
    /// A one-time registration token that approves this instance; sent
    /// until the hub first registers it ACTIVE. `Debug` shows `[redacted]`.
    pub registration_token: Option<Secret<String>>,
    /// This instance's identity.
    pub instance: InstanceIdentity,
    /// The tenant the instance serves; empty for none.
    pub tenant: String,
    /// How many invocations run at once (at least 1).
    pub max_in_flight: u32,
    /// On shutdown or Drain, how long running invocations may take to finish.
    pub shutdown_grace: Duration,
    /// The delays between attach attempts.
    pub backoff: Backoff,
    /// The delays between attach attempts after the hub refused the
    /// instance's proof (UNAUTHENTICATED).
    pub auth_backoff: Backoff,
    /// How many undelivered results the outbox keeps (the oldest is dropped beyond).
    pub outbox_capacity: usize,
    /// How long to wait for the TCP connection, and then for Registered.
    pub connect_timeout: Duration,
}

impl AttachOptions {
    /// The defaults for a connector: hub [`DEFAULT_HUB_URL`] (the system's
    /// TLS roots for `https://`), the key in `~/.spoke/keys`
    /// ([`KeySource::Default`]), no registration token, instance id
    /// `<connector name>-<unix millis>` (not stable across restarts: set one
    /// so a restarted instance takes its own place again), the manifest's display name, no tags,
    /// metadata or tenant, [`DEFAULT_MAX_IN_FLIGHT`],
    /// [`DEFAULT_SHUTDOWN_GRACE`], [`default_backoff`] (200 ms to 1 s with
    /// jitter), [`default_auth_backoff`] (1 s to 30 s), an outbox of 10,000
    /// results and a 5 s connect timeout.
    pub fn new(manifest: &Manifest) -> Self {
        AttachOptions {
            hub_url: DEFAULT_HUB_URL.to_owned(),
            tls: HubTls::default(),
            key: KeySource::Default,
            registration_token: None,
            instance: InstanceIdentity {
                id: generated_instance_id(&manifest.name),
                display_name: manifest.display_name.clone(),
                tags: Vec::new(),
                metadata: BTreeMap::new(),
            },
            tenant: String::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            backoff: default_backoff(),
            auth_backoff: default_auth_backoff(),
            outbox_capacity: DEFAULT_CAPACITY,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// `<name>-<unix millis>`.
pub(crate) fn generated_instance_id(name: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{name}-{millis}")
}

/// Attach backoff: 200 ms doubling to at most 1 s, jitter 0.2 (each delay
/// is 80 to 100 % of its step), forever.
///
/// The cap is low on purpose: reconnecting costs a refused TCP connection
/// per second while the hub is away, and it bounds the time from the hub's
/// return to this connector's re-registration to about a second, however
/// long the hub was down.
///
/// ```
/// use std::time::Duration;
/// let backoff = spoke_runtime::serve::default_backoff();
/// assert_eq!(backoff.initial(), Duration::from_millis(200));
/// assert_eq!(backoff.max(), Duration::from_secs(1));
/// assert!(backoff.schedule().take(50).all(|d| d <= Duration::from_secs(1)));
/// ```
pub fn default_backoff() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_millis(200))
        .max(Duration::from_secs(1))
        .jitter(0.2)
        .build()
        .unwrap_or_default()
}

/// Attach backoff after the hub refused the instance's proof
/// (UNAUTHENTICATED): 1 s doubling to at most 30 s, jitter 0.2, forever.
/// Slow, since retrying helps only once something changes (a clock is
/// fixed, an administrator acts), and each attempt is logged as an error.
///
/// ```
/// use std::time::Duration;
/// let backoff = spoke_runtime::serve::default_auth_backoff();
/// assert_eq!(backoff.max(), Duration::from_secs(30));
/// ```
pub fn default_auth_backoff() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_secs(1))
        .max(Duration::from_secs(30))
        .jitter(0.2)
        .build()
        .unwrap_or_default()
}

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

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// Where a `serve` is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Taking work.
    Serving,
    /// Taking no new work; waiting for running calls.
    Closing,
    /// Every call is answered: flush, say Goodbye (with this reason), close.
    Leaving(String),
}

/// A Drain from the hub.
#[derive(Debug)]
pub(crate) struct DrainRequest {
    pub(crate) reason: String,
    pub(crate) grace: Option<Duration>,
}

/// Serves until SIGINT or SIGTERM (Ctrl-C only, off Unix), then shuts down
/// gracefully. A second signal during the graceful shutdown ends the
/// process at once with exit code 1.
pub async fn run(instance: Instance, options: AttachOptions) -> Result<ServeOutcome, ServeError> {
    let signals = Arc::new(Signals::install());
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
        instance,
        Arc::clone(&outbox),
        options.max_in_flight as usize,
    );
    let _dispatcher = AbortOnDrop(dispatch.spawn());
    let (phase_tx, phase) = watch::channel(Phase::Serving);
    let (drain_tx, drain_rx) = mpsc::unbounded_channel();
    let mut closer = AbortOnDrop(tokio::spawn(close_when_asked(
        shutdown,
        drain_rx,
        Arc::clone(&dispatch),
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
        let (reason, delay) = match link.session(&mut session_token).await {
            SessionEnd::Left => return Ok(()),
            SessionEnd::Refused { message } => {
                tracing::error!(
                    hub = %options.hub_url,
                    instance = %options.instance.id,
                    "the hub refused this instance (rejected or revoked by an administrator): {message}; stopping"
                );
                return Err(message);
            }
            SessionEnd::Unauthenticated { message } => {
                let delay = auth_schedule
                    .next_delay()
                    .unwrap_or(options.auth_backoff.max());
                (
                    format!("the hub did not accept this instance's proof of identity: {message}"),
                    Some(delay),
                )
            }
            SessionEnd::Lost { registered, reason } => {
                if registered {
                    schedule.reset();
                    auth_schedule.reset();
                }
                (reason, None)
            }
        };
        if matches!(*phase.borrow_and_update(), Phase::Leaving(_)) {
            if link.outbox.is_settled() {
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

/// SIGINT and SIGTERM, installed at once so that a signal arriving before
/// anyone waits is not lost (nor kills the process).
struct Signals {
    #[cfg(unix)]
    unix: Option<tokio::sync::Mutex<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Signals {
                    unix: Some(tokio::sync::Mutex::new((int, term))),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(
                        "cannot listen for SIGINT/SIGTERM ({e}); only Ctrl-C stops `serve`"
                    );
                    Signals { unix: None }
                }
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for the next signal and names it.
    async fn next(&self) -> &'static str {
        #[cfg(unix)]
        if let Some(signals) = &self.unix {
            let mut guard = signals.lock().await;
            let (int, term) = &mut *guard;
            return tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(e) => {
                tracing::warn!("cannot listen for Ctrl-C ({e})");
                std::future::pending().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_backoff_is_slow_and_capped_at_30s() {
        let b = default_auth_backoff();
        assert_eq!(b.initial(), Duration::from_secs(1));
        assert_eq!(b.max(), Duration::from_secs(30));
        assert_eq!(AttachOptions::new(&manifest()).auth_backoff, b);
        let delays: Vec<Duration> = b.schedule().take(40).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(30)),
            "{delays:?}"
        );
        assert!(delays[10..].iter().all(|d| *d >= Duration::from_secs(24)));
    }

    #[test]
    fn the_default_backoff_is_200ms_to_1s_with_jitter() {
        let b = default_backoff();
        assert_eq!(b.initial(), Duration::from_millis(200));
        assert_eq!(b.max(), Duration::from_secs(1));
        assert!((b.jitter() - 0.2).abs() < f64::EPSILON);
        assert_eq!(AttachOptions::new(&manifest()).backoff, b);
        // However many attempts failed, the next one is at most 1 s away.
        let delays: Vec<Duration> = b.schedule().take(40).collect();
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(1)),
            "{delays:?}"
        );
        assert!(
            delays[10..]
                .iter()
                .all(|d| *d >= Duration::from_millis(800)),
            "{delays:?}"
        );
    }

    fn manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "spoke": 1, "name": "echo", "version": "1.0.0", "display_name": "Echo",
            "description": "", "config": {}, "actions": [], "search_operators": [],
            "capabilities": []
        }))
        .unwrap()
    }
}
