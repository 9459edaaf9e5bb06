//! One sync run through the hub, from `StartSync` to `SyncEnded`: its task
//! applies the connector's frames in order and acknowledges each once it
//! is durable.
//!
//! - A batch is durable once its events were handed to the caller's stream
//!   (and, for a sync that sweeps, its document ids recorded in the store).
//!   When the caller is gone, batches are refused for good: the run ends,
//!   and its last checkpoint covers only events the caller got.
//! - A checkpoint is durable once stored; the caller is told of it.
//! - A frame whose seq was applied already (sent again after a lost
//!   stream) is acknowledged again, not applied twice.
//! - The run fails when its instance leaves for good (its session ended or
//!   its resume window passed), when the instance does not answer the
//!   `StartSync` within [`START_TIMEOUT`], or when a cancelled run does not
//!   end within [`CANCEL_WAIT`]; its last stored checkpoint stays.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;
use spoke_proto::v1::connector_frame::Frame;
use spoke_proto::v1::{
    CancelSync, Error as ErrorFrame, HubFrame, StartSync, SyncAck, SyncBatch, SyncCheckpoint,
    SyncCheckpointStored, SyncCounters, SyncEnded, SyncEvents, SyncRunInfo, SyncStreamItem,
    hub_frame, sync_stream_item,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::ids::unix_ms;
use crate::routing::registry::InstanceKey;
use crate::sessions::state::{HubState, send_soon};
use crate::syncs::runs::{RunHandles, frame_bytes, run_of, unknown_run};
use crate::syncs::store::{RunRecord, SyncKey, SyncStore};

/// How long an instance has to answer a `StartSync`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cancelled run has to say it ended.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// How long past its deadline a run is given to say it ended by itself.
const DEADLINE_SLACK: Duration = Duration::from_secs(5);
/// How often a running run's counters are written to the store.
const COUNTERS_EVERY: Duration = Duration::from_secs(2);
/// The most ids in one `SyncAck` page of known ids...
const IDS_PER_PAGE: usize = 10_000;
/// ... and the most bytes of them.
const ID_BYTES_PER_PAGE: usize = 4 * 1024 * 1024;
/// The largest checkpoint the hub stores, as JSON.
pub(crate) const MAX_CHECKPOINT_BYTES: usize = 1024 * 1024;
/// How long the caller may take to read the end of its run.
const END_WAIT: Duration = Duration::from_secs(30);
/// The most bytes of a run's error message and of its failed items the
/// store keeps.
const MAX_STORED_MESSAGE: usize = 4 * 1024;
const MAX_STORED_FAILURES: usize = 256 * 1024;

/// The stream a caller of `Sync` reads.
pub(crate) type CallerStream = mpsc::Sender<Result<SyncStreamItem, Status>>;

/// Everything a run's task needs to know at its start.
pub(crate) struct RunPlan {
    pub(crate) key: SyncKey,
    pub(crate) instance: InstanceKey,
    pub(crate) start: StartSync,
    /// What listings show; updated as the run goes.
    pub(crate) info: SyncRunInfo,
    /// Whether the sync sweeps deletions in some mode: the hub then records
    /// the ids of the documents it delivers.
    pub(crate) sweeps: bool,
}

/// How the run's task left its loop.
enum End {
    /// The connector said how it ended.
    Ended(SyncEnded),
    /// The hub ended it: a status and why.
    Hub(&'static str, ErrorFrame),
}

fn error(code: &str, message: impl Into<String>) -> ErrorFrame {
    ErrorFrame {
        code: code.to_owned(),
        message: message.into(),
        details_json: String::new(),
    }
}

/// The state of one run's task.
struct Driver {
    state: Arc<HubState>,
    store: Arc<SyncStore>,
    plan: RunPlan,
    caller: CallerStream,
    /// The highest seq applied.
    applied: u64,
    /// Whether the caller got `started`.
    announced: bool,
    /// Whether the caller is gone (its stream closed or a send failed).
    caller_gone: bool,
    /// When the hub sent `CancelSync`, if it did.
    cancelled_at: Option<Instant>,
    /// When the connector was last heard from about this run.
    heard: Option<Instant>,
    counters_saved: Instant,
    /// Cancelled when the run is cancelled, its instance left or its
    /// deadline passed: a wait for a stalled caller gives up then.
    interrupt: CancellationToken,
}

/// Runs the run: sends `StartSync`, applies the connector's frames until
/// it ends, records the end and tells the caller.
pub(crate) async fn drive(
    state: Arc<HubState>,
    plan: RunPlan,
    handles: RunHandles,
    caller: CallerStream,
) {
    let store = Arc::clone(&state.syncs.store);
    let started = Instant::now();
    let deadline = (plan.start.timeout_ms > 0)
        .then(|| started + Duration::from_millis(plan.start.timeout_ms) + DEADLINE_SLACK);
    let interrupt = CancellationToken::new();
    let watcher = tokio::spawn(interrupt_when(
        handles.cancel.clone(),
        handles.gone.clone(),
        deadline,
        interrupt.clone(),
    ));
    let mut driver = Driver {
        state,
        store,
        plan,
        caller,
        applied: 0,
        announced: false,
        caller_gone: false,
        cancelled_at: None,
        heard: None,
        counters_saved: Instant::now(),
        interrupt,
    };
    let mut handles = handles;
    let end = driver.run(&mut handles, started, deadline).await;
    watcher.abort();
    driver.finish(end, &mut handles.inbox).await;
}

/// Cancels `interrupt` once the run is cancelled, its instance left for
/// good or its deadline passed.
async fn interrupt_when(
    cancel: CancellationToken,
    mut gone: watch::Receiver<Option<String>>,
    deadline: Option<Instant>,
    interrupt: CancellationToken,
) {
    tokio::select! {
        () = cancel.cancelled() => {}
        _ = gone.wait_for(Option::is_some) => {}
        () = crate::deadline::sleep_until(deadline) => {}
    }
    interrupt.cancel();
}

/// Where a frame's seq stands against the frames applied.
enum Turn {
    /// Applied already (sent again after a lost stream): acknowledged again.
    Again,
    /// The next one: applied.
    Next,
    /// A frame before it is missing: refused, to be sent again in order.
    Gap,
}

impl Driver {
    fn run_id(&self) -> &str {
        &self.plan.info.run_id
    }

    async fn run(
        &mut self,
        handles: &mut RunHandles,
        started: Instant,
        deadline: Option<Instant>,
    ) -> End {
        let RunHandles {
            inbox,
            gone,
            cancel,
            queued,
        } = handles;
        let begin = self.record();
        if let Err(e) = self.blocking(move |s| s.begin_run(&begin)).await {
            return End::Hub("failed", error("unavailable", e));
        }
        if !self.send(hub_frame::Frame::StartSync(self.plan.start.clone())) {
            return End::Hub(
                "failed",
                error(
                    "unavailable",
                    format!("instance {} is not attached", self.plan.instance.id),
                ),
            );
        }
        loop {
            let wake = self.wake(started, deadline);
            tokio::select! {
                biased;
                frame = inbox.recv() => {
                    let Some(frame) = frame else {
                        return End::Hub("failed", error("internal", "the run's inbox closed"));
                    };
                    queued.fetch_sub(frame_bytes(&frame), Ordering::Relaxed);
                    self.heard = Some(Instant::now());
                    if let Some(end) = self.apply(frame).await {
                        return end;
                    }
                }
                changed = gone.changed() => {
                    let why = gone.borrow().clone();
                    if changed.is_err() || why.is_some() {
                        return End::Hub("failed", error(
                            "unavailable",
                            format!(
                                "instance {} left during the run ({}); the next run resumes from the last stored checkpoint",
                                self.plan.instance.id,
                                why.unwrap_or_default()
                            ),
                        ));
                    }
                }
                () = cancel.cancelled(), if self.cancelled_at.is_none() => {
                    self.cancel_run("cancelled by a client");
                }
                () = self.caller.closed(), if !self.caller_gone => {
                    self.caller_gone = true;
                    if self.cancelled_at.is_none() {
                        self.cancel_run("the caller went away");
                    }
                }
                () = crate::deadline::sleep_until(wake) => {
                    if self.heard.is_none() && self.cancelled_at.is_none() && started.elapsed() >= START_TIMEOUT {
                        return End::Hub("failed", error(
                            "unavailable",
                            format!("instance {} did not answer the start of the run within {START_TIMEOUT:?}", self.plan.instance.id),
                        ));
                    }
                    if let Some(at) = self.cancelled_at && at.elapsed() >= CANCEL_WAIT {
                        return End::Hub("cancelled", error(
                            "cancelled",
                            format!("the run was cancelled and instance {} did not say it ended within {CANCEL_WAIT:?}", self.plan.instance.id),
                        ));
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) && self.cancelled_at.is_none() {
                        self.cancel_run("its deadline passed");
                    }
                }
            }
        }
    }

    /// When the loop must look at the clock next.
    fn wake(&self, started: Instant, deadline: Option<Instant>) -> Option<Instant> {
        let mut wake = None::<Instant>;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        if self.heard.is_none() && self.cancelled_at.is_none() {
            at(started + START_TIMEOUT);
        }
        match self.cancelled_at {
            Some(c) => at(c + CANCEL_WAIT),
            None => {
                if let Some(d) = deadline {
                    at(d);
                }
            }
        }
        wake
    }

    fn cancel_run(&mut self, why: &str) {
        tracing::info!(run_id = self.run_id(), "cancelling sync run: {why}");
        self.cancelled_at = Some(Instant::now());
        self.send(hub_frame::Frame::CancelSync(CancelSync {
            run_id: self.run_id().to_owned(),
            reason: why.to_owned(),
        }));
    }

    /// Where `seq` stands against the frames applied.
    fn turn(&self, seq: u64) -> Turn {
        if seq <= self.applied {
            Turn::Again
        } else if seq == self.applied + 1 {
            Turn::Next
        } else {
            Turn::Gap
        }
    }

    /// Refuses a frame that came before one it follows.
    fn refuse_gap(&self, seq: u64) {
        self.ack(
            seq,
            Some((
                error(
                    "unavailable",
                    format!(
                        "frame {seq} of the run came before frame {}; send the frames again in order",
                        self.applied + 1
                    ),
                ),
                true,
            )),
        );
    }

    /// Applies one frame; the end when it was `SyncEnded`.
    async fn apply(&mut self, frame: Frame) -> Option<End> {
        match frame {
            Frame::SyncStarted(started) => {
                if !self.announced {
                    self.plan.info.mode = started.mode;
                    self.plan.info.resume = started.resume;
                }
                self.announce().await;
                None
            }
            Frame::SyncBatch(batch) => {
                self.announce().await;
                let seq = batch.seq;
                match self.turn(seq) {
                    Turn::Again => self.ack(seq, None),
                    Turn::Gap => self.refuse_gap(seq),
                    Turn::Next => {
                        let refusal = self.apply_batch(batch).await;
                        if refusal.is_none() {
                            self.applied = seq;
                        }
                        self.ack(seq, refusal);
                    }
                }
                None
            }
            Frame::SyncCheckpoint(checkpoint) => {
                let seq = checkpoint.seq;
                match self.turn(seq) {
                    Turn::Again => self.ack(seq, None),
                    Turn::Gap => self.refuse_gap(seq),
                    Turn::Next => {
                        let refusal = self.apply_checkpoint(checkpoint).await;
                        if refusal.is_none() {
                            self.applied = seq;
                        }
                        self.ack(seq, refusal);
                    }
                }
                None
            }
            Frame::SyncKnownIds(ask) => {
                match self.turn(ask.seq) {
                    Turn::Gap => self.refuse_gap(ask.seq),
                    Turn::Again => self.send_known_ids(ask.seq).await,
                    Turn::Next => {
                        self.send_known_ids(ask.seq).await;
                        self.applied = ask.seq;
                    }
                }
                None
            }
            Frame::SyncEnded(mut ended) => {
                self.ack(ended.seq, None);
                // A run that completed had every frame acknowledged: one
                // missing means something was lost on the way.
                if ended.started && ended.status == "completed" && ended.seq > self.applied + 1 {
                    ended.status = "failed".to_owned();
                    ended.error = Some(error(
                        "unavailable",
                        format!(
                            "the run says it completed, but its frames from {} on never reached the hub",
                            self.applied + 1
                        ),
                    ));
                }
                Some(End::Ended(ended))
            }
            _ => None,
        }
    }

    /// Tells the caller the run started (once).
    async fn announce(&mut self) {
        if self.announced {
            return;
        }
        self.announced = true;
        self.plan.info.status = "running".to_owned();
        let info = self.plan.info.clone();
        self.state
            .syncs
            .runs
            .update(self.run_id(), |i| *i = info.clone());
        self.tell_caller(sync_stream_item::Item::Started(info))
            .await;
    }

    /// Hands a batch to the caller and records its ids; the refusal to
    /// send back when it is not durable.
    async fn apply_batch(&mut self, batch: SyncBatch) -> Option<(ErrorFrame, bool)> {
        if self.caller_gone {
            return Some((
                error(
                    "cancelled",
                    "the caller of the run went away; the run is cancelled",
                ),
                false,
            ));
        }
        let counters = batch.counters.unwrap_or_default();
        let ids = if self.plan.sweeps {
            match document_ids(&batch.events) {
                Ok(ids) => Some(ids),
                Err(e) => return Some((error("invalid_input", e), false)),
            }
        } else {
            None
        };
        let delivered = self
            .tell_caller(sync_stream_item::Item::Events(SyncEvents {
                run_id: self.run_id().to_owned(),
                events: batch.events,
                count: batch.count,
                counters: Some(counters),
            }))
            .await;
        if !delivered {
            return Some((
                error(
                    "cancelled",
                    "the caller of the run went away; the run is cancelled",
                ),
                false,
            ));
        }
        if let Some((seen, deleted)) = ids {
            let key = self.plan.key.clone();
            let recorded = self
                .blocking(move |s| {
                    let seen: Vec<&str> = seen.iter().map(String::as_str).collect();
                    let deleted: Vec<&str> = deleted.iter().map(String::as_str).collect();
                    s.record_ids(&key, &seen, &deleted)
                })
                .await;
            if let Err(e) = recorded {
                // The caller has the events: sending them again would
                // duplicate them, so the run ends instead.
                tracing::error!(
                    run_id = self.run_id(),
                    "cannot record the ids of a batch: {e}"
                );
                return Some((
                    error(
                        "unavailable",
                        format!("the hub cannot record the batch's ids: {e}"),
                    ),
                    false,
                ));
            }
        }
        self.note_counters(counters).await;
        None
    }

    /// Stores a checkpoint; the refusal to send back when it is not stored.
    async fn apply_checkpoint(&mut self, checkpoint: SyncCheckpoint) -> Option<(ErrorFrame, bool)> {
        if self.caller_gone || self.caller.is_closed() {
            // Its batches may not all have reached the caller.
            return Some((
                error(
                    "cancelled",
                    "the caller of the run went away; the checkpoint is not stored",
                ),
                false,
            ));
        }
        if checkpoint.checkpoint_json.len() > MAX_CHECKPOINT_BYTES {
            return Some((
                error(
                    "invalid_input",
                    format!(
                        "the checkpoint is {} bytes as JSON, more than the {MAX_CHECKPOINT_BYTES} the hub stores; keep a cursor in it, not data",
                        checkpoint.checkpoint_json.len()
                    ),
                ),
                false,
            ));
        }
        if let Err(e) = serde_json::from_str::<spoke_runtime::sync::StoredCheckpoint>(
            &checkpoint.checkpoint_json,
        ) {
            return Some((
                error(
                    "invalid_input",
                    format!("the checkpoint is not a stored checkpoint: {e}"),
                ),
                false,
            ));
        }
        let key = self.plan.key.clone();
        let run_id = self.run_id().to_owned();
        let json = checkpoint.checkpoint_json.clone();
        match self
            .blocking(move |s| s.save_checkpoint(&key, &run_id, &json))
            .await
        {
            Ok(true) => {
                self.tell_caller(sync_stream_item::Item::Checkpoint(SyncCheckpointStored {
                    run_id: self.run_id().to_owned(),
                    checkpoint_json: checkpoint.checkpoint_json,
                }))
                .await;
                None
            }
            Ok(false) => Some((
                error(
                    "failed_precondition",
                    "the checkpoint of this sync was reset or replaced during the run; it is not stored",
                ),
                false,
            )),
            Err(e) => Some((
                error(
                    "unavailable",
                    format!("the hub cannot store the checkpoint: {e}"),
                ),
                true,
            )),
        }
    }

    /// Answers `SyncKnownIds`: the ids a page at a time.
    async fn send_known_ids(&mut self, seq: u64) {
        let key = self.plan.key.clone();
        let ids = if self.plan.sweeps {
            self.blocking(move |s| s.known_ids(&key)).await
        } else {
            Ok(Vec::new())
        };
        let ids = match ids {
            Ok(ids) => ids,
            Err(e) => {
                self.ack(
                    seq,
                    Some((
                        error(
                            "unavailable",
                            format!("the hub cannot read the known ids: {e}"),
                        ),
                        true,
                    )),
                );
                return;
            }
        };
        let pages = id_pages(ids);
        let count = pages.len();
        if count == 0 {
            self.ack(seq, None);
            return;
        }
        for (n, page) in pages.into_iter().enumerate() {
            let more = n + 1 < count;
            let Some(tx) = self.link() else { return };
            let frame = HubFrame {
                frame: Some(hub_frame::Frame::SyncAck(SyncAck {
                    run_id: self.run_id().to_owned(),
                    seq,
                    known_ids: page,
                    more,
                    ..SyncAck::default()
                })),
            };
            // In order, waiting for room: pages must not overtake each other.
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    }

    /// Notes a batch's counters: in the listing at once, in the store now and then.
    async fn note_counters(&mut self, counters: SyncCounters) {
        self.state
            .syncs
            .runs
            .update(self.run_id(), |i| i.counters = Some(counters));
        if self.counters_saved.elapsed() >= COUNTERS_EVERY {
            self.counters_saved = Instant::now();
            let run_id = self.run_id().to_owned();
            let json = counters_json(&counters);
            if let Err(e) = self
                .blocking(move |s| s.update_counters(&run_id, &json))
                .await
            {
                tracing::warn!(
                    run_id = self.run_id(),
                    "cannot store the run's counters: {e}"
                );
            }
        }
    }

    /// Records how the run ended and tells the caller.
    async fn finish(mut self, end: End, inbox: &mut mpsc::Receiver<Frame>) {
        if matches!(end, End::Hub(..)) {
            // The instance may still run it (it did not answer in time):
            // tell it the run is over; its later frames are refused.
            self.send(hub_frame::Frame::CancelSync(CancelSync {
                run_id: self.run_id().to_owned(),
                reason: "the hub ended the run".to_owned(),
            }));
        }
        let announced = self.announced;
        let info = &mut self.plan.info;
        info.ended_unix_ms = unix_ms();
        let started = match end {
            End::Ended(ended) => {
                info.status = ended.status;
                info.error = ended.error;
                if ended.counters.is_some() {
                    info.counters = ended.counters;
                }
                info.failures_json = ended.failures_json;
                info.swept = ended.swept;
                ended.started
            }
            End::Hub(status, error) => {
                info.status = status.to_owned();
                info.error = Some(error);
                announced
            }
        };
        if info.status.is_empty() {
            info.status = "failed".to_owned();
        }
        let record = self.record();
        let run_id = self.run_id().to_owned();
        if let Err(e) = self.blocking(move |s| s.end_run(&record)).await {
            tracing::error!(run_id, "cannot record the end of the sync run: {e}");
        }
        self.state.syncs.runs.finish(&run_id);
        // Frames that came after the end (the hub ended the run while the
        // connector went on) are refused, so that nothing waits for them.
        inbox.close();
        while let Ok(frame) = inbox.try_recv() {
            if let Some((run_id, seq)) = run_of(&frame)
                && seq > 0
            {
                self.send(hub_frame::Frame::SyncAck(unknown_run(run_id, seq)));
            }
        }
        let info = self.plan.info.clone();
        tracing::info!(
            run_id,
            connector = info.connector,
            sync = info.sync,
            source = info.source_id,
            instance = info.instance_id,
            status = info.status,
            error = info
                .error
                .as_ref()
                .map(|e| e.message.as_str())
                .unwrap_or(""),
            "sync run ended"
        );
        if started {
            if !self.caller_gone {
                let item = Ok(SyncStreamItem {
                    item: Some(sync_stream_item::Item::Ended(info)),
                });
                // A caller that reads no more is not waited for long.
                let _ = tokio::time::timeout(END_WAIT, self.caller.send(item)).await;
            }
        } else {
            let error = info
                .error
                .unwrap_or_else(|| error("internal", "the run did not start"));
            let _ = self.caller.send(Err(status_of(&error))).await;
        }
    }

    /// The run as the store keeps it.
    fn record(&self) -> RunRecord {
        let info = &self.plan.info;
        RunRecord {
            run_id: info.run_id.clone(),
            key: self.plan.key.clone(),
            instance_id: info.instance_id.clone(),
            mode: info.mode.clone(),
            resume: info.resume,
            status: info.status.clone(),
            error_code: info.error.as_ref().map(|e| e.code.clone()),
            error_message: info
                .error
                .as_ref()
                .map(|e| bounded(&e.message, MAX_STORED_MESSAGE)),
            counters_json: counters_json(&info.counters.unwrap_or_default()),
            failures_json: bounded_failures(&info.failures_json),
            swept: info.swept,
            started_unix_ms: info.started_unix_ms,
            ended_unix_ms: (info.ended_unix_ms > 0).then_some(info.ended_unix_ms),
        }
    }

    /// Sends an item to the caller, waiting for room; whether it got there.
    /// Sends an item to the caller, waiting for room; whether it got
    /// there. A wait for a stalled caller gives up (`false`) when the run
    /// is interrupted (cancelled, its instance gone, its deadline passed).
    async fn tell_caller(&mut self, item: sync_stream_item::Item) -> bool {
        if self.caller_gone {
            return false;
        }
        let send = self.caller.send(Ok(SyncStreamItem { item: Some(item) }));
        let sent = tokio::select! {
            biased;
            sent = send => sent.is_ok(),
            () = self.interrupt.cancelled() => return false,
        };
        if !sent {
            self.caller_gone = true;
        }
        sent
    }

    /// The run's instance's stream, if it has one now.
    fn link(&self) -> Option<mpsc::Sender<HubFrame>> {
        self.state.lock().registry.link_tx(&self.plan.instance)
    }

    /// Sends a frame to the run's instance; whether it has a stream.
    fn send(&self, frame: hub_frame::Frame) -> bool {
        match self.link() {
            Some(tx) => {
                send_soon(tx, HubFrame { frame: Some(frame) });
                true
            }
            None => false,
        }
    }

    /// Acknowledges `seq`, or refuses it (`retryable` or not).
    fn ack(&self, seq: u64, refusal: Option<(ErrorFrame, bool)>) {
        let (error, retryable) = match refusal {
            Some((error, retryable)) => (Some(error), retryable),
            None => (None, false),
        };
        self.send(hub_frame::Frame::SyncAck(SyncAck {
            run_id: self.run_id().to_owned(),
            seq,
            error,
            retryable,
            ..SyncAck::default()
        }));
    }

    /// Runs a store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&SyncStore) -> Result<T, crate::syncs::store::SyncStoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || call(&store)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the store call failed: {e}")),
        }
    }
}

/// The ids in pages of at most [`IDS_PER_PAGE`] ids and about
/// [`ID_BYTES_PER_PAGE`] bytes (one longer id alone in its page).
fn id_pages(ids: Vec<String>) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut bytes = 0;
    for id in ids {
        if !page.is_empty() && (page.len() == IDS_PER_PAGE || bytes + id.len() > ID_BYTES_PER_PAGE)
        {
            pages.push(std::mem::take(&mut page));
            bytes = 0;
        }
        bytes += id.len();
        page.push(id);
    }
    if !page.is_empty() {
        pages.push(page);
    }
    pages
}

