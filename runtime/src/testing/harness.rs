//! [`TestConnector`]: a connector instance in a test, one line to build and
//! one line per call.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigSource;
use crate::connector::{ActionOutput, Connector, Input, StartError};
use crate::context::{Context, Event, EventKind};
use crate::encoding::Encoding;
use crate::error::ActionError;
use crate::instance::Instance;
use crate::manifest::Manifest;
use crate::registry::Registry;
use crate::store::LocalStore;

/// A running instance of connector `C` for tests: built from a config (its
/// init hook run), called by action name with a typed or JSON input.
///
/// Every call goes through the same [`Instance`] the transports use: input
/// decoding with its error paths, the action's own timeout, panic
/// isolation, deadlines and cancellation.
///
/// ```standalone_crate
/// use spoke::prelude::*;
/// use spoke::testing::TestConnector;
///
/// /// Adds numbers.
/// #[connector(name = "adder")]
/// pub struct Adder {
///     /// Added to every sum.
///     #[config_field(default = 0)]
///     offset: i64,
/// }
///
/// #[connector]
/// impl Adder {
///     /// The sum of `a` and `b`, plus the offset.
///     #[action(read)]
///     async fn add(&self, a: i64, b: i64) -> Result<i64, ActionError> {
///         Ok(a + b + self.offset)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let adder = TestConnector::<Adder>::start(serde_json::json!({"offset": 10})).await.unwrap();
/// let sum: i64 = adder.call("add", serde_json::json!({"a": 1, "b": 2})).await.unwrap();
/// assert_eq!(sum, 13);
/// let err = adder.call::<i64>("add", serde_json::json!({"a": "one"})).await.unwrap_err();
/// assert_eq!(err.code(), ErrorCode::InvalidInput);
/// # }
/// ```
pub struct TestConnector<C> {
    instance: Instance,
    connector: Arc<C>,
    /// The store's files: a temp dir of this harness's own, removed with it.
    store_dir: Option<Arc<tempfile::TempDir>>,
    _type: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for TestConnector<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestConnector")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> TestConnector<C> {
    /// Builds the connector from a JSON config object keyed by field key
    /// (`{"root": "/tmp/x", "max_bytes": 10}`; `{}` or `null` for none), as a
    /// host would pass it, and runs its init hook.
    ///
    /// Fails with every config problem at once, or the init hook's error; a
    /// problem with what was registered (two actions with one name in two
    /// modules, a bad input schema) fails here too.
    pub async fn start(config: impl Serialize) -> Result<Self, StartError> {
        let value = serde_json::to_value(config).map_err(|e| init_error::<C>(e.to_string()))?;
        let value = if value.is_null() {
            Value::Object(Default::default())
        } else {
            value
        };
        let source = ConfigSource::from_json(value).map_err(init_error::<C>)?;
        Self::start_with(source).await
    }

    /// Builds the connector from environment-style variables
    /// (`[("FILES_ROOT", "/tmp/x")]`), as its binary reads them, and runs its
    /// init hook. The process environment is not read.
    pub async fn start_with_env<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, StartError> {
        Self::start_with(ConfigSource::from_vars(vars)).await
    }

    /// Builds the connector from any [`ConfigSource`] and runs its init hook.
    pub async fn start_with(source: ConfigSource) -> Result<Self, StartError> {
        let registry = Registry::from_inventory().map_err(|e| init_error::<C>(e.to_string()))?;
        let Some(ty) = registry.get(C::NAME) else {
            return Err(init_error::<C>(format!(
                "connector `{}` is not registered in this binary",
                C::NAME
            )));
        };
        let instance = Instance::start(Arc::clone(ty), source).await?;
        // The store in a temp dir of its own: a test never reads or writes
        // the user's `~/.spoke/store`.
        let store_dir = tempfile::tempdir()
            .map_err(|e| init_error::<C>(format!("a temp dir for the store: {e}")))?;
        let instance = instance.with_store_backend(
            crate::env::DEFAULT_TENANT,
            Arc::new(LocalStore::new(store_dir.path(), C::NAME)),
        );
        let connector = match Arc::clone(instance.connector_handle()).downcast::<C>() {
            Ok(c) => c,
            Err(_) => unreachable!("spoke: the registry built another type for `{}`", C::NAME),
        };
        Ok(TestConnector {
            instance,
            connector,
            store_dir: Some(Arc::new(store_dir)),
            _type: PhantomData,
        })
    }

