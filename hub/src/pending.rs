//! In-flight calls by request id, each answered exactly once.
//!
//! An entry is created when the hub hands an `Invoke` to an instance and
//! removed when the instance answers (`Result`), when the instance's session
//! ends, or when the Invoke turned out not to have been sent. A caller that
//! gives up (deadline, went away) *abandons* its entry: the hub sends `Cancel`,
//! and the entry stays, without a caller, until the connector's final
//! `Result` arrives, so that the instance's invocation slot is only freed when
//! the connector has really finished.

use std::collections::HashMap;

use spoke_proto::v1::{self, Chunk, Event, InvokeStreamItem, invoke_stream_item, result};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tonic::Status;

use crate::registry::InstanceKey;

/// The most a unary caller's chunked result may add up to.
pub(crate) const MAX_ASSEMBLED_BYTES: usize = 64 * 1024 * 1024;

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
    chunks: Vec<u8>,
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
            next_seq: 0,
        }
    }
}

#[derive(Debug)]
struct Entry {
    instance: InstanceKey,
    caller: Option<Caller>,
    _slot: Option<OwnedSemaphorePermit>,
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
}

impl Pending {
    /// Records a call handed to `instance`; `slot` is held until the
    /// connector answers or the session ends.
    pub(crate) fn insert(
        &mut self,
        request_id: String,
        instance: InstanceKey,
        caller: Caller,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        self.calls.insert(
            request_id,
            Entry {
                instance,
                caller: Some(caller),
                _slot: slot,
            },
        );
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
                Some(result::Outcome::Payload(payload)) if !payload.is_empty() => {
                    let mut joined = caller.chunks;
                    joined.extend_from_slice(payload);
                    *payload = joined;
                }
                Some(result::Outcome::Error(_)) => {}
                _ => result.outcome = Some(result::Outcome::Payload(caller.chunks)),
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
            None if caller.chunks.len() + chunk.data.len() > MAX_ASSEMBLED_BYTES => {
                Some(Status::resource_exhausted(format!(
                    "the result is larger than {} MiB; call InvokeStream to receive it in chunks",
                    MAX_ASSEMBLED_BYTES / (1024 * 1024)
                )))
            }
            None => {
                caller.chunks.extend_from_slice(&chunk.data);
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

    /// Removes a call whose Invoke never reached the connector.
    pub(crate) fn forget(&mut self, request_id: &str) {
        self.calls.remove(request_id);
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
            connector: "c".into(),
            id: id.into(),
        }
    }

    fn result(id: &str, payload: &[u8], chunked: bool) -> v1::Result {
        v1::Result {
            request_id: id.into(),
            outcome: Some(result::Outcome::Payload(payload.to_vec())),
            chunked,
            ..Default::default()
        }
    }

    #[test]
    fn a_call_is_answered_once() {
        let mut pending = Pending::default();
        let (tx, mut rx) = oneshot::channel();
        pending.insert("1".into(), key("a"), Caller::new(tx, None), None);
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

    #[test]
    fn chunks_are_joined_for_unary_callers() {
        let mut pending = Pending::default();
        let (tx, mut rx) = oneshot::channel();
        pending.insert("1".into(), key("a"), Caller::new(tx, None), None);
        for (seq, data) in [b"ab", b"cd"].iter().enumerate() {
            let chunk = Chunk {
                request_id: "1".into(),
                seq: seq as u64,
                data: data.to_vec(),
            };
            assert_eq!(pending.chunk(&key("a"), chunk), Delivery::Delivered);
        }
        pending.resolve(&key("a"), result("1", b"", true));
        let Ok(Answer::Result(r)) = rx.try_recv() else {
            panic!("no answer")
        };
        assert_eq!(r.outcome, Some(result::Outcome::Payload(b"abcd".to_vec())));
    }

    #[test]
    fn abandoned_calls_wait_for_the_connector_and_lost_instances_fail_their_calls() {
        let mut pending = Pending::default();
        let (tx1, _rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        pending.insert("1".into(), key("a"), Caller::new(tx1, None), None);
        pending.insert("2".into(), key("a"), Caller::new(tx2, None), None);
        assert_eq!(pending.abandon("1"), Some(key("a")));
        assert_eq!(pending.in_flight(&key("a")), 2);
        assert_eq!(pending.fail_instance(&key("a"), "gone"), 1);
        assert!(matches!(rx2.try_recv(), Ok(Answer::Lost(r)) if r == "gone"));
        assert_eq!(pending.abandon("1"), None);
        assert_eq!(pending.in_flight(&key("a")), 0);
    }
}
