//! The client commands of the `spoke` CLI: `ls`, `describe` and `call`
//! (the admin commands are in `admin_client`, the sync commands in
//! `sync_client`).
//!
//! Every request carries the client token, when there is one, as
//! `authorization: Bearer <token>` (see [`HubTarget`]).
//!
//! `call` names itself `spoke-cli` in the `x-spoke-caller` request header;
//! the hub passes that on to the action as its `caller` metadata.
//!
//! Output contract:
//!
//! - `call`, one result: the output on stdout (JSON pretty-printed; other
//!   encodings as raw bytes), exit 0. An action error: stderr
//!   `error[<code>]: <message>`, then `details: <json>` if it has details,
//!   exit 1.
//! - `call --events` (every event) or `--progress` (progress events only):
//!   the call goes over `InvokeStream`, and each event is printed on stderr
//!   as it comes, as `event: <json>` (the connector binary's own format);
//!   stdout and the exit code are as without them.
//! - `call --tag`: stdout a JSON array sorted by instance id of
//!   `{"instance": id, "output": ...}` or
//!   `{"instance": id, "error": {"code", "message", "details"}}`
//!   (`details` is `null` when there are none), exit 1 if any entry is an error.
//! - hub and transport errors: stderr `error[<grpc status, snake_case>]: <message>`
//!   (`not_found`, `unavailable`, `deadline_exceeded`, ...), exit 3.
//! - usage errors (bad input JSON, bad URL): stderr `error: <message>`, exit 2.
//! - `ls`: a table (`CONNECTOR VERSION INSTANCE NAME TAGS STATE IN-FLIGHT`),
//!   or with `--json` `{"connectors": [{"name", "version", "display_name",
//!   "description", "instances": [{"id", "display_name", "tags", "metadata",
//!   "state", "session_id", "tenant", "connected_unix_ms", "in_flight"}]}]}`.
//! - `describe`: the manifest, pretty-printed JSON, without hidden actions
//!   unless `--hidden`.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{
    Chunk, ConnectorSummary, DescribeRequest, Event, InstanceResult, InvokeKind, InvokeRequest,
    ListConnectorsRequest, Route, instance_result, invoke_stream_item, route,
};
use spoke_runtime::Encoding;
use spoke_runtime::cli::payload_flags::PayloadFlags;
use spoke_runtime::grpc::wire_encoding::{from_wire, to_wire};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use crate::wire::code_name;
pub(crate) use crate::wire::{Authorized, Bearer};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the action returned an error (or a broadcast had one).
pub const EXIT_ACTION_ERROR: u8 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the hub or the transport failed.
pub const EXIT_HUB_ERROR: u8 = 3;

/// How long `ls`, `describe`, `syncs` and `sync --cancel` wait for the hub.
pub(crate) const QUICK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the hub may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past its timeout a call is given before the CLI stops waiting
/// for the hub's own answer.
const TIMEOUT_SLACK: Duration = Duration::from_secs(2);
/// What `spoke call` says in its `x-spoke-caller` header.
pub const CLI_CALLER: &str = "spoke-cli";

/// The hub a client command talks to, and the client token it presents.
#[derive(Clone)]
pub struct HubTarget {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    /// The client token (`--token`, `SPOKE_TOKEN`, or the operator token
    /// file); `None` sends none.
    pub token: Option<String>,
}

impl std::fmt::Debug for HubTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubTarget")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Which instance(s) `spoke call` targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteFlag {
    /// `--instance ID`.
    Instance(String),
    /// `--name NAME` (display name).
    Name(String),
    /// `--tag TAG` (broadcast).
    Tag(String),
}

/// What `spoke call` does.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// The connector.
    pub connector: String,
    /// The action or search operator.
    pub action: String,
    /// The input text, `-` for stdin, `None` for `{}`.
    pub input: Option<String>,
    /// The input's encoding and file, the output encodings accepted, the
    /// output's file.
    pub payload: PayloadFlags,
    /// The route.
    pub route: Option<RouteFlag>,
    /// The deadline.
    pub timeout: Duration,
    /// Resolve a search operator.
    pub operator: bool,
    /// Which of the call's events to print on stderr (`--events`,
    /// `--progress`); any streams the call.
    pub events: ShowEvents,
}

