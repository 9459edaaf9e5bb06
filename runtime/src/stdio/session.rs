//! One stdio session: reading requests, running invocations, the LibreFang
//! command queue, `ready` re-sends and the shutdown drain. See
//! [`stdio`](crate::stdio) for the protocol.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connector::{ActionOutput, Input};
use crate::context::{Context, ContextBuilder, Event, EventKind, sleep_until};
use crate::encoding::Encoding;
use crate::error::ActionError;
use crate::instance::Instance;
use crate::stdio::librefang::{self, Ready, SpokeSummary};
use crate::stdio::line_reader::{Line, LineReader};
use crate::stdio::output::{Frames, line_of};
use crate::stdio::request::{Call, Json, Payload, Request, parse};
use crate::stdio::{StdioError, StdioOptions};

/// Events an invocation may queue before emitting waits.
const EVENTS: usize = 16;
/// LibreFang commands queued before reading stdin waits.
const QUEUE: usize = 64;
/// After the shutdown grace and the instance's cancel grace, how much longer
/// cancelled work gets before it is abandoned.
const MARGIN: Duration = Duration::from_secs(1);

type InFlight = Arc<Mutex<HashMap<String, CancellationToken>>>;
type Outcome = Result<ActionOutput, ActionError>;

/// A LibreFang command waiting for its turn.
struct Queued {
    number: u64,
    method: String,
    /// The line it came in, which holds its params.
    line: Vec<u8>,
    params: Json,
    /// Its line's share of the input budget, given back once it is decoded.
    held: OwnedSemaphorePermit,
}

pub(crate) struct Session {
    instance: Instance,
    options: StdioOptions,
    frames: Frames,
    in_flight: InFlight,
    permits: Arc<Semaphore>,
    /// Bytes of input lines (invocations' inputs and LibreFang commands'
    /// params, not yet decoded) held at once: at most one line's limit.
    /// While it is spent, stdin is not read.
    budget: Arc<Semaphore>,
    /// Parent of every invocation's token: cancelled when the shutdown grace
    /// ends or stdout fails.
    root: CancellationToken,
    /// Stops the `ready` re-sends (`ready_ack`, or shutdown).
    stop_ready: CancellationToken,
    /// Tells producers to stop.
    stop_producers: CancellationToken,
    queue: Option<mpsc::Sender<Queued>>,
    /// Invocations, the LibreFang queue worker and the producers.
    tasks: JoinSet<()>,
    draining: bool,
    grace_ends: Option<Instant>,
    give_up_at: Option<Instant>,
}

impl Session {
    pub(crate) fn new(instance: Instance, options: StdioOptions, frames: Frames) -> Self {
        let permits = Arc::new(Semaphore::new(
            options.max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
        ));
        let budget = Arc::new(Semaphore::new(budget_of(options.max_line_bytes)));
        Session {
            instance,
            options,
            frames,
            in_flight: InFlight::default(),
            permits,
            budget,
            root: CancellationToken::new(),
            stop_ready: CancellationToken::new(),
            stop_producers: CancellationToken::new(),
            queue: None,
            tasks: JoinSet::new(),
            draining: false,
            grace_ends: None,
            give_up_at: None,
        }
    }

