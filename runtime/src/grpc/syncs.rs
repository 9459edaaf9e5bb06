//! The sync runs the hub starts on this instance.
//!
//! A `StartSync` runs the sync in the core ([`Instance::start_sync`]) with
//! a [`HubSink`]: each batch goes up as `SyncBatch` frames (JSON lines, at
//! most [`PIECE_BYTES`] a frame), each checkpoint as a `SyncCheckpoint`,
//! and the hub acknowledges each frame with a `SyncAck` once it is durable
//! (the events reached the caller, the checkpoint is stored). One batch is
//! in flight while the run builds the next; a checkpoint returns only once
//! it and every batch before it are acknowledged (the hub applies a run's
//! frames in order), and the run completes only once every frame is
//! ([`SyncSink::settle`]). The run is answered `SyncStarted`
//! first (sent again after every resume, in case it was lost) or only
//! `SyncEnded` with `started = false` when it cannot start, and `SyncEnded`
//! when it ends, sent until acknowledged (for at most [`END_GIVE_UP`]).
//!
//! Every frame of a run carries a sequence number, from 1. When the stream
//! goes down, the frames not yet acknowledged are sent again after the
//! resume, in order and with their sequence numbers, so a hub that had
//! applied one before the cut acknowledges it without applying it twice.
//! A `CancelSync` cancels the run's token; a new session that does not
//! resume the old one cancels every run (the hub no longer knows them).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use spoke_proto::prost::bytes::Bytes;
use spoke_proto::v1::connector_frame::Frame;
use spoke_proto::v1::{
    CancelSync, ConnectorFrame, StartSync, SyncAck, SyncBatch, SyncCheckpoint,
    SyncCounters as WireCounters, SyncEnded, SyncKnownIds, SyncStarted,
};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use super::dispatch::error_frame;
use super::outbox::Outbox;
use crate::Instance;
use crate::error::ActionError;
use crate::sync::{
    Batch, SinkError, SinkFuture, StoredCheckpoint, SyncCounters, SyncMode, SyncOutcome,
    SyncRequest, SyncRunInfo, SyncSink,
};

/// The most bytes of JSON lines in one `SyncBatch` frame (one event larger
/// than this goes alone in its frame).
const PIECE_BYTES: usize = spoke_proto::CHUNK_BYTES;
/// The largest event a run may send through the hub, as a JSON line: what
/// fits in one gRPC message with room for the frame around it.
const MAX_EVENT_BYTES: usize = spoke_proto::MAX_MESSAGE_BYTES - 64 * 1024;
/// How long `SyncEnded` is sent again (the hub away, the stream lost)
/// before the run is given up.
const END_GIVE_UP: Duration = Duration::from_secs(600);
/// How long one try of `SyncEnded` waits for its acknowledgement.
const END_ACK_WAIT: Duration = Duration::from_secs(10);
/// The most room reserved up front for a batch's JSON lines.
const MAX_RESERVED_BYTES: usize = 4 * 1024 * 1024;

/// What a frame's acknowledgement brings: for `SyncKnownIds`, the ids.
type Acked = Result<Vec<String>, SinkError>;

/// The runs of this instance the hub started, and their frames waiting
/// for an acknowledgement.
pub(crate) struct SyncLink {
    instance: Instance,
    outbox: Arc<Outbox>,
    runs: Mutex<HashMap<String, RunLink>>,
    /// Notified when a run is forgotten (see [`SyncLink::wait_idle`]).
    idle: Notify,
}

/// One run's side of the link.
struct RunLink {
    cancel: CancellationToken,
    next_seq: u64,
    waiting: HashMap<u64, Waiter>,
    /// Its `SyncStarted`, once it started: sent again after a resume.
    started: Option<SyncStarted>,
}

/// A frame waiting for its `SyncAck` (for `SyncKnownIds`, all its pages).
struct Waiter {
    answer: oneshot::Sender<Acked>,
    ids: Vec<String>,
}

