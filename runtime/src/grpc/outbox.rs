//! The outbox: everything `serve` sends to the hub besides heartbeats and
//! registration, in order, surviving reconnects.
//!
//! Results and events of invocations queue here in the order they were
//! produced; the session's writer takes them one by one and puts them on the
//! current Attach stream.
//!
//! - **Results are durable.** A result is queued whether or not a stream is
//!   up; while none is, results wait here and are sent first after the next
//!   registration. The queue holds at most `capacity` results, one per
//!   request id (a newer result replaces a queued one); when full, the oldest
//!   result is dropped with an error log.
//! - **Events are volatile.** They are accepted only while a stream is up,
//!   wait for room when `event_capacity` of them are queued (backpressure on
//!   the emitting action), and are discarded when the stream goes down.
//! - **Nothing written is trusted until the hub proves it read it.** gRPC has
//!   no per-message acknowledgement, and frames handed to the transport just
//!   before a connection dies are lost with it. So a sent result stays here,
//!   tagged with the nonce of the next heartbeat Ping the writer will send.
//!   The hub reads its stream in order, so its Pong for nonce `n` proves it
//!   has read every result tagged `n` or lower; those are forgotten. When the
//!   stream goes down, results not yet acknowledged go back to the front of
//!   the queue and are sent again on the next stream: delivery is
//!   at-least-once, and a hub drops a Result for a request id it no longer
//!   knows.
//! - **A result here means its call is answered.** While a request id's
//!   result is queued or unacknowledged, [`Outbox::holds_result`] says so,
//!   and an Invoke the hub re-sends for it after a resume is ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::pin;
use std::sync::{Mutex, MutexGuard};

use spoke_proto::v1::ConnectorFrame;
use tokio::sync::Notify;

/// The default number of results the outbox holds.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// How many events may wait to be sent before emitting actions wait.
pub const DEFAULT_EVENT_CAPACITY: usize = 1_024;

/// Results and events waiting for the hub; see the module docs.
#[derive(Debug)]
pub(crate) struct Outbox {
    inner: Mutex<Inner>,
    /// Something was queued (single consumer: the session's writer).
    ready: Notify,
    /// Room for events, or the stream went down (waiting emitters).
    room: Notify,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    event_capacity: usize,
    queue: VecDeque<Entry>,
    /// Request ids of the results in `queue`.
    queued_ids: HashSet<String>,
    results: usize,
    events: usize,
    /// Results handed to a stream, oldest first, with the nonce of the Ping
    /// that acknowledges them.
    unacked: VecDeque<(u64, Answer)>,
    /// How many entries of `unacked` each request id has (for
    /// [`Outbox::holds_result`], asked of every Invoke).
    unacked_ids: HashMap<String, usize>,
    /// The nonce of the next Ping; results sent now are tagged with it.
    next_ping: u64,
    attached: bool,
}

#[derive(Debug)]
enum Entry {
    Result(Answer),
    Event(ConnectorFrame),
}

/// A Result frame, with its request id and the session generation it belongs to.
#[derive(Debug, Clone)]
struct Answer {
    request_id: String,
    generation: u64,
    frame: ConnectorFrame,
}

impl Outbox {
    /// An empty, detached outbox.
    pub(crate) fn new(capacity: usize, event_capacity: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner {
                capacity: capacity.max(1),
                event_capacity: event_capacity.max(1),
                queue: VecDeque::new(),
                queued_ids: HashSet::new(),
                results: 0,
                events: 0,
                unacked: VecDeque::new(),
                unacked_ids: HashMap::new(),
                next_ping: 1,
                attached: false,
            }),
            ready: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; recover the data anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the Result of `request_id`, replacing a queued result with the
    /// same id; drops the oldest result when full.
    pub(crate) fn push_result(&self, request_id: &str, generation: u64, frame: ConnectorFrame) {
        let mut inner = self.lock();
        let answer = Answer {
            request_id: request_id.to_owned(),
            generation,
            frame,
        };
        if inner.queued_ids.contains(request_id) {
            if let Some(slot) = inner.queue.iter_mut().find_map(|e| match e {
                Entry::Result(a) if a.request_id == request_id => Some(a),
                _ => None,
            }) {
                tracing::debug!(request_id, "outbox: a newer result replaces a queued one");
                *slot = answer;
            }
            return;
        }
        inner.make_room_for_one_result();
        inner.queued_ids.insert(answer.request_id.clone());
        inner.results += 1;
        inner.queue.push_back(Entry::Result(answer));
        drop(inner);
        self.ready.notify_one();
    }

