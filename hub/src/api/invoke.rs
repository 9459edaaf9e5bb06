//! One call's life: hand an `Invoke` to an instance, wait for its `Result`
//! until the deadline, cancel it if the caller gives up, and retry it once
//! elsewhere when that is safe: a `read` whose instance was lost, or any
//! call (a `write` too) that the connector refused without starting it (an
//! error Result whose details say `{"started": false}`: shutting down,
//! draining, at capacity). A retry needs a route that allows it (unrouted or
//! by display name; never an explicit instance nor a broadcast member) and
//! another ready instance; without one, the refusal reaches the caller as it
//! is. A lost read may run again on any ready instance, the restarted
//! instance of the same id included, and when none is ready it waits for
//! one (at most [`RESTART_WAIT`], never past its deadline). A call is
//! retried at most once, whatever the reason.
//!
//! A deadline has one outcome: gRPC `DEADLINE_EXCEEDED`, whether the hub's
//! timer fires first or the connector's `deadline_exceeded` result for the
//! same deadline arrives first (see [`is_callers_deadline`]).
//!
//! Every call logs one line at info when it ends ([`CallLog`]); every
//! attempt of it one at debug: request id, connector, instance, action,
//! duration and outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use spoke_proto::prost::bytes::Bytes;
use spoke_proto::v1::{self, HubFrame, InstanceResult, Invoke, InvokeKind, hub_frame};
use spoke_runtime::Mode;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::api::call_log::{CallLog, Millis};
use crate::deadline;
use crate::routing::registry::{InstanceKey, InstanceStatus, Registry};
use crate::routing::route::{self, Selection, Target};
use crate::sessions::pending::{Answer, Caller, ItemSender, TakeBack};
use crate::sessions::state::HubState;

/// How often an Invoke that never reached its instance (the stream closed
/// under it) is routed again before the call fails.
const MAX_UNDELIVERED: u32 = 3;

/// How long, at most, a read whose instance was lost waits for an instance
/// to become ready to run it again (a restart of the same instance takes a
/// moment); never past the caller's deadline.
const RESTART_WAIT: Duration = Duration::from_secs(5);

/// How close to the caller's deadline a connector's `deadline_exceeded`
/// result may arrive and still be the caller's deadline passing (the
/// connector's clock starts when the Invoke reaches it, and `timeout_ms` is
/// whole milliseconds).
const DEADLINE_SLACK: Duration = Duration::from_millis(5);

/// Whether `result` is the connector reporting the caller's own deadline:
/// its error is `deadline_exceeded` and that deadline has (nearly) passed.
/// Such a result and the hub's own timer are the same event racing; the
/// caller always gets the hub's `DEADLINE_EXCEEDED` for it. An action's
/// own, shorter `timeout` stays the action's error result.
fn is_callers_deadline(result: &v1::Result, deadline: Option<Instant>) -> bool {
    let Some(v1::result::Outcome::Error(error)) = &result.outcome else {
        return false;
    };
    error.code == "deadline_exceeded"
        && deadline.is_some_and(|at| Instant::now() + DEADLINE_SLACK >= at)
}

/// A checked call, ready to route.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The caller's tenant, where the connector is looked up.
    pub(crate) tenant: String,
    /// The connector type.
    pub(crate) connector: String,
    /// The action (or search operator).
    pub(crate) action: String,
    /// Action or search operator.
    pub(crate) kind: InvokeKind,
    /// The input (shared by every attempt and by the pending entry that
    /// keeps the Invoke for a resend).
    pub(crate) payload: Bytes,
    /// The input's encoding.
    pub(crate) encoding: i32,
    /// The output encodings the caller accepts, as it sent them.
    pub(crate) accept: Vec<i32>,
    /// Caller metadata passed to the connector.
    pub(crate) metadata: HashMap<String, String>,
    /// Read or write (search operators read).
    pub(crate) mode: Mode,
    /// When the hub gives up; `None` waits for as long as the caller does.
    pub(crate) deadline: Option<Instant>,
    /// The route.
    pub(crate) target: Target,
    /// The call's request id; retries and broadcast members derive theirs
    /// from it (`<id>.<n>`).
    pub(crate) request_id: String,
}

