//! The sync runs going on now: one per (tenant, connector, sync, source),
//! each with its instance, its inbox of frames from the connector and what
//! a listing shows of it.
//!
//! An Attach stream hands a run's frames to [`SyncRuns::deliver`] without
//! waiting (the run's own task applies them); a frame for a run the hub
//! does not know, or from another instance, is answered at once with a
//! `SyncAck` error that ends the run on the connector.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use spoke_proto::v1::connector_frame::Frame;
use spoke_proto::v1::{Error as ErrorFrame, SyncAck, SyncRunInfo};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::routing::registry::InstanceKey;
use crate::syncs::store::SyncKey;

/// How many frames of one run may wait for its task. The connector sends
/// one batch at a time (a few frames) and waits for its acknowledgement,
/// so only a misbehaving one fills this; it is told to try again.
const INBOX: usize = 64;
/// The most bytes of frames that may wait for one run's task (a batch is
/// sent in pieces of at most 1 MiB; an event alone may be up to 16 MiB).
const MAX_INBOX_BYTES: usize = 32 * 1024 * 1024;

/// A run's frame from its connector, with the instance it came from.
pub(crate) type RunFrame = Frame;

/// What the task of a run gets when it starts.
pub(crate) struct RunHandles {
    /// The run's frames from its instance.
    pub(crate) inbox: mpsc::Receiver<RunFrame>,
    /// Set to why the run's instance left for good (its session ended).
    pub(crate) gone: watch::Receiver<Option<String>>,
    /// Cancelled by `CancelSync` (or the caller going away).
    pub(crate) cancel: CancellationToken,
    /// The bytes of the frames waiting in `inbox` (see [`frame_bytes`]);
    /// the task takes off what it receives.
    pub(crate) queued: Arc<AtomicUsize>,
}

struct Entry {
    key: SyncKey,
    instance: InstanceKey,
    info: SyncRunInfo,
    inbox: mpsc::Sender<RunFrame>,
    gone: watch::Sender<Option<String>>,
    cancel: CancellationToken,
    queued: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<String, Entry>,
    /// The run of each (tenant, connector, sync, source).
    slots: HashMap<SyncKey, String>,
}

/// The runs going on now; see the module docs.
#[derive(Default)]
pub(crate) struct SyncRuns {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SyncRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRuns")
            .field("running", &self.lock().runs.len())
            .finish()
    }
}

/// A refusal for a frame of a run this hub does not run (on that instance).
pub(crate) fn unknown_run(run_id: &str, seq: u64) -> SyncAck {
    SyncAck {
        run_id: run_id.to_owned(),
        seq,
        error: Some(ErrorFrame {
            code: "not_found".to_owned(),
            message: format!(
                "sync run {run_id} is not running on this hub (it ended, or the hub restarted)"
            ),
            details_json: String::new(),
        }),
        retryable: false,
        ..SyncAck::default()
    }
}

/// A refusal for a frame that finds its run's inbox full: sent again later.
fn busy(run_id: String, seq: u64) -> SyncAck {
    SyncAck {
        run_id,
        seq,
        error: Some(ErrorFrame {
            code: "unavailable".to_owned(),
            message: "too many frames of this run are waiting; send it again".to_owned(),
            details_json: String::new(),
        }),
        retryable: true,
        ..SyncAck::default()
    }
}

/// About how many bytes a run's frame holds.
pub(crate) fn frame_bytes(frame: &Frame) -> usize {
    64 + match frame {
        Frame::SyncBatch(f) => f.events.len(),
        Frame::SyncCheckpoint(f) => f.checkpoint_json.len(),
        Frame::SyncEnded(f) => {
            f.failures_json.len() + f.error.as_ref().map_or(0, |e| e.message.len())
        }
        _ => 0,
    }
}

/// The run id and sequence number of a run's frame.
pub(crate) fn run_of(frame: &Frame) -> Option<(&str, u64)> {
    match frame {
        Frame::SyncStarted(f) => Some((&f.run_id, 0)),
        Frame::SyncBatch(f) => Some((&f.run_id, f.seq)),
        Frame::SyncCheckpoint(f) => Some((&f.run_id, f.seq)),
        Frame::SyncKnownIds(f) => Some((&f.run_id, f.seq)),
        Frame::SyncEnded(f) => Some((&f.run_id, f.seq)),
        _ => None,
    }
}