/// Which events of a call `spoke call` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShowEvents {
    /// None: the call is unary (the default).
    #[default]
    Off,
    /// Progress events only (`--progress`).
    Progress,
    /// Every event: progress, logs, custom events (`--events`).
    All,
}

/// A failure the CLI reports and exits on.
#[derive(Debug)]
pub(crate) enum Failure {
    Usage(String),
    Hub { code: &'static str, message: String },
}

impl Failure {
    pub(crate) fn from_status(status: &Status) -> Failure {
        Failure::Hub {
            code: code_name(status.code()),
            message: status.message().to_owned(),
        }
    }

    pub(crate) fn report(self) -> u8 {
        match self {
            Failure::Usage(message) => {
                eprintln!("error: {message}");
                EXIT_USAGE
            }
            Failure::Hub { code, message } => {
                eprintln!("error[{code}]: {message}");
                EXIT_HUB_ERROR
            }
        }
    }
}

/// `spoke mcp`: serves the hub's tools over stdio until the agent leaves
/// (exit 0); the hub unreachable or refusing the token is exit 3 (said on
/// stderr; stdout carries protocol frames only).
pub async fn mcp(hub: &HubTarget, timeout: Option<Duration>) -> u8 {
    let client = match connect(hub).await {
        Ok(client) => client,
        Err(failure) => return failure.report(),
    };
    match crate::mcp::serve::serve_stdio(client, timeout, crate::server::shutdown_signal()).await {
        Ok(()) => EXIT_OK,
        Err(crate::mcp::StdioError::Hub(status)) => Failure::from_status(&status).report(),
        Err(crate::mcp::StdioError::Serve(message)) => {
            eprintln!("error: {message}");
            EXIT_HUB_ERROR
        }
    }
}

/// `spoke ls`.
pub async fn ls(hub: &HubTarget, as_json: bool) -> u8 {
    let result: Result<_, Failure> = async {
        let mut hub = connect(hub).await?;
        let mut request = tonic::Request::new(ListConnectorsRequest {});
        request.set_timeout(QUICK_TIMEOUT);
        let response = hub
            .list_connectors(request)
            .await
            .map_err(|s| Failure::from_status(&s))?;
        Ok(response.into_inner().connectors)
    }
    .await;
    match result {
        Err(failure) => failure.report(),
        Ok(connectors) => {
            let text = if as_json {
                pretty(&ls_json(&connectors))
            } else {
                ls_table(&connectors)
            };
            print_stdout(text.as_bytes(), true);
            EXIT_OK
        }
    }
}

/// `spoke describe`: the manifest, without its hidden actions unless
/// `hidden`. (The hub shows hidden actions only to admins, and to everyone
/// when it runs without auth.)
pub async fn describe(hub: &HubTarget, connector: &str, hidden: bool) -> u8 {
    let result: Result<_, Failure> = async {
        let mut hub = connect(hub).await?;
        let mut request = tonic::Request::new(DescribeRequest {
            connector: connector.to_owned(),
        });
        request.set_timeout(QUICK_TIMEOUT);
        let response = hub
            .describe(request)
            .await
            .map_err(|s| Failure::from_status(&s))?;
        Ok(response.into_inner().manifest_json)
    }
    .await;
    match result {
        Err(failure) => failure.report(),
        Ok(manifest) => {
            match serde_json::from_str::<Value>(&manifest) {
                Ok(mut value) => {
                    if !hidden {
                        drop_hidden_actions(&mut value);
                    }
                    print_stdout(pretty(&value).as_bytes(), true);
                }
                Err(_) => print_stdout(manifest.as_bytes(), true),
            }
            EXIT_OK
        }
    }
}

/// Removes the actions marked `"hidden": true` from a manifest.
pub(crate) fn drop_hidden_actions(manifest: &mut Value) {
    if let Some(actions) = manifest.get_mut("actions").and_then(Value::as_array_mut) {
        actions.retain(|a| a.get("hidden") != Some(&Value::Bool(true)));
    }
}

/// `spoke call`.
pub async fn call(hub: &HubTarget, options: CallOptions) -> u8 {
    let broadcast = matches!(options.route, Some(RouteFlag::Tag(_)));
    if broadcast && options.payload.output_file.is_some() {
        return Failure::Usage(
            "--output-file takes one output; --tag answers one per instance (printed as JSON)"
                .into(),
        )
        .report();
    }
    if let Err(why) = options.payload.check_terminal(None) {
        return Failure::Usage(why).report();
    }
    let results = match invoke(hub, &options).await {
        Ok(results) => results,
        Err(failure) => return failure.report(),
    };
    if broadcast || results.len() > 1 {
        let mut failed = false;
        let entries: Vec<Value> = results
            .iter()
            .map(|r| {
                let (entry, is_error) = broadcast_entry(r);
                failed |= is_error;
                entry
            })
            .collect();
        print_stdout(pretty(&Value::Array(entries)).as_bytes(), true);
        return if failed { EXIT_ACTION_ERROR } else { EXIT_OK };
    }
    let Some(result) = results.into_iter().next() else {
        return Failure::Hub {
            code: "internal",
            message: "the hub answered without a result".to_owned(),
        }
        .report();
    };
    match result.outcome {
        Some(instance_result::Outcome::Error(error)) => {
            eprintln!("error[{}]: {}", error.code, error.message);
            if !error.details_json.is_empty() {
                let details = match serde_json::from_str::<Value>(&error.details_json) {
                    Ok(value) => value.to_string(),
                    Err(_) => error.details_json,
                };
                eprintln!("details: {details}");
            }
            EXIT_ACTION_ERROR
        }
        Some(instance_result::Outcome::Payload(payload)) => {
            show_output(&options, result.encoding, &payload)
        }
        None => show_output(&options, result.encoding, &[]),
    }
}

/// Writes one result's output (see [`PayloadFlags::write_output`]); says
/// on stderr when it is not in an encoding asked for (a connector from
/// before output encodings answers JSON).
fn show_output(options: &CallOptions, encoding: i32, payload: &[u8]) -> u8 {
    let encoding = match from_wire(encoding) {
        Ok(encoding) => encoding,
        Err(e) => {
            return Failure::Hub {
                code: "internal",
                message: format!("the answer's {}", e.message()),
            }
            .report();
        }
    };
    let accept = options.payload.accept();
    if !accept.is_empty() && !accept.contains(&encoding) {
        eprintln!(
            "note: the connector answered in {encoding}, not in {} as asked (it predates output encodings)",
            Encoding::join(accept, "or")
        );
    }
    match options.payload.write_output(encoding, payload) {
        Ok(()) => EXIT_OK,
        Err(why) => Failure::Usage(why).report(),
    }
}

async fn invoke(hub: &HubTarget, options: &CallOptions) -> Result<Vec<InstanceResult>, Failure> {
    let request = invoke_request(options)?;
    let mut hub = connect(hub).await?;
    if options.events != ShowEvents::Off {
        return invoke_streaming(&mut hub, request, options).await;
    }
    match tokio::time::timeout(options.timeout + TIMEOUT_SLACK, hub.invoke(request)).await {
        Err(_) => Err(timed_out(options)),
        Ok(Ok(response)) => Ok(response.into_inner().results),
        Ok(Err(status)) => Err(call_failed(&status, options)),
    }
}

/// `spoke call --events` / `--progress`: the call over `InvokeStream`,
/// printing its events on stderr as they come and joining the chunks of a
/// large result.
async fn invoke_streaming(
    hub: &mut HubClient<Authorized>,
    request: tonic::Request<InvokeRequest>,
    options: &CallOptions,
) -> Result<Vec<InstanceResult>, Failure> {
    let broadcast = matches!(options.route, Some(RouteFlag::Tag(_)));
    let work = async {
        let mut stream = hub.invoke_stream(request).await?.into_inner();
        let mut results = Vec::new();
        let mut pieces = Pieces::default();
        while let Some(item) = stream.message().await? {
            match item.item {
                Some(invoke_stream_item::Item::Event(event)) => {
                    if let Some(line) = event_line(&event, options.events) {
                        eprintln!("{line}");
                    }
                }
                Some(invoke_stream_item::Item::Chunk(chunk)) => pieces.add(chunk, broadcast),
                Some(invoke_stream_item::Item::Result(result)) => results.push(result),
                None => {}
            }
        }
        pieces.join_into(&mut results, broadcast);
        Ok::<_, Status>(results)
    };
    match tokio::time::timeout(options.timeout + TIMEOUT_SLACK, work).await {
        Err(_) => Err(timed_out(options)),
        Ok(Ok(results)) => Ok(results),
        Ok(Err(status)) => Err(call_failed(&status, options)),
    }
}

/// The request of `spoke call`: input, route, deadline, and the
/// `x-spoke-caller` header.
fn invoke_request(options: &CallOptions) -> Result<tonic::Request<InvokeRequest>, Failure> {
    let payload = read_input(options)?;
    let route = options.route.clone().map(route_of);
    let kind = if options.operator {
        InvokeKind::SearchOperator
    } else {
        InvokeKind::Action
    };
    let mut request = tonic::Request::new(InvokeRequest {
        connector: options.connector.clone(),
        action: options.action.clone(),
        payload: payload.into(),
        encoding: to_wire(options.payload.input_encoding),
        route,
        metadata: HashMap::new(),
        kind: kind.into(),
        accept: options
            .payload
            .accept()
            .iter()
            .map(|e| to_wire(*e))
            .collect(),
    });
    request.set_timeout(options.timeout);
    // The hub passes it to the action as its `caller` metadata.
    request.metadata_mut().insert(
        crate::wire::CALLER_HEADER,
        tonic::metadata::MetadataValue::from_static(CLI_CALLER),
    );
    Ok(request)
}

/// The request's route for a route flag.
pub(crate) fn route_of(flag: RouteFlag) -> Route {
    Route {
        target: Some(match flag {
            RouteFlag::Instance(id) => route::Target::Instance(id),
            RouteFlag::Name(name) => route::Target::DisplayName(name),
            RouteFlag::Tag(tag) => route::Target::Tag(tag),
        }),
    }
}

/// No answer within the call's timeout (and some slack for the hub's own).
fn timed_out(options: &CallOptions) -> Failure {
    Failure::Hub {
        code: "deadline_exceeded",
        message: format!(
            "no answer within {:?} (raise it with --timeout)",
            options.timeout
        ),
    }
}

/// A call that ended with a gRPC status.
fn call_failed(status: &Status, options: &CallOptions) -> Failure {
    // tonic reports its own client-side timeout as CANCELLED.
    if status.code() == Code::Cancelled && status.message() == "Timeout expired" {
        timed_out(options)
    } else {
        Failure::from_status(status)
    }
}

/// The stderr line of a streamed event, in the connector binary's own
/// format (`event: <json>`, the event on one line), if `show` wants it.
fn event_line(event: &Event, show: ShowEvents) -> Option<String> {
    if show == ShowEvents::Progress && event.kind != "progress" {
        return None;
    }
    let text = event.json.trim();
    if !text.contains(['\n', '\r']) {
        // As the connector wrote it (the SDK: compact JSON, in its order).
        return Some(format!("event: {text}"));
    }
    let json = match serde_json::from_str::<Value>(text) {
        Ok(value) => value.to_string(),
        // Not JSON (a foreign sidecar): its text, on one line.
        Err(_) => text.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    Some(format!("event: {json}"))
}

/// The chunks of streamed results. A result over 1 MiB arrives as chunks
/// (by request id), then its `InstanceResult` with an empty payload. The
/// hub's request ids say whose chunks they are: the call's id `<id>`,
/// `<id>.<k>` for its k-th retry; a broadcast's n-th member (in instance
/// order, as its results) `<id>.<n>`, then `<id>.<n>.<k>`. A newer attempt's
/// chunks replace an earlier attempt's, which was lost.
#[derive(Debug, Default)]
struct Pieces {
    /// By member (0 for a call that is not a broadcast): the attempt's
    /// request id and its bytes so far.
    members: HashMap<usize, (String, Vec<u8>)>,
}

impl Pieces {
    fn add(&mut self, chunk: Chunk, broadcast: bool) {
        let member = if broadcast {
            chunk
                .request_id
                .split('.')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        } else {
            0
        };
        let (attempt, bytes) = self.members.entry(member).or_default();
        if *attempt != chunk.request_id {
            *attempt = chunk.request_id;
            bytes.clear();
        }
        bytes.extend_from_slice(&chunk.data);
    }

    /// Puts each member's chunks into its result when that result's payload
    /// is empty (the result of a chunked payload).
    fn join_into(mut self, results: &mut [InstanceResult], broadcast: bool) {
        for (i, result) in results.iter_mut().enumerate() {
            let member = if broadcast { i + 1 } else { 0 };
            let Some((_, bytes)) = self.members.remove(&member) else {
                continue;
            };
            match &mut result.outcome {
                Some(instance_result::Outcome::Payload(payload)) if payload.is_empty() => {
                    *payload = bytes.into();
                }
                None => result.outcome = Some(instance_result::Outcome::Payload(bytes.into())),
                Some(_) => {}
            }
        }
    }
}

/// The payload of `spoke call`: the input JSON (default `{}`), checked;
/// bytes in another `--input-encoding` as they are; for a search operator,
/// `{"value": ...}`.
pub(crate) fn read_input(options: &CallOptions) -> Result<Vec<u8>, Failure> {
    let bytes = options
        .payload
        .read_input(options.input.as_deref())
        .map_err(Failure::Usage)?;
    if options.operator {
        let Some(bytes) = bytes else {
            return Err(Failure::Usage(format!(
                "search operator `{}` needs a value, e.g. `spoke call {} {} --operator rs`",
                options.action, options.connector, options.action
            )));
        };
        return Ok(operator_input(&String::from_utf8_lossy(&bytes))
            .to_string()
            .into_bytes());
    }
    if options.payload.input_encoding != Encoding::Json {
        return Ok(bytes.unwrap_or_default());
    }
    let value = match bytes {
        None => json!({}),
        Some(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|e| {
            Failure::Usage(format!(
                "the input is not valid JSON ({e}); pass a JSON object such as '{{\"key\": \"value\"}}', or - to read it from stdin"
            ))
        })?,
    };
    Ok(value.to_string().into_bytes())
}

/// A search operator's input: an object is sent as is (`{"value": ...}`),
/// any other JSON value or plain text becomes `{"value": <it>}`.
fn operator_input(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(object @ Value::Object(_)) => object,
        Ok(value) => json!({ "value": value }),
        Err(_) => json!({ "value": text.trim_end_matches(['\r', '\n']) }),
    }
}

/// The Hub service's client, its requests carrying the client token.
pub(crate) async fn connect(hub: &HubTarget) -> Result<HubClient<Authorized>, Failure> {
    let channel = authorized_channel(hub).await?;
    Ok(HubClient::new(channel)
        .max_decoding_message_size(
            spoke_proto::MAX_ASSEMBLED_BYTES + spoke_proto::RESPONSE_SLACK_BYTES,
        )
        .max_encoding_message_size(spoke_proto::MAX_MESSAGE_BYTES))
}

/// A channel to the hub whose requests carry the client token.
pub(crate) async fn authorized_channel(hub: &HubTarget) -> Result<Authorized, Failure> {
    let bearer = match &hub.token {
        None => None,
        Some(token) => Some(format!("Bearer {}", token.trim()).parse().map_err(|_| {
            Failure::Usage("the client token contains characters a header cannot carry".into())
        })?),
    };
    let channel = dial(&hub.url).await?;
    Ok(InterceptedService::new(channel, Bearer(bearer)))
}

/// Dials the hub at `url` (`https://` over TLS, trusting `SPOKE_TLS_CA` or
/// the system's roots; see `spoke_runtime::grpc::tls`).
async fn dial(url: &str) -> Result<Channel, Failure> {
    use spoke_runtime::grpc::tls::{HubTls, connect_error, hub_endpoint};
    let tls = HubTls::from_env().map_err(|e| Failure::Usage(e.to_string()))?;
    let endpoint = hub_endpoint(url, &tls, CONNECT_TIMEOUT)
        .map_err(|e| Failure::Usage(format!("invalid hub URL `{url}`: {e}")))?;
    let channel = endpoint.connect().await.map_err(|e| Failure::Hub {
        code: "unavailable",
        message: connect_error(url, &e),
    })?;
    Ok(channel)
}

/// A broadcast entry and whether it is an error.
fn broadcast_entry(result: &InstanceResult) -> (Value, bool) {
    match &result.outcome {
        Some(instance_result::Outcome::Error(error)) => {
            let details = if error.details_json.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&error.details_json)
                    .unwrap_or_else(|_| Value::String(error.details_json.clone()))
            };
            let entry = json!({
                "instance": result.instance_id,
                "error": { "code": error.code, "message": error.message, "details": details },
            });
            (entry, true)
        }
        Some(instance_result::Outcome::Payload(payload)) => (
            output_entry(&result.instance_id, result.encoding, payload),
            false,
        ),
        None => (
            json!({ "instance": result.instance_id, "output": Value::Null }),
            false,
        ),
    }
}

