//! Dispatch: the hub's Invokes become running invocations of the
//! [`Instance`], at most `max_in_flight` at once, and every accepted Invoke
//! gets exactly one Result in the [`Outbox`](crate::grpc::outbox).
//!
//! The session's reader hands each Invoke to [`Dispatch::accept`], which never
//! blocks: the reader must stay free to answer heartbeats and to deliver
//! Cancels while every slot is busy. An accepted Invoke waits in a queue
//! until the dispatcher task gets a slot (a semaphore permit) for it; only
//! then does it start. The connector holds at most `2 × max_in_flight`
//! unanswered calls (`max_in_flight` running, as many waiting). A hub that
//! keeps to `max_in_flight` never comes near that (a call stops counting
//! when its Result is queued); an Invoke beyond it is answered at once with
//! `unavailable`.
//!
//! The queue, the running invocations and their results live across
//! reconnects: a call read on one stream is answered on a later one.
//!
//! **Refusals say the call never started.** An Invoke answered without
//! running (the connector is shutting down or draining, is at capacity, or
//! the call was cancelled while still queued) gets an error Result whose
//! details are `{"started": false}`; the hub may then retry it on another
//! instance, even a write.
//!
//! **Each request id runs at most once per session.** An Invoke whose
//! request id this connector already knows in the current session (queued,
//! running, or answered with the Result still in the outbox or not yet
//! acknowledged by the hub) is ignored: its Result is coming anyway. A hub
//! re-sends the Invokes of its pending calls when a session resumes, since
//! those sent on the lost stream may never have arrived.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use spoke_proto::prost::bytes::Bytes;
use spoke_proto::v1::{
    ConnectorFrame, Encoding, Error as ErrorFrame, Event as EventFrame, Invoke, InvokeKind,
    Result as ResultFrame, connector_frame::Frame, result::Outcome,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connector::{ActionOutput, Input};
use crate::context::{Context, Event, EventKind};
use crate::error::{ActionError, ErrorCode};
use crate::grpc::outbox::Outbox;
use crate::grpc::wire_encoding::{accept_from_wire, from_wire, to_wire};
use crate::instance::Instance;

/// Events an invocation may emit before it waits for them to be forwarded.
const EVENT_BUFFER: usize = 32;

/// The message of the Result of an Invoke that arrives while closing.
pub(crate) const SHUTTING_DOWN: &str = "connector is shutting down";

/// An error for an Invoke answered without running: its details say
/// `{"started": false}`, so the hub knows it may retry it anywhere.
fn never_started(error: ActionError) -> ActionError {
    error.with_details(serde_json::json!({ "started": false }))
}

/// Runs invocations for every session of one `serve`; see the module docs.
#[derive(Debug)]
pub(crate) struct Dispatch {
    instance: Instance,
    outbox: Arc<Outbox>,
    max_in_flight: usize,
    slots: Arc<Semaphore>,
    state: Mutex<State>,
    /// An Invoke was queued (single consumer: the dispatcher task).
    queued: Notify,
    /// The last unanswered call was answered.
    idle: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// No new work: Invokes are answered `unavailable`.
    closing: bool,
    /// Accepted Invokes waiting for a slot, oldest first.
    queue: VecDeque<Queued>,
    /// Every accepted, unanswered call (queued or running), by request id.
    calls: HashMap<String, Call>,
    /// The current session generation (1 for the first registration).
    generation: u64,
    /// Calls of generations before this one belong to a session the hub no
    /// longer knows; their results are dropped.
    oldest_known: u64,
    /// Numbers calls, so a stale call's late result never answers a newer
    /// call that reuses its request id.
    next_seq: u64,
}

#[derive(Debug)]
struct Call {
    seq: u64,
    token: CancellationToken,
    generation: u64,
    action: String,
    /// The hub cancelled it because its deadline passed.
    past_deadline: bool,
}

/// The reason of the hub's Cancel when a call's deadline passed: the hub's
/// clock reaches the deadline a moment before this connector's does, so
/// the action sees its token cancelled first; its answer is still
/// `deadline_exceeded`.
const DEADLINE_REASON: &str = "deadline exceeded";

#[derive(Debug)]
struct Queued {
    seq: u64,
    request_id: String,
    action: String,
    target: Target,
    timeout_ms: u64,
    metadata: BTreeMap<String, String>,
    received: Instant,
    token: CancellationToken,
}

#[derive(Debug)]
enum Target {
    /// An action with its input, and the output encodings the caller accepts.
    Action {
        payload: Bytes,
        encoding: crate::encoding::Encoding,
        accept: Vec<crate::encoding::Encoding>,
    },
    /// A search operator with the value to resolve.
    Operator(String),
}

impl Dispatch {
    /// A dispatcher for `instance` sending results to `outbox`. Start it with [`Dispatch::spawn`].
    pub(crate) fn new(instance: Instance, outbox: Arc<Outbox>, max_in_flight: usize) -> Arc<Self> {
        let max_in_flight = max_in_flight.max(1);
        Arc::new(Dispatch {
            instance,
            outbox,
            max_in_flight,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            state: Mutex::new(State::default()),
            queued: Notify::new(),
            idle: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the dispatcher task: it takes a slot, then the oldest queued
    /// Invoke, and runs it in its own task holding the slot.
    pub(crate) fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.dispatch_forever().await })
    }

    async fn dispatch_forever(self: Arc<Self>) {
        loop {
            let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else {
                return;
            };
            let queued = self.next_queued().await;
            if queued.token.is_cancelled() {
                let error = never_started(ActionError::cancelled(format!(
                    "`{}` was cancelled before it started",
                    queued.action
                )));
                self.finish(&queued.request_id, queued.seq, Err(error), queued.received);
                continue;
            }
            let me = Arc::clone(&self);
            tokio::spawn(async move { me.run(queued, permit).await });
        }
    }

    async fn next_queued(&self) -> Queued {
        loop {
            let queued = self.queued.notified();
            if let Some(q) = self.lock().queue.pop_front() {
                return q;
            }
            queued.await;
        }
    }

    /// A new session was registered. When the hub did not resume the old
    /// one, calls it no longer knows are forgotten: queued ones never start,
    /// running ones finish but their results are dropped, and their results
    /// still in the outbox are purged.
    pub(crate) fn session_started(&self, resumed: bool) {
        let mut state = self.lock();
        state.generation += 1;
        if resumed || state.generation == 1 {
            return;
        }
        let current = state.generation;
        state.oldest_known = current;
        let State { queue, calls, .. } = &mut *state;
        let before = queue.len();
        queue.retain(|q| {
            let stale = calls
                .get(&q.request_id)
                .is_none_or(|c| c.generation < current);
            if stale {
                calls.remove(&q.request_id);
            }
            !stale
        });
        let dropped_queued = before - queue.len();
        let running = calls.values().filter(|c| c.generation < current).count();
        let purged = self.outbox.purge_before(current);
        let now_idle = calls.is_empty();
        drop(state);
        if dropped_queued + running + purged > 0 {
            tracing::warn!(
                dropped_queued,
                running,
                purged_results = purged,
                "the hub started a new session instead of resuming: results of the old session's calls will not be sent"
            );
        }
        if now_idle {
            self.idle.notify_waiters();
        }
    }

    /// Takes an Invoke read from the stream. Never waits. An Invoke whose
    /// request id is already known in this session (queued, running, or
    /// with its Result in the outbox, sent or not, until the hub
    /// acknowledges it) is ignored: the hub re-sends the Invokes of its
    /// pending calls after a resume, and each must run only once.
    pub(crate) fn accept(self: &Arc<Self>, invoke: Invoke) {
        let received = Instant::now();
        let Invoke {
            request_id,
            action,
            payload,
            encoding,
            timeout_ms,
            kind,
            metadata,
            accept,
        } = invoke;
        let mut state = self.lock();
        if let Some(call) = state.calls.get(&request_id) {
            if call.generation >= state.oldest_known {
                tracing::debug!(%request_id, %action, "ignored an Invoke whose request id is already queued or running: its result is coming");
                return;
            }
            // A call of a session the hub forgot, whose id the hub reuses.
            state.calls.remove(&request_id);
        }
        // Checked under the state lock: `finish` moves a call from `calls`
        // to the outbox under it too, so no call slips between the two.
        if self.outbox.holds_result(&request_id) {
            tracing::debug!(%request_id, %action, "ignored an Invoke whose result is already in the outbox: it is coming");
            return;
        }
        let rejection = if state.closing {
            Some(never_started(ActionError::unavailable(SHUTTING_DOWN)))
        } else if state.calls.len() >= 2 * self.max_in_flight {
            Some(never_started(ActionError::unavailable(format!(
                "connector is at capacity: {max} invocations running and {max} waiting (max_in_flight = {max})",
                max = self.max_in_flight
            ))))
        } else {
            None
        };
        let target = match rejection {
            Some(error) => Err(error),
            None => target(&action, encoding, &accept, kind, payload),
        };
        let generation = state.generation;
        match target {
            Err(error) => {
                drop(state);
                tracing::debug!(%request_id, %action, %error, "Invoke answered at once");
                let frame = result_frame(&request_id, Err(error), received.elapsed());
                self.outbox.push_result(&request_id, generation, frame);
            }
            Ok(target) => {
                let token = CancellationToken::new();
                state.next_seq += 1;
                let seq = state.next_seq;
                state.calls.insert(
                    request_id.clone(),
                    Call {
                        seq,
                        token: token.clone(),
                        generation,
                        action: action.clone(),
                        past_deadline: false,
                    },
                );
                let queued = Queued {
                    seq,
                    request_id,
                    action,
                    target,
                    timeout_ms,
                    metadata: metadata.into_iter().collect(),
                    received,
                    token,
                };
                // A free slot and nobody waiting: start it now, without a
                // trip through the queue and the dispatcher task.
                if state.queue.is_empty()
                    && let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned()
                {
                    drop(state);
                    let me = Arc::clone(self);
                    tokio::spawn(async move { me.run(queued, permit).await });
                    return;
                }
                state.queue.push_back(queued);
                drop(state);
                self.queued.notify_one();
            }
        }
    }

    /// The hub asked to cancel a call: its token is cancelled. A call still
    /// queued is answered `cancelled` without starting.
    pub(crate) fn cancel(&self, request_id: &str, reason: &str) {
        match self.lock().calls.get_mut(request_id) {
            Some(call) => {
                tracing::debug!(request_id, reason, "cancelling");
                call.past_deadline = reason == DEADLINE_REASON;
                call.token.cancel();
            }
            None => tracing::debug!(
                request_id,
                reason,
                "Cancel for an unknown or finished call ignored"
            ),
        }
    }

    /// Stops taking work: later Invokes, and those still queued, are answered
    /// `unavailable` with details `{"started": false}` (they never started,
    /// so the hub may retry them anywhere).
    pub(crate) fn close(&self) {
        let queued: Vec<Queued> = {
            let mut state = self.lock();
            state.closing = true;
            state.queue.drain(..).collect()
        };
        for q in queued {
            self.finish(
                &q.request_id,
                q.seq,
                Err(never_started(ActionError::unavailable(SHUTTING_DOWN))),
                q.received,
            );
        }
    }

    /// How many calls are accepted and unanswered.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().calls.len()
    }

    /// Waits until every accepted call is answered.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let mut idle = pin!(self.idle.notified());
            idle.as_mut().enable();
            if self.lock().calls.is_empty() {
                return;
            }
            idle.await;
        }
    }

    /// Cancels every unanswered call's token.
    pub(crate) fn cancel_all(&self) {
        for call in self.lock().calls.values() {
            call.token.cancel();
        }
    }

    /// Answers every unanswered call with `cancelled` now; their tasks'
    /// results, if they ever come, are dropped.
    pub(crate) fn abandon_all(&self) {
        let mut state = self.lock();
        let oldest_known = state.oldest_known;
        for (request_id, call) in state.calls.drain() {
            call.token.cancel();
            if call.generation < oldest_known {
                continue;
            }
            let error = ActionError::cancelled(format!(
                "the connector shut down before `{}` finished",
                call.action
            ));
            let frame = result_frame(&request_id, Err(error), Duration::ZERO);
            self.outbox.push_result(&request_id, call.generation, frame);
        }
        drop(state);
        self.idle.notify_waiters();
    }

    async fn run(self: Arc<Self>, queued: Queued, permit: OwnedSemaphorePermit) {
        let Queued {
            seq,
            request_id,
            action,
            target,
            timeout_ms,
            metadata,
            received,
            token,
        } = queued;
        let span = tracing::debug_span!("invoke", %request_id, %action);
        let mut ctx = Context::builder(request_id.clone(), action.clone())
            .cancellation(token)
            .metadata(metadata);
        if timeout_ms > 0 {
            ctx = ctx.deadline(received + Duration::from_millis(timeout_ms));
        }
        if let Target::Action { accept, .. } = &target {
            ctx = ctx.accept(accept.iter().copied());
        }
        let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
        let ctx = ctx.events(events_tx).build();
        let invocation = async {
            match &target {
                Target::Action {
                    payload, encoding, ..
                } => {
                    let input = Input::Encoded {
                        encoding: *encoding,
                        bytes: payload,
                    };
                    self.instance
                        .invoke(&action, input, ctx)
                        .instrument(span)
                        .await
                }
                Target::Operator(value) => {
                    self.instance
                        .resolve(&action, value, ctx)
                        .instrument(span)
                        .await
                }
            }
        };
        // Events emitted before the action returned go out before its result.
        let result = forward_events(invocation, events_rx, &self.outbox).await;
        self.finish(&request_id, seq, result, received);
        drop(permit);
    }

    /// Answers a call once: the first answer for an accepted request id goes
    /// to the outbox, later ones are dropped.
    fn finish(
        &self,
        request_id: &str,
        seq: u64,
        result: Result<ActionOutput, ActionError>,
        received: Instant,
    ) {
        let mut state = self.lock();
        if state.calls.get(request_id).is_none_or(|c| c.seq != seq) {
            tracing::debug!(request_id, "result of an already answered call dropped");
            return;
        }
        let Some(call) = state.calls.remove(request_id) else {
            return;
        };
        let result = match result {
            Err(e) if call.past_deadline && e.code() == ErrorCode::Cancelled => {
                Err(ActionError::deadline_exceeded(format!(
                    "`{}` did not finish before its deadline",
                    call.action
                )))
            }
            other => other,
        };
        if call.generation < state.oldest_known {
            tracing::info!(
                request_id,
                "result of a call from an unresumed session dropped"
            );
        } else {
            let took = received.elapsed();
            match &result {
                Ok(_) => tracing::debug!(request_id, ?took, "answered: ok"),
                Err(e) => tracing::debug!(
                    request_id,
                    ?took,
                    code = e.code().as_str(),
                    "answered: {}",
                    e.message()
                ),
            }
            // Queued while the state is locked, so whoever sees no calls left
            // also sees this result in the outbox.
            let frame = result_frame(request_id, result, took);
            self.outbox.push_result(request_id, call.generation, frame);
        }
        let now_idle = state.calls.is_empty();
        drop(state);
        if now_idle {
            self.idle.notify_waiters();
        }
    }
}

