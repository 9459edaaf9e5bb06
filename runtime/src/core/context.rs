//! [`Context`]: what an action knows about the invocation it serves.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::encoding::Encoding;
use crate::partition::{LOCAL, Partition};
use crate::store::Store;

/// Something an action or producer reports while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The invocation that emitted it (empty for producers and connector-wide events).
    pub request_id: String,
    /// The action that emitted it (for producers: the producer's name).
    pub action: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// Progress of a long action: `progress` out of `total` (when known).
    Progress {
        /// Work done so far.
        progress: f64,
        /// Total work, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<f64>,
        /// What is happening now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A log line meant for the caller.
    Log {
        /// `error`, `warn`, `info`, `debug` or `trace`.
        level: String,
        /// The line.
        message: String,
    },
    /// A connector-defined event with a name and JSON data.
    Custom {
        /// The event's name.
        name: String,
        /// Its payload.
        data: Value,
    },
}

/// Why an event could not be emitted. Emitting never drops an event silently:
/// it waits for room, or returns this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The receiver of events (transport, caller) has gone away.
    #[error("event receiver is closed; the event was not delivered")]
    Closed,
    /// The invocation was cancelled while waiting for room to emit.
    #[error("invocation cancelled while emitting an event")]
    Cancelled,
}

/// The invocation context an action may take as `ctx: &Context`.
///
/// ```
/// use spoke::Context;
/// let ctx = Context::new("req-1", "echo");
/// assert_eq!(ctx.request_id(), "req-1");
/// assert!(!ctx.is_cancelled());
/// assert!(ctx.metadata().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    request_id: String,
    action: String,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    events: Option<mpsc::Sender<Event>>,
    metadata: Arc<BTreeMap<String, String>>,
    partition: Option<Partition>,
    /// The instance's store, attached when an instance invokes.
    store: OnceLock<Arc<Store>>,
    /// The output encodings the caller accepts, the preferred first.
    accept: Vec<Encoding>,
    /// The one agreed for this call, set when an instance invokes (an
    /// index into [`Encoding::ALL`] plus one; 0 before).
    output_encoding: AtomicU8,
}

impl Context {
    /// A context with no deadline, a fresh cancellation token and no event receiver.
    pub fn new(request_id: impl Into<String>, action: impl Into<String>) -> Self {
        ContextBuilder::new(request_id, action).build()
    }

    /// A builder for transports that set a deadline, a token and an event channel.
    pub fn builder(request_id: impl Into<String>, action: impl Into<String>) -> ContextBuilder {
        ContextBuilder::new(request_id, action)
    }

    /// The invocation's id, unique per caller.
    pub fn request_id(&self) -> &str {
        &self.inner.request_id
    }

    /// The action (or search operator) being invoked.
    pub fn action(&self) -> &str {
        &self.inner.action
    }