/// A run's failed items (JSON) as the store keeps them: the first ones
/// that fit in [`MAX_STORED_FAILURES`] bytes.
fn bounded_failures(json: &str) -> String {
    if json.len() <= MAX_STORED_FAILURES {
        return json.to_owned();
    }
    let Ok(items) = serde_json::from_str::<Vec<serde_json::Value>>(json) else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut bytes = 2;
    for item in items {
        let size = item.to_string().len() + 1;
        if bytes + size > MAX_STORED_FAILURES {
            break;
        }
        bytes += size;
        kept.push(item);
    }
    serde_json::Value::Array(kept).to_string()
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The counters as the store keeps them (JSON).
pub(crate) fn counters_json(c: &SyncCounters) -> String {
    crate::wire::sync_counters_json(c).to_string()
}

/// The counters from what the store keeps.
pub(crate) fn counters_from_json(json: &str) -> SyncCounters {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Stored {
        scanned: u64,
        updated: u64,
        emitted: u64,
        deleted: u64,
        failed: u64,
        delivered: u64,
        progress: Option<f64>,
        total: Option<f64>,
    }
    let s: Stored = serde_json::from_str(json).unwrap_or_default();
    SyncCounters {
        scanned: s.scanned,
        updated: s.updated,
        emitted: s.emitted,
        deleted: s.deleted,
        failed: s.failed,
        delivered: s.delivered,
        progress: s.progress,
        total: s.total,
    }
}

/// The ids a batch's JSON lines deliver (documents created or updated)
/// and delete; an error names the line that is not an event.
fn document_ids(events: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    #[derive(Deserialize)]
    struct EventId {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        id: Option<String>,
    }
    let mut seen = Vec::new();
    let mut deleted = Vec::new();
    for (n, line) in events.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let event: EventId = serde_json::from_slice(line)
            .map_err(|e| format!("line {} of the batch is not a sync event: {e}", n + 1))?;
        match (event.kind.as_str(), event.id) {
            ("document_created" | "document_updated", Some(id)) => seen.push(id),
            ("document_deleted", Some(id)) => deleted.push(id),
            _ => {}
        }
    }
    Ok((seen, deleted))
}