impl SyncLink {
    /// The link of `instance`, sending through `outbox`.
    pub(crate) fn new(instance: Instance, outbox: Arc<Outbox>) -> Arc<Self> {
        Arc::new(SyncLink {
            instance,
            outbox,
            runs: Mutex::new(HashMap::new()),
            idle: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, RunLink>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the run a `StartSync` asks for (in its own task; never waits).
    /// A run id already running is ignored.
    pub(crate) fn start(self: &Arc<Self>, start: StartSync) {
        let run_id = start.run_id.clone();
        if run_id.is_empty() {
            tracing::warn!("a StartSync without a run id was ignored");
            return;
        }
        {
            let mut runs = self.lock();
            if runs.contains_key(&run_id) {
                tracing::debug!(run_id, "StartSync for a run already here ignored");
                return;
            }
            runs.insert(
                run_id.clone(),
                RunLink {
                    cancel: CancellationToken::new(),
                    next_seq: 1,
                    waiting: HashMap::new(),
                    started: None,
                },
            );
        }
        let started = request_of(&start).and_then(|request| {
            let sink = Arc::new(HubSink::new(Arc::clone(self), &run_id));
            self.instance.start_sync(request, sink)
        });
        let link = Arc::clone(self);
        match started {
            Err(error) => {
                tracing::info!(run_id, sync = start.sync, "sync run not started: {error}");
                tokio::spawn(async move {
                    let ended = SyncEnded {
                        run_id: run_id.clone(),
                        started: false,
                        status: "failed".to_owned(),
                        error: Some(error_frame(&error)),
                        ..SyncEnded::default()
                    };
                    link.send_end(&run_id, ended).await;
                });
            }
            Ok(run) => {
                let info = run.info().clone();
                let started = SyncStarted {
                    run_id: run_id.clone(),
                    mode: info.mode.to_string(),
                    resume: info.is_resume,
                };
                if let Some(entry) = self.lock().get_mut(&run_id) {
                    entry.cancel = run.cancellation();
                    entry.started = Some(started.clone());
                }
                self.outbox.push_sync(frame(Frame::SyncStarted(started)));
                tokio::spawn(async move {
                    let outcome = run.outcome().await;
                    let ended = ended_frame(&outcome);
                    link.send_end(&run_id, ended).await;
                });
            }
        }
    }

    /// Sends `SyncEnded` until the hub acknowledges it (or [`END_TRIES`]
    /// fail), then forgets the run.
    async fn send_end(&self, run_id: &str, mut ended: SyncEnded) {
        let give_up = tokio::time::Instant::now() + END_GIVE_UP;
        let mut schedule = crate::sync::run::sink_backoff().schedule();
        ended.seq = self.next_seqs(run_id, 1);
        loop {
            let sent = self.request(run_id, ended.seq, frame(Frame::SyncEnded(ended.clone())));
            let error = match tokio::time::timeout(END_ACK_WAIT, sent).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => e,
                Err(_) => {
                    SinkError::retryable(format!("no acknowledgement within {END_ACK_WAIT:?}"))
                }
            };
            if !error.retryable || tokio::time::Instant::now() >= give_up {
                tracing::warn!(
                    run_id,
                    "the hub did not take the end of the sync run: {error}"
                );
                break;
            }
            tracing::debug!(
                run_id,
                "SyncEnded not acknowledged ({error}); sending it again"
            );
            tokio::time::sleep(schedule.next_delay().unwrap_or(Duration::from_secs(5))).await;
        }
        self.lock().remove(run_id);
        self.idle.notify_waiters();
    }

    /// Cancels the run a `CancelSync` names.
    pub(crate) fn cancel(&self, cancel: &CancelSync) {
        let token = self.lock().get(&cancel.run_id).map(|r| r.cancel.clone());
        match token {
            Some(token) => {
                tracing::info!(
                    run_id = cancel.run_id,
                    reason = cancel.reason,
                    "sync run cancelled by the hub"
                );
                token.cancel();
            }
            None => tracing::debug!(
                run_id = cancel.run_id,
                "CancelSync for an unknown run ignored"
            ),
        }
    }

    /// Hands a `SyncAck` to the frame waiting for it.
    pub(crate) fn ack(&self, ack: SyncAck) {
        let mut runs = self.lock();
        let Some(run) = runs.get_mut(&ack.run_id) else {
            tracing::debug!(run_id = ack.run_id, "SyncAck for an unknown run ignored");
            return;
        };
        if let Some(error) = ack.error {
            if let Some(waiter) = run.waiting.remove(&ack.seq) {
                let message = format!(
                    "the hub did not take it: {} ({})",
                    error.message, error.code
                );
                let error = if ack.retryable {
                    SinkError::retryable(message)
                } else {
                    SinkError::fatal(message)
                };
                let _ = waiter.answer.send(Err(error));
            }
            return;
        }
        if ack.more {
            if let Some(waiter) = run.waiting.get_mut(&ack.seq) {
                waiter.ids.extend(ack.known_ids);
            }
            return;
        }
        if let Some(mut waiter) = run.waiting.remove(&ack.seq) {
            waiter.ids.extend(ack.known_ids);
            let _ = waiter.answer.send(Ok(waiter.ids));
        }
    }

    /// The stream went down: every frame waiting for an acknowledgement
    /// fails (retryably) and is sent again by its run.
    pub(crate) fn detached(&self) {
        for run in self.lock().values_mut() {
            for (_, waiter) in run.waiting.drain() {
                let _ = waiter
                    .answer
                    .send(Err(SinkError::retryable("the stream to the hub was lost")));
            }
        }
    }

    /// A session started; unless it resumed the old one, the hub no longer
    /// knows this instance's runs: they are cancelled.
    pub(crate) fn session_started(&self, resumed: bool) {
        if resumed {
            // A `SyncStarted` lost with the old stream would leave the hub
            // waiting for it: say it again (the hub takes it once).
            let started: Vec<SyncStarted> = self
                .lock()
                .values()
                .filter_map(|r| r.started.clone())
                .collect();
            for s in started {
                self.outbox.push_sync(frame(Frame::SyncStarted(s)));
            }
            return;
        }
        let runs = self.lock();
        if !runs.is_empty() {
            tracing::warn!(
                runs = runs.len(),
                "the hub started a new session instead of resuming: its sync runs are cancelled"
            );
        }
        for run in runs.values() {
            run.cancel.cancel();
        }
    }

    /// Cancels every run (at shutdown).
    pub(crate) fn cancel_all(&self) {
        for run in self.lock().values() {
            run.cancel.cancel();
        }
        self.instance.cancel_all_syncs();
    }

    /// How long a cancelled run may take to return.
    pub(crate) fn cancel_grace(&self) -> Duration {
        self.instance.cancel_grace()
    }

    /// How many runs are here (running, or sending their end).
    pub(crate) fn running(&self) -> usize {
        self.lock().len()
    }

    /// Waits until no run is left.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.running() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Takes `count` sequence numbers of the run; returns the first.
    fn next_seqs(&self, run_id: &str, count: u64) -> u64 {
        let mut runs = self.lock();
        match runs.get_mut(run_id) {
            Some(run) => {
                let first = run.next_seq;
                run.next_seq += count;
                first
            }
            None => 0,
        }
    }

    /// Sends a frame of the run; its acknowledgement comes on the
    /// receiver. `None` when no stream is up (send it again later).
    fn send(
        &self,
        run_id: &str,
        seq: u64,
        frame: ConnectorFrame,
    ) -> Option<oneshot::Receiver<Acked>> {
        let (tx, rx) = oneshot::channel();
        self.lock().get_mut(run_id)?.waiting.insert(
            seq,
            Waiter {
                answer: tx,
                ids: Vec::new(),
            },
        );
        if !self.outbox.push_sync(frame) {
            if let Some(run) = self.lock().get_mut(run_id) {
                run.waiting.remove(&seq);
            }
            return None;
        }
        Some(rx)
    }

    /// Sends a frame of the run and waits for its acknowledgement.
    async fn request(&self, run_id: &str, seq: u64, frame: ConnectorFrame) -> Acked {
        let Some(answer) = self.send(run_id, seq, frame) else {
            return Err(SinkError::retryable("no stream to the hub"));
        };
        let _forget = Forget {
            link: self,
            run_id,
            seq,
        };
        answer
            .await
            .unwrap_or_else(|_| Err(SinkError::retryable("the stream to the hub was lost")))
    }
}

/// Forgets a frame's waiter when its request ends (answered, failed, or
/// dropped by a run that gave up on it).
struct Forget<'a> {
    link: &'a SyncLink,
    run_id: &'a str,
    seq: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(run) = self.link.lock().get_mut(self.run_id) {
            run.waiting.remove(&self.seq);
        }
    }
}

