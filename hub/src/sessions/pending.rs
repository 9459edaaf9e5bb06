//! In-flight calls by request id, each answered exactly once.
//!
//! An entry is created when the hub hands an `Invoke` to an instance and
//! removed when the instance answers (`Result`), when the instance's session
//! ends, or when the Invoke turned out not to have been sent. A caller that
//! gives up (deadline, went away) *abandons* its entry: the hub sends `Cancel`,
//! and the entry stays, without a caller, until the connector's final
//! `Result` arrives, so that the instance's invocation slot is only freed when
//! the connector has really finished.
//!
//! Each entry keeps the `Invoke` it sent: when the instance resumes its
//! session on a new stream, [`Pending::resend`] sends the Invoke of every
//! call still pending on it again (one sent on the lost stream may never
//! have left the hub), followed by a `Cancel` for a call whose caller gave
//! up. The connector ignores an Invoke whose request id it already knows,
//! so each call still runs once.

use std::collections::HashMap;

use spoke_proto::v1::{
    self, Cancel, Chunk, Event, HubFrame, Invoke, InvokeStreamItem, hub_frame, invoke_stream_item,
    result,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;
use tonic::Status;

use crate::deadline;
use crate::routing::registry::InstanceKey;

/// The most a unary caller's chunked result may add up to.
pub(crate) use spoke_proto::MAX_ASSEMBLED_BYTES;

/// Where a streaming caller's items go.
pub(crate) type ItemSender = mpsc::Sender<Result<InvokeStreamItem, Status>>;

/// How a call ends, as seen by its caller.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The connector's `Result` (for unary callers, chunks already assembled
    /// into the payload).
    Result(v1::Result),
    /// The instance's session ended before it answered; the reason says how.
    Lost(String),
    /// The hub gave up on the call (the caller cannot keep up, the result is
    /// too large); the connector was asked to cancel.
    Failed(Status),
}

/// The waiting side of a call.
#[derive(Debug)]
pub(crate) struct Caller {
    answer: oneshot::Sender<Answer>,
    stream: Option<ItemSender>,
    /// A unary caller's chunks so far, kept as received (no copy) and
    /// joined once, at the exact size, when the result comes.
    chunks: Vec<bytes::Bytes>,
    /// What they count against the limit (see [`charged`]).
    chunk_bytes: usize,
    next_seq: u64,
}

impl Caller {
    /// A caller waiting on `answer`, receiving events and chunks on `stream`
    /// if it streams.
    pub(crate) fn new(answer: oneshot::Sender<Answer>, stream: Option<ItemSender>) -> Self {
        Caller {
            answer,
            stream,
            chunks: Vec::new(),
            chunk_bytes: 0,
            next_seq: 0,
        }
    }
}

/// A unary caller's payload: `chunks` and then `tail`,
/// in one buffer allocated once (a single chunk is passed on as it is).
fn joined(mut chunks: Vec<bytes::Bytes>, tail: bytes::Bytes) -> bytes::Bytes {
    match (chunks.len(), tail.is_empty()) {
        (0, _) => return tail,
        (1, true) => return chunks.remove(0),
        _ => {}
    }
    let bytes: usize = chunks.iter().map(bytes::Bytes::len).sum();
    let mut out = Vec::with_capacity(bytes + tail.len());
    for chunk in &chunks {
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&tail);
    out.into()
}

/// Chunks smaller than this are copied out of the receive buffer (a view
/// of it would keep the whole buffer alive) and count as this much against
/// [`MAX_ASSEMBLED_BYTES`]: a connector sending empty or tiny chunks
/// cannot grow the list without bound.
const SMALL_CHUNK_BYTES: usize = 4 * 1024;

/// What a chunk counts against [`MAX_ASSEMBLED_BYTES`].
fn charged(data: &bytes::Bytes) -> usize {
    data.len().max(SMALL_CHUNK_BYTES)
}

impl Caller {
    /// Keeps a unary caller's chunk: large ones as they are, small ones
    /// copied; empty ones not at all.
    fn keep(&mut self, data: bytes::Bytes) {
        self.chunk_bytes += charged(&data);
        match data.len() {
            0 => {}
            n if n < SMALL_CHUNK_BYTES => self.chunks.push(bytes::Bytes::copy_from_slice(&data)),
            _ => self.chunks.push(data),
        }
    }
}

