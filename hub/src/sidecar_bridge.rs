//! One run of a supervised sidecar: spawn it, wait for its `ready`, then
//! bridge it to the hub's own gRPC address as an ordinary connector
//! (`ConnectorHub.Attach`), translating frames between the wire protocol and
//! the stdio protocol (`spoke_runtime::stdio`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Map, Value, json};
use spoke_proto::v1::connector_hub_client::ConnectorHubClient;
use spoke_proto::v1::{
    ConnectorFrame, Encoding, Error as WireError, Event, Goodbye, HubFrame, InstanceInfo,
    InvokeKind, Pong, Register, Result as WireResult, connector_frame, hub_frame, result,
};
use spoke_runtime::Manifest;
use spoke_runtime::Mode;
use spoke_runtime::manifest::{ActionManifest, MANIFEST_VERSION};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use crate::sidecars_config::SidecarSpec;
use crate::supervisor::StatusMap;

/// How long the hub has to answer Register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an exiting sidecar has to be reaped once its stdout closed.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);
/// The `max_in_flight` the bridge registers (the stdio default).
const MAX_IN_FLIGHT: u32 = 64;

/// What a sidecar run needs from its supervisor.
#[derive(Debug, Clone)]
pub(crate) struct RunContext {
    /// The hub's own address (loopback).
    pub(crate) hub: SocketAddr,
    /// The hub's shutdown grace.
    pub(crate) grace: Duration,
    /// Cancelled when the hub shuts down.
    pub(crate) stopping: CancellationToken,
    /// Where the run reports its state.
    pub(crate) statuses: StatusMap,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// How long the process ran.
    pub(crate) uptime: Duration,
    /// Why it ended.
    pub(crate) cause: String,
}

/// Runs `spec` once, until its process has exited.
pub(crate) async fn run_once(spec: &SidecarSpec, ctx: &RunContext) -> Outcome {
    let started = Instant::now();
    let cause = run(spec, ctx).await;
    Outcome {
        uptime: started.elapsed(),
        cause,
    }
}

/// `10s`, `500ms`.
pub(crate) fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

async fn run(spec: &SidecarSpec, ctx: &RunContext) -> String {
    let name = spec.name.as_str();
    let mut child = match Command::new(&spec.command)
        .args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return format!("cannot start `{}`: {e}", spec.command),
    };
    tracing::info!(sidecar = %name, pid = child.id().unwrap_or(0), "sidecar started");
    if let Some(stderr) = child.stderr.take() {
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(sidecar = %name, "{line}");
            }
        });
    }
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill().await;
        return "cannot take the sidecar's pipes".into();
    };
    let to_sidecar = spawn_writer(stdin);
    let mut lines = BufReader::new(stdout).lines();

    // Wait for `ready`.
    let ready = tokio::select! {
        ready = tokio::time::timeout(spec.ready_timeout, wait_ready(&mut lines)) => ready,
        () = ctx.stopping.cancelled() => {
            stop_child(&mut child, &to_sidecar, ctx.grace).await;
            return "stopped".into();
        }
    };
    let params = match ready {
        Err(_) => {
            let _ = child.kill().await;
            return format!(
                "never sent ready within {}",
                show_duration(spec.ready_timeout)
            );
        }
        Ok(None) => {
            let status = reap(&mut child).await;
            return format!("exited ({status}) before sending ready");
        }
        Ok(Some(params)) => params,
    };
    send_line(&to_sidecar, json!({"method": "ready_ack"})).await;

    let manifest_json = match manifest_of(&params, name) {
        Ok(m) => m,
        Err(e) => {
            stop_child(&mut child, &to_sidecar, ctx.grace).await;
            return e;
        }
    };
    if let Ok(m) = serde_json::from_str::<Value>(&manifest_json)
        && let Some(connector) = m.get("name").and_then(Value::as_str)
    {
        let connector = connector.to_owned();
        ctx.statuses.update(name, |s| s.connector = connector);
    }

    let (up, mut down) = match attach(ctx.hub, name, manifest_json).await {
        Ok(link) => link,
        Err(e) => {
            stop_child(&mut child, &to_sidecar, ctx.grace).await;
            return e;
        }
    };
    tracing::info!(sidecar = %name, "sidecar attached to the hub");
    ctx.statuses.update(name, |s| s.state = "attached");

    let mut bridge = Bridge {
        name,
        up: up.clone(),
        to_sidecar: to_sidecar.clone(),
        in_flight: HashMap::new(),
        shutdown_sent: false,
    };
    let mut hub_open = true;
    let mut lost_hub: Option<String> = None;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    loop {
        let kill_timer = async {
            match kill_at {
                Some(at) if !killed => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => bridge.on_sidecar_line(&line).await,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(sidecar = %name, "cannot read the sidecar's stdout: {e}");
                    break;
                }
            },
            frame = down.message(), if hub_open => match frame {
                Ok(Some(frame)) => {
                    if !bridge.on_hub_frame(frame).await {
                        hub_open = false;
                    }
                }
                Ok(None) | Err(_) => hub_open = false,
            },
            () = ctx.stopping.cancelled(), if kill_at.is_none() => {
                bridge.shutdown().await;
                kill_at = Some(Instant::now() + ctx.grace);
            }
            () = kill_timer => {
                tracing::warn!(sidecar = %name, "sidecar did not stop in time; killing it");
                let _ = child.start_kill();
                killed = true;
            }
        }
        if !hub_open && lost_hub.is_none() && !ctx.stopping.is_cancelled() {
            lost_hub = Some("lost its stream to the hub".into());
            tracing::warn!(sidecar = %name, "the hub closed the sidecar's stream; stopping it");
            bridge.shutdown().await;
            kill_at.get_or_insert(Instant::now() + Duration::from_secs(1));
        }
    }
    let status = reap(&mut child).await;
    tracing::info!(sidecar = %name, "sidecar exited ({status})");
    bridge.fail_in_flight(&status).await;
    let _ = up
        .send(frame(connector_frame::Frame::Goodbye(Goodbye {
            reason: format!("sidecar `{name}` exited ({status})"),
        })))
        .await;
    drop(bridge);
    drop(up);
    // Let the hub take the last frames and close the stream.
    if hub_open {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(Some(_)) = down.message().await {}
        })
        .await;
    }
    if ctx.stopping.is_cancelled() {
        return "stopped".into();
    }
    lost_hub.unwrap_or_else(|| format!("exited ({status})"))
}

