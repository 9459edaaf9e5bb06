//! The hub's shared state: the registry and the pending calls behind one
//! lock (so an instance leaving and its calls failing happen together),
//! request ids, and the shutdown signal; and a session's life across them
//! (admitted, approved or denied, lost and resumed or expired, ended).
//!
//! The lock is a plain mutex held only for map updates, never across an
//! `await`; frames to connectors are sent outside it.
//!
//! With auth, the state also holds the per-address rate limit on Attach
//! streams, and runs the expiry of pending instances: at start, then every
//! tenth of `--pending-expiry` (at least every 100 ms, at most every
//! minute), the store forgets the pending instances that are not attached
//! and were first seen longer than `--pending-expiry` ago.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use spoke_proto::v1::{Cancel, HubFrame, Registered, RegistrationStatus, hub_frame};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::ids::{RequestIds, unix_ms};
use crate::routing::registry::{Admitted, InstanceKey, Registration, Registry};
use crate::sessions::pending::Pending;
use crate::sessions::rate::RegisterLimiter;
use crate::syncs::Syncs;
use crate::trust::access::Access;
use crate::trust::approval::Trust;

/// The maps behind the hub's lock.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    /// Connector types and instances.
    pub(crate) registry: Registry,
    /// In-flight calls.
    pub(crate) pending: Pending,
}

/// Everything the hub's services share.
#[derive(Debug)]
pub(crate) struct HubState {
    /// The settings.
    pub(crate) config: HubConfig,
    /// How attaching instances are checked; `None` without auth.
    pub(crate) trust: Option<Arc<Trust>>,
    /// How clients are checked.
    pub(crate) access: Access,
    /// With auth: the rate limit on Attach streams per peer address;
    /// `None` without auth or with `--register-rate 0`.
    pub(crate) register_limiter: Option<RegisterLimiter>,
    ids: RequestIds,
    tables: Mutex<Tables>,
    shutdown: CancellationToken,
    /// Notified when an instance is admitted ready or approved.
    ready_changed: tokio::sync::Notify,
    /// Without auth: the nonces of the assertions that proved an
    /// instance's key (a restart proving it takes over a live session).
    pub(crate) open_replays: crate::trust::assertion::ReplayCache,
    /// The sync runs going on, and the store of their checkpoints.
    pub(crate) syncs: Syncs,
    /// With `--nats`: the connection, once made.
    nats: std::sync::OnceLock<Arc<crate::routing::nats_link::NatsLink>>,
}

impl HubState {
    /// A hub with no connectors that checks instances with `trust` (none:
    /// every instance is approved) and clients with `access`. With `trust`,
    /// Attach streams are rate-limited per peer address, and (inside a
    /// tokio runtime) the expiry of pending instances starts.
    pub(crate) fn with_auth(
        config: HubConfig,
        trust: Option<Arc<Trust>>,
        access: Access,
        syncs: Syncs,
    ) -> Arc<Self> {
        let register_limiter = trust
            .as_ref()
            .and_then(|_| RegisterLimiter::new(&config.registrations));
        let state = Arc::new(HubState {
            config,
            trust,
            access,
            register_limiter,
            ids: RequestIds::new(),
            tables: Mutex::new(Tables::default()),
            shutdown: CancellationToken::new(),
            ready_changed: tokio::sync::Notify::new(),
            open_replays: crate::trust::assertion::ReplayCache::default(),
            syncs,
            nats: std::sync::OnceLock::new(),
        });
        start_pending_expiry(&state);
        state
    }

    /// Whether the instance has a live stream now.
    pub(crate) fn is_attached(&self, key: &InstanceKey) -> bool {
        self.lock()
            .registry
            .instance(key)
            .is_some_and(|i| i.link.is_some())
    }