#[derive(Debug)]
struct Entry {
    instance: InstanceKey,
    caller: Option<Caller>,
    _slot: Option<OwnedSemaphorePermit>,
    /// The Invoke handed to the instance, to send again after a resume.
    invoke: Invoke,
    /// The caller's deadline, from which a re-sent Invoke's `timeout_ms` is
    /// computed afresh.
    deadline: Option<Instant>,
    /// Whether a resumed stream has been sent the Invoke again.
    resent: bool,
    /// Insertion order, so that re-sent Invokes keep their order.
    seq: u64,
}

/// What [`Pending::take_back`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TakeBack {
    /// The call was removed: its Invoke never reached the instance, and it
    /// may go elsewhere.
    Removed,
    /// A resumed stream was sent the Invoke again: the call stays, and its
    /// answer is coming.
    Resent,
    /// The call was already ended (answered, or its instance left); its
    /// answer (or the lack of one) is waiting for the caller.
    Gone,
}

/// What became of a frame the connector sent about a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Handed to the waiting caller.
    Delivered,
    /// The caller had given up; the frame is dropped.
    Abandoned,
    /// No call has this request id (already answered, or never existed).
    Unknown,
    /// The call belongs to another instance; the frame is dropped.
    Foreign(InstanceKey),
    /// The caller could not take it; the call failed and must be cancelled
    /// at this instance.
    Overflow,
}

/// The in-flight calls.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    calls: HashMap<String, Entry>,
    next_seq: u64,
}

impl Pending {
    /// Records a call handed to `instance` with this Invoke (whose
    /// `request_id` names the call); `slot` is held until the connector
    /// answers or the session ends.
    pub(crate) fn insert(
        &mut self,
        invoke: Invoke,
        deadline: Option<Instant>,
        instance: InstanceKey,
        caller: Caller,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        self.next_seq += 1;
        self.calls.insert(
            invoke.request_id.clone(),
            Entry {
                instance,
                caller: Some(caller),
                _slot: slot,
                invoke,
                deadline,
                resent: false,
                seq: self.next_seq,
            },
        );
    }

    /// The instance resumed its session on a new stream: the frames to send
    /// on it, in the order the calls were made. Every call still pending on
    /// the instance gets its Invoke again (with `timeout_ms` counted from
    /// now); a call whose caller gave up gets a `Cancel` right after it, so
    /// that the connector answers it and its slot is freed.
    pub(crate) fn resend(&mut self, instance: &InstanceKey) -> Vec<HubFrame> {
        let mut entries: Vec<&mut Entry> = self
            .calls
            .values_mut()
            .filter(|e| e.instance == *instance)
            .collect();
        entries.sort_by_key(|e| e.seq);
        let mut frames = Vec::with_capacity(entries.len());
        for entry in entries {
            entry.resent = true;
            let mut invoke = entry.invoke.clone();
            if entry.deadline.is_some() {
                invoke.timeout_ms = deadline::timeout_ms(entry.deadline);
            }
            let request_id = invoke.request_id.clone();
            frames.push(HubFrame {
                frame: Some(hub_frame::Frame::Invoke(invoke)),
            });
            if entry.caller.is_none() {
                frames.push(HubFrame {
                    frame: Some(hub_frame::Frame::Cancel(Cancel {
                        request_id,
                        reason: "the caller gave up".to_owned(),
                    })),
                });
            }
        }
        frames
    }

    /// The connector's answer to a call.
    pub(crate) fn resolve(&mut self, from: &InstanceKey, mut result: v1::Result) -> Delivery {
        let Some(entry) = self.calls.get(&result.request_id) else {
            return Delivery::Unknown;
        };
        if entry.instance != *from {
            return Delivery::Foreign(entry.instance.clone());
        }
        let Some(entry) = self.calls.remove(&result.request_id) else {
            return Delivery::Unknown;
        };
        let Some(caller) = entry.caller else {
            return Delivery::Abandoned;
        };
        if result.chunked && caller.stream.is_none() {
            // A unary caller gets the pieces joined into the payload.
            match &mut result.outcome {
                Some(result::Outcome::Error(_)) => {}
                Some(result::Outcome::Payload(payload)) => {
                    let tail = std::mem::take(payload);
                    *payload = joined(caller.chunks, tail);
                }
                None => {
                    let payload = joined(caller.chunks, bytes::Bytes::new());
                    result.outcome = Some(result::Outcome::Payload(payload));
                }
            }
        }
        // The caller may have gone this very moment; it then logs and cancels
        // nothing, since its entry is gone.
        let _ = caller.answer.send(Answer::Result(result));
        Delivery::Delivered
    }