/// What an Invoke targets, or why it cannot run.
fn target(
    action: &str,
    encoding: i32,
    accept: &[i32],
    kind: i32,
    payload: Bytes,
) -> Result<Target, ActionError> {
    let encoding = from_wire(encoding)?;
    match InvokeKind::try_from(kind) {
        Ok(InvokeKind::Action) => Ok(Target::Action {
            payload,
            encoding,
            accept: accept_from_wire(accept)?,
        }),
        Ok(InvokeKind::SearchOperator) if encoding != crate::encoding::Encoding::Json => {
            Err(ActionError::invalid_input(format!(
                "search operator `{action}` takes JSON, not {encoding}"
            )))
        }
        Ok(InvokeKind::SearchOperator) => operator_value(action, &payload).map(Target::Operator),
        Err(_) => Err(ActionError::invalid_input(format!(
            "unknown invocation kind #{kind}"
        ))),
    }
}

/// The value of a search operator Invoke, whose payload is `{"value": "..."}`.
fn operator_value(operator: &str, payload: &[u8]) -> Result<String, ActionError> {
    let bad = |why: String| {
        ActionError::invalid_input(format!(
            "search operator `{operator}` takes {{\"value\": \"...\"}}: {why}"
        ))
        .with_details(serde_json::json!({ "path": "$.value" }))
    };
    let value: Value = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
    match value.get("value") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(bad(format!("`value` is {other}, not a string"))),
        None => Err(bad("`value` is missing".into())),
    }
}