    /// What the caller's transport says about the invocation, by key; empty
    /// unless the transport fills it.
    ///
    /// Under `serve`, this is the hub's `Invoke.metadata`: the Spoke hub puts
    /// `caller` there (who called: the client's `x-spoke-caller` header, else
    /// its network address; `spoke call` says `spoke-cli`) and, when the
    /// client sent them, the W3C trace context headers `traceparent` and
    /// `tracestate`, unchanged, along with any metadata the client put in
    /// its request. Under the command line it is empty.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use spoke::Context;
    /// let ctx = Context::builder("req-1", "echo")
    ///     .metadata(BTreeMap::from([("caller".to_owned(), "spoke-cli".to_owned())]))
    ///     .build();
    /// assert_eq!(ctx.metadata()["caller"], "spoke-cli");
    /// assert_eq!(ctx.metadata().get("traceparent"), None);
    /// ```
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.inner.metadata
    }

    /// When the invocation must be done by, if anyone said.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Time left before the deadline (`None` when there is none; zero once passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.inner
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The cancellation token: cancelled when the caller cancels or the deadline passes.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Whether the invocation has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Which keys of shared work are this instance's: served on NATS, its
    /// share among the connector's live instances of the same tenant
    /// (rendezvous hashing, see [`crate::partition`]); anywhere else, one
    /// instance that owns every key.
    ///
    /// ```
    /// use spoke::Context;
    /// let ctx = Context::new("req-1", "poll");
    /// let accounts = ["a-1", "a-2", "a-3"];
    /// let mine: Vec<&str> = accounts.into_iter().filter(|a| ctx.partition().owns(a)).collect();
    /// assert_eq!(mine, accounts, "alone, every key is mine");
    /// ```
    pub fn partition(&self) -> Partition {
        match &self.inner.partition {
            Some(partition) => partition.clone(),
            None => Partition::solo(LOCAL),
        }
    }

    /// The connector's store: the buckets it declares
    /// (`#[connector(buckets(...))]`), for the tenant it serves; in
    /// JetStream KV when served on NATS, in local files elsewhere (see
    /// [`crate::store`]).
    ///
    /// ```
    /// # use spoke::prelude::*;
    /// # async fn f(ctx: &Context) -> Result<(), ActionError> {
    /// let seen = ctx.store().bucket("cursors")?;
    /// if let Some(last) = seen.get::<String>("inbox").await? {
    ///     seen.update("inbox", "msg-43", last.revision).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// A context an instance did not invoke through (a bare
    /// `Context::new` in a unit test) has a store with no buckets, whose
    /// errors say so: use the test kit's harness to call actions.
    pub fn store(&self) -> Store {
        match self.inner.store.get() {
            Some(store) => Store::clone(store),
            None => Store::detached(),
        }
    }

    /// The output encodings the caller accepts, the preferred first (empty:
    /// the action's preferred, its first).
    pub fn accept(&self) -> &[Encoding] {
        &self.inner.accept
    }

    /// The encoding this call's output is written in: agreed by the
    /// instance from the caller's [`accept`](Context::accept) list and what
    /// the action gives, before the action runs (JSON until then).
    pub fn output_encoding(&self) -> Encoding {
        match self.inner.output_encoding.load(Ordering::Relaxed) {
            0 => Encoding::Json,
            n => Encoding::ALL[usize::from(n - 1)],
        }
    }

    /// Records the agreed output encoding (each invocation sets its own: a
    /// context is meant for one call).
    pub(crate) fn agree_output_encoding(&self, encoding: Encoding) {
        // `ALL` is in declaration order: a variant's discriminant is its index.
        self.inner
            .output_encoding
            .store(encoding as u8 + 1, Ordering::Relaxed);
    }

    /// Gives the context its instance's store (once; later calls keep it).
    pub(crate) fn attach_store(&self, store: &Arc<Store>) {
        let _ = self.inner.store.set(Arc::clone(store));
    }

    /// Resolves when the invocation is cancelled; use in `tokio::select!`.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// This context with its deadline moved earlier to at most `limit` from
    /// now (an action's own `timeout`); token and event receiver are shared.
    pub fn narrowed_to(&self, limit: Duration) -> Context {
        let at = Instant::now() + limit;
        if self.inner.deadline.is_some_and(|d| d <= at) {
            return self.clone();
        }
        Context {
            inner: Arc::new(Inner {
                request_id: self.inner.request_id.clone(),
                action: self.inner.action.clone(),
                deadline: Some(at),
                cancel: self.inner.cancel.clone(),
                events: self.inner.events.clone(),
                metadata: Arc::clone(&self.inner.metadata),
                partition: self.inner.partition.clone(),
                store: self.inner.store.clone(),
                accept: self.inner.accept.clone(),
                output_encoding: AtomicU8::new(self.inner.output_encoding.load(Ordering::Relaxed)),
            }),
        }
    }

    /// Emits an event to whoever invoked the action. Waits while the receiver
    /// is full (backpressure); errs if it is gone or the call is cancelled.
    /// With no receiver (a plain `Context::new`), events go to the log.
    pub async fn emit(&self, kind: EventKind) -> Result<(), EmitError> {
        let event = Event {
            request_id: self.inner.request_id.clone(),
            action: self.inner.action.clone(),
            kind,
        };
        let Some(tx) = &self.inner.events else {
            tracing::info!(target: "spoke::event", request_id = %event.request_id, action = %event.action, event = ?event.kind, "event");
            return Ok(());
        };
        tokio::select! {
            biased;
            sent = tx.send(event) => sent.map_err(|_| EmitError::Closed),
            () = self.inner.cancel.cancelled() => Err(EmitError::Cancelled),
        }
    }

    /// Reports progress: `progress` of `total` (when known), with a message.
    pub async fn progress(
        &self,
        progress: f64,
        total: Option<f64>,
        message: impl Into<Option<String>>,
    ) -> Result<(), EmitError> {
        self.emit(EventKind::Progress {
            progress,
            total,
            message: message.into(),
        })
        .await
    }

    /// Emits a connector-defined event.
    pub async fn emit_custom(&self, name: impl Into<String>, data: Value) -> Result<(), EmitError> {
        self.emit(EventKind::Custom {
            name: name.into(),
            data,
        })
        .await
    }
}

