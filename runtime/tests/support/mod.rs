//! Test support for `serve`: a scripted hub (a real gRPC server on loopback,
//! built from the generated `ConnectorHubServer`) and a hand-registered
//! `probe` connector whose actions report what they saw.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use spoke_proto::v1::connector_hub_server::{ConnectorHub, ConnectorHubServer};
use spoke_proto::v1::{
    Cancel, ConnectorFrame, Event as EventFrame, HubFrame, Invoke, InvokeKind, Ping, Pong,
    Register, Registered, Result as ResultFrame, connector_frame::Frame, hub_frame, result,
};
use spoke_runtime::backoff::Backoff;
use spoke_runtime::config::ConfigErrors;
use spoke_runtime::connector::{
    ActionDef, ActionFuture, ActionSet, AnyConnector, BuildFuture, ConnectorRegistration,
    SearchOperatorDef,
};
use spoke_runtime::payload::PayloadSpec;
use spoke_runtime::{
    ActionError, ActionOutput, AttachOptions, ConfigSource, Context, Encoding, Input, Instance,
    InstanceKey, KeySource, Mode, Registry, ServeError, ServeOutcome, ValueType,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// How long any single wait in a test may take before the test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// Runs a test body with an overall time limit.
pub async fn bounded<F: Future<Output = ()>>(limit: Duration, body: F) {
    spoke_runtime::logging::init("off"); // RUST_LOG=debug to see serve's logs
    tokio::time::timeout(limit, body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"));
}

// ------------------------------------------------------------ scripted hub --

/// A gRPC server speaking `ConnectorHub` on 127.0.0.1, handing each Attach
/// stream to the test as a [`HubConn`].
pub struct ScriptedHub {
    pub url: String,
    conns: mpsc::Receiver<HubConn>,
    server: JoinHandle<()>,
}

impl Drop for ScriptedHub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Service {
    conns: mpsc::Sender<HubConn>,
}

#[tonic::async_trait]
impl ConnectorHub for Service {
    type AttachStream = ReceiverStream<Result<HubFrame, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<ConnectorFrame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let (tx, rx) = mpsc::channel(1024);
        let conn = HubConn {
            incoming: request.into_inner(),
            out: tx,
            events: Vec::new(),
            pings_seen: 0,
        };
        self.conns
            .send(conn)
            .await
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl ScriptedHub {
    /// Listens on a free loopback port.
    pub async fn start() -> ScriptedHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ScriptedHub::on(listener)
    }

    /// Serves on a bound listener.
    pub fn on(listener: tokio::net::TcpListener) -> ScriptedHub {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::channel(16);
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(ConnectorHubServer::new(Service { conns: tx }))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        ScriptedHub { url, conns, server }
    }

    /// Listens on a free loopback port over TLS with this certificate
    /// (chain) and key, both PEM; the URL is `https://127.0.0.1:<port>`.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> ScriptedHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let identity = tonic::transport::Identity::from_pem(cert_pem, key_pem);
        let (tx, conns) = mpsc::channel(16);
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap()
                .add_service(ConnectorHubServer::new(Service { conns: tx }))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        ScriptedHub { url, conns, server }
    }

    /// The next Attach stream.
    pub async fn next_conn(&mut self) -> HubConn {
        tokio::time::timeout(STEP, self.conns.recv())
            .await
            .expect("the connector did not attach in time")
            .expect("hub closed")
    }

    /// The next Attach stream, registered: returns it with the Register frame.
    pub async fn attach(&mut self, registered: Registered) -> (HubConn, Register) {
        let mut conn = self.next_conn().await;
        let register = conn.register().await;
        conn.send(hub_frame::Frame::Registered(registered)).await;
        (conn, register)
    }

    /// Whether another Attach stream arrives within `wait`.
    pub async fn conn_within(&mut self, wait: Duration) -> Option<HubConn> {
        tokio::time::timeout(wait, self.conns.recv())
            .await
            .ok()
            .flatten()
    }
}

/// A Registered frame.
pub fn registered(token: &str, heartbeat_ms: u32, resumed: bool) -> Registered {
    Registered {
        session_id: format!("session-{token}"),
        session_token: token.to_owned(),
        heartbeat_interval_ms: heartbeat_ms,
        status: 1,
        resumed,
    }
}

/// A Registered frame for an instance held pending approval.
pub fn registered_pending(token: &str, heartbeat_ms: u32) -> Registered {
    Registered {
        status: spoke_proto::v1::RegistrationStatus::PendingApproval as i32,
        ..registered(token, heartbeat_ms, false)
    }
}

/// Checks a Register's credentials as a hub does first (the signature,
/// with `spoke_runtime::grpc::identity::verify`) and that the assertion names
/// this Register's tenant, connector and instance, and is fresh.
pub fn verified(register: &Register) -> spoke_runtime::grpc::identity::VerifiedAssertion {
    let credentials = register
        .credentials
        .as_ref()
        .expect("Register carries credentials");
    let verified = spoke_runtime::grpc::identity::verify(credentials).expect("a valid signature");
    let a = &verified.assertion;
    assert_eq!(a.tenant, register.tenant);
    let manifest: Value = serde_json::from_str(&register.manifest_json).unwrap();
    assert_eq!(a.connector, manifest["name"].as_str().unwrap());
    assert_eq!(a.instance_id, register.instance.as_ref().unwrap().id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(a.issued_at_unix_ms <= now + 1_000, "issued in the future");
    assert!(a.expires_at_unix_ms > now, "already expired");
    verified
}

/// One Attach stream, from the hub's side.
pub struct HubConn {
    incoming: Streaming<ConnectorFrame>,
    out: mpsc::Sender<Result<HubFrame, Status>>,
    /// Events seen while waiting for other frames.
    pub events: Vec<EventFrame>,
    /// Pings answered while waiting for other frames.
    pub pings_seen: usize,
}

impl HubConn {
    /// Sends a frame to the connector.
    pub async fn send(&self, frame: hub_frame::Frame) {
        self.out
            .send(Ok(HubFrame { frame: Some(frame) }))
            .await
            .expect("connector stream gone");
    }

    /// The next frame exactly as sent, or `None` at the end of the stream.
    pub async fn raw(&mut self) -> Option<Frame> {
        match tokio::time::timeout(STEP, self.incoming.message()).await {
            Err(_) => panic!("no frame from the connector within {STEP:?}"),
            Ok(Err(status)) => panic!("connector stream failed: {status}"),
            Ok(Ok(None)) => None,
            Ok(Ok(Some(f))) => Some(f.frame.expect("empty frame")),
        }
    }

    /// The next frame that is not a heartbeat (Pings are answered) nor an
    /// event (kept in `events`); `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            match self.raw().await? {
                Frame::Ping(Ping { nonce }) => {
                    self.pings_seen += 1;
                    let _ = self
                        .out
                        .send(Ok(HubFrame {
                            frame: Some(hub_frame::Frame::Pong(Pong { nonce })),
                        }))
                        .await;
                }
                Frame::Pong(_) => {}
                Frame::Event(e) => self.events.push(e),
                other => return Some(other),
            }
        }
    }

    /// Expects Register first.
    pub async fn register(&mut self) -> Register {
        match self.raw().await {
            Some(Frame::Register(r)) => r,
            other => panic!("expected Register first, got {other:?}"),
        }
    }

    /// Sends an action Invoke.
    pub async fn invoke(&self, id: &str, action: &str, input: Value, timeout_ms: u64) {
        self.send(hub_frame::Frame::Invoke(Invoke {
            request_id: id.to_owned(),
            action: action.to_owned(),
            payload: input.to_string().into_bytes().into(),
            timeout_ms,
            ..Default::default()
        }))
        .await;
    }

    /// Sends an action Invoke with metadata.
    pub async fn invoke_with(&self, id: &str, action: &str, metadata: &[(&str, &str)]) {
        self.send(hub_frame::Frame::Invoke(Invoke {
            request_id: id.to_owned(),
            action: action.to_owned(),
            payload: b"{}".to_vec().into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }))
        .await;
    }

    /// Sends a search-operator Invoke.
    pub async fn resolve(&self, id: &str, operator: &str, value: &str) {
        self.send(hub_frame::Frame::Invoke(Invoke {
            request_id: id.to_owned(),
            action: operator.to_owned(),
            payload: json!({ "value": value }).to_string().into_bytes().into(),
            kind: InvokeKind::SearchOperator as i32,
            ..Default::default()
        }))
        .await;
    }

    /// Sends Cancel.
    pub async fn cancel(&self, id: &str) {
        self.send(hub_frame::Frame::Cancel(Cancel {
            request_id: id.to_owned(),
            reason: "test".into(),
        }))
        .await;
    }

    /// The next Result (skipping heartbeats and events); panics on anything else.
    pub async fn result(&mut self) -> ResultFrame {
        match self.next().await {
            Some(Frame::Result(r)) => r,
            other => panic!("expected a Result, got {other:?}"),
        }
    }

    /// Waits for an event of `request_id` (already seen or next to come).
    pub async fn event_of(&mut self, request_id: &str) -> EventFrame {
        loop {
            if let Some(at) = self.events.iter().position(|e| e.request_id == request_id) {
                return self.events.remove(at);
            }
            match self.raw().await {
                Some(Frame::Event(e)) => self.events.push(e),
                Some(Frame::Ping(Ping { nonce })) => {
                    self.pings_seen += 1;
                    self.send(hub_frame::Frame::Pong(Pong { nonce })).await;
                }
                Some(Frame::Pong(_)) => {}
                other => panic!("expected an event of {request_id}, got {other:?}"),
            }
        }
    }

    /// Ends the stream with a gRPC status, as a hub refusing the instance does.
    pub async fn refuse(self, status: Status) {
        let _ = self.out.send(Err(status)).await;
    }

    /// Ends the stream from the hub's side, as a hub that goes away does.
    pub fn hang_up(self) {
        drop(self);
    }
}

