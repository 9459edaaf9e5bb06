//! Test support: the real `spoke` binary as a child process, and fake
//! connectors that are real gRPC peers over loopback TCP.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use spoke_proto::v1::connector_hub_client::ConnectorHubClient;
use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{
    ConnectorFrame, Drain, Goodbye, HubFrame, InstanceInfo, Invoke, Pong, Register, Registered,
    connector_frame, hub_frame, result,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running `spoke hub`, killed when dropped.
pub struct Hub {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Hub {
    /// Starts `spoke hub --listen 127.0.0.1:0 <args>`, with `--insecure`
    /// unless `args` has `--tls-cert` and `--no-auth` unless it has
    /// `--data`, and waits for its "listening" line.
    pub fn start(args: &[&str]) -> Hub {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spoke"))
            .arg("hub")
            .args(["--listen", "127.0.0.1:0"])
            .args(if args.contains(&"--tls-cert") {
                &[][..]
            } else {
                &["--insecure"][..]
            })
            // Without auth unless the test gives the hub a data directory.
            .args(if args.contains(&"--data") {
                &[][..]
            } else {
                &["--no-auth"][..]
            })
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("SPOKE_HUB_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn spoke hub");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = line_tx.send(line);
            }
            // Keep draining so the hub never blocks on a full pipe.
            for _ in lines {}
        });
        let mut hub = Hub {
            child,
            url: String::new(),
            stderr,
        };
        let line = line_rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no listening line; stderr:\n{}", hub.logs()));
        let url = line
            .strip_prefix("spoke hub listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
            "{url}"
        );
        assert!(!url.ends_with(":0"), "the real port is printed: {url}");
        hub.url = url.to_owned();
        hub
    }

    /// The hub's log so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the hub to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the hub did not exit within {limit:?}; stderr:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A Hub-service client.
    pub async fn client(&self) -> HubClient<Channel> {
        HubClient::connect(self.url.clone())
            .await
            .expect("connect to the hub")
    }

    /// A channel to the hub.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect to the hub")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- hub log ----\n{}\n-----------------", self.logs());
        }
    }
}

/// A manifest with these actions (`(name, "read" | "write")`) and search
/// operators.
pub fn manifest(name: &str, version: &str, actions: &[(&str, &str)], operators: &[&str]) -> String {
    let actions: Vec<Value> = actions
        .iter()
        .map(|(action, mode)| {
            json!({
                "name": action, "description": format!("the {action} action"), "mode": mode,
                "admin_only": false, "hidden": false, "timeout_ms": null,
                "input_schema": {"type": "object"}, "output_schema": {}
            })
        })
        .collect();
    let operators: Vec<Value> = operators
        .iter()
        .map(|op| {
            json!({"operator": op, "attribute_key": op, "value_type": "text", "description": ""})
        })
        .collect();
    json!({
        "spoke": 1, "name": name, "version": version, "display_name": name.to_uppercase(),
        "description": format!("the {name} connector"), "config": {},
        "actions": actions, "search_operators": operators, "capabilities": ["actions"]
    })
    .to_string()
}

/// The manifest most tests use: `echo` with read `get`, write `put`, read
/// `slow` and the operator `ext`.
pub fn echo_manifest() -> String {
    manifest(
        "echo",
        "1.0.0",
        &[("get", "read"), ("put", "write"), ("slow", "read")],
        &["ext"],
    )
}

/// Who a fake connector says it is.
#[derive(Debug, Clone)]
pub struct Spec {
    pub manifest: String,
    pub id: String,
    pub display_name: String,
    pub tags: Vec<String>,
    pub token: String,
    pub max_in_flight: u32,
}

impl Spec {
    /// An `echo` instance with this id.
    pub fn echo(id: &str) -> Spec {
        Spec {
            manifest: echo_manifest(),
            id: id.to_owned(),
            display_name: format!("Echo {id}"),
            tags: Vec::new(),
            token: String::new(),
            max_in_flight: 0,
        }
    }

    pub fn name(mut self, name: &str) -> Spec {
        self.display_name = name.to_owned();
        self
    }