    /// This harness with the store of `other`: two instances of a
    /// connector sharing one store, as two processes on one machine do
    /// (to test a compare-and-swap race, say).
    ///
    /// ```ignore
    /// let a = TestConnector::<Counter>::start(()).await?;
    /// let b = TestConnector::<Counter>::start(()).await?.sharing_store_of(&a);
    /// ```
    pub fn sharing_store_of(mut self, other: &TestConnector<C>) -> Self {
        self.instance = self.instance.with_store_backend(
            crate::env::DEFAULT_TENANT,
            Arc::clone(other.instance.store().backend()),
        );
        self.store_dir.clone_from(&other.store_dir);
        self
    }

    /// The connector itself, to look at its state.
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// The instance, as transports hold it.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The manifest the transports advertise.
    pub fn manifest(&self) -> &Manifest {
        self.instance.manifest()
    }

    /// Sets how long a cancelled call may take to return on its own before
    /// it is dropped (2 s by default).
    pub fn with_cancel_grace(mut self, grace: Duration) -> Self {
        self.instance = self.instance.with_cancel_grace(grace);
        self
    }

    /// Calls `action` with `input` (a `serde_json::Value` or any
    /// `Serialize` type) and decodes its output as `T` (a
    /// `serde_json::Value` for the JSON). Panics, naming the action, if the
    /// output does not decode as `T`: that is the test's mistake, not the
    /// action's.
    pub async fn call<T: DeserializeOwned>(
        &self,
        action: &str,
        input: impl Serialize,
    ) -> Result<T, ActionError> {
        self.run(action, input).await.output()
    }

    /// Resolves a search operator's `value` and decodes the result as `T`.
    pub async fn resolve<T: DeserializeOwned>(
        &self,
        operator: &str,
        value: &str,
    ) -> Result<T, ActionError> {
        let ctx = Context::new("test", operator);
        let result = self.instance.resolve(operator, value, ctx).await;
        Outcome {
            action: operator.to_owned(),
            result,
            events: Vec::new(),
        }
        .output()
    }

    /// Runs a sync to its end into `sink` and returns how it ended. A
    /// request without a checkpoint starts from the sink's last checkpoint
    /// for that sync and source, as a host's next run would; give one
    /// (`.checkpoint(stored)`) to resume from it. A run that is refused
    /// before it starts (unknown sync or mode, a checkpoint that does not
    /// decode, one already running) is an `Err`.
    ///
    /// ```no_run
    /// # use spoke::testing::TestConnector;
    /// # async fn demo<C: spoke::Connector>(t: TestConnector<C>) {
    /// use spoke::sync::{MemorySink, SyncRequest, SyncStatus};
    /// let sink = MemorySink::new();
    /// let outcome = t.sync(SyncRequest::new("files"), &sink).await.unwrap();
    /// assert_eq!(outcome.status, SyncStatus::Completed);
    /// assert!(sink.documents().contains_key("README.md"));
    /// # }
    /// ```
    pub async fn sync(
        &self,
        mut request: crate::sync::SyncRequest,
        sink: &crate::sync::MemorySink,
    ) -> Result<crate::sync::SyncOutcome, ActionError> {
        if request.checkpoint.is_none() {
            let def = crate::sync::start::find_def(
                self.instance.connector_type(),
                request.sync.as_deref(),
            );
            // A sync that is not there is refused below, by `start_sync`.
            request.checkpoint = def
                .ok()
                .and_then(|def| sink.checkpoint(def.name, &request.source_id));
        }
        let run = self.instance.start_sync(request, Arc::new(sink.clone()))?;
        Ok(run.outcome().await)
    }