    /// Serves until shutdown or the end of the input and the drain after it.
    pub(crate) async fn serve<R: AsyncRead + Unpin>(mut self, input: R) -> Result<(), StdioError> {
        let mut lines = LineReader::new(input, self.options.max_line_bytes);
        let ready = line_of(&librefang::LibreFangEvent::Ready(self.ready()));
        if !self.frames.send_line(ready.clone()).await {
            return Ok(());
        }
        let resender = tokio::spawn(resend_ready(
            self.frames.clone(),
            ready,
            self.stop_ready.clone(),
            self.options.ready_interval,
            self.options.ready_max_sends,
        ));
        let _resender = AbortOnDrop(resender);
        let (queue, jobs) = mpsc::channel(QUEUE);
        self.queue = Some(queue);
        self.tasks.spawn(run_queue(
            self.instance.clone(),
            jobs,
            self.frames.clone(),
            self.root.clone(),
        ));
        self.start_producers();
        let connector = &self.instance.manifest().name;
        match &self.options.account_id {
            Some(account_id) => tracing::info!(
                %connector,
                %account_id,
                "serving on stdin/stdout (account_id from {})",
                crate::stdio::ACCOUNT_ID
            ),
            None => tracing::info!(
                %connector,
                account_id = %connector,
                "serving on stdin/stdout (account_id is the connector's name; LibreFang routes \
                 approvals by the channel's configured name: set {} to it if they differ)",
                crate::stdio::ACCOUNT_ID
            ),
        }

        let broken = self.frames.broken().clone();
        let mut input_error = None;
        let mut at_end = false;
        loop {
            if self.draining && self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = broken.cancelled() => {
                    self.root.cancel();
                    self.tasks.abort_all();
                    return Ok(());
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = joined
                        && e.is_panic()
                    {
                        tracing::error!(error = %e, "a stdio task panicked");
                    }
                }
                () = sleep_until(self.give_up_at), if self.give_up_at.is_some() => {
                    self.give_up().await;
                    break;
                }
                () = sleep_until(self.grace_ends), if self.grace_ends.is_some() => {
                    self.grace_ends = None;
                    tracing::warn!(
                        grace = ?self.options.shutdown_grace,
                        "shutdown grace is over; cancelling what is still running"
                    );
                    self.root.cancel();
                    let wait = self.instance.cancel_grace().saturating_add(MARGIN);
                    self.give_up_at = Instant::now().checked_add(wait);
                }
                line = lines.next(), if !at_end => match line {
                    Ok(Some(line)) => self.handle(line).await,
                    Ok(None) => {
                        at_end = true;
                        self.drain("stdin closed");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read stdin; shutting down");
                        at_end = true;
                        input_error = Some(e);
                        self.drain("stdin failed");
                    }
                },
            }
        }
        tracing::info!("stdio session over");
        input_error.map_or(Ok(()), |e| Err(StdioError::Input(e)))
    }

    /// The `ready` frame's params.
    fn ready(&self) -> Ready {
        let manifest = self.instance.manifest();
        let account = self.options.account_id.as_deref().unwrap_or(&manifest.name);
        let mut ready = Ready::new(account).capabilities(librefang::capabilities(manifest));
        ready.spoke = Some(SpokeSummary {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            display_name: manifest.display_name.clone(),
            actions: self
                .instance
                .connector_type()
                .visible_action_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            search_operators: manifest
                .search_operators
                .iter()
                .map(|o| o.operator.clone())
                .collect(),
            capabilities: manifest.capabilities.clone(),
            max_in_flight: Some(u32::try_from(self.options.max_in_flight).unwrap_or(u32::MAX)),
        });
        ready.manifest = Some(Box::new(manifest.clone()));
        ready
    }

    /// Starts the connector's producers; their events are written with no
    /// request id until shutdown stops them. A producer's failure (which the
    /// runtime reports as an `error` log event) is also written as a
    /// LibreFang `error` frame, which is what LibreFang reads.
    fn start_producers(&mut self) {
        let (events, mut received) = mpsc::channel(EVENTS);
        let producers =
            crate::producer::spawn_producers(&self.instance, events, self.stop_producers.clone());
        let frames = self.frames.clone();
        self.tasks.spawn(async move {
            let mut producers = AbortOnDrop(producers);
            let forward = async {
                while let Some(event) = received.recv().await {
                    frames.event(None, &event).await;
                    if let EventKind::Log { level, message } = &event.kind
                        && level == "error"
                    {
                        frames.error(message.clone()).await;
                    }
                }
            };
            let (joined, ()) = tokio::join!(&mut producers.0, forward);
            if let Err(e) = joined
                && e.is_panic()
            {
                tracing::error!(error = %e, "the producers' supervisor panicked");
            }
        });
    }

    /// Takes no new work from now on; in-flight work has the grace to finish.
    fn drain(&mut self, why: &str) {
        if self.draining {
            return;
        }
        tracing::info!(
            why,
            in_flight = self.in_flight_count(),
            grace = ?self.options.shutdown_grace,
            "shutting down: finishing in-flight work"
        );
        self.draining = true;
        self.queue = None;
        self.stop_ready.cancel();
        self.stop_producers.cancel();
        self.grace_ends = Instant::now().checked_add(self.options.shutdown_grace);
        if self.grace_ends.is_none() {
            // A grace too long to represent: wait as long as it takes.
            tracing::debug!("shutdown grace has no end");
        }
    }

    /// Cancelled work did not finish in time: abandon it, answering every
    /// invocation still without a result.
    async fn give_up(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let left: Vec<String> = {
            let mut map = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.drain().map(|(id, _)| id).collect()
        };
        if !left.is_empty() {
            tracing::warn!(ids = ?left, "abandoning invocations that did not stop after being cancelled");
        }
        for id in left {
            let error =
                ActionError::cancelled("the connector shut down before the invocation finished");
            self.frames.result(&id, &Err(error)).await;
        }
    }

    fn in_flight_count(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
    }

    async fn handle(&mut self, line: Line) {
        let (number, bytes) = match line {
            Line::TooLong { number } => {
                let limit = self.options.max_line_bytes;
                tracing::warn!(line = number, limit, "input line too long; skipped");
                self.frames
                    .error(format!("line {number}: longer than {limit} bytes; skipped"))
                    .await;
                return;
            }
            Line::Data { number, bytes } => (number, bytes),
        };
        let request = match parse(&bytes) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(what) => {
                tracing::warn!(line = number, "{what}");
                self.frames.error(format!("line {number}: {what}")).await;
                return;
            }
        };
        match request {
            Request::Start {
                id,
                call,
                deadline_ms,
                metadata,
            } => {
                let ctx = Context::builder(id.clone(), call.name())
                    .metadata(metadata)
                    .accept([Encoding::Json]);
                self.start(number, id, (call, bytes), deadline_ms, ctx)
                    .await;
            }
            Request::Reject { id, error } => {
                if self.is_in_flight(&id) {
                    self.duplicate(number, &id).await;
                } else {
                    self.frames.result(&id, &Err(error)).await;
                }
            }
            Request::Cancel { id } => {
                let token = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&id)
                    .cloned();
                match token {
                    Some(token) => token.cancel(),
                    None => tracing::debug!(%id, "cancel for an id not in flight; ignored"),
                }
            }
            Request::Heartbeat => tracing::trace!("heartbeat"),
            Request::ReadyAck => {
                tracing::debug!("ready acknowledged");
                self.stop_ready.cancel();
            }
            Request::Shutdown => self.drain("shutdown requested"),
            Request::Other { method, params } => {
                self.command(number, method, params, bytes).await;
            }
        }
    }

    async fn duplicate(&self, number: u64, id: &str) {
        let message = format!("line {number}: id `{id}` is already in flight; skipped");
        tracing::warn!("{message}");
        self.frames.error(message).await;
    }

    /// Takes `len` bytes of the input budget (all of it for a line as long
    /// as the limit), waiting while it is spent; `None` once stdout is gone.
    async fn hold(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        let all = budget_of(self.options.max_line_bytes);
        let n = u32::try_from(len.clamp(1, all)).unwrap_or(u32::MAX);
        tokio::select! {
            held = Arc::clone(&self.budget).acquire_many_owned(n) => held.ok(),
            () = self.frames.broken().cancelled() => None,
        }
    }

    /// `invoke` and `resolve`; `ctx` has the request id, the name and the
    /// metadata, the rest is added here. The call's input is in `line`.
    async fn start(
        &mut self,
        number: u64,
        id: String,
        (call, line): (Call, Vec<u8>),
        deadline_ms: Option<u64>,
        ctx: ContextBuilder,
    ) {
        if self.is_in_flight(&id) {
            return self.duplicate(number, &id).await;
        }
        if self.draining {
            let error = ActionError::unavailable("connector is shutting down")
                .with_details(serde_json::json!({ "started": false }));
            self.frames.result(&id, &Err(error)).await;
            return;
        }
        // The deadline counts from receipt, before any wait for a permit.
        let deadline =
            deadline_ms.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        // Backpressure: while the budget or every permit is taken, stdin is
        // not read.
        let Some(held) = self.hold(line.len()).await else {
            return;
        };
        let permit = tokio::select! {
            permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = self.frames.broken().cancelled() => return,
        };
        let token = self.root.child_token();
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), token.clone());
        let (events, received) = mpsc::channel(EVENTS);
        let mut ctx = ctx.cancellation(token).events(events);
        if let Some(at) = deadline {
            ctx = ctx.deadline(at);
        }
        if let Call::Payload { accept, .. } = &call {
            ctx = ctx.accept(accept.iter().copied());
        }
        let ctx = ctx.build();
        let instance = self.instance.clone();
        let frames = self.frames.clone();
        let in_flight = Arc::clone(&self.in_flight);
        self.tasks.spawn(async move {
            let future: Pin<Box<dyn Future<Output = Outcome> + Send>> = match &call {
                Call::Action { name, input } => {
                    Box::pin(instance.invoke(name, Input::Bytes(input.bytes(&line)), ctx))
                }
                Call::Payload { name, input, .. } => {
                    let input = match input {
                        Payload::Json(json) => Input::Bytes(json.bytes(&line)),
                        Payload::Encoded(encoding, bytes) => Input::Encoded {
                            encoding: *encoding,
                            bytes,
                        },
                    };
                    Box::pin(instance.invoke(name, input, ctx))
                }
                Call::Operator { name, value } => Box::pin(instance.resolve(name, value, ctx)),
            };
            // Decoded: the line (and a decoded base64 input) is not
            // needed any more.
            drop((line, held, call));
            let outcome = forward_events(future, received, &frames, Some(&id)).await;
            // Room for the result first (this may wait while stdout is slow;
            // the id is still in flight, so `give_up` answers it should this
            // task be aborted meanwhile). Then, in one step under the lock,
            // out of the map (so the host may reuse the id once it has the
            // result) and into the writer's channel, which cannot wait now.
            let Some(slot) = frames.reserve().await else {
                return;
            };
            let mut map = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            map.remove(&id);
            slot.result(&id, &outcome);
            drop(map);
            drop(permit);
        });
    }

    /// A method that is not Spoke's: a LibreFang action method when the
    /// connector has that action, else unknown. Its params are in `line`.
    async fn command(&mut self, number: u64, method: String, params: Json, line: Vec<u8>) {
        let is_action = librefang::ACTION_METHODS.contains(&method.as_str())
            && self.instance.connector_type().action(&method).is_some();
        if !is_action {
            tracing::debug!(line = number, %method, "unknown method; ignored");
            return;
        }
        let Some(queue) = &self.queue else {
            self.frames
                .error(format!("{method}: connector is shutting down"))
                .await;
            return;
        };
        let Some(held) = self.hold(line.len()).await else {
            return;
        };
        let job = Queued {
            number,
            method,
            line,
            params,
            held,
        };
        tokio::select! {
            sent = queue.send(job) => {
                if let Err(mpsc::error::SendError(job)) = sent {
                    self.frames.error(format!("{}: connector is shutting down", job.method)).await;
                }
            }
            () = self.frames.broken().cancelled() => {}
        }
    }
}