fn frame(frame: Frame) -> ConnectorFrame {
    ConnectorFrame { frame: Some(frame) }
}

/// The core's request for a `StartSync`.
fn request_of(start: &StartSync) -> Result<SyncRequest, ActionError> {
    let mode = match start.mode.as_str() {
        "" => None,
        name => Some(SyncMode::parse(name).ok_or_else(|| {
            ActionError::invalid_input(format!(
                "`{name}` is not a sync mode; expected full, incremental or realtime"
            ))
        })?),
    };
    let checkpoint = match start.checkpoint_json.as_str() {
        "" => None,
        json => Some(serde_json::from_str::<StoredCheckpoint>(json).map_err(|e| {
            ActionError::invalid_input(format!(
                "the checkpoint the hub sent for sync `{}` is not a stored checkpoint ({{\"version\", \"checkpoint\"}}): {e}",
                start.sync
            ))
        })?),
    };
    let mut request = SyncRequest::new(start.sync.clone())
        .run_id(start.run_id.clone())
        .source(start.source_id.clone());
    if start.sync.is_empty() {
        request.sync = None;
    }
    request.mode = mode;
    request.checkpoint = checkpoint;
    request.is_resume = start.resume;
    request.deadline = (start.timeout_ms > 0)
        .then(|| tokio::time::Instant::now() + Duration::from_millis(start.timeout_ms));
    Ok(request)
}