/// The gRPC status of a connector's error code (a run that did not start).
pub(crate) fn status_of(error: &ErrorFrame) -> Status {
    let code = match error.code.as_str() {
        "invalid_input" => tonic::Code::InvalidArgument,
        "not_found" => tonic::Code::NotFound,
        "unauthorized" => tonic::Code::PermissionDenied,
        "failed_precondition" => tonic::Code::FailedPrecondition,
        "unavailable" => tonic::Code::Unavailable,
        "deadline_exceeded" => tonic::Code::DeadlineExceeded,
        "cancelled" => tonic::Code::Cancelled,
        _ => tonic::Code::Internal,
    };
    Status::new(code, error.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_are_read_from_the_json_lines() {
        let lines = b"{\"type\":\"document_created\",\"id\":\"a\",\"title\":\"A\"}\n{\"type\":\"document_deleted\",\"id\":\"b\"}\n{\"type\":\"group_membership\",\"group\":\"g\",\"members\":[]}\n{\"type\":\"document_updated\",\"id\":\"c\"}\n";
        let (seen, deleted) = document_ids(lines).unwrap();
        assert_eq!(seen, ["a", "c"]);
        assert_eq!(deleted, ["b"]);
        let error =
            document_ids(b"{\"type\":\"document_created\",\"id\":\"a\"}\nnot json\n").unwrap_err();
        assert!(error.starts_with("line 2 "), "{error}");
    }

    #[test]
    fn counters_survive_the_store() {
        let counters = SyncCounters {
            scanned: 5,
            delivered: 4,
            progress: Some(0.5),
            ..SyncCounters::default()
        };
        assert_eq!(counters_from_json(&counters_json(&counters)), counters);
        assert_eq!(counters_from_json("garbage"), SyncCounters::default());
    }

    #[test]
    fn a_refusal_keeps_its_code() {
        let status = status_of(&error(
            "failed_precondition",
            "sync `files` is already running as run run-1",
        ));
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("run-1"));
    }
}