impl SyncRuns {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the slot of `key` for run `info.run_id` on `instance`;
    /// `FAILED_PRECONDITION` naming the run that holds it.
    pub(crate) fn reserve(
        &self,
        key: SyncKey,
        instance: InstanceKey,
        info: SyncRunInfo,
    ) -> Result<RunHandles, Status> {
        let mut inner = self.lock();
        if let Some(running) = inner.slots.get(&key) {
            let since = inner
                .runs
                .get(running)
                .map(|e| e.info.instance_id.clone())
                .unwrap_or_default();
            return Err(Status::failed_precondition(format!(
                "sync `{}` of source `{}` is already running as run {running} (on instance {since}); cancel it (spoke sync --cancel {running}) or wait for it to end",
                key.sync, key.source
            )));
        }
        let (tx, inbox) = mpsc::channel(INBOX);
        let (gone_tx, gone) = watch::channel(None);
        let cancel = CancellationToken::new();
        let queued = Arc::new(AtomicUsize::new(0));
        let run_id = info.run_id.clone();
        inner.slots.insert(key.clone(), run_id.clone());
        inner.runs.insert(
            run_id,
            Entry {
                key,
                instance,
                info,
                inbox: tx,
                gone: gone_tx,
                cancel: cancel.clone(),
                queued: Arc::clone(&queued),
            },
        );
        Ok(RunHandles {
            inbox,
            gone,
            cancel,
            queued,
        })
    }