    pub fn tags(mut self, tags: &[&str]) -> Spec {
        self.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    pub fn token(mut self, token: &str) -> Spec {
        self.token = token.to_owned();
        self
    }

    pub fn max_in_flight(mut self, n: u32) -> Spec {
        self.max_in_flight = n;
        self
    }

    pub fn register(&self) -> ConnectorFrame {
        frame(connector_frame::Frame::Register(Register {
            manifest_json: self.manifest.clone(),
            protocol_version: 1,
            sdk_version: "fake/0".to_owned(),
            tenant: "acme".to_owned(),
            instance: Some(InstanceInfo {
                id: self.id.clone(),
                display_name: self.display_name.clone(),
                tags: self.tags.clone(),
                metadata: HashMap::from([("region".to_owned(), "test".to_owned())]),
            }),
            session_token: self.token.clone(),
            credentials: None,
            max_in_flight: self.max_in_flight,
        }))
    }
}

pub fn frame(frame: connector_frame::Frame) -> ConnectorFrame {
    ConnectorFrame { frame: Some(frame) }
}

/// A raw Attach stream: what the test sends, and what the hub answers.
pub struct Stream {
    pub out: mpsc::Sender<ConnectorFrame>,
    pub inbound: Streaming<HubFrame>,
}

impl Stream {
    /// Opens an Attach stream whose first frame is `first`.
    pub async fn open(url: &str, first: ConnectorFrame) -> Stream {
        let (out, rx) = mpsc::channel(1024);
        out.send(first).await.unwrap();
        let mut client = ConnectorHubClient::connect(url.to_owned())
            .await
            .expect("connect to the hub");
        let inbound = tokio::time::timeout(WAIT, client.attach(ReceiverStream::new(rx)))
            .await
            .expect("attach in time")
            .expect("attach")
            .into_inner();
        Stream { out, inbound }
    }

    /// The next frame from the hub: `Ok(None)` when the stream ended,
    /// `Err` with the status if it failed.
    pub async fn next(&mut self) -> Result<Option<HubFrame>, tonic::Status> {
        tokio::time::timeout(WAIT, self.inbound.message())
            .await
            .expect("a frame from the hub in time")
    }

    /// The next frame that is not a Ping (Pings are answered), within [`WAIT`]
    /// in all (however many Pings come meanwhile).
    pub async fn next_non_ping(&mut self) -> Option<hub_frame::Frame> {
        tokio::time::timeout(WAIT, self.next_non_ping_unbounded())
            .await
            .expect("a frame other than Ping from the hub in time")
    }

    async fn next_non_ping_unbounded(&mut self) -> Option<hub_frame::Frame> {
        loop {
            let frame = self.next().await.ok()??.frame?;
            match frame {
                hub_frame::Frame::Ping(ping) => {
                    let _ = self
                        .out
                        .send(self::frame(connector_frame::Frame::Pong(Pong {
                            nonce: ping.nonce,
                        })))
                        .await;
                }
                other => return Some(other),
            }
        }
    }

    pub async fn send(&self, frame: connector_frame::Frame) {
        self.out
            .send(self::frame(frame))
            .await
            .expect("send a frame");
    }
}

/// A registered fake connector.
pub struct Fake {
    pub registered: Registered,
    pub stream: Stream,
}

impl Fake {
    /// Attaches and waits for Registered.
    pub async fn attach(url: &str, spec: &Spec) -> Fake {
        let mut stream = Stream::open(url, spec.register()).await;
        match stream.next_non_ping().await {
            Some(hub_frame::Frame::Registered(registered)) => Fake { registered, stream },
            other => panic!("expected Registered, got {other:?}"),
        }
    }