    /// Forgets the pending instances first seen longer than
    /// `--pending-expiry` ago that are not attached (an attached one
    /// stays listed, to be approved or rejected, and is forgotten once it
    /// is gone). Logs what it forgot.
    pub(crate) async fn expire_pending(self: &Arc<Self>) {
        let Some(trust) = &self.trust else {
            return;
        };
        let store = Arc::clone(&trust.store);
        let expiry = self.config.registrations.pending_expiry;
        let before =
            unix_ms().saturating_sub(u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX));
        let state = Arc::clone(self);
        let expired = tokio::task::spawn_blocking(move || {
            // Asked inside the store's transaction, so an instance that
            // attached since the last sweep is seen; one admitted between
            // its own store write and its admission (microseconds) could
            // still lose its record, and gets a new one when it reconnects.
            store.expire_pending(before, &|tenant, connector, id| {
                state.is_attached(&InstanceKey {
                    tenant: tenant.to_owned(),
                    connector: connector.to_owned(),
                    id: id.to_owned(),
                })
            })
        })
        .await;
        match expired {
            Ok(Ok(expired)) if expired.is_empty() => {}
            Ok(Ok(expired)) => {
                const NAMED: usize = 10;
                let mut names: Vec<String> = expired
                    .iter()
                    .take(NAMED)
                    .map(|r| format!("{}/{}/{}", r.tenant, r.connector, r.instance_id))
                    .collect();
                if expired.len() > NAMED {
                    names.push(format!("and {} more", expired.len() - NAMED));
                }
                tracing::info!(
                    "forgot {} pending instance(s) first seen more than {} ago and not attached (--pending-expiry): {}",
                    expired.len(),
                    spoke_runtime::duration::format(expiry),
                    names.join(", ")
                );
            }
            Ok(Err(err)) => tracing::warn!("could not expire pending instances: {err}"),
            Err(err) => tracing::warn!("the expiry of pending instances failed: {err}"),
        }
    }

    /// Locks the maps. A panic elsewhere while holding the lock cannot leave
    /// them half-updated in a way that matters more than refusing all
    /// service, so a poisoned lock is simply taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh request id.
    pub(crate) fn next_request_id(&self) -> String {
        self.ids.next()
    }

    /// The connection to NATS (`--nats`), once made.
    pub(crate) fn nats(&self) -> Option<&Arc<crate::routing::nats_link::NatsLink>> {
        self.nats.get()
    }

    /// Keeps the connection to NATS; a hub makes one.
    pub(crate) fn set_nats(&self, link: Arc<crate::routing::nats_link::NatsLink>) {
        let _ = self.nats.set(link);
    }

    /// Cancelled when the hub starts shutting down.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Whether the hub is shutting down (and takes no new calls or connectors).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Starts shutting down: streams drain their connectors, new calls are refused.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
        self.syncs.runs.cancel_all();
    }

    /// Admits a registration (see [`Registry::admit`]) and queues the
    /// `Registered` answer on its fresh stream before any call can be routed
    /// there. When it ends an older session of the same instance, that
    /// session's calls fail. When it resumes a session, `Admitted::resend`
    /// holds the Invokes of the calls still pending on it, which the stream
    /// sends before anything else.
    pub(crate) fn admit(
        &self,
        reg: Registration,
        tx: mpsc::Sender<HubFrame>,
        approved: bool,
        proven_key: Option<[u8; 32]>,
    ) -> Result<Admitted, String> {
        let mut tables = self.lock();
        let mut admitted = tables
            .registry
            .admit(reg, tx.clone(), approved, proven_key)?;
        let interval = self.config.heartbeat_interval;
        let registered = Registered {
            session_id: admitted.session_id.clone(),
            session_token: admitted.token.clone(),
            heartbeat_interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
            status: if approved {
                RegistrationStatus::Active.into()
            } else {
                RegistrationStatus::PendingApproval.into()
            },
            resumed: admitted.resumed,
        };
        // The stream is new, so its queue has room.
        let _ = tx.try_send(HubFrame {
            frame: Some(hub_frame::Frame::Registered(registered)),
        });
        if admitted.resumed {
            // Under the same lock as the switch to the new stream: a call
            // routed from now on uses the new stream; every earlier one is
            // in this list.
            admitted.resend = tables.pending.resend(&admitted.key);
        }
        if admitted.ended_previous {
            let reason = format!(
                "{} registered again without its session token, which ended the session",
                admitted.key
            );
            tables.pending.fail_instance(&admitted.key, &reason);
        }
        drop(tables);
        if approved {
            self.ready_changed.notify_waiters();
        }
        Ok(admitted)
    }

    /// Completes when an instance may have become ready (one was admitted
    /// or approved) or a disconnected one's session expired: for a call
    /// whose instance was lost, to retry on the next one (a restart of the
    /// same instance), and for a call waiting for an instance to resume.
    /// Create the future, then look for a ready instance, then await it:
    /// an instance admitted in between still wakes it.
    pub(crate) fn ready_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready_changed.notified()
    }

    /// An administrator approved the instance: if it is attached and
    /// pending, it gets a second `Registered` (same session, ACTIVE) and
    /// calls are routed to it from now on. Whether it was live.
    pub(crate) fn approve_live(&self, key: &InstanceKey) -> bool {
        let approved = self.lock().registry.approve(key);
        let Some((tx, session_id, session_token)) = approved else {
            return false;
        };
        let interval = self.config.heartbeat_interval;
        send_soon(
            tx,
            HubFrame {
                frame: Some(hub_frame::Frame::Registered(Registered {
                    session_id,
                    session_token,
                    heartbeat_interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
                    status: RegistrationStatus::Active.into(),
                    resumed: false,
                })),
            },
        );
        tracing::info!("{key} was approved; calls are routed to it from now on");
        self.ready_changed.notify_waiters();
        true
    }

    /// An administrator rejected or revoked the instance: its session ends
    /// now (its live stream with `PERMISSION_DENIED`, its token dies, its
    /// calls fail). Whether it had a session.
    pub(crate) fn deny_live(&self, key: &InstanceKey, what: &str) -> bool {
        let mut tables = self.lock();
        let Some(instance) = tables.registry.deny(key) else {
            return false;
        };
        let waiting = tables
            .pending
            .fail_instance(key, &format!("{key} was {what} by an administrator"));
        drop(tables);
        tracing::warn!(
            "{key}: session {} ended: {what} by an administrator; {waiting} waiting call(s) lost it",
            instance.session_id
        );
        true
    }

    /// Stream `generation` of the instance ended without a Goodbye: keep the
    /// session for the resume window.
    pub(crate) fn stream_lost(self: &Arc<Self>, key: &InstanceKey, generation: u64, why: &str) {
        let disconnected = self.lock().registry.disconnect(key, generation);
        if disconnected {
            tracing::info!(
                "{key}: stream lost ({why}); keeping its session for {:?} to resume",
                self.config.resume_window
            );
            expire_after_window(self, key.clone(), generation);
        }
    }

    /// The instance leaves now (Goodbye, shutdown): its session ends and its
    /// calls fail.
    pub(crate) fn end_session(&self, key: &InstanceKey, generation: u64, why: &str) {
        let mut tables = self.lock();
        if let Some(instance) = tables.registry.end(key, generation) {
            let waiting = tables
                .pending
                .fail_instance(key, &format!("{key} left ({why})"));
            drop(tables);
            self.syncs
                .runs
                .instance_gone(key, &format!("its session ended: {why}"));
            tracing::info!(
                "{key}: session {} ended ({why}); {waiting} waiting call(s) lost it",
                instance.session_id
            );
        }
    }

    /// The resume window of stream `generation` passed: end the session
    /// unless the instance resumed.
    pub(crate) fn expire(&self, key: &InstanceKey, generation: u64) {
        let mut tables = self.lock();
        if let Some(instance) = tables.registry.expire(key, generation) {
            let reason = format!(
                "the stream of {key} ended and it did not resume within {:?}",
                self.config.resume_window
            );
            let waiting = tables.pending.fail_instance(key, &reason);
            drop(tables);
            self.syncs.runs.instance_gone(
                key,
                &format!(
                    "it did not resume within the resume window of {:?}",
                    self.config.resume_window
                ),
            );
            // Calls waiting for it to resume stop waiting.
            self.ready_changed.notify_waiters();
            tracing::info!(
                "{key}: session {} expired; {waiting} waiting call(s) lost it",
                instance.session_id
            );
        }
    }

    /// The caller of `request_id` gave up: abandon the call and, if the
    /// connector still runs it, send it `Cancel`.
    pub(crate) fn cancel(&self, request_id: &str, reason: &str) {
        let tx = {
            let mut tables = self.lock();
            let Some(key) = tables.pending.abandon(request_id) else {
                return;
            };
            tables.registry.link_tx(&key)
        };
        if let Some(tx) = tx {
            let frame = HubFrame {
                frame: Some(hub_frame::Frame::Cancel(Cancel {
                    request_id: request_id.to_owned(),
                    reason: reason.to_owned(),
                })),
            };
            send_soon(tx, frame);
        }
    }
}