impl Call {
    /// The instance(s) its route selects now ([`route::select`]).
    fn select(&self, registry: &mut Registry, exclude: Option<&str>) -> Result<Selection, Status> {
        route::select(
            registry,
            &self.tenant,
            &self.connector,
            &self.target,
            exclude,
        )
    }

    /// [`route::select_or_await`] for its route.
    fn select_or_await(&self, registry: &mut Registry) -> Result<Option<Selection>, Status> {
        route::select_or_await(registry, &self.tenant, &self.connector, &self.target, None)
    }

    fn what(&self) -> &'static str {
        match self.kind {
            InvokeKind::Action => "action",
            InvokeKind::SearchOperator => "search operator",
        }
    }
}

/// Why one attempt did not produce a result.
enum Failure {
    /// The Invoke never reached the instance: safe to send elsewhere.
    Undelivered,
    /// The instance's session ended before it answered.
    Lost(String),
    /// The deadline passed.
    Deadline,
    /// The hub gave up on the call.
    Failed(Status),
}

/// Whether a result is an error the connector answered without starting
/// the call: its details are a JSON object with `"started": false`.
fn never_started(result: &InstanceResult) -> bool {
    let Some(v1::instance_result::Outcome::Error(error)) = &result.outcome else {
        return false;
    };
    serde_json::from_str::<Value>(&error.details_json)
        .is_ok_and(|details| details.get("started") == Some(&Value::Bool(false)))
}

/// Runs a call to one instance, sending events and chunks to `stream` if
/// the caller streams. When `retry` (the route allows it), the call is
/// retried once on another ready instance if it was refused without
/// starting, or if it is a `read` and its instance was lost.
pub(crate) async fn run_one(
    state: &Arc<HubState>,
    call: &Call,
    request_id: &str,
    first: InstanceKey,
    retry: bool,
    stream: Option<&ItemSender>,
    log: &CallLog,
) -> Result<InstanceResult, Status> {
    let mut key = first;
    let mut retried = false;
    let mut undelivered = 0;
    let mut attempts = 0u32;
    loop {
        let id = match attempts {
            0 => request_id.to_owned(),
            n => format!("{request_id}.{n}"),
        };
        attempts += 1;
        log.tried(&key);
        let failure = match attempt(state, call, &id, &key, stream).await {
            Ok(result) if retry && !retried && never_started(&result) => {
                let refused = key.clone();
                match reselect(state, call, &refused, Some(&refused.id)) {
                    Ok(next) => {
                        retried = true;
                        key = next;
                        tracing::info!(
                            "{refused} refused {} `{}` without starting it; retrying once on {key}",
                            call.what(),
                            call.action
                        );
                        continue;
                    }
                    // No other instance: the refusal is the answer.
                    Err(_) => return Ok(result),
                }
            }
            Ok(result) => return Ok(result),
            Err(failure) => failure,
        };
        match failure {
            Failure::Deadline => {
                return Err(Status::deadline_exceeded(format!(
                    "{key} did not answer {} `{}` before the caller's deadline",
                    call.what(),
                    call.action
                )));
            }
            Failure::Failed(status) => return Err(status),
            Failure::Undelivered => {
                undelivered += 1;
                if undelivered > MAX_UNDELIVERED {
                    return Err(Status::unavailable(format!(
                        "could not hand {} `{}` to an instance of connector `{}`: their streams kept closing",
                        call.what(),
                        call.action,
                        call.connector
                    )));
                }
                key = reselect_when_ready(state, call, &key).await?;
            }
            Failure::Lost(reason) => {
                if call.mode == Mode::Write {
                    return Err(Status::unavailable(format!(
                        "{reason} while running the write action `{}`; it may or may not have run",
                        call.action
                    )));
                }
                if !retry || retried {
                    return Err(Status::unavailable(format!(
                        "{reason} while running the read {} `{}`{}; it may or may not have run",
                        call.what(),
                        call.action,
                        if retried { " (the retry)" } else { "" }
                    )));
                }
                retried = true;
                let lost = key.clone();
                key = reselect_after_loss(state, call, &lost)
                    .await
                    .map_err(|status| {
                        if status.code() == Code::DeadlineExceeded {
                            return status;
                        }
                        Status::unavailable(format!(
                            "{reason} while running the read {} `{}`; it may or may not have run, \
                         and no other instance could take the retry: {}",
                            call.what(),
                            call.action,
                            status.message()
                        ))
                    })?;
                tracing::warn!(
                    "{lost} was lost while running read {} `{}`; retrying once on {key}",
                    call.what(),
                    call.action
                );
            }
        }
    }
}