/// The wire form of a run's counters (`spoke.v1.SyncCounters`), as the
/// hub and its clients read them.
///
/// ```
/// let counters = spoke::sync::SyncCounters { emitted: 3, ..Default::default() };
/// assert_eq!(spoke::grpc::wire_counters(&counters).emitted, 3);
/// ```
pub fn wire_counters(c: &SyncCounters) -> WireCounters {
    WireCounters {
        scanned: c.scanned,
        updated: c.updated,
        emitted: c.emitted,
        deleted: c.deleted,
        failed: c.failed,
        delivered: c.delivered,
        progress: c.progress,
        total: c.total,
    }
}

/// The `SyncEnded` of a run's outcome.
fn ended_frame(outcome: &SyncOutcome) -> SyncEnded {
    SyncEnded {
        run_id: outcome.run.run_id.clone(),
        seq: 0,
        started: true,
        status: outcome.status.as_str().to_owned(),
        error: outcome.error.as_ref().map(error_frame),
        counters: Some(wire_counters(&outcome.counters)),
        failures_json: if outcome.failures.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&outcome.failures).unwrap_or_default()
        },
        swept: outcome.swept,
        elapsed_ms: outcome.elapsed_ms,
    }
}

/// The sink of a run the hub started: see the module docs.
///
/// It keeps one batch in flight: `deliver` sends a batch and returns once
/// the batches before it are acknowledged, so the run builds the next batch
/// while the hub takes this one; a checkpoint, the known ids and the end of
/// the run ([`SyncSink::settle`]) wait for every acknowledgement first.
/// Frames stay here until acknowledged; when one fails retryably (the
/// stream was lost), every frame not yet acknowledged is sent again, in
/// order and with its sequence number, on the next call (the core calls
/// again, with backoff, within the run's cancellation and deadline).
pub(crate) struct HubSink {
    link: Arc<SyncLink>,
    run_id: String,
    /// Frames sent and not yet acknowledged, oldest first.
    sent: tokio::sync::Mutex<Sent>,
    /// About how many bytes an event of this run takes as JSON.
    bytes_per_event: AtomicUsize,
}

/// The frames of a run not yet acknowledged.
#[derive(Default)]
struct Sent {
    frames: VecDeque<SentFrame>,
    /// What the last request queued (a batch's JSON lines, a checkpoint's
    /// JSON), and whether it failed: the same request made again after its
    /// error is not queued twice (a new one equal to it is).
    last: Option<Bytes>,
    failed: bool,
}

impl Sent {
    /// Whether a request sending `body` is the last one, made again after it failed.
    fn is_retry(&self, body: &Bytes) -> bool {
        self.failed && self.last.as_ref() == Some(body)
    }
}

struct SentFrame {
    seq: u64,
    frame: ConnectorFrame,
    /// Its acknowledgement; `None` when it must be sent again.
    answer: Option<oneshot::Receiver<Acked>>,
}

impl HubSink {
    fn new(link: Arc<SyncLink>, run_id: &str) -> Self {
        HubSink {
            link,
            run_id: run_id.to_owned(),
            sent: tokio::sync::Mutex::new(Sent::default()),
            bytes_per_event: AtomicUsize::new(256),
        }
    }