/// The shortest interval between two expiries of pending instances.
const MIN_EXPIRY_SWEEP: Duration = Duration::from_millis(100);
/// The longest interval between two expiries of pending instances.
const MAX_EXPIRY_SWEEP: Duration = Duration::from_secs(60);

/// With auth, inside a tokio runtime: expires pending instances now, then
/// every tenth of `--pending-expiry` (between [`MIN_EXPIRY_SWEEP`] and
/// [`MAX_EXPIRY_SWEEP`]), until the hub shuts down or its state is gone.
fn start_pending_expiry(state: &Arc<HubState>) {
    if state.trust.is_none() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every =
        (state.config.registrations.pending_expiry / 10).clamp(MIN_EXPIRY_SWEEP, MAX_EXPIRY_SWEEP);
    let weak = Arc::downgrade(state);
    let shutdown = state.shutdown.clone();
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Some(state) = weak.upgrade() else {
                return;
            };
            state.expire_pending().await;
        }
    });
}

/// After the resume window, ends the session of an instance whose stream
/// (`generation`) ended, unless it resumed in the meantime.
fn expire_after_window(state: &Arc<HubState>, key: InstanceKey, generation: u64) {
    let window = state.config.resume_window;
    let state = Arc::clone(state);
    tokio::spawn(async move {
        tokio::time::sleep(window).await;
        state.expire(&key, generation);
    });
}

/// Sends a frame without waiting: at once if the stream's queue has room,
/// otherwise from a task (so callers in `Drop` or under load never block).
pub(crate) fn send_soon(tx: mpsc::Sender<HubFrame>, frame: HubFrame) {
    match tx.try_send(frame) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(frame)) => {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = tx.send(frame).await;
                });
            }
        }
    }
}