    /// Answers invocations with `behavior` (and Pings, Cancels, Drain) from a task.
    pub fn serve(self, id: &str, behavior: Behavior) -> Served {
        let log = Arc::new(Log::default());
        let task = tokio::spawn(serve(
            self.stream,
            id.to_owned(),
            behavior,
            Arc::clone(&log),
        ));
        Served { log, task }
    }
}

/// What a fake connector does with an Invoke.
pub type Behavior = Arc<dyn Fn(&Invoke) -> Reply + Send + Sync>;

/// One answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with this JSON output.
    Ok(Value),
    /// Answer with an action error.
    Err {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// Answer `then` after a while (or `cancelled` if cancelled first).
    After(Duration, Box<Reply>),
    /// Never answer, except `cancelled` when cancelled.
    Hang,
    /// Drop the whole stream at once, as a crash would.
    DropStream,
    /// Send these progress events, then the output in these chunks.
    Streamed {
        events: Vec<Value>,
        chunks: Vec<&'static str>,
    },
}

/// Echoes the input and names the instance: `{"instance": id, "input": ...}`.
pub fn echo() -> Behavior {
    Arc::new(|_| Reply::Ok(Value::Null))
}

/// What a served fake saw and did.
#[derive(Default)]
pub struct Log {
    pub invokes: Mutex<Vec<Invoke>>,
    pub cancels: Mutex<Vec<String>>,
    pub drains: Mutex<Vec<Drain>>,
    /// The reasons of the hub's Goodbyes.
    pub goodbyes: Mutex<Vec<String>>,
    pub answered: Mutex<HashMap<String, usize>>,
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
    pub changed: Notify,
}

impl Log {
    /// Waits (bounded) until `check` holds.
    pub async fn wait_until(&self, what: &str, check: impl Fn(&Log) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if check(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                assert!(check(self), "timed out waiting for {what}");
                return;
            }
        }
    }

    pub fn invoke_ids(&self) -> Vec<String> {
        self.invokes
            .lock()
            .unwrap()
            .iter()
            .map(|i| i.request_id.clone())
            .collect()
    }

    pub fn cancelled(&self, request_id: &str) -> bool {
        self.cancels.lock().unwrap().iter().any(|c| c == request_id)
    }
}

/// A served fake; dropping it drops its stream.
pub struct Served {
    pub log: Arc<Log>,
    task: JoinHandle<()>,
}