    /// Queues an event frame. While a stream is up this waits for room (the
    /// emitting action feels the backpressure); with no stream it drops the
    /// event.
    pub(crate) async fn push_event(&self, frame: ConnectorFrame) {
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            {
                let mut inner = self.lock();
                if !inner.attached {
                    tracing::debug!("no hub stream: an event was dropped");
                    return;
                }
                if inner.events < inner.event_capacity {
                    inner.events += 1;
                    inner.queue.push_back(Entry::Event(frame));
                    drop(inner);
                    self.ready.notify_one();
                    return;
                }
            }
            room.await;
        }
    }

    /// Queues a frame of a sync run (see `syncs`) if a stream is up, and
    /// says whether it did. Like events, such frames are discarded when the
    /// stream goes down; the run's sink then sends them again. They are not
    /// counted against the event capacity: each run has at most one batch
    /// in flight, in at most a few frames.
    pub(crate) fn push_sync(&self, frame: ConnectorFrame) -> bool {
        let mut inner = self.lock();
        if !inner.attached {
            return false;
        }
        inner.events += 1;
        inner.queue.push_back(Entry::Event(frame));
        drop(inner);
        self.ready.notify_one();
        true
    }

    /// Takes the next frame to send, waiting for one. A Result stays
    /// remembered until a Pong acknowledges it (see [`Outbox::ack`]).
    /// Cancel-safe: nothing is taken unless this returns.
    pub(crate) async fn pop(&self) -> ConnectorFrame {
        loop {
            let ready = self.ready.notified();
            if let Some(frame) = self.try_pop() {
                return frame;
            }
            ready.await;
        }
    }

    fn try_pop(&self) -> Option<ConnectorFrame> {
        let mut inner = self.lock();
        let entry = inner.queue.pop_front()?;
        match entry {
            Entry::Event(frame) => {
                inner.events -= 1;
                drop(inner);
                self.room.notify_waiters();
                Some(frame)
            }
            Entry::Result(answer) => {
                inner.results -= 1;
                inner.queued_ids.remove(&answer.request_id);
                let frame = answer.frame.clone();
                let tag = inner.next_ping;
                inner.push_unacked(tag, answer);
                if inner.unacked.len() > inner.capacity {
                    // Far more than one heartbeat's worth: assume the oldest arrived.
                    inner.pop_unacked();
                }
                Some(frame)
            }
        }
    }

    /// The nonce for a Ping about to be sent; results sent after it wait for the next one.
    pub(crate) fn next_ping_nonce(&self) -> u64 {
        let mut inner = self.lock();
        let nonce = inner.next_ping;
        inner.next_ping += 1;
        nonce
    }

    /// The hub answered Ping `nonce`: it has read every result sent before it.
    pub(crate) fn ack(&self, nonce: u64) {
        let mut inner = self.lock();
        while inner.unacked.front().is_some_and(|(tag, _)| *tag <= nonce) {
            inner.pop_unacked();
        }
    }

    /// A stream is up: events are accepted again.
    pub(crate) fn attach(&self) {
        self.lock().attached = true;
    }

    /// The stream went down: queued events are discarded, and results sent
    /// but not acknowledged go back to the front of the queue.
    pub(crate) fn detach(&self) {
        let mut inner = self.lock();
        inner.attached = false;
        inner.queue.retain(|e| matches!(e, Entry::Result(_)));
        inner.events = 0;
        let resend = std::mem::take(&mut inner.unacked);
        inner.unacked_ids.clear();
        if !resend.is_empty() {
            tracing::debug!(
                count = resend.len(),
                "results sent but not acknowledged will be sent again"
            );
        }
        for (_, answer) in resend.into_iter().rev() {
            if inner.queued_ids.contains(&answer.request_id) {
                continue; // a newer result for the same id is queued
            }
            inner.queued_ids.insert(answer.request_id.clone());
            inner.results += 1;
            inner.queue.push_front(Entry::Result(answer));
        }
        while inner.results > inner.capacity {
            inner.drop_oldest_result();
        }
        drop(inner);
        self.room.notify_waiters();
    }

    /// Forgets results of sessions older than `generation` (the hub started
    /// a new session and no longer knows their request ids). Returns how many.
    pub(crate) fn purge_before(&self, generation: u64) -> usize {
        let mut inner = self.lock();
        let mut purged = 0;
        let Inner {
            queue,
            queued_ids,
            results,
            unacked,
            unacked_ids,
            ..
        } = &mut *inner;
        queue.retain(|e| match e {
            Entry::Result(a) if a.generation < generation => {
                queued_ids.remove(&a.request_id);
                *results -= 1;
                purged += 1;
                false
            }
            _ => true,
        });
        let before = unacked.len();
        unacked.retain(|(_, a)| {
            let keep = a.generation >= generation;
            if !keep {
                forget_id(unacked_ids, &a.request_id);
            }
            keep
        });
        purged + (before - unacked.len())
    }

    /// Whether the result of `request_id` is here: queued, or sent and not
    /// yet acknowledged by the hub.
    pub(crate) fn holds_result(&self, request_id: &str) -> bool {
        let inner = self.lock();
        inner.queued_ids.contains(request_id) || inner.unacked_ids.contains_key(request_id)
    }

    /// Nothing is queued and every sent result is acknowledged.
    pub(crate) fn is_settled(&self) -> bool {
        let inner = self.lock();
        inner.queue.is_empty() && inner.unacked.is_empty()
    }

    /// Everything is sent, but results sent since the last Ping are not
    /// acknowledged: a Ping now would settle the outbox.
    pub(crate) fn needs_ping(&self) -> bool {
        let inner = self.lock();
        inner.queue.is_empty()
            && inner
                .unacked
                .back()
                .is_some_and(|(tag, _)| *tag == inner.next_ping)
    }

    /// Results not yet known to be delivered (queued or unacknowledged).
    pub(crate) fn undelivered(&self) -> usize {
        let inner = self.lock();
        inner.results + inner.unacked.len()
    }
}