/// A Result's payload as JSON; panics on an error result.
pub fn ok_json(r: &ResultFrame) -> Value {
    match &r.outcome {
        Some(result::Outcome::Payload(p)) => serde_json::from_slice(p).unwrap(),
        other => panic!("expected a payload for {}, got {other:?}", r.request_id),
    }
}

/// A Result's error; panics on a payload.
pub fn error_of(r: &ResultFrame) -> spoke_proto::v1::Error {
    match &r.outcome {
        Some(result::Outcome::Error(e)) => e.clone(),
        other => panic!("expected an error for {}, got {other:?}", r.request_id),
    }
}

// ---------------------------------------------------------- probe connector --

/// A connector registered by hand (no macros in this crate's tests).
pub struct Probe;

fn build(_: ConfigSource) -> BuildFuture {
    Box::pin(async { Ok(Arc::new(Probe) as AnyConnector) })
}

fn check(_: &ConfigSource) -> Result<(), ConfigErrors> {
    Ok(())
}

fn object() -> schemars::Schema {
    schemars::json_schema!({ "type": "object" })
}

fn anything() -> schemars::Schema {
    schemars::json_schema!({})
}

fn input(input: Input<'_>) -> Value {
    match input {
        Input::Bytes([]) | Input::Encoded { bytes: [], .. } => json!({}),
        Input::Bytes(b) | Input::Encoded { bytes: b, .. } => {
            serde_json::from_slice(b).unwrap_or(Value::Null)
        }
        Input::Value(v) => v.clone(),
    }
}