/// Runs LibreFang commands one at a time, in arrival order. A failure
/// becomes an `error` frame; an output is discarded.
async fn run_queue(
    instance: Instance,
    mut jobs: mpsc::Receiver<Queued>,
    frames: Frames,
    root: CancellationToken,
) {
    while let Some(Queued {
        number,
        method,
        line,
        params,
        held,
    }) = jobs.recv().await
    {
        if root.is_cancelled() {
            frames
                .error(format!("{method}: connector is shutting down"))
                .await;
            continue;
        }
        let (events, received) = mpsc::channel(EVENTS);
        let ctx = Context::builder(format!("librefang-{number}"), method.clone())
            .cancellation(root.child_token())
            .events(events)
            .accept([Encoding::Json])
            .build();
        let future = instance.invoke(&method, Input::Bytes(params.bytes(&line)), ctx);
        // Decoded: the line is not needed any more.
        drop((line, held));
        if let Err(error) = forward_events(future, received, &frames, None).await {
            tracing::debug!(%method, %error, "LibreFang command failed");
            frames.error(format!("{method}: {}", error.message())).await;
        }
    }
}

/// Drives an invocation while writing the events it emits, in order; events
/// queued when it finishes are written before it returns (so before the
/// result). Events emitted later (by an abandoned blocking action) fail with
/// [`EmitError::Closed`](crate::EmitError::Closed).
async fn forward_events<F: Future<Output = Outcome>>(
    future: F,
    mut events: mpsc::Receiver<Event>,
    frames: &Frames,
    id: Option<&str>,
) -> Outcome {
    let mut future = std::pin::pin!(future);
    let outcome = loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => {
                frames.event(id, &event).await;
            }
            outcome = &mut future => break outcome,
        }
    };
    events.close();
    while let Ok(event) = events.try_recv() {
        frames.event(id, &event).await;
    }
    outcome
}

/// Re-sends `ready` every `interval` until `stop`, `max_sends` in all
/// (counting the first, already sent).
async fn resend_ready(
    frames: Frames,
    line: String,
    stop: CancellationToken,
    interval: Duration,
    max_sends: u32,
) {
    for _ in 1..max_sends {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if stop.is_cancelled() || !frames.send_line(line.clone()).await {
            return;
        }
        tracing::debug!("ready re-sent (no ready_ack yet)");
    }
}

/// The input budget, in bytes: one line as long as the limit.
fn budget_of(max_line_bytes: usize) -> usize {
    max_line_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