    /// Hands a run's frame from `instance` to the run's task; the
    /// `SyncAck` to send back at once when it cannot.
    pub(crate) fn deliver(&self, instance: &InstanceKey, frame: Frame) -> Option<SyncAck> {
        let (run_id, seq) = run_of(&frame).map(|(r, s)| (r.to_owned(), s))?;
        let inner = self.lock();
        let Some(entry) = inner.runs.get(&run_id).filter(|e| e.instance == *instance) else {
            return (seq > 0).then(|| unknown_run(&run_id, seq));
        };
        let bytes = frame_bytes(&frame);
        let waiting = entry.queued.load(Ordering::Relaxed);
        if waiting > 0 && waiting + bytes > MAX_INBOX_BYTES {
            return Some(busy(run_id, seq));
        }
        match entry.inbox.try_send(frame) {
            Ok(()) => {
                entry.queued.fetch_add(bytes, Ordering::Relaxed);
                None
            }
            Err(mpsc::error::TrySendError::Full(_)) => Some(busy(run_id, seq)),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                (seq > 0).then(|| unknown_run(&run_id, seq))
            }
        }
    }

    /// The instance left for good (its session ended or expired): its
    /// runs fail.
    pub(crate) fn instance_gone(&self, instance: &InstanceKey, why: &str) {
        for entry in self
            .lock()
            .runs
            .values()
            .filter(|e| e.instance == *instance)
        {
            entry.gone.send_replace(Some(why.to_owned()));
        }
    }

    /// Updates what a listing shows of a run.
    pub(crate) fn update(&self, run_id: &str, change: impl FnOnce(&mut SyncRunInfo)) {
        if let Some(entry) = self.lock().runs.get_mut(run_id) {
            change(&mut entry.info);
        }
    }

    /// Forgets an ended run and frees its slot.
    pub(crate) fn finish(&self, run_id: &str) {
        let mut inner = self.lock();
        if let Some(entry) = inner.runs.remove(run_id)
            && inner.slots.get(&entry.key).is_some_and(|r| r == run_id)
        {
            inner.slots.remove(&entry.key);
        }
    }

    /// Cancels a running run; what it was, `None` when no such run runs.
    /// `visible` says whether the caller may see a run of this tenant and
    /// connector.
    pub(crate) fn cancel(
        &self,
        run_id: &str,
        visible: impl Fn(&str, &str) -> bool,
    ) -> Option<SyncRunInfo> {
        let inner = self.lock();
        let entry = inner
            .runs
            .get(run_id)
            .filter(|e| visible(&e.key.tenant, &e.key.connector))?;
        entry.cancel.cancel();
        Some(entry.info.clone())
    }

    /// Whether a run of `key` is going on.
    pub(crate) fn is_running(&self, key: &SyncKey) -> Option<String> {
        self.lock().slots.get(key).cloned()
    }

    /// The runs going on now that `visible` lets the caller see, oldest first.
    pub(crate) fn running(&self, visible: impl Fn(&str, &str) -> bool) -> Vec<SyncRunInfo> {
        let mut runs: Vec<SyncRunInfo> = self
            .lock()
            .runs
            .values()
            .filter(|e| visible(&e.key.tenant, &e.key.connector))
            .map(|e| e.info.clone())
            .collect();
        runs.sort_by(|a, b| (a.started_unix_ms, &a.run_id).cmp(&(b.started_unix_ms, &b.run_id)));
        runs
    }

    /// Cancels every run (the hub is shutting down).
    pub(crate) fn cancel_all(&self) {
        for entry in self.lock().runs.values() {
            entry.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoke_proto::v1::{SyncBatch, SyncStarted};

    fn key(sync: &str) -> SyncKey {
        SyncKey {
            tenant: "default".into(),
            connector: "files".into(),
            sync: sync.into(),
            source: String::new(),
        }
    }

    fn instance(id: &str) -> InstanceKey {
        InstanceKey {
            tenant: "default".into(),
            connector: "files".into(),
            id: id.into(),
        }
    }

    fn info(run_id: &str) -> SyncRunInfo {
        SyncRunInfo {
            run_id: run_id.into(),
            instance_id: "a".into(),
            ..SyncRunInfo::default()
        }
    }

    fn batch(run_id: &str, seq: u64) -> Frame {
        Frame::SyncBatch(SyncBatch {
            run_id: run_id.into(),
            seq,
            ..SyncBatch::default()
        })
    }

    #[test]
    fn a_second_run_of_the_same_sync_and_source_is_refused_naming_the_first() {
        let runs = SyncRuns::default();
        let _first = runs
            .reserve(key("files"), instance("a"), info("run-1"))
            .unwrap();
        let refused = runs
            .reserve(key("files"), instance("b"), info("run-2"))
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("run-1"), "{}", refused.message());
        // Another sync is free; the slot frees when the run finishes.
        assert!(
            runs.reserve(key("other"), instance("a"), info("run-3"))
                .is_ok()
        );
        runs.finish("run-1");
        assert!(
            runs.reserve(key("files"), instance("b"), info("run-4"))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn frames_reach_their_run_only_from_its_instance() {
        let runs = SyncRuns::default();
        let mut handles = runs
            .reserve(key("files"), instance("a"), info("run-1"))
            .unwrap();
        assert!(runs.deliver(&instance("a"), batch("run-1", 1)).is_none());
        assert!(matches!(handles.inbox.recv().await, Some(Frame::SyncBatch(b)) if b.seq == 1));
        let refused = runs.deliver(&instance("b"), batch("run-1", 2)).unwrap();
        assert!(!refused.retryable);
        assert_eq!(refused.error.unwrap().code, "not_found");
        let unknown = runs.deliver(&instance("a"), batch("run-9", 1)).unwrap();
        assert_eq!(unknown.run_id, "run-9");
        // A SyncStarted (no seq) for an unknown run needs no answer.
        let started = Frame::SyncStarted(SyncStarted {
            run_id: "run-9".into(),
            ..SyncStarted::default()
        });
        assert!(runs.deliver(&instance("a"), started).is_none());
    }

    #[test]
    fn a_full_inbox_asks_the_connector_to_send_again() {
        let runs = SyncRuns::default();
        let _handles = runs
            .reserve(key("files"), instance("a"), info("run-1"))
            .unwrap();
        for seq in 1..=INBOX as u64 {
            assert!(runs.deliver(&instance("a"), batch("run-1", seq)).is_none());
        }
        let busy = runs.deliver(&instance("a"), batch("run-1", 99)).unwrap();
        assert!(busy.retryable);
    }

    #[test]
    fn an_instance_gone_tells_its_runs_only() {
        let runs = SyncRuns::default();
        let a = runs
            .reserve(key("files"), instance("a"), info("run-1"))
            .unwrap();
        let b = runs
            .reserve(key("other"), instance("b"), info("run-2"))
            .unwrap();
        runs.instance_gone(&instance("a"), "expired");
        assert_eq!(a.gone.borrow().as_deref(), Some("expired"));
        assert!(b.gone.borrow().is_none());
    }

    #[test]
    fn cancel_reaches_only_visible_runs() {
        let runs = SyncRuns::default();
        let handles = runs
            .reserve(key("files"), instance("a"), info("run-1"))
            .unwrap();
        assert!(runs.cancel("run-1", |_, _| false).is_none());
        assert!(!handles.cancel.is_cancelled());
        assert!(runs.cancel("run-1", |t, _| t == "default").is_some());
        assert!(handles.cancel.is_cancelled());
        assert_eq!(runs.running(|_, _| true).len(), 1);
        assert!(runs.running(|_, _| false).is_empty());
    }
}