fn output(v: Value) -> Result<ActionOutput, ActionError> {
    Ok(ActionOutput::encode(&v).unwrap())
}

/// Calls seen per probe key: (running now, most at once, started in all).
type Gauges = Mutex<HashMap<String, (usize, usize, usize)>>;

fn gauges() -> &'static Gauges {
    static GAUGES: OnceLock<Gauges> = OnceLock::new();
    GAUGES.get_or_init(Default::default)
}

/// The most `work` calls with this probe key that ran at once.
pub fn max_concurrency(probe: &str) -> usize {
    gauges().lock().unwrap().get(probe).map_or(0, |g| g.1)
}

/// How many `work` calls with this probe key started.
pub fn starts(probe: &str) -> usize {
    gauges().lock().unwrap().get(probe).map_or(0, |g| g.2)
}

fn echo(_: AnyConnector, i: Input<'_>, _: Context) -> ActionFuture {
    let v = input(i);
    Box::pin(async move { output(v) })
}

fn fail(_: AnyConnector, _: Input<'_>, _: Context) -> ActionFuture {
    Box::pin(async {
        Err(ActionError::not_found("no such thing").with_details(json!({ "id": 42 })))
    })
}

/// `{ms, probe}`: emits `started`, sleeps `ms` unless cancelled; returns
/// `{slept_ms, deadline_ms}` (time left before the deadline at the start).
fn work(_: AnyConnector, i: Input<'_>, ctx: Context) -> ActionFuture {
    let v = input(i);
    Box::pin(async move {
        let ms = v["ms"].as_u64().unwrap_or(0);
        let probe = v["probe"].as_str().unwrap_or("").to_owned();
        let deadline_ms = ctx.remaining().map(|d| d.as_millis() as u64);
        {
            let mut g = gauges().lock().unwrap();
            let e = g.entry(probe.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(e.0);
            e.2 += 1;
        }
        let _ = ctx.emit_custom("started", json!({ "ms": ms })).await;
        let outcome = tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => output(json!({ "slept_ms": ms, "deadline_ms": deadline_ms })),
            () = ctx.cancelled() => Err(ActionError::cancelled("work saw the cancel")),
        };
        gauges().lock().unwrap().get_mut(&probe).unwrap().0 -= 1;
        outcome
    })
}