    /// Queues the frames of a request (`body` says what it sends) unless
    /// it is the request queued last (made again after an error).
    fn queue(&self, sent: &mut Sent, body: Bytes, frames: Vec<(u64, ConnectorFrame)>) {
        if sent.is_retry(&body) {
            return;
        }
        sent.last = Some(body);
        for (seq, frame) in frames {
            let answer = self.link.send(&self.run_id, seq, frame.clone());
            sent.frames.push_back(SentFrame { seq, frame, answer });
        }
    }

    /// Waits until at most `keep` frames (the newest) are unacknowledged;
    /// the ids the last acknowledgement carried. Frames to send again are
    /// sent first. A retryable failure marks every frame to be sent again
    /// and is returned (the core calls again after a backoff). Cancel-safe.
    async fn confirm(&self, sent: &mut Sent, keep: usize) -> Result<Vec<String>, SinkError> {
        // Until it returns `Ok`, the request that called it has failed
        // (also if this future is dropped half-way).
        sent.failed = true;
        if sent.frames.iter().any(|f| f.answer.is_none()) {
            for f in &mut sent.frames {
                f.answer = self.link.send(&self.run_id, f.seq, f.frame.clone());
            }
        }
        let mut ids = Vec::new();
        while sent.frames.len() > keep {
            let front = sent.frames.front_mut().expect("more frames than kept");
            let outcome = match &mut front.answer {
                Some(answer) => answer.await.unwrap_or_else(|_| {
                    Err(SinkError::retryable("the stream to the hub was lost"))
                }),
                None => Err(SinkError::retryable("no stream to the hub")),
            };
            match outcome {
                Ok(page) => {
                    ids = page;
                    sent.frames.pop_front();
                }
                Err(e) => {
                    if e.retryable {
                        for f in &mut sent.frames {
                            f.answer = None;
                        }
                    }
                    return Err(e);
                }
            }
        }
        sent.failed = false;
        Ok(ids)
    }
}

/// Encodes events as JSON lines and cuts them into pieces of at most
/// [`PIECE_BYTES`] (an event larger than that alone in its piece): the
/// bytes, and the (end, count) of each piece. `bytes_per_event` sizes the
/// buffer (from the last batch) and is updated.
fn json_line_pieces(
    batch: &Batch,
    bytes_per_event: &AtomicUsize,
) -> Result<(Bytes, Vec<(usize, u32)>), SinkError> {
    // Room for the batch at the size of the last one's events, so the
    // buffer is not grown (and copied) over and over.
    let hint = bytes_per_event.load(Ordering::Relaxed).max(64);
    let room = hint
        .saturating_mul(batch.events.len() + 1)
        .min(MAX_RESERVED_BYTES);
    let mut body = Vec::with_capacity(room);
    let mut pieces = Vec::new();
    let (mut start, mut count) = (0usize, 0u32);
    for event in &batch.events {
        let before = body.len();
        event
            .write_json_line(&mut body)
            .map_err(|e| SinkError::fatal(format!("an event could not be encoded as JSON: {e}")))?;
        let size = body.len() - before;
        if size > MAX_EVENT_BYTES {
            return Err(SinkError::fatal(format!(
                "the event of document `{}` is {size} bytes as JSON, more than the {MAX_EVENT_BYTES} bytes an event may have through the hub; send a content reference instead of the content",
                event.document_id().unwrap_or("-")
            )));
        }
        if count > 0 && body.len() - start > PIECE_BYTES {
            pieces.push((before, count));
            start = before;
            count = 0;
        }
        count += 1;
    }
    if count > 0 {
        pieces.push((body.len(), count));
    }
    if !batch.events.is_empty() {
        bytes_per_event.store(body.len() / batch.events.len() + 1, Ordering::Relaxed);
    }
    Ok((Bytes::from(body), pieces))
}