/// Reads stdout until a `ready` frame (its params) or the end.
async fn wait_ready(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<Value> {
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v.get("method").and_then(Value::as_str) == Some("ready")
        {
            return Some(v.get("params").cloned().unwrap_or(Value::Null));
        }
    }
    None
}

/// Waits for an exiting child, killing it if it takes too long.
async fn reap(child: &mut Child) -> String {
    match tokio::time::timeout(REAP_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => show_status(status),
        Ok(Err(e)) => format!("unknown status: {e}"),
        Err(_) => {
            let _ = child.start_kill();
            match child.wait().await {
                Ok(status) => show_status(status),
                Err(e) => format!("unknown status: {e}"),
            }
        }
    }
}

fn show_status(status: ExitStatus) -> String {
    status.to_string()
}

/// Sends `shutdown`, waits the grace, then kills.
async fn stop_child(child: &mut Child, to_sidecar: &mpsc::Sender<String>, grace: Duration) {
    send_line(to_sidecar, json!({"method": "shutdown"})).await;
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

fn spawn_writer(mut stdin: tokio::process::ChildStdin) -> mpsc::Sender<String> {
    let (tx, mut rx) = mpsc::channel::<String>(256);
    tokio::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    tx
}

async fn send_line(to_sidecar: &mpsc::Sender<String>, value: Value) {
    let _ = to_sidecar.send(value.to_string()).await;
}

/// The manifest JSON to register: `ready.params.manifest`, or one made from
/// `ready.params.spoke`.
pub(crate) fn manifest_of(params: &Value, sidecar: &str) -> Result<String, String> {
    if let Some(manifest) = params.get("manifest").filter(|m| m.is_object()) {
        return Ok(manifest.to_string());
    }
    let spoke = params.get("spoke").cloned().unwrap_or(Value::Null);
    let text = |key: &str| spoke.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = text("name").unwrap_or_else(|| sidecar.to_owned());
    let actions = spoke
        .get("actions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    if actions.is_empty() {
        return Err("its ready frame has neither a manifest nor any spoke.actions".into());
    }
    let mut actions: Vec<ActionManifest> = actions
        .into_iter()
        .map(|a| ActionManifest {
            name: a.to_owned(),
            description: String::new(),
            mode: Mode::Write,
            admin_only: false,
            hidden: false,
            timeout_ms: None,
            input_schema: json!({"type": "object"}),
            output_schema: json!({}),
        })
        .collect();
    actions.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = Manifest {
        spoke: MANIFEST_VERSION,
        display_name: text("display_name").unwrap_or_else(|| name.clone()),
        name,
        version: text("version").unwrap_or_else(|| "0.0.0".to_owned()),
        description: String::new(),
        config: json!({"type": "object"}),
        actions,
        search_operators: Vec::new(),
        capabilities: vec!["actions".to_owned()],
    };
    serde_json::to_string(&manifest).map_err(|e| format!("cannot build its manifest: {e}"))
}

fn frame(frame: connector_frame::Frame) -> ConnectorFrame {
    ConnectorFrame { frame: Some(frame) }
}

/// Attaches to the hub and registers; the up channel and the down stream.
async fn attach(
    hub: SocketAddr,
    name: &str,
    manifest_json: String,
) -> Result<(mpsc::Sender<ConnectorFrame>, Streaming<HubFrame>), String> {
    let mut client = ConnectorHubClient::connect(format!("http://{hub}"))
        .await
        .map_err(|e| format!("cannot reach the hub at {hub}: {e}"))?;
    let (up, rx) = mpsc::channel(256);
    let register = Register {
        manifest_json,
        protocol_version: 1,
        sdk_version: concat!("spoke-hub-supervisor/", env!("CARGO_PKG_VERSION")).to_owned(),
        tenant: String::new(),
        instance: Some(InstanceInfo {
            id: name.to_owned(),
            display_name: name.to_owned(),
            tags: Vec::new(),
            metadata: HashMap::from([("transport".to_owned(), "stdio".to_owned())]),
        }),
        session_token: String::new(),
        credentials: Vec::new(),
        max_in_flight: MAX_IN_FLIGHT,
    };
    let _ = up
        .send(frame(connector_frame::Frame::Register(register)))
        .await;
    let mut down = client
        .attach(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("the hub refused the attach: {}", s.message()))?
        .into_inner();
    let first = tokio::time::timeout(REGISTER_TIMEOUT, down.message())
        .await
        .map_err(|_| "the hub did not answer Register in time".to_owned())?
        .map_err(|s| format!("the hub refused it: {}", s.message()))?;
    match first.and_then(|f| f.frame) {
        Some(hub_frame::Frame::Registered(_)) => Ok((up, down)),
        Some(hub_frame::Frame::Goodbye(g)) => Err(format!("the hub refused it: {}", g.reason)),
        _ => Err("the hub did not answer Register".into()),
    }
}

/// The relay between one attach stream and one sidecar process.
struct Bridge<'a> {
    name: &'a str,
    up: mpsc::Sender<ConnectorFrame>,
    to_sidecar: mpsc::Sender<String>,
    /// Calls sent to the sidecar and not answered, with when they were sent.
    in_flight: HashMap<String, Instant>,
    shutdown_sent: bool,
}