/// A broadcast member's output: `"output"` as JSON when it is JSON,
/// MessagePack or JSON Lines (then with its `"encoding"`), else
/// `"output_base64"` with its `"encoding"`.
fn output_entry(instance: &str, encoding: i32, payload: &[u8]) -> Value {
    let encoding = from_wire(encoding).unwrap_or(Encoding::RawBytes);
    if payload.is_empty() {
        return json!({ "instance": instance, "output": Value::Null });
    }
    if encoding == Encoding::Json
        && let Ok(value) = serde_json::from_slice::<Value>(payload)
    {
        return json!({ "instance": instance, "output": value });
    }
    match spoke_runtime::payload::to_value(encoding, payload).unwrap_or(Value::Null) {
        Value::Null => {
            use base64::Engine as _;
            json!({
                "instance": instance,
                "encoding": encoding,
                "output_base64": base64::engine::general_purpose::STANDARD.encode(payload),
            })
        }
        value => json!({ "instance": instance, "encoding": encoding, "output": value }),
    }
}

/// A value as pretty-printed JSON.
pub(crate) fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Writes to stdout, ignoring a closed pipe (`spoke ls | head`).
pub(crate) fn print_stdout(bytes: &[u8], newline: bool) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    if newline {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

fn ls_json(connectors: &[ConnectorSummary]) -> Value {
    let connectors: Vec<Value> = connectors
        .iter()
        .map(|c| {
            let instances: Vec<Value> = c
                .instances
                .iter()
                .map(|i| {
                    let info = i.info.clone().unwrap_or_default();
                    let metadata: serde_json::Map<String, Value> = info
                        .metadata
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect();
                    json!({
                        "id": info.id,
                        "display_name": info.display_name,
                        "tags": info.tags,
                        "metadata": metadata,
                        "state": i.state,
                        "session_id": i.session_id,
                        "tenant": i.tenant,
                        "connected_unix_ms": i.connected_unix_ms,
                        "in_flight": i.in_flight,
                    })
                })
                .collect();
            json!({
                "name": c.name,
                "version": c.version,
                "display_name": c.display_name,
                "description": c.description,
                "instances": instances,
            })
        })
        .collect();
    json!({ "connectors": connectors })
}

/// Lays out rows as left-aligned columns two spaces apart.
pub(crate) fn columns<const N: usize>(rows: &[[String; N]]) -> Vec<String> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            line.join("  ").trim_end().to_owned()
        })
        .collect()
}