impl SyncSink for HubSink {
    fn deliver<'a>(&'a self, _run: &'a SyncRunInfo, batch: &'a Batch) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            let (body, pieces) = json_line_pieces(batch, &self.bytes_per_event)?;
            if pieces.is_empty() {
                return Ok(());
            }
            let mut sent = self.sent.lock().await;
            let fresh = !sent.is_retry(&body);
            let first = if fresh {
                self.link.next_seqs(&self.run_id, pieces.len() as u64)
            } else {
                0
            };
            let counters = wire_counters(&batch.counters);
            let mut frames = Vec::with_capacity(pieces.len());
            let mut start = 0;
            for (i, (end, count)) in pieces.iter().enumerate() {
                let seq = first + i as u64;
                frames.push((
                    seq,
                    frame(Frame::SyncBatch(SyncBatch {
                        run_id: self.run_id.clone(),
                        seq,
                        events: body.slice(start..*end),
                        count: *count,
                        counters: Some(counters),
                    })),
                ));
                start = *end;
            }
            if fresh {
                self.queue(&mut sent, body, frames);
            }
            // This batch stays in flight; the ones before it must be in.
            self.confirm(&mut sent, pieces.len()).await.map(|_| ())
        })
    }

    fn save_checkpoint<'a>(
        &'a self,
        _run: &'a SyncRunInfo,
        checkpoint: &'a StoredCheckpoint,
    ) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(checkpoint).map_err(|e| {
                SinkError::fatal(format!("the checkpoint could not be encoded as JSON: {e}"))
            })?;
            let body = Bytes::from(json.clone());
            let mut sent = self.sent.lock().await;
            // Sent behind the batches still in flight: the hub applies a
            // run's frames in order, so it stores the checkpoint only once
            // every batch before it is in (and refuses it otherwise).
            if !sent.is_retry(&body) {
                let seq = self.link.next_seqs(&self.run_id, 1);
                let checkpoint = frame(Frame::SyncCheckpoint(SyncCheckpoint {
                    run_id: self.run_id.clone(),
                    seq,
                    checkpoint_json: json,
                }));
                self.queue(&mut sent, body, vec![(seq, checkpoint)]);
            }
            self.confirm(&mut sent, 0).await.map(|_| ())
        })
    }

    fn known_ids<'a>(
        &'a self,
        _run: &'a SyncRunInfo,
    ) -> SinkFuture<'a, Option<std::collections::HashSet<String>>> {
        Box::pin(async move {
            let mut sent = self.sent.lock().await;
            self.confirm(&mut sent, 0).await?;
            // Asked afresh each time (it changes nothing at the hub).
            sent.last = None;
            let seq = self.link.next_seqs(&self.run_id, 1);
            let ask = frame(Frame::SyncKnownIds(SyncKnownIds {
                run_id: self.run_id.clone(),
                seq,
            }));
            self.queue(&mut sent, Bytes::new(), vec![(seq, ask)]);
            let ids = self.confirm(&mut sent, 0).await?;
            Ok(Some(ids.into_iter().collect()))
        })
    }

    fn settle<'a>(&'a self, _run: &'a SyncRunInfo) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            let mut sent = self.sent.lock().await;
            self.confirm(&mut sent, 0).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Document, SyncEvent};

    fn batch(sizes: &[usize]) -> Batch {
        Batch {
            events: sizes
                .iter()
                .enumerate()
                .map(|(i, size)| {
                    SyncEvent::DocumentCreated(
                        Document::new(format!("d{i}")).text("x".repeat(*size)),
                    )
                })
                .collect(),
            counters: SyncCounters::default(),
        }
    }

    #[test]
    fn small_batches_go_in_one_piece() {
        let (body, pieces) = json_line_pieces(&batch(&[10, 20, 30]), &AtomicUsize::new(0)).unwrap();
        assert_eq!(pieces, vec![(body.len(), 3)]);
        assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 3);
    }

    #[test]
    fn large_batches_are_cut_at_line_ends_below_the_piece_size() {
        let (body, pieces) = json_line_pieces(
            &batch(&[600_000, 600_000, 10, 2_000_000, 5]),
            &AtomicUsize::new(0),
        )
        .unwrap();
        let counts: Vec<u32> = pieces.iter().map(|p| p.1).collect();
        assert_eq!(counts, vec![1, 2, 1, 1]);
        let mut start = 0;
        for (end, _) in &pieces {
            assert_eq!(body[end - 1], b'\n', "a piece ends at a line end");
            let single_large = body[start..*end].iter().filter(|b| **b == b'\n').count() == 1;
            assert!(end - start <= PIECE_BYTES || single_large);
            start = *end;
        }
        assert_eq!(start, body.len());
    }

    #[test]
    fn an_event_too_large_for_the_hub_is_refused_naming_its_document() {
        let error =
            json_line_pieces(&batch(&[1, MAX_EVENT_BYTES]), &AtomicUsize::new(0)).unwrap_err();
        assert!(!error.retryable);
        assert!(error.message.contains("`d1`"), "{}", error.message);
    }
}