    /// A piece of a call's result.
    pub(crate) fn chunk(&mut self, from: &InstanceKey, chunk: Chunk) -> Delivery {
        let Some(entry) = self.calls.get_mut(&chunk.request_id) else {
            return Delivery::Unknown;
        };
        if entry.instance != *from {
            return Delivery::Foreign(entry.instance.clone());
        }
        let Some(caller) = entry.caller.as_mut() else {
            return Delivery::Abandoned;
        };
        if chunk.seq < caller.next_seq {
            // Sent again after a reconnect: the caller has it already.
            return Delivery::Delivered;
        }
        if chunk.seq != caller.next_seq {
            tracing::warn!(
                "request {}: chunk {} arrived where {} was expected",
                chunk.request_id,
                chunk.seq,
                caller.next_seq
            );
        }
        caller.next_seq = chunk.seq.saturating_add(1);
        let request_id = chunk.request_id.clone();
        let failure = match &caller.stream {
            Some(stream) => {
                let item = InvokeStreamItem {
                    item: Some(invoke_stream_item::Item::Chunk(chunk)),
                };
                match stream.try_send(Ok(item)) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
                    Err(mpsc::error::TrySendError::Full(_)) => Some(Status::resource_exhausted(
                        "the caller did not keep up with the streamed result; the call was cancelled",
                    )),
                }
            }
            None if caller.chunk_bytes + charged(&chunk.data) > MAX_ASSEMBLED_BYTES => {
                Some(Status::resource_exhausted(format!(
                    "the result is larger than {} MiB; call InvokeStream to receive it in chunks",
                    MAX_ASSEMBLED_BYTES / (1024 * 1024)
                )))
            }
            None => {
                caller.keep(chunk.data);
                None
            }
        };
        match failure {
            None => Delivery::Delivered,
            Some(status) => {
                self.fail(&request_id, status);
                Delivery::Overflow
            }
        }
    }

    /// Progress, logs or events of a call; only streaming callers see them,
    /// and a caller that does not keep up misses some.
    pub(crate) fn event(&mut self, from: &InstanceKey, event: Event) -> Delivery {
        let Some(entry) = self.calls.get(&event.request_id) else {
            return Delivery::Unknown;
        };
        if entry.instance != *from {
            return Delivery::Foreign(entry.instance.clone());
        }
        let Some(caller) = entry.caller.as_ref() else {
            return Delivery::Abandoned;
        };
        if let Some(stream) = &caller.stream {
            let item = InvokeStreamItem {
                item: Some(invoke_stream_item::Item::Event(event)),
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = stream.try_send(Ok(item)) {
                tracing::debug!("a streaming caller is not keeping up; an event was dropped");
            }
        }
        Delivery::Delivered
    }

    /// Gives the caller `status` and abandons the call.
    fn fail(&mut self, request_id: &str, status: Status) {
        if let Some(entry) = self.calls.get_mut(request_id)
            && let Some(caller) = entry.caller.take()
        {
            let _ = caller.answer.send(Answer::Failed(status));
        }
    }

    /// The caller gives up. Returns the instance to send `Cancel` to if the
    /// connector has not answered yet.
    pub(crate) fn abandon(&mut self, request_id: &str) -> Option<InstanceKey> {
        let entry = self.calls.get_mut(request_id)?;
        entry.caller = None;
        Some(entry.instance.clone())
    }

    /// The Invoke of a call could not be queued on the stream it was meant
    /// for (the stream closed): removes the call, unless a resumed stream
    /// was sent the Invoke meanwhile (or the call already ended).
    pub(crate) fn take_back(&mut self, request_id: &str) -> TakeBack {
        match self.calls.get(request_id) {
            None => TakeBack::Gone,
            Some(entry) if entry.resent => TakeBack::Resent,
            Some(_) => {
                self.calls.remove(request_id);
                TakeBack::Removed
            }
        }
    }

    /// The instance's session ended: every call handed to it is lost.
    /// Returns how many callers were waiting.
    pub(crate) fn fail_instance(&mut self, instance: &InstanceKey, reason: &str) -> usize {
        let ids: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, e)| e.instance == *instance)
            .map(|(id, _)| id.clone())
            .collect();
        let mut waiting = 0;
        for id in ids {
            if let Some(entry) = self.calls.remove(&id)
                && let Some(caller) = entry.caller
            {
                waiting += 1;
                let _ = caller.answer.send(Answer::Lost(reason.to_owned()));
            }
        }
        waiting
    }

    /// How many calls the instance has not answered yet.
    pub(crate) fn in_flight(&self, instance: &InstanceKey) -> u32 {
        let n = self
            .calls
            .values()
            .filter(|e| e.instance == *instance)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> InstanceKey {
        InstanceKey {
            tenant: "default".into(),
            connector: "c".into(),
            id: id.into(),
        }
    }

    fn invoke(id: &str) -> Invoke {
        Invoke {
            request_id: id.into(),
            action: "get".into(),
            ..Default::default()
        }
    }

    fn result(id: &str, payload: &[u8], chunked: bool) -> v1::Result {
        v1::Result {
            request_id: id.into(),
            outcome: Some(result::Outcome::Payload(payload.to_vec().into())),
            chunked,
            ..Default::default()
        }
    }

    #[test]
    fn a_call_is_answered_once() {
        let mut pending = Pending::default();
        let (tx, mut rx) = oneshot::channel();
        pending.insert(invoke("1"), None, key("a"), Caller::new(tx, None), None);
        assert_eq!(pending.in_flight(&key("a")), 1);
        assert_eq!(
            pending.resolve(&key("b"), result("1", b"x", false)),
            Delivery::Foreign(key("a"))
        );
        assert_eq!(
            pending.resolve(&key("a"), result("1", b"x", false)),
            Delivery::Delivered
        );
        assert_eq!(
            pending.resolve(&key("a"), result("1", b"x", false)),
            Delivery::Unknown
        );
        assert!(matches!(rx.try_recv(), Ok(Answer::Result(_))));
        assert_eq!(pending.in_flight(&key("a")), 0);
    }

    fn chunk(request_id: &str, seq: u64, data: &[u8]) -> Chunk {
        Chunk {
            request_id: request_id.into(),
            seq,
            data: data.to_vec().into(),
        }
    }

    #[test]
    fn chunks_are_joined_for_unary_callers() {
        let mut pending = Pending::default();
        let (tx, mut rx) = oneshot::channel();
        pending.insert(invoke("1"), None, key("a"), Caller::new(tx, None), None);
        for (seq, data) in [b"ab", b"cd"].iter().enumerate() {
            assert_eq!(
                pending.chunk(&key("a"), chunk("1", seq as u64, *data)),
                Delivery::Delivered
            );
        }
        pending.resolve(&key("a"), result("1", b"", true));
        let Ok(Answer::Result(r)) = rx.try_recv() else {
            panic!("no answer")
        };
        assert_eq!(
            r.outcome,
            Some(result::Outcome::Payload(b"abcd".to_vec().into()))
        );
    }

    #[test]
    fn empty_and_tiny_chunks_count_against_the_limit() {
        let mut pending = Pending::default();
        let (tx, mut rx) = oneshot::channel();
        pending.insert(invoke("1"), None, key("a"), Caller::new(tx, None), None);
        // A tiny chunk and an empty one, then the tail in the Result.
        assert_eq!(
            pending.chunk(&key("a"), chunk("1", 0, b"ab")),
            Delivery::Delivered
        );
        assert_eq!(
            pending.chunk(&key("a"), chunk("1", 1, b"")),
            Delivery::Delivered
        );
        pending.resolve(&key("a"), result("1", b"cd", true));
        let Ok(Answer::Result(r)) = rx.try_recv() else {
            panic!("no answer")
        };
        assert_eq!(
            r.outcome,
            Some(result::Outcome::Payload(b"abcd".to_vec().into()))
        );

        // Empty chunks without end: each counts, so the call fails at the
        // limit instead of growing the list.
        let (tx, mut rx) = oneshot::channel();
        pending.insert(invoke("2"), None, key("a"), Caller::new(tx, None), None);
        let most = MAX_ASSEMBLED_BYTES / SMALL_CHUNK_BYTES;
        for seq in 0..most as u64 {
            assert_eq!(
                pending.chunk(&key("a"), chunk("2", seq, b"")),
                Delivery::Delivered,
                "{seq}"
            );
        }
        assert_eq!(
            pending.chunk(&key("a"), chunk("2", most as u64, b"")),
            Delivery::Overflow
        );
        assert!(matches!(rx.try_recv(), Ok(Answer::Failed(_))));
    }

    #[test]
    fn chunks_sent_again_after_a_reconnect_are_skipped() {
        let mut pending = Pending::default();
        let (tx, mut rx) = oneshot::channel();
        pending.insert(invoke("1"), None, key("a"), Caller::new(tx, None), None);
        // Chunks 0 and 1 arrive, the stream dies, the whole result comes again.
        for (seq, data) in [(0, b"ab"), (1, b"cd"), (0, b"ab"), (1, b"cd"), (2, b"ef")] {
            assert_eq!(
                pending.chunk(&key("a"), chunk("1", seq, data)),
                Delivery::Delivered
            );
        }
        pending.resolve(&key("a"), result("1", b"", true));
        let Ok(Answer::Result(r)) = rx.try_recv() else {
            panic!("no answer")
        };
        assert_eq!(
            r.outcome,
            Some(result::Outcome::Payload(b"abcdef".to_vec().into()))
        );
    }

    #[test]
    fn abandoned_calls_wait_for_the_connector_and_lost_instances_fail_their_calls() {
        let mut pending = Pending::default();
        let (tx1, _rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        pending.insert(invoke("1"), None, key("a"), Caller::new(tx1, None), None);
        pending.insert(invoke("2"), None, key("a"), Caller::new(tx2, None), None);
        assert_eq!(pending.abandon("1"), Some(key("a")));
        assert_eq!(pending.in_flight(&key("a")), 2);
        assert_eq!(pending.fail_instance(&key("a"), "gone"), 1);
        assert!(matches!(rx2.try_recv(), Ok(Answer::Lost(r)) if r == "gone"));
        assert_eq!(pending.abandon("1"), None);
        assert_eq!(pending.in_flight(&key("a")), 0);
    }

    #[tokio::test]
    async fn a_resume_resends_pending_invokes_in_order_and_cancels_abandoned_ones() {
        let mut pending = Pending::default();
        let mut answers = Vec::new();
        for id in ["3", "1", "2"] {
            let (tx, rx) = oneshot::channel();
            answers.push(rx);
            let deadline = (id == "1").then(|| Instant::now() + std::time::Duration::from_secs(5));
            let mut inv = invoke(id);
            inv.timeout_ms = 60_000;
            pending.insert(inv, deadline, key("a"), Caller::new(tx, None), None);
        }
        let (tx, _rx) = oneshot::channel();
        pending.insert(invoke("other"), None, key("b"), Caller::new(tx, None), None);
        pending.abandon("2");
        let frames: Vec<String> = pending
            .resend(&key("a"))
            .into_iter()
            .map(|f| match f.frame {
                Some(hub_frame::Frame::Invoke(i)) => {
                    if i.request_id == "1" {
                        assert!((4_000..=5_000).contains(&i.timeout_ms), "{}", i.timeout_ms);
                    } else {
                        assert_eq!(i.timeout_ms, 60_000, "no deadline: unchanged");
                    }
                    format!("invoke {}", i.request_id)
                }
                Some(hub_frame::Frame::Cancel(c)) => format!("cancel {}", c.request_id),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(frames, ["invoke 3", "invoke 1", "invoke 2", "cancel 2"]);
        // A resent call stays when its first Invoke turns out undelivered.
        assert_eq!(pending.take_back("1"), TakeBack::Resent);
        assert_eq!(pending.take_back("other"), TakeBack::Removed);
        assert_eq!(pending.take_back("other"), TakeBack::Gone);
        assert_eq!(pending.in_flight(&key("a")), 3);
    }
}