fn ls_table(connectors: &[ConnectorSummary]) -> String {
    if connectors.is_empty() {
        return "no connectors attached".to_owned();
    }
    let dash = || "-".to_owned();
    let mut rows: Vec<[String; 7]> = vec![
        [
            "CONNECTOR",
            "VERSION",
            "INSTANCE",
            "NAME",
            "TAGS",
            "STATE",
            "IN-FLIGHT",
        ]
        .map(str::to_owned),
    ];
    for c in connectors {
        if c.instances.is_empty() {
            rows.push([
                c.name.clone(),
                c.version.clone(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
            ]);
        }
        for i in &c.instances {
            let info = i.info.clone().unwrap_or_default();
            let or_dash = |s: String| if s.is_empty() { dash() } else { s };
            rows.push([
                c.name.clone(),
                or_dash(c.version.clone()),
                or_dash(info.id),
                or_dash(info.display_name),
                or_dash(info.tags.join(",")),
                or_dash(i.state.clone()),
                i.in_flight.to_string(),
            ]);
        }
    }
    let mut lines = columns(&rows);
    // Why an instance is down (a supervised sidecar's last failure).
    for c in connectors {
        for i in &c.instances {
            let info = i.info.clone().unwrap_or_default();
            if let Some(error) = info.metadata.get("last_error") {
                lines.push(format!(
                    "{}/{} ({}): last error: {error}",
                    c.name, info.id, i.state
                ));
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use spoke_proto::v1::{InstanceInfo, InstanceState};

    use super::*;

    #[test]
    fn operator_values_are_wrapped() {
        assert_eq!(operator_input("rs"), json!({"value": "rs"}));
        assert_eq!(operator_input("\"rs\""), json!({"value": "rs"}));
        assert_eq!(operator_input("42"), json!({"value": 42}));
        assert_eq!(operator_input("{\"value\": \"x\"}"), json!({"value": "x"}));
    }

    #[test]
    fn the_table_has_one_row_per_instance() {
        let connectors = vec![ConnectorSummary {
            name: "files".into(),
            version: "1.0.0".into(),
            instances: vec![InstanceState {
                info: Some(InstanceInfo {
                    id: "f1".into(),
                    display_name: "Files".into(),
                    tags: vec!["eu".into(), "prod".into()],
                    ..Default::default()
                }),
                state: "ready".into(),
                in_flight: 2,
                ..Default::default()
            }],
            ..Default::default()
        }];
        let table = ls_table(&connectors);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("CONNECTOR  VERSION  INSTANCE  NAME"));
        assert!(lines[1].contains("files") && lines[1].contains("eu,prod"));
        assert!(lines[1].ends_with('2'));
        assert_eq!(ls_table(&[]), "no connectors attached");
    }

    #[test]
    fn the_table_says_why_an_instance_is_down() {
        let connectors = vec![ConnectorSummary {
            name: "py".into(),
            instances: vec![InstanceState {
                info: Some(InstanceInfo {
                    id: "py-1".into(),
                    metadata: HashMap::from([(
                        "last_error".to_owned(),
                        "exited (exit status: 1)".to_owned(),
                    )]),
                    ..Default::default()
                }),
                state: "broken".into(),
                ..Default::default()
            }],
            ..Default::default()
        }];
        let table = ls_table(&connectors);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[2],
            "py/py-1 (broken): last error: exited (exit status: 1)"
        );
    }

    #[test]
    fn events_print_as_the_connector_binary_prints_them() {
        let event = |kind: &str, json: &str| Event {
            request_id: "r-1".into(),
            kind: kind.into(),
            json: json.into(),
        };
        let progress = event(
            "progress",
            "{\n  \"request_id\": \"r-1\",\n  \"type\": \"progress\",\n  \"progress\": 1.0\n}",
        );
        let custom = event(
            "custom",
            r#"{"request_id":"r-1","type":"custom","name":"done"} "#,
        );
        let line = r#"event: {"progress":1.0,"request_id":"r-1","type":"progress"}"#;
        assert_eq!(
            event_line(&progress, ShowEvents::All).as_deref(),
            Some(line)
        );
        assert_eq!(
            event_line(&progress, ShowEvents::Progress).as_deref(),
            Some(line)
        );
        assert_eq!(event_line(&custom, ShowEvents::Progress), None);
        assert_eq!(
            event_line(&custom, ShowEvents::All).as_deref(),
            Some(r#"event: {"request_id":"r-1","type":"custom","name":"done"}"#)
        );
        assert_eq!(
            event_line(&event("custom", "not\njson"), ShowEvents::All).as_deref(),
            Some("event: not json")
        );
    }

    fn chunk(request_id: &str, seq: u64, data: &[u8]) -> Chunk {
        Chunk {
            request_id: request_id.into(),
            seq,
            data: data.to_vec().into(),
        }
    }

    fn payload(instance: &str, bytes: &[u8]) -> InstanceResult {
        InstanceResult {
            instance_id: instance.into(),
            outcome: Some(instance_result::Outcome::Payload(bytes.to_vec().into())),
            ..Default::default()
        }
    }

    #[test]
    fn streamed_chunks_are_joined_into_their_result() {
        // A call retried after its first instance was lost: the retry's
        // chunks replace the lost attempt's.
        let mut pieces = Pieces::default();
        pieces.add(chunk("7-1", 0, b"stale"), false);
        pieces.add(chunk("7-1.1", 0, b"[1,"), false);
        pieces.add(chunk("7-1.1", 1, b"2]"), false);
        let mut results = vec![payload("b", b"")];
        pieces.join_into(&mut results, false);
        assert_eq!(results, vec![payload("b", b"[1,2]")]);

        // A broadcast: member n is the n-th result (in instance order); a
        // result that came whole keeps its payload.
        let mut pieces = Pieces::default();
        pieces.add(chunk("7-2.2", 0, b"\"tw"), true);
        pieces.add(chunk("7-2.1", 0, b"\"o"), true);
        pieces.add(chunk("7-2.2.1", 0, b"\"t"), true);
        pieces.add(chunk("7-2.2.1", 1, b"wo\""), true);
        pieces.add(chunk("7-2.1", 1, b"ne\""), true);
        let mut results = vec![payload("a", b""), payload("b", b""), payload("c", b"3")];
        pieces.join_into(&mut results, true);
        assert_eq!(
            results,
            vec![
                payload("a", b"\"one\""),
                payload("b", b"\"two\""),
                payload("c", b"3")
            ]
        );
    }

    #[test]
    fn describe_leaves_hidden_actions_out() {
        let mut manifest = json!({
            "name": "files",
            "actions": [
                {"name": "list", "hidden": false},
                {"name": "delete", "hidden": true},
                {"name": "read"},
            ],
        });
        drop_hidden_actions(&mut manifest);
        assert_eq!(
            manifest,
            json!({"name": "files", "actions": [{"name": "list", "hidden": false}, {"name": "read"}]})
        );
    }

    #[test]
    fn broadcast_entries_carry_output_or_error() {
        let ok = InstanceResult {
            instance_id: "a".into(),
            outcome: Some(instance_result::Outcome::Payload(
                b"{\"n\":1}".to_vec().into(),
            )),
            ..Default::default()
        };
        assert_eq!(
            broadcast_entry(&ok),
            (json!({"instance": "a", "output": {"n": 1}}), false)
        );
        let err = InstanceResult {
            instance_id: "b".into(),
            outcome: Some(instance_result::Outcome::Error(spoke_proto::v1::Error {
                code: "not_found".into(),
                message: "gone".into(),
                details_json: String::new(),
            })),
            ..Default::default()
        };
        assert_eq!(
            broadcast_entry(&err),
            (
                json!({"instance": "b", "error": {"code": "not_found", "message": "gone", "details": null}}),
                true
            )
        );
    }
}