    /// A call with options (deadline, cancellation, metadata) whose
    /// [`Outcome`] keeps the events and progress it emitted. Await it:
    ///
    /// ```no_run
    /// # use spoke::testing::TestConnector;
    /// # async fn demo<C: spoke::Connector>(t: TestConnector<C>) {
    /// use std::time::Duration;
    /// let outcome = t
    ///     .run("import", serde_json::json!({"rows": 3}))
    ///     .timeout(Duration::from_secs(1))
    ///     .await;
    /// assert_eq!(outcome.progress().len(), 3);
    /// let rows: u32 = outcome.output().unwrap();
    /// # }
    /// ```
    pub fn run(&self, action: &str, input: impl Serialize) -> Call<'_> {
        let input = serde_json::to_value(input)
            .map(TestInput::Json)
            .map_err(|e| e.to_string());
        self.call_with(action, input)
    }

    /// A call whose input is `bytes` in `encoding` (MessagePack, raw bytes,
    /// a Protobuf message...), as a transport hands it over. Ask for an
    /// output encoding with [`Call::accept`]:
    ///
    /// ```no_run
    /// # use spoke::testing::TestConnector;
    /// # async fn demo<C: spoke::Connector>(t: TestConnector<C>) {
    /// use spoke::Encoding;
    /// let outcome = t
    ///     .run_encoded("reverse", Encoding::RawBytes, b"abc".to_vec())
    ///     .accept([Encoding::RawBytes])
    ///     .await;
    /// assert_eq!(outcome.bytes().unwrap(), b"cba");
    /// # }
    /// ```
    pub fn run_encoded(&self, action: &str, encoding: Encoding, bytes: Vec<u8>) -> Call<'_> {
        self.call_with(action, Ok(TestInput::Encoded(encoding, bytes)))
    }

    fn call_with(&self, action: &str, input: Result<TestInput, String>) -> Call<'_> {
        Call {
            instance: &self.instance,
            action: action.to_owned(),
            input,
            accept: Vec::new(),
            deadline: None,
            cancel: CancellationToken::new(),
            cancel_after: None,
            metadata: BTreeMap::new(),
            event_buffer: 1024,
        }
    }
}

/// A test call's input: JSON, or bytes in an encoding.
#[derive(Debug)]
enum TestInput {
    Json(Value),
    Encoded(Encoding, Vec<u8>),
}

impl TestInput {
    fn as_input(&self) -> Input<'_> {
        match self {
            TestInput::Json(value) => Input::Value(value),
            TestInput::Encoded(encoding, bytes) => Input::Encoded {
                encoding: *encoding,
                bytes,
            },
        }
    }
}

fn init_error<C: Connector>(message: impl Into<String>) -> StartError {
    StartError::Init {
        connector: C::NAME.to_owned(),
        message: message.into(),
    }
}

/// One call being set up; `.await` runs it. See [`TestConnector::run`].
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<'a> {
    instance: &'a Instance,
    action: String,
    input: Result<TestInput, String>,
    accept: Vec<Encoding>,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    cancel_after: Option<Duration>,
    metadata: BTreeMap<String, String>,
    event_buffer: usize,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

impl Call<'_> {
    /// A deadline this far from now.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Instant::now() + timeout);
        self
    }

    /// The instant the call must finish by.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The caller's cancellation token: cancel it to cancel the call.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The output encodings the caller accepts, the preferred first (by
    /// default: the action's preferred, its first).
    pub fn accept(mut self, encodings: impl IntoIterator<Item = Encoding>) -> Self {
        self.accept = encodings.into_iter().collect();
        self
    }

    /// Cancels the call this long after it starts, as a caller would.
    pub fn cancel_after(mut self, after: Duration) -> Self {
        self.cancel_after = Some(after);
        self
    }

    /// One entry of the caller's metadata ([`Context::metadata`]).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// How many events may wait unread before the action waits to emit
    /// (1024 by default; the test reads them while the call runs).
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events.max(1);
        self
    }

    async fn execute(self) -> Outcome {
        let input = match self.input {
            Ok(input) => input,
            Err(why) => {
                return Outcome {
                    result: Err(ActionError::invalid_input(format!(
                        "the test's input does not serialize as JSON: {why}"
                    ))),
                    action: self.action,
                    events: Vec::new(),
                };
            }
        };
        let (tx, mut rx) = mpsc::channel(self.event_buffer);
        let mut ctx = Context::builder("test", self.action.as_str())
            .cancellation(self.cancel.clone())
            .metadata(self.metadata)
            .accept(self.accept)
            .events(tx);
        if let Some(at) = self.deadline {
            ctx = ctx.deadline(at);
        }
        let call = self
            .instance
            .invoke(&self.action, input.as_input(), ctx.build());
        if let Some(after) = self.cancel_after {
            let token = self.cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                token.cancel();
            });
        }
        tokio::pin!(call);
        let mut events = Vec::new();
        let result = loop {
            tokio::select! {
                result = &mut call => break result,
                Some(event) = rx.recv() => events.push(event),
            }
        };
        // What was emitted before the answer and not read yet.
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        Outcome {
            action: self.action,
            result,
            events,
        }
    }
}

