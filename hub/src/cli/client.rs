//! The client commands of the `spoke` CLI: `ls`, `describe` and `call`
//! (the admin commands are in `admin_client`).
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
//! - `describe`: the manifest, pretty-printed JSON.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};
use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{
    ConnectorSummary, DescribeRequest, Encoding, InstanceResult, InvokeKind, InvokeRequest,
    ListConnectorsRequest, Route, instance_result, route,
};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use crate::wire::code_name;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the action returned an error (or a broadcast had one).
pub const EXIT_ACTION_ERROR: u8 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the hub or the transport failed.
pub const EXIT_HUB_ERROR: u8 = 3;

/// How long `ls` and `describe` wait for the hub.
const QUICK_TIMEOUT: Duration = Duration::from_secs(10);
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

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub(crate) struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose requests carry the client token.
pub(crate) type Authorized = InterceptedService<Channel, Bearer>;

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
    /// The route.
    pub route: Option<RouteFlag>,
    /// The deadline.
    pub timeout: Duration,
    /// Resolve a search operator.
    pub operator: bool,
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

/// `spoke describe`.
pub async fn describe(hub: &HubTarget, connector: &str) -> u8 {
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
                Ok(value) => print_stdout(pretty(&value).as_bytes(), true),
                Err(_) => print_stdout(manifest.as_bytes(), true),
            }
            EXIT_OK
        }
    }
}

/// `spoke call`.
pub async fn call(hub: &HubTarget, options: CallOptions) -> u8 {
    let broadcast = matches!(options.route, Some(RouteFlag::Tag(_)));
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
            print_output(result.encoding, &payload);
            EXIT_OK
        }
        None => {
            print_output(result.encoding, &[]);
            EXIT_OK
        }
    }
}

async fn invoke(hub: &HubTarget, options: &CallOptions) -> Result<Vec<InstanceResult>, Failure> {
    let payload = read_input(options)?;
    let mut hub = connect(hub).await?;
    let route = options.route.clone().map(|flag| Route {
        target: Some(match flag {
            RouteFlag::Instance(id) => route::Target::Instance(id),
            RouteFlag::Name(name) => route::Target::DisplayName(name),
            RouteFlag::Tag(tag) => route::Target::Tag(tag),
        }),
    });
    let kind = if options.operator {
        InvokeKind::SearchOperator
    } else {
        InvokeKind::Action
    };
    let mut request = tonic::Request::new(InvokeRequest {
        connector: options.connector.clone(),
        action: options.action.clone(),
        payload: payload.into(),
        encoding: Encoding::Json.into(),
        route,
        metadata: HashMap::new(),
        kind: kind.into(),
    });
    request.set_timeout(options.timeout);
    // The hub passes it to the action as its `caller` metadata.
    request.metadata_mut().insert(
        crate::wire::CALLER_HEADER,
        tonic::metadata::MetadataValue::from_static(CLI_CALLER),
    );
    let timed_out = || Failure::Hub {
        code: "deadline_exceeded",
        message: format!(
            "no answer within {:?} (raise it with --timeout)",
            options.timeout
        ),
    };
    match tokio::time::timeout(options.timeout + TIMEOUT_SLACK, hub.invoke(request)).await {
        Err(_) => Err(timed_out()),
        Ok(Ok(response)) => Ok(response.into_inner().results),
        // tonic reports its own client-side timeout as CANCELLED.
        Ok(Err(status))
            if status.code() == Code::Cancelled && status.message() == "Timeout expired" =>
        {
            Err(timed_out())
        }
        Ok(Err(status)) => Err(Failure::from_status(&status)),
    }
}

/// The payload of `spoke call`: the input JSON (default `{}`); for a search
/// operator, `{"value": ...}`.
fn read_input(options: &CallOptions) -> Result<Vec<u8>, Failure> {
    let text = match options.input.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(format!("cannot read the input from stdin: {e}")))?;
            Some(text)
        }
        Some(text) => Some(text.to_owned()),
        None => None,
    };
    let value = if options.operator {
        let Some(text) = text else {
            return Err(Failure::Usage(format!(
                "search operator `{}` needs a value, e.g. `spoke call {} {} --operator rs`",
                options.action, options.connector, options.action
            )));
        };
        operator_input(&text)
    } else {
        match text {
            None => json!({}),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                Failure::Usage(format!(
                    "the input is not valid JSON ({e}); pass a JSON object such as '{{\"key\": \"value\"}}', or - to read it from stdin"
                ))
            })?,
        }
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

async fn connect(hub: &HubTarget) -> Result<HubClient<Authorized>, Failure> {
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
        Some(instance_result::Outcome::Payload(payload)) => {
            let output = output_value(result.encoding, payload);
            (
                json!({ "instance": result.instance_id, "output": output }),
                false,
            )
        }
        None => (
            json!({ "instance": result.instance_id, "output": Value::Null }),
            false,
        ),
    }
}

fn is_json(encoding: i32) -> bool {
    matches!(
        Encoding::try_from(encoding),
        Ok(Encoding::Json | Encoding::Unspecified)
    )
}

/// A payload as a JSON value: parsed when it is JSON, else its text.
fn output_value(encoding: i32, payload: &[u8]) -> Value {
    if payload.is_empty() {
        return Value::Null;
    }
    if is_json(encoding)
        && let Ok(value) = serde_json::from_slice(payload)
    {
        return value;
    }
    Value::String(String::from_utf8_lossy(payload).into_owned())
}

/// Prints one result's output: JSON pretty-printed, anything else as is.
fn print_output(encoding: i32, payload: &[u8]) {
    if is_json(encoding) {
        let value = if payload.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice::<Value>(payload)
        };
        if let Ok(value) = value {
            print_stdout(pretty(&value).as_bytes(), true);
            return;
        }
    }
    print_stdout(payload, false);
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Writes to stdout, ignoring a closed pipe (`spoke ls | head`).
fn print_stdout(bytes: &[u8], newline: bool) {
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