/// The instance to retry a lost read on: any ready one, the lost id
/// included (ready again, it is a new session: the instance restarted). If
/// none is ready, waits for one to be admitted or approved, until the
/// call's deadline and at most [`RESTART_WAIT`].
async fn reselect_after_loss(
    state: &HubState,
    call: &Call,
    lost: &InstanceKey,
) -> Result<InstanceKey, Status> {
    let route = |registry: &mut Registry| match call.select(registry, None) {
        // The connector has no ready instance. (A display name no
        // instance has any more is `NOT_FOUND`, answered at once.)
        Err(status) if status.code() == Code::Unavailable => Ok(None),
        found => found.map(Some),
    };
    let late = || {
        Status::deadline_exceeded(format!(
            "{lost} was lost while running {} `{}`, and no instance was ready to run it again \
             before the caller's deadline",
            call.what(),
            call.action
        ))
    };
    let selection = route_when_ready(state, call, RESTART_WAIT, route, late).await?;
    one_of(selection, lost)
}

/// Routes a call none of whose instances was ready while one was
/// disconnected inside its resume window ([`route::select_or_await`]):
/// waits for an instance to become ready (that one resuming, most likely,
/// or another attaching) and routes the call to it. Waits until the
/// call's deadline and at most the resume window; when the session expires
/// first, the call fails `UNAVAILABLE` at once.
pub(crate) async fn select_when_ready(state: &HubState, call: &Call) -> Result<Selection, Status> {
    let route = |registry: &mut Registry| call.select_or_await(registry);
    let late = || {
        Status::deadline_exceeded(format!(
            "no instance of connector `{}` resumed before the caller's deadline",
            call.connector
        ))
    };
    route_when_ready(state, call, state.config.resume_window, route, late).await
}

/// Asks `route` for the call's instance(s) now, and again each time an
/// instance may have become ready (or a session expired), while it answers
/// `Ok(None)`; gives up at the call's deadline with `late()`, or after
/// `limit` with the route's answer then.
async fn route_when_ready(
    state: &HubState,
    call: &Call,
    limit: std::time::Duration,
    route: impl Fn(&mut Registry) -> Result<Option<Selection>, Status>,
    late: impl FnOnce() -> Status,
) -> Result<Selection, Status> {
    let give_up = Instant::now() + limit;
    let give_up = call.deadline.map_or(give_up, |at| at.min(give_up));
    loop {
        let changed = state.ready_changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if let Some(selection) = route(&mut state.lock().registry)? {
            return Ok(selection);
        }
        if tokio::time::timeout_at(give_up, changed).await.is_err() {
            if call.deadline.is_some_and(|at| at <= Instant::now()) {
                return Err(late());
            }
            return call.select(&mut state.lock().registry, None);
        }
    }
}

/// [`reselect`] for an Invoke that never reached `previous` (its stream
/// closed under it): when no instance is ready but one is disconnected
/// inside its resume window, waits for it as [`select_when_ready`] does.
async fn reselect_when_ready(
    state: &HubState,
    call: &Call,
    previous: &InstanceKey,
) -> Result<InstanceKey, Status> {
    match reselect(state, call, previous, None) {
        Err(status) if status.code() == Code::Unavailable => {
            one_of(select_when_ready(state, call).await?, previous)
        }
        found => found,
    }
}

/// Picks another instance along the call's route.
fn reselect(
    state: &HubState,
    call: &Call,
    previous: &InstanceKey,
    exclude: Option<&str>,
) -> Result<InstanceKey, Status> {
    let selection = call.select(&mut state.lock().registry, exclude)?;
    one_of(selection, previous)
}