/// An action error as the wire carries it.
pub(crate) fn error_frame(error: &ActionError) -> ErrorFrame {
    ErrorFrame {
        code: error.code().as_str().to_owned(),
        message: error.message().to_owned(),
        details_json: error.details().map(Value::to_string).unwrap_or_default(),
    }
}

/// A Result frame.
pub(crate) fn result_frame(
    request_id: &str,
    result: Result<ActionOutput, ActionError>,
    took: Duration,
) -> ConnectorFrame {
    let (outcome, encoding) = match result {
        Ok(output) => {
            let encoding = to_wire(output.encoding());
            (Outcome::Payload(output.into_bytes()), encoding)
        }
        Err(error) => (Outcome::Error(error_frame(&error)), Encoding::Json as i32),
    };
    ConnectorFrame {
        frame: Some(Frame::Result(ResultFrame {
            request_id: request_id.to_owned(),
            outcome: Some(outcome),
            encoding,
            duration_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            chunked: false,
        })),
    }
}

/// An Event frame: kind `progress`, `log` or `custom`, and the event as JSON.
pub(crate) fn event_frame(event: &Event) -> ConnectorFrame {
    let kind = match event.kind {
        EventKind::Progress { .. } => "progress",
        EventKind::Log { .. } => "log",
        EventKind::Custom { .. } => "custom",
    };
    ConnectorFrame {
        frame: Some(Frame::Event(EventFrame {
            request_id: event.request_id.clone(),
            kind: kind.to_owned(),
            json: serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned()),
        })),
    }
}