/// One entry of `id` left `unacked`.
fn forget_id(ids: &mut HashMap<String, usize>, id: &str) {
    if let Some(count) = ids.get_mut(id) {
        *count -= 1;
        if *count == 0 {
            ids.remove(id);
        }
    }
}

impl Inner {
    fn push_unacked(&mut self, tag: u64, answer: Answer) {
        *self
            .unacked_ids
            .entry(answer.request_id.clone())
            .or_default() += 1;
        self.unacked.push_back((tag, answer));
    }

    fn pop_unacked(&mut self) {
        if let Some((_, answer)) = self.unacked.pop_front() {
            forget_id(&mut self.unacked_ids, &answer.request_id);
        }
    }

    fn make_room_for_one_result(&mut self) {
        if self.results >= self.capacity {
            self.drop_oldest_result();
        }
    }

    fn drop_oldest_result(&mut self) {
        let Some(at) = self
            .queue
            .iter()
            .position(|e| matches!(e, Entry::Result(_)))
        else {
            return;
        };
        if let Some(Entry::Result(answer)) = self.queue.remove(at) {
            self.results -= 1;
            self.queued_ids.remove(&answer.request_id);
            tracing::error!(
                request_id = %answer.request_id,
                capacity = self.capacity,
                "outbox full: dropped the oldest undelivered result"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoke_proto::v1::{Event, Result as ResultFrame, connector_frame::Frame};

    fn result(id: &str, tag: &str) -> ConnectorFrame {
        ConnectorFrame {
            frame: Some(Frame::Result(ResultFrame {
                request_id: id.into(),
                outcome: Some(spoke_proto::v1::result::Outcome::Payload(
                    tag.as_bytes().to_vec().into(),
                )),
                ..Default::default()
            })),
        }
    }

    fn event(id: &str) -> ConnectorFrame {
        ConnectorFrame {
            frame: Some(Frame::Event(Event {
                request_id: id.into(),
                kind: "log".into(),
                json: "{}".into(),
            })),
        }
    }

    fn describe(frame: &ConnectorFrame) -> String {
        match &frame.frame {
            Some(Frame::Result(r)) => match &r.outcome {
                Some(spoke_proto::v1::result::Outcome::Payload(p)) => {
                    format!("R{}={}", r.request_id, String::from_utf8_lossy(p))
                }
                _ => format!("R{}", r.request_id),
            },
            Some(Frame::Event(e)) => format!("E{}", e.request_id),
            other => format!("{other:?}"),
        }
    }

    fn drain(outbox: &Outbox) -> Vec<String> {
        std::iter::from_fn(|| outbox.try_pop())
            .map(|f| describe(&f))
            .collect()
    }

    #[test]
    fn results_are_held_until_acknowledged_dropped_or_purged() {
        let outbox = Outbox::new(2, 8);
        outbox.attach();
        outbox.push_result("1", 1, result("1", "a"));
        assert!(outbox.holds_result("1"), "queued");
        assert_eq!(drain(&outbox), ["R1=a"]);
        assert!(outbox.holds_result("1"), "sent, not acknowledged");
        // The stream dies: it goes back to the queue, still held.
        outbox.detach();
        assert!(outbox.holds_result("1"));
        outbox.attach();
        assert_eq!(drain(&outbox), ["R1=a"]);
        outbox.ack(outbox.next_ping_nonce());
        assert!(!outbox.holds_result("1"), "acknowledged");
        // More unacknowledged results than the capacity: the oldest is
        // assumed delivered and forgotten.
        for id in ["2", "3", "4"] {
            outbox.push_result(id, 1, result(id, "a"));
            drain(&outbox);
        }
        assert!(!outbox.holds_result("2"));
        assert!(outbox.holds_result("3") && outbox.holds_result("4"));
        // A new session forgets the old one's results.
        assert_eq!(outbox.purge_before(2), 2);
        assert!(!outbox.holds_result("3") && !outbox.holds_result("4"));
    }

    #[test]
    fn results_are_deduplicated_and_bounded() {
        let outbox = Outbox::new(2, 8);
        outbox.push_result("1", 0, result("1", "a"));
        outbox.push_result("1", 0, result("1", "b"));
        outbox.push_result("2", 0, result("2", "a"));
        outbox.push_result("3", 0, result("3", "a"));
        assert_eq!(drain(&outbox), ["R2=a", "R3=a"]);
    }

    #[test]
    fn events_wait_for_a_stream_and_keep_their_order_with_results() {
        let outbox = Outbox::new(8, 8);
        futures_util::FutureExt::now_or_never(outbox.push_event(event("0"))).unwrap();
        outbox.attach();
        futures_util::FutureExt::now_or_never(outbox.push_event(event("1"))).unwrap();
        outbox.push_result("1", 0, result("1", "x"));
        assert_eq!(drain(&outbox), ["E1", "R1=x"]);
    }

    #[test]
    fn unacknowledged_results_are_resent_after_a_reconnect() {
        let outbox = Outbox::new(8, 8);
        outbox.attach();
        outbox.push_result("1", 0, result("1", "x"));
        outbox.push_result("2", 0, result("2", "x"));
        assert_eq!(drain(&outbox).len(), 2);
        assert!(outbox.needs_ping());
        let ping = outbox.next_ping_nonce();
        outbox.push_result("3", 0, result("3", "x"));
        assert_eq!(drain(&outbox).len(), 1);
        outbox.ack(ping); // 1 and 2 arrived; 3 is not proven
        outbox.push_result("4", 0, result("4", "x"));
        outbox.detach();
        assert_eq!(drain(&outbox), ["R3=x", "R4=x"]);
        assert!(!outbox.is_settled());
        outbox.ack(outbox.next_ping_nonce());
        assert!(outbox.is_settled());
    }

    #[test]
    fn a_result_is_held_until_the_hub_acknowledges_it() {
        let outbox = Outbox::new(8, 8);
        outbox.attach();
        assert!(!outbox.holds_result("1"));
        outbox.push_result("1", 0, result("1", "x"));
        assert!(outbox.holds_result("1"), "queued");
        assert_eq!(drain(&outbox).len(), 1);
        assert!(outbox.holds_result("1"), "sent, not acknowledged");
        outbox.detach();
        assert!(outbox.holds_result("1"), "back in the queue");
        outbox.attach();
        assert_eq!(drain(&outbox).len(), 1);
        outbox.ack(outbox.next_ping_nonce());
        assert!(!outbox.holds_result("1"), "acknowledged");
        outbox.push_result("2", 1, result("2", "x"));
        outbox.purge_before(2);
        assert!(!outbox.holds_result("2"), "purged with its session");
    }

    #[test]
    fn results_of_an_unresumed_session_are_purged() {
        let outbox = Outbox::new(8, 8);
        outbox.push_result("old", 1, result("old", "x"));
        outbox.push_result("new", 2, result("new", "x"));
        assert_eq!(outbox.purge_before(2), 1);
        assert_eq!(drain(&outbox), ["Rnew=x"]);
    }
}