/// The instance a retry goes to: the one selected, or for a broadcast
/// member, the same instance only.
fn one_of(selection: Selection, previous: &InstanceKey) -> Result<InstanceKey, Status> {
    match selection {
        Selection::One(key) => Ok(key),
        Selection::Broadcast(keys) => keys
            .into_iter()
            .find(|k| k == previous)
            .ok_or_else(|| Status::unavailable(format!("{previous} is no longer ready"))),
    }
}

/// Runs a broadcast: one call per instance at once, each result (or error,
/// in-band) tagged with its instance, sorted by instance id.
pub(crate) async fn run_broadcast(
    state: &Arc<HubState>,
    call: &Call,
    keys: Vec<InstanceKey>,
    stream: Option<&ItemSender>,
    log: &CallLog,
) -> Vec<InstanceResult> {
    let calls = keys.into_iter().enumerate().map(|(n, key)| async move {
        let instance_id = key.id.clone();
        let request_id = format!("{}.{}", call.request_id, n + 1);
        run_one(state, call, &request_id, key, false, stream, log)
            .await
            .unwrap_or_else(|status| in_band(instance_id, &status))
    });
    let mut results = join_all(calls).await;
    results.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    results
}

/// A hub-side failure of one broadcast member, as an in-band error.
fn in_band(instance_id: String, status: &Status) -> InstanceResult {
    let code = match status.code() {
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::Unavailable | Code::ResourceExhausted => "unavailable",
        Code::Cancelled => "cancelled",
        Code::NotFound => "not_found",
        _ => "internal",
    };
    InstanceResult {
        instance_id,
        outcome: Some(v1::instance_result::Outcome::Error(v1::Error {
            code: code.to_owned(),
            message: status.message().to_owned(),
            details_json: String::new(),
        })),
        encoding: v1::Encoding::Json.into(),
        duration_us: 0,
    }
}