/// Drives an invocation in this task while forwarding the events it emits
/// to the outbox, in order; events still queued when it returns are
/// forwarded before this returns (so before its result). Later events (from
/// an abandoned blocking action) fail with a closed channel.
async fn forward_events<F: Future<Output = Result<ActionOutput, ActionError>>>(
    invocation: F,
    mut events: mpsc::Receiver<Event>,
    outbox: &Outbox,
) -> Result<ActionOutput, ActionError> {
    let mut invocation = pin!(invocation);
    let result = loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => outbox.push_event(event_frame(&event)).await,
            result = &mut invocation => break result,
        }
    };
    events.close();
    while let Ok(event) = events.try_recv() {
        outbox.push_event(event_frame(&event)).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_payloads_must_carry_a_string_value() {
        assert_eq!(operator_value("ext", br#"{"value":"rs"}"#).unwrap(), "rs");
        let err = operator_value("ext", br#"{"value":3}"#).unwrap_err();
        assert_eq!(err.code().as_str(), "invalid_input");
        assert!(err.message().contains("not a string"), "{err}");
        assert!(operator_value("ext", b"nope").is_err());
    }

    #[test]
    fn invokes_carry_their_encodings_and_operators_take_json() {
        let msgpack = Encoding::Msgpack as i32;
        let Ok(Target::Action {
            encoding, accept, ..
        }) = target("a", msgpack, &[6, 1], 0, Bytes::new())
        else {
            panic!("not an action");
        };
        assert_eq!(encoding, crate::encoding::Encoding::Msgpack);
        assert_eq!(
            accept,
            [
                crate::encoding::Encoding::ArrowIpc,
                crate::encoding::Encoding::Json
            ]
        );
        let err = target("ext", msgpack, &[], 1, Bytes::new()).unwrap_err();
        assert!(err.message().contains("takes JSON, not msgpack"), "{err}");
        let err = target("a", 42, &[], 0, Bytes::new()).unwrap_err();
        assert!(err.message().contains("#42 is unknown"), "{err}");
        assert!(target("a", 0, &[], 9, Bytes::new()).is_err());
    }

    #[test]
    fn error_results_carry_code_message_and_details() {
        let err = ActionError::not_found("gone").with_details(serde_json::json!({"id": 7}));
        let frame = result_frame("r1", Err(err), Duration::from_micros(1500));
        let Some(Frame::Result(r)) = frame.frame else {
            panic!("not a result")
        };
        assert_eq!(r.duration_us, 1500);
        let Some(Outcome::Error(e)) = r.outcome else {
            panic!("not an error")
        };
        assert_eq!(
            (e.code.as_str(), e.message.as_str(), e.details_json.as_str()),
            ("not_found", "gone", r#"{"id":7}"#)
        );
    }
}