impl<'a> std::future::IntoFuture for Call<'a> {
    type Output = Outcome;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.execute())
    }
}

/// What one call returned, and every event it emitted, in order.
#[derive(Debug, Clone)]
pub struct Outcome {
    action: String,
    /// The action's output, or its error.
    pub result: Result<ActionOutput, ActionError>,
    /// Every event it emitted, in order.
    pub events: Vec<Event>,
}

/// One progress report of a call: `progress` of `total`, with its message.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Work done.
    pub progress: f64,
    /// Total work, when known.
    pub total: Option<f64>,
    /// What was happening.
    pub message: Option<String>,
}

impl Outcome {
    /// The output decoded as `T` (a `serde_json::Value` for the JSON), or
    /// the action's error. JSON, MessagePack and JSON Lines (as an array)
    /// decode; panics, naming the action, if the output does not decode as
    /// `T` or is binary (see [`Outcome::bytes`]).
    pub fn output<T: DeserializeOwned>(&self) -> Result<T, ActionError> {
        let output = self.result.as_ref().map_err(Clone::clone)?;
        let encoding = output.encoding();
        let decoded = match encoding {
            Encoding::Json => serde_json::from_slice(output.bytes()).map_err(|e| e.to_string()),
            Encoding::Msgpack => rmp_serde::from_slice(output.bytes()).map_err(|e| e.to_string()),
            Encoding::JsonLines => {
                serde_json::from_value(output.to_value()).map_err(|e| e.to_string())
            }
            binary => Err(format!(
                "it is {} bytes of {binary}: read them with `bytes()`",
                output.bytes().len()
            )),
        };
        Ok(decoded.unwrap_or_else(|e| {
            panic!(
                "the output of `{}` ({encoding}) does not decode as `{}`: {e}; it was {}",
                self.action,
                std::any::type_name::<T>(),
                String::from_utf8_lossy(&output.bytes()[..output.bytes().len().min(512)])
            )
        }))
    }

    /// The output's bytes as they would travel, or the action's error.
    pub fn bytes(&self) -> Result<&[u8], ActionError> {
        self.result
            .as_ref()
            .map(|o| o.bytes())
            .map_err(Clone::clone)
    }

    /// The encoding the output came in (`None` when the call failed).
    pub fn encoding(&self) -> Option<Encoding> {
        self.result.as_ref().ok().map(ActionOutput::encoding)
    }

    /// The error, if the call failed.
    pub fn error(&self) -> Option<&ActionError> {
        self.result.as_ref().err()
    }

    /// Its progress reports, in order.
    pub fn progress(&self) -> Vec<Progress> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Progress {
                    progress,
                    total,
                    message,
                } => Some(Progress {
                    progress: *progress,
                    total: *total,
                    message: message.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The data of its custom events named `name`, in order.
    pub fn custom(&self, name: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Custom { name: n, data } if n == name => Some(data),
                _ => None,
            })
            .collect()
    }

    /// Its log events, as `(level, message)`, in order.
    pub fn logs(&self) -> Vec<(&str, &str)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Log { level, message } => Some((level.as_str(), message.as_str())),
                _ => None,
            })
            .collect()
    }
}