/// One attempt on one instance.
async fn attempt(
    state: &Arc<HubState>,
    call: &Call,
    request_id: &str,
    key: &InstanceKey,
    stream: Option<&ItemSender>,
) -> Result<InstanceResult, Failure> {
    let request_id = request_id.to_owned();
    let mut log = AttemptLog {
        state,
        request_id: request_id.clone(),
        key,
        action: &call.action,
        started: Instant::now(),
        outcome: None,
        cancel: None,
    };
    let slots = {
        let tables = state.lock();
        match tables.registry.instance(key) {
            Some(i) if i.status == InstanceStatus::Ready => i.slots.clone(),
            _ => {
                log.finish("undelivered", None);
                return Err(Failure::Undelivered);
            }
        }
    };
    // Wait for one of the instance's invocation slots.
    let slot = match slots {
        None => None,
        Some(slots) => match deadline::until(call.deadline, slots.acquire_owned()).await {
            None => {
                log.finish("deadline_exceeded", None);
                return Err(Failure::Deadline);
            }
            Some(Err(_closed)) => {
                log.finish("undelivered", None);
                return Err(Failure::Undelivered);
            }
            Some(Ok(slot)) => Some(slot),
        },
    };

    let (answer_tx, answer_rx) = oneshot::channel();
    let invoke = Invoke {
        request_id: request_id.clone(),
        action: call.action.clone(),
        payload: call.payload.clone(),
        encoding: call.encoding,
        timeout_ms: deadline::timeout_ms(call.deadline),
        metadata: call.metadata.clone(),
        kind: call.kind.into(),
        accept: call.accept.clone(),
    };
    let (tx, generation) = {
        let mut tables = state.lock();
        let link = match tables.registry.instance(key) {
            Some(i) if i.status == InstanceStatus::Ready => {
                i.link.as_ref().map(|l| (l.tx.clone(), i.generation))
            }
            _ => None,
        };
        let Some(link) = link else {
            log.finish("undelivered", None);
            return Err(Failure::Undelivered);
        };
        let caller = Caller::new(answer_tx, stream.cloned());
        // The entry keeps the Invoke, to send it again if the instance
        // resumes its session on another stream.
        tables
            .pending
            .insert(invoke.clone(), call.deadline, key.clone(), caller, slot);
        link
    };
    // From here on, a caller that goes away (dropping this future) cancels.
    log.cancel = Some("the caller went away");

    let frame = HubFrame {
        frame: Some(hub_frame::Frame::Invoke(invoke)),
    };
    match deadline::until(call.deadline, tx.send(frame)).await {
        None => {
            log.finish("deadline_exceeded", Some("deadline exceeded"));
            return Err(Failure::Deadline);
        }
        Some(Err(_closed)) => {
            // The stream closed under the Invoke. If the instance resumed
            // meanwhile, the new stream was sent the Invoke: wait for it.
            let took_back = state.lock().pending.take_back(&request_id);
            if took_back == TakeBack::Removed {
                // The stream's task may not have said so yet; until it is
                // marked lost, the instance would look ready to the retry,
                // which would meet the same closed stream.
                state.stream_lost(key, generation, "its stream closed under a call");
                log.finish("undelivered", None);
                return Err(Failure::Undelivered);
            }
        }
        Some(Ok(())) => {}
    }
    drop(tx);

    match deadline::until(call.deadline, answer_rx).await {
        None => {
            log.finish("deadline_exceeded", Some("deadline exceeded"));
            Err(Failure::Deadline)
        }
        Some(Err(_dropped)) => {
            // The entry went without an answer: only a lost session does that.
            log.finish("instance_lost", None);
            Err(Failure::Lost(format!("{key} went away")))
        }
        Some(Ok(Answer::Result(result))) if is_callers_deadline(&result, call.deadline) => {
            // Answered: nothing to cancel.
            log.finish("deadline_exceeded", None);
            Err(Failure::Deadline)
        }
        Some(Ok(Answer::Result(result))) => {
            let outcome = match &result.outcome {
                Some(v1::result::Outcome::Error(e)) => format!("error:{}", e.code),
                _ => "ok".to_owned(),
            };
            log.finish(&outcome, None);
            Ok(instance_result(key, result))
        }
        Some(Ok(Answer::Lost(reason))) => {
            log.finish("instance_lost", None);
            Err(Failure::Lost(reason))
        }
        Some(Ok(Answer::Failed(status))) => {
            log.finish(&format!("failed:{:?}", status.code()), None);
            Err(Failure::Failed(status))
        }
    }
}

fn instance_result(key: &InstanceKey, result: v1::Result) -> InstanceResult {
    use v1::instance_result::Outcome;
    InstanceResult {
        instance_id: key.id.clone(),
        outcome: Some(match result.outcome {
            Some(v1::result::Outcome::Error(e)) => Outcome::Error(e),
            Some(v1::result::Outcome::Payload(p)) => Outcome::Payload(p),
            None => Outcome::Payload(Bytes::new()),
        }),
        encoding: result.encoding,
        duration_us: result.duration_us,
    }
}

/// Logs an attempt once (at debug), when it ends, and cancels it at the connector if
/// the caller gave up (including by going away, which drops the attempt).
struct AttemptLog<'a> {
    state: &'a HubState,
    request_id: String,
    key: &'a InstanceKey,
    action: &'a str,
    started: Instant,
    outcome: Option<String>,
    cancel: Option<&'static str>,
}

impl AttemptLog<'_> {
    fn finish(&mut self, outcome: &str, cancel: Option<&'static str>) {
        self.outcome = Some(outcome.to_owned());
        self.cancel = cancel;
    }
}

impl Drop for AttemptLog<'_> {
    fn drop(&mut self) {
        if let Some(reason) = self.cancel {
            self.state.cancel(&self.request_id, reason);
        }
        let elapsed: Duration = self.started.elapsed();
        let outcome = self.outcome.as_deref().unwrap_or("caller_gone");
        tracing::debug!(
            request_id = %self.request_id,
            connector = %self.key.connector,
            instance = %self.key.id,
            action = %self.action,
            duration_ms = %Millis(elapsed),
            outcome,
            "attempt"
        );
    }
}