impl Bridge<'_> {
    async fn shutdown(&mut self) {
        if !self.shutdown_sent {
            self.shutdown_sent = true;
            send_line(&self.to_sidecar, json!({"method": "shutdown"})).await;
        }
    }

    async fn send_up(&self, f: connector_frame::Frame) {
        let _ = self.up.send(frame(f)).await;
    }

    async fn send_error(&self, request_id: String, code: &str, message: String, details: Value) {
        self.send_up(connector_frame::Frame::Result(WireResult {
            request_id,
            outcome: Some(result::Outcome::Error(WireError {
                code: code.to_owned(),
                message,
                details_json: if details.is_null() {
                    String::new()
                } else {
                    details.to_string()
                },
            })),
            encoding: Encoding::Json as i32,
            duration_us: 0,
            chunked: false,
        }))
        .await;
    }

    /// Handles one hub frame; false when the hub said Goodbye.
    async fn on_hub_frame(&mut self, f: HubFrame) -> bool {
        match f.frame {
            Some(hub_frame::Frame::Invoke(invoke)) => {
                let id = invoke.request_id.clone();
                let line = if invoke.kind == InvokeKind::SearchOperator as i32 {
                    let value = match serde_json::from_slice::<Value>(&invoke.payload) {
                        Ok(Value::Object(mut o)) => o.remove("value").unwrap_or(Value::Null),
                        Ok(other) => other,
                        Err(_) => Value::String(String::from_utf8_lossy(&invoke.payload).into()),
                    };
                    let value = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    json!({"method": "resolve", "params": {
                        "id": id, "operator": invoke.action, "value": value,
                    }})
                } else {
                    let input = if invoke.payload.is_empty() {
                        json!({})
                    } else {
                        match serde_json::from_slice::<Value>(&invoke.payload) {
                            Ok(v) => v,
                            Err(e) => {
                                self.send_error(
                                    id,
                                    "invalid_input",
                                    format!("the input is not JSON: {e}"),
                                    json!({"started": false}),
                                )
                                .await;
                                return true;
                            }
                        }
                    };
                    let mut params = Map::new();
                    params.insert("id".into(), json!(id));
                    params.insert("action".into(), json!(invoke.action));
                    params.insert("input".into(), input);
                    if invoke.timeout_ms > 0 {
                        params.insert("deadline_ms".into(), json!(invoke.timeout_ms));
                    }
                    json!({"method": "invoke", "params": params})
                };
                self.in_flight.insert(id, Instant::now());
                send_line(&self.to_sidecar, line).await;
            }
            Some(hub_frame::Frame::Cancel(cancel)) => {
                send_line(
                    &self.to_sidecar,
                    json!({"method": "cancel", "params": {"id": cancel.request_id}}),
                )
                .await;
            }
            Some(hub_frame::Frame::Ping(ping)) => {
                self.send_up(connector_frame::Frame::Pong(Pong { nonce: ping.nonce }))
                    .await;
            }
            Some(hub_frame::Frame::Drain(_)) => self.shutdown().await,
            Some(hub_frame::Frame::Goodbye(_)) => return false,
            _ => {}
        }
        true
    }

    /// Handles one stdout line of the sidecar.
    async fn on_sidecar_line(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            tracing::warn!(sidecar = %self.name, "not a JSON frame on stdout: {line}");
            return;
        };
        let params = v.get("params").cloned().unwrap_or(Value::Null);
        match v.get("method").and_then(Value::as_str).unwrap_or("") {
            "result" => {
                let Some(id) = params.get("id").and_then(Value::as_str) else {
                    tracing::warn!(sidecar = %self.name, "a result without an id: {line}");
                    return;
                };
                let Some(sent) = self.in_flight.remove(id) else {
                    tracing::debug!(sidecar = %self.name, "a result for unknown call {id}");
                    return;
                };
                let duration_us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                let outcome = match params.get("error").filter(|e| e.is_object()) {
                    Some(error) => {
                        let text = |k: &str| {
                            error
                                .get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned()
                        };
                        result::Outcome::Error(WireError {
                            code: match text("code") {
                                c if c.is_empty() => "internal".to_owned(),
                                c => c,
                            },
                            message: text("message"),
                            details_json: error
                                .get("details")
                                .filter(|d| !d.is_null())
                                .map(Value::to_string)
                                .unwrap_or_default(),
                        })
                    }
                    None => {
                        let output = params.get("output").cloned().unwrap_or(Value::Null);
                        result::Outcome::Payload(serde_json::to_vec(&output).unwrap_or_default())
                    }
                };
                self.send_up(connector_frame::Frame::Result(WireResult {
                    request_id: id.to_owned(),
                    outcome: Some(outcome),
                    encoding: Encoding::Json as i32,
                    duration_us,
                    chunked: false,
                }))
                .await;
            }
            "event" => {
                let event = params.get("event").cloned().unwrap_or(Value::Null);
                let request_id = params
                    .get("id")
                    .or_else(|| event.get("request_id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let kind = event
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("custom")
                    .to_owned();
                self.send_up(connector_frame::Frame::Event(Event {
                    request_id,
                    kind,
                    json: event.to_string(),
                }))
                .await;
            }
            "ready" => send_line(&self.to_sidecar, json!({"method": "ready_ack"})).await,
            "error" => {
                let message = params
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or(line);
                tracing::warn!(sidecar = %self.name, "sidecar error: {message}");
            }
            other => tracing::debug!(sidecar = %self.name, "ignoring `{other}` from the sidecar"),
        }
    }

    /// Answers every call still in flight: the sidecar is gone.
    async fn fail_in_flight(&mut self, status: &str) {
        let ids: Vec<String> = self.in_flight.drain().map(|(id, _)| id).collect();
        for id in ids {
            self.send_error(
                id,
                "unavailable",
                format!(
                    "sidecar `{}` exited ({status}) while running the call; it may or may not have run",
                    self.name
                ),
                Value::Null,
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_plainly() {
        assert_eq!(show_duration(Duration::from_secs(10)), "10s");
        assert_eq!(show_duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn a_manifest_is_synthesized_from_the_spoke_summary() {
        let params = json!({"spoke": {"name": "py", "version": "1.0.0", "actions": ["b", "a"]}});
        let m: Manifest = serde_json::from_str(&manifest_of(&params, "side").unwrap()).unwrap();
        assert_eq!(m.name, "py");
        assert_eq!(m.version, "1.0.0");
        assert_eq!(m.actions.len(), 2);
        assert_eq!(m.actions[0].name, "a");
        assert_eq!(m.actions[0].mode, Mode::Write);
        assert!(manifest_of(&json!({}), "side").is_err());
        let given = json!({"manifest": {"name": "x"}});
        assert_eq!(manifest_of(&given, "side").unwrap(), r#"{"name":"x"}"#);
    }
}