impl Served {
    /// Whether the serving task ended (the stream is gone).
    pub fn ended(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: Stream, id: String, behavior: Behavior, log: Arc<Log>) {
    let Stream { out, mut inbound } = stream;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<ConnectorFrame>();
    let mut cancels: HashMap<String, oneshot::Sender<()>> = HashMap::new();
    loop {
        tokio::select! {
            Some(frame) = done_rx.recv() => {
                if let Some(connector_frame::Frame::Result(r)) = &frame.frame {
                    cancels.remove(&r.request_id);
                    *log.answered.lock().unwrap().entry(r.request_id.clone()).or_default() += 1;
                    log.running.fetch_sub(1, Ordering::SeqCst);
                }
                if out.send(frame).await.is_err() {
                    return;
                }
                log.changed.notify_waiters();
            }
            message = inbound.message() => {
                let Ok(Some(HubFrame { frame: Some(frame) })) = message else {
                    log.changed.notify_waiters();
                    return;
                };
                match frame {
                    hub_frame::Frame::Ping(ping) => {
                        let _ = out.send(self::frame(connector_frame::Frame::Pong(Pong { nonce: ping.nonce }))).await;
                    }
                    hub_frame::Frame::Invoke(invoke) => {
                        let reply = behavior(&invoke);
                        log.invokes.lock().unwrap().push(invoke.clone());
                        if matches!(reply, Reply::DropStream) {
                            log.changed.notify_waiters();
                            return;
                        }
                        let now = log.running.fetch_add(1, Ordering::SeqCst) + 1;
                        log.max_running.fetch_max(now, Ordering::SeqCst);
                        let (cancel_tx, cancel_rx) = oneshot::channel();
                        cancels.insert(invoke.request_id.clone(), cancel_tx);
                        tokio::spawn(answer(invoke, id.clone(), reply, cancel_rx, done_tx.clone()));
                    }
                    hub_frame::Frame::Cancel(cancel) => {
                        log.cancels.lock().unwrap().push(cancel.request_id.clone());
                        if let Some(tx) = cancels.remove(&cancel.request_id) {
                            let _ = tx.send(());
                        }
                    }
                    hub_frame::Frame::Drain(drain) => {
                        log.drains.lock().unwrap().push(drain);
                        let _ = out.send(self::frame(connector_frame::Frame::Goodbye(Goodbye { reason: "drained".into() }))).await;
                    }
                    hub_frame::Frame::Goodbye(goodbye) => {
                        log.goodbyes.lock().unwrap().push(goodbye.reason);
                    }
                    _ => {}
                }
                log.changed.notify_waiters();
            }
        }
    }
}

async fn answer(
    invoke: Invoke,
    id: String,
    reply: Reply,
    mut cancel: oneshot::Receiver<()>,
    done: mpsc::UnboundedSender<ConnectorFrame>,
) {
    let reply = settle(reply, &mut cancel).await;
    let chunked = matches!(&reply, Reply::Streamed { .. });
    if let Reply::Streamed { events, chunks } = &reply {
        for event in events {
            let event = spoke_proto::v1::Event {
                request_id: invoke.request_id.clone(),
                kind: "progress".into(),
                json: event.to_string(),
            };
            let _ = done.send(frame(connector_frame::Frame::Event(event)));
        }
        for (seq, data) in chunks.iter().enumerate() {
            let chunk = spoke_proto::v1::Chunk {
                request_id: invoke.request_id.clone(),
                seq: seq as u64,
                data: data.as_bytes().to_vec().into(),
            };
            let _ = done.send(frame(connector_frame::Frame::Chunk(chunk)));
        }
    }
    let outcome = match reply {
        Reply::Ok(Value::Null) => {
            let input: Value = serde_json::from_slice(&invoke.payload).unwrap_or(Value::Null);
            result::Outcome::Payload(
                json!({"instance": id, "action": invoke.action, "input": input})
                    .to_string()
                    .into_bytes()
                    .into(),
            )
        }
        Reply::Ok(value) => result::Outcome::Payload(value.to_string().into_bytes().into()),
        Reply::Streamed { .. } => result::Outcome::Payload(Vec::new().into()),
        Reply::Err {
            code,
            message,
            details,
        } => result::Outcome::Error(spoke_proto::v1::Error {
            code: code.to_owned(),
            message,
            details_json: details.map(|d| d.to_string()).unwrap_or_default(),
        }),
        _ => return,
    };
    let result = spoke_proto::v1::Result {
        request_id: invoke.request_id,
        chunked,
        outcome: Some(outcome),
        encoding: spoke_proto::v1::Encoding::Json.into(),
        duration_us: 10,
    };
    let _ = done.send(frame(connector_frame::Frame::Result(result)));
}

/// Waits out `After` and `Hang`; a Cancel turns them into `cancelled`.
async fn settle(mut reply: Reply, cancel: &mut oneshot::Receiver<()>) -> Reply {
    let cancelled = || Reply::Err {
        code: "cancelled",
        message: "cancelled".into(),
        details: None,
    };
    loop {
        match reply {
            Reply::After(delay, then) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => reply = *then,
                    _ = &mut *cancel => return cancelled(),
                }
            }
            Reply::Hang => {
                let _ = (&mut *cancel).await;
                return cancelled();
            }
            other => return other,
        }
    }
}

/// The output JSON of a single-result response.
pub fn output(response: &spoke_proto::v1::InvokeResponse) -> Value {
    assert_eq!(response.results.len(), 1, "{response:?}");
    match &response.results[0].outcome {
        Some(spoke_proto::v1::instance_result::Outcome::Payload(p)) => {
            serde_json::from_slice(p).expect("JSON output")
        }
        other => panic!("expected a payload, got {other:?}"),
    }
}

/// An Invoke request for `echo`.
pub fn request(action: &str, input: Value) -> spoke_proto::v1::InvokeRequest {
    spoke_proto::v1::InvokeRequest {
        connector: "echo".into(),
        action: action.into(),
        payload: input.to_string().into_bytes().into(),
        encoding: spoke_proto::v1::Encoding::Json.into(),
        ..Default::default()
    }
}

/// Runs the `spoke` CLI (bounded), returning (exit code, stdout, stderr).
pub async fn cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spoke"))
        .args(args)
        .env_remove("SPOKE_HUB_URL")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn spoke");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let output = tokio::time::timeout(WAIT * 2, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`spoke {}` did not finish in time", args.join(" ")))
        .expect("run spoke");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