/// `{steps}`: `steps` progress events, a log event, then returns `steps`.
fn progress(_: AnyConnector, i: Input<'_>, ctx: Context) -> ActionFuture {
    let v = input(i);
    Box::pin(async move {
        let steps = v["steps"].as_u64().unwrap_or(1);
        for i in 1..=steps {
            ctx.progress(i as f64, Some(steps as f64), format!("step {i}"))
                .await
                .map_err(|e| ActionError::cancelled(e.to_string()))?;
        }
        ctx.emit(spoke_runtime::EventKind::Log {
            level: "info".into(),
            message: "done".into(),
        })
        .await
        .map_err(|e| ActionError::cancelled(e.to_string()))?;
        output(json!(steps))
    })
}

/// Returns the invocation's metadata as a JSON object.
fn meta(_: AnyConnector, _: Input<'_>, ctx: Context) -> ActionFuture {
    let metadata = ctx.metadata().clone();
    Box::pin(async move { output(json!(metadata)) })
}

fn upper(_: AnyConnector, i: Input<'_>, _: Context) -> ActionFuture {
    let v = input(i);
    Box::pin(async move { output(json!(v["value"].as_str().unwrap_or("").to_uppercase())) })
}

macro_rules! action {
    ($name:literal, $f:ident) => {
        ActionDef {
            name: $name,
            description: $name,
            mode: Mode::Read,
            admin_only: false,
            hidden: false,
            destructive: false,
            idempotent: true,
            timeout_ms: None,
            input_schema: object,
            output_schema: anything,
            input_payload: || PayloadSpec::of(&[Encoding::Json]),
            output_payload: || PayloadSpec::of(&[Encoding::Json]),
            invoke: $f,
            location: concat!(file!(), ":", line!()),
        }
    };
}

static ACTIONS: [ActionDef; 5] = [
    action!("echo", echo),
    action!("fail", fail),
    action!("work", work),
    action!("progress", progress),
    action!("meta", meta),
];

static OPERATORS: [SearchOperatorDef; 1] = [SearchOperatorDef {
    operator: "upper",
    attribute_key: "upper",
    value_type: ValueType::Text,
    description: "Upper-cases the value.",
    resolve: upper,
    location: concat!(file!(), ":", line!()),
}];

static PROBE: ConnectorRegistration = ConnectorRegistration {
    name: "probe",
    version: "1.2.3",
    display_name: "Probe",
    description: "Reports what serve made it see.",
    source_types: &[],
    config_fields: &[],
    buckets: &[],
    build,
    check_config: check,
    location: concat!(file!(), ":", line!()),
};

static PROBE_ACTIONS: ActionSet = ActionSet {
    connector: "probe",
    actions: &ACTIONS,
    operators: &OPERATORS,
    producers: &[],
    syncs: &[],
};

/// A started probe instance.
pub async fn probe() -> Instance {
    let registry = Registry::builder()
        .connector(&PROBE)
        .action_set(&PROBE_ACTIONS)
        .build()
        .expect("valid registry");
    let ty = registry.get("probe").unwrap().clone();
    Instance::start(ty, ConfigSource::from_vars::<&str, &str>([]))
        .await
        .unwrap()
        .with_cancel_grace(Duration::from_millis(300))
}

/// Options for a test: a stable id, a key in memory, fast reconnects.
pub fn options(hub_url: &str) -> AttachOptions {
    let mut o = AttachOptions::new(&probe_manifest());
    o.hub_url = hub_url.to_owned();
    o.instance.id = "probe-1".into();
    o.key = KeySource::Loaded(Arc::new(InstanceKey::generate().unwrap()));
    o.backoff = Backoff::builder()
        .initial(Duration::from_millis(20))
        .max(Duration::from_millis(200))
        .build()
        .unwrap();
    o.shutdown_grace = Duration::from_secs(3);
    o.connect_timeout = Duration::from_secs(2);
    o
}

fn probe_manifest() -> spoke_runtime::Manifest {
    let registry = Registry::builder()
        .connector(&PROBE)
        .action_set(&PROBE_ACTIONS)
        .build()
        .unwrap();
    registry.get("probe").unwrap().manifest().clone()
}

/// A connector running `serve` in this process.
pub struct Running {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<ServeOutcome, ServeError>>,
}

impl Running {
    /// Asks it to shut down.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits for `serve` to return.
    pub async fn finished(self) -> Result<ServeOutcome, ServeError> {
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("serve did not return in time")
            .expect("serve panicked")
    }
}

/// Starts `serve` for a probe instance.
pub async fn serve(options: AttachOptions) -> Running {
    let instance = probe().await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(spoke_runtime::grpc::serve::run_until(
        instance,
        options,
        shutdown.clone().cancelled_owned(),
    ));
    Running { shutdown, task }
}