/// Completes at `at` (a deadline), or never when there is none.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Builds a [`Context`]; see [`Context::builder`].
#[derive(Debug)]
pub struct ContextBuilder {
    inner: Inner,
}

impl ContextBuilder {
    fn new(request_id: impl Into<String>, action: impl Into<String>) -> Self {
        ContextBuilder {
            inner: Inner {
                request_id: request_id.into(),
                action: action.into(),
                deadline: None,
                cancel: CancellationToken::new(),
                events: None,
                metadata: Arc::default(),
                partition: None,
                store: OnceLock::new(),
                accept: Vec::new(),
                output_encoding: AtomicU8::new(0),
            },
        }
    }

    /// The instant the invocation must finish by.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.inner.deadline = Some(deadline);
        self
    }

    /// A deadline this far from now.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.deadline(Instant::now() + timeout)
    }

    /// The token the caller cancels through.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.inner.cancel = token;
        self
    }

    /// Where emitted events go; a bounded channel gives backpressure.
    pub fn events(mut self, tx: mpsc::Sender<Event>) -> Self {
        self.inner.events = Some(tx);
        self
    }

    /// The invocation's metadata (see [`Context::metadata`]); empty by default.
    pub fn metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.inner.metadata = Arc::new(metadata);
        self
    }

    /// The instance's share of the work among its connector's live
    /// instances (see [`Context::partition`]).
    pub fn partition(mut self, partition: Partition) -> Self {
        self.inner.partition = Some(partition);
        self
    }

    /// The output encodings the caller accepts, the preferred first;
    /// empty by default (the action's preferred, its first: JSON for a serde type).
    ///
    /// ```
    /// use spoke::{Context, Encoding};
    /// let ctx = Context::builder("req-1", "rows")
    ///     .accept([Encoding::ArrowIpc, Encoding::Json])
    ///     .build();
    /// assert_eq!(ctx.accept(), [Encoding::ArrowIpc, Encoding::Json]);
    /// ```
    pub fn accept(mut self, encodings: impl IntoIterator<Item = Encoding>) -> Self {
        self.inner.accept = encodings.into_iter().collect();
        self
    }

    /// The context.
    pub fn build(self) -> Context {
        Context {
            inner: Arc::new(self.inner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn emit_waits_for_room_and_reports_a_closed_receiver() {
        let (tx, mut rx) = mpsc::channel(1);
        let ctx = Context::builder("r", "a").events(tx).build();
        ctx.progress(1.0, Some(2.0), None).await.unwrap();
        // The channel is full: a second emit waits until the first is taken.
        let ctx2 = ctx.clone();
        let pending = tokio::spawn(async move { ctx2.emit_custom("x", Value::Null).await });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished());
        assert!(matches!(
            rx.recv().await.unwrap().kind,
            EventKind::Progress { .. }
        ));
        pending.await.unwrap().unwrap();
        drop(rx);
        assert_eq!(
            ctx.emit_custom("y", Value::Null).await,
            Err(EmitError::Closed)
        );
    }

    #[tokio::test]
    async fn a_cancelled_invocation_stops_waiting_to_emit() {
        let (tx, _rx) = mpsc::channel(1);
        let token = CancellationToken::new();
        let ctx = Context::builder("r", "a")
            .events(tx)
            .cancellation(token.clone())
            .build();
        ctx.emit_custom("fill", Value::Null).await.unwrap();
        token.cancel();
        assert_eq!(
            ctx.emit_custom("blocked", Value::Null).await,
            Err(EmitError::Cancelled)
        );
    }

    #[tokio::test]
    async fn metadata_is_empty_by_default_and_survives_narrowing() {
        assert!(Context::new("r", "a").metadata().is_empty());
        let metadata = BTreeMap::from([
            ("caller".to_owned(), "spoke-cli".to_owned()),
            ("traceparent".to_owned(), "00-abc-def-01".to_owned()),
        ]);
        let ctx = Context::builder("r", "a")
            .metadata(metadata.clone())
            .build();
        assert_eq!(ctx.metadata(), &metadata);
        let narrowed = ctx.narrowed_to(Duration::from_millis(10));
        assert!(narrowed.deadline().is_some());
        assert_eq!(narrowed.metadata(), &metadata);
    }

    #[test]
    fn events_serialize_with_a_type_tag() {
        let e = Event {
            request_id: "r".into(),
            action: "a".into(),
            kind: EventKind::Log {
                level: "info".into(),
                message: "hi".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"request_id": "r", "action": "a", "type": "log", "level": "info", "message": "hi"})
        );
    }
}
