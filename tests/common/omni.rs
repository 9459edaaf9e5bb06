//! A stand-in for Omni's connector-manager, on loopback, and a connector
//! example run as `<example> http` against it.
//!
//! Provenance: written for this project from a description of Omni's
//! connector contract (getomnico/omni at 13ce7b66c186, 2026-08-22:
//! `services/connector-manager/src/handlers.rs`, `shared/src/models.rs`,
//! `sdk/rust/tests/common/mod.rs`). It answers as the manager does: run
//! updates only while the run is running, `complete` copies the run's
//! checkpoint over the source's even when it is null, events refused for a
//! run that is not running or whose ids do not match, registrations refused
//! when an action's input schema breaks the manager's rules (checked here
//! independently of Spoke's own check) or the connector's `/health` fails.
//! Sources carry the manager's six-digit-year timestamps.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

/// One call the manager received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `POST /sdk/events/batch`, with the run id in place: `POST /sdk/sync/r1/complete`.
    pub route: String,
    /// Its JSON body (`null` when none).
    pub body: Value,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// When it came.
    pub at: Instant,
    /// The status answered.
    pub status: u16,
}

/// A run the manager knows.
#[derive(Debug, Clone)]
pub struct Run {
    pub source_id: String,
    pub status: String,
    pub checkpoint: Value,
    pub error: Option<String>,
}

/// An answer forced on the next call of a route.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// This status, with an error body.
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    Busy(u64),
}

#[derive(Default)]
struct Inner {
    sources: HashMap<String, Value>,
    credentials: HashMap<String, Value>,
    runs: HashMap<String, Run>,
    calls: Vec<Call>,
    faults: HashMap<String, VecDeque<Fault>>,
    contents: Vec<String>,
    registrations: Vec<Value>,
}

/// The manager.
#[derive(Clone)]
pub struct Manager {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

type Shared = Arc<Mutex<Inner>>;

impl Manager {
    /// Starts one on a free loopback port.
    pub async fn start() -> Manager {
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route("/sdk/register", post(register))
            .route("/sdk/source/{id}", get(source))
            .route("/sdk/credentials/{id}", get(credentials))
            .route("/sdk/events/batch", post(events))
            .route("/sdk/content", post(content))
            .route("/sdk/sync/{id}/checkpoint", put(checkpoint))
            .route("/sdk/sync/{id}/{what}", post(run_update))
            .route("/sdk/sync/cancel", post(cancel))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the manager");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the manager serves");
        });
        Manager { url, inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Adds a source of `source_type` with this config (and a credential
    /// blob, when given).
    pub fn add_source(&self, id: &str, source_type: &str, config: Value, secret: Option<Value>) {
        let mut inner = self.lock();
        inner.sources.insert(
            id.to_owned(),
            json!({
                "id": id, "name": id, "source_type": source_type, "integration_type": "connector",
                "config": config, "is_active": true, "is_deleted": false, "scope": "org",
                "user_filter_mode": "all", "user_whitelist": null, "user_blacklist": null,
                "connector_state": null, "checkpoint": null, "sync_interval_seconds": 3600,
                "created_at": "+002026-08-01T09:00:00.000000000Z",
                "updated_at": "+002026-08-20T12:00:00.000000000Z",
                "created_by": "01K0USRDDDDDDDDDDDDDDDDDDD"
            }),
        );
        if let Some(secret) = secret {
            inner.credentials.insert(
                id.to_owned(),
                json!({
                    "id": format!("cred-{id}"), "source_id": id, "user_id": null,
                    "provider": "github", "auth_type": "api_key", "principal_email": null,
                    "credentials": secret, "config": {}, "expires_at": null,
                    "last_validated_at": null,
                    "created_at": "+002026-08-01T09:00:00.000000000Z",
                    "updated_at": "+002026-08-01T09:00:00.000000000Z"
                }),
            );
        }
    }

    /// The source as the manager holds it (`null` when it has none).
    pub fn source(&self, id: &str) -> Value {
        self.lock().sources.get(id).cloned().unwrap_or(Value::Null)
    }

    /// Creates a running run of `source_id` (as the manager does before it
    /// calls `/sync`).
    pub fn new_run(&self, run_id: &str, source_id: &str) {
        self.lock().runs.insert(
            run_id.to_owned(),
            Run {
                source_id: source_id.to_owned(),
                status: "running".into(),
                checkpoint: Value::Null,
                error: None,
            },
        );
    }

    /// Marks a run cancelled (as the manager does after `/cancel`).
    pub fn mark(&self, run_id: &str, status: &str) {
        if let Some(run) = self.lock().runs.get_mut(run_id) {
            run.status = status.to_owned();
        }
    }

    /// The run.
    pub fn run(&self, run_id: &str) -> Run {
        self.lock().runs[run_id].clone()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls whose route starts with `prefix`.
    pub fn calls_to(&self, prefix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.route.starts_with(prefix))
            .collect()
    }

    /// The events of every batch taken (2xx) for `run_id`, in order.
    pub fn events(&self, run_id: &str) -> Vec<Value> {
        self.calls_to("POST /sdk/events/batch")
            .into_iter()
            .filter(|c| c.status == 200 && c.body["sync_run_id"] == run_id)
            .flat_map(|c| c.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The manifests registered (2xx).
    pub fn registrations(&self) -> Vec<Value> {
        self.lock().registrations.clone()
    }

    /// The text stored under content id `id` (`c-<n>`).
    pub fn content(&self, id: &str) -> String {
        let n: usize = id.trim_start_matches("c-").parse().expect("a content id");
        self.lock().contents[n].clone()
    }

    /// Forces the answers of the next calls of `route` (`POST /sdk/events/batch`).
    pub fn fail_next(&self, route: &str, faults: &[Fault]) {
        self.lock()
            .faults
            .entry(route.to_owned())
            .or_default()
            .extend(faults.iter().copied());
    }

    /// Waits until `done` holds, at most `limit`.
    pub async fn wait(&self, limit: Duration, what: &str, done: impl Fn(&Manager) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; calls: {:#?}",
                self.calls()
                    .iter()
                    .map(|c| format!("{} {}", c.route, c.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Records a call and answers it: a forced fault first, else `answer`.
fn record(
    inner: &Shared,
    route: String,
    headers: &HeaderMap,
    body: &Bytes,
    answer: impl FnOnce(&mut Inner, &Value) -> (StatusCode, Value),
) -> Response {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut guard = inner.lock().unwrap();
    let key = route_key(&route);
    let forced = guard.faults.get_mut(&key).and_then(VecDeque::pop_front);
    let (status, answer, retry_after) = match forced {
        Some(Fault::Status(code)) => (
            StatusCode::from_u16(code).unwrap(),
            json!({"error": "forced by the test"}),
            None,
        ),
        Some(Fault::Busy(secs)) => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "busy"}),
            Some(secs),
        ),
        None => {
            let (status, answer) = answer(&mut guard, &body);
            (status, answer, None)
        }
    };
    guard.calls.push(Call {
        route,
        body,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        at: Instant::now(),
        status: status.as_u16(),
    });
    let mut response = (status, axum::Json(answer)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

/// `POST /sdk/sync/r1/complete` → `POST /sdk/sync/{id}/complete`.
fn route_key(route: &str) -> String {
    let parts: Vec<&str> = route.split('/').collect();
    if parts.len() >= 5 && parts[2] == "sync" {
        let mut parts = parts;
        parts[3] = "{id}";
        return parts.join("/");
    }
    if parts.len() == 4 && (parts[2] == "source" || parts[2] == "credentials") {
        return format!("{}/{}/{{id}}", parts[0], parts[1..3].join("/"));
    }
    route.to_owned()
}

fn err(status: StatusCode, message: impl Into<String>) -> (StatusCode, Value) {
    (status, json!({ "error": message.into() }))
}

fn ok() -> (StatusCode, Value) {
    (StatusCode::OK, json!({"status": "ok"}))
}

async fn register(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    // The health check first, outside the lock, as the manager does.
    let manifest: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let url = manifest["connector_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let healthy = match reqwest::get(format!("{url}/health")).await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    };
    record(
        &inner,
        "POST /sdk/register".into(),
        &headers,
        &body,
        |inner, manifest| {
            for key in ["connector_id", "connector_url"] {
                if manifest[key].as_str().unwrap_or_default().is_empty() {
                    return err(StatusCode::BAD_REQUEST, format!("{key} must not be empty"));
                }
            }
            let name = manifest["name"].as_str().unwrap_or_default();
            for action in manifest["actions"].as_array().cloned().unwrap_or_default() {
                let at = format!(
                    "{name}.{} input_schema",
                    action["name"].as_str().unwrap_or_default()
                );
                if let Some(problem) = schema_problem(&at, &action["input_schema"]) {
                    return err(StatusCode::BAD_REQUEST, problem);
                }
            }
            if !healthy {
                return err(
                    StatusCode::BAD_REQUEST,
                    format!("Connector health check failed at {url}. Registration rejected."),
                );
            }
            inner.registrations.push(manifest.clone());
            ok()
        },
    )
}

/// The manager's `validate_action_input_schema`: the first problem.
pub fn schema_problem(at: &str, schema: &Value) -> Option<String> {
    let object = schema.as_object()?;
    for kw in ["anyOf", "oneOf", "allOf"] {
        if object.contains_key(kw) {
            return Some(format!("{at}.{kw} is not supported at the top level"));
        }
    }
    if object.get("type").is_some_and(|t| t != "object") {
        return Some(format!("{at}.type must be \"object\""));
    }
    fn walk(v: &Value, path: String) -> Option<String> {
        const REFUSED: [&str; 9] = [
            "$ref",
            "$defs",
            "definitions",
            "dependentRequired",
            "dependentSchemas",
            "if",
            "then",
            "else",
            "not",
        ];
        match v {
            Value::Object(map) => map.iter().find_map(|(k, child)| {
                let here = format!("{path}.{k}");
                if REFUSED.contains(&k.as_str()) {
                    Some(format!("{here} is not supported"))
                } else {
                    walk(child, here)
                }
            }),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, child)| walk(child, format!("{path}[{i}]"))),
            _ => None,
        }
    }
    walk(schema, at.to_owned())
}

async fn source(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    record(
        &inner,
        format!("GET /sdk/source/{id}"),
        &headers,
        &Bytes::new(),
        |inner, _| match inner.sources.get(&id) {
            Some(source) => (StatusCode::OK, source.clone()),
            None => err(StatusCode::NOT_FOUND, format!("Source not found: {id}")),
        },
    )
}

async fn credentials(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    record(
        &inner,
        format!("GET /sdk/credentials/{id}"),
        &headers,
        &Bytes::new(),
        |inner, _| match inner.credentials.get(&id) {
            Some(c) => (StatusCode::OK, c.clone()),
            None => err(
                StatusCode::NOT_FOUND,
                format!("No credentials for source {id}"),
            ),
        },
    )
}

async fn events(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    record(
        &inner,
        "POST /sdk/events/batch".into(),
        &headers,
        &body,
        |inner, body| {
            let run_id = body["sync_run_id"].as_str().unwrap_or_default();
            let source_id = body["source_id"].as_str().unwrap_or_default();
            let Some(run) = inner.runs.get(run_id) else {
                return err(StatusCode::BAD_REQUEST, "Unknown sync run");
            };
            if run.source_id != source_id {
                return err(
                    StatusCode::BAD_REQUEST,
                    "Sync run does not belong to the supplied source",
                );
            }
            if run.status != "running" {
                return err(
                    StatusCode::BAD_REQUEST,
                    "Events may only be emitted for a running sync run",
                );
            }
            for event in body["events"].as_array().cloned().unwrap_or_default() {
                if event["sync_run_id"] != run_id || event["source_id"] != source_id {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "Event source_id/sync_run_id does not match the trusted request context",
                    );
                }
                if event["type"] == "document_created"
                    && ["public", "users", "groups"]
                        .iter()
                        .any(|k| event["permissions"].get(k).is_none())
                {
                    return err(StatusCode::UNPROCESSABLE_ENTITY, "missing permissions");
                }
            }
            ok()
        },
    )
}

async fn content(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    record(
        &inner,
        "POST /sdk/content".into(),
        &headers,
        &body,
        |inner, body| {
            let Some(text) = body["content"].as_str() else {
                return err(StatusCode::UNPROCESSABLE_ENTITY, "missing content");
            };
            inner.contents.push(text.to_owned());
            (
                StatusCode::OK,
                json!({"content_id": format!("c-{}", inner.contents.len() - 1)}),
            )
        },
    )
}

async fn checkpoint(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    record(
        &inner,
        format!("PUT /sdk/sync/{id}/checkpoint"),
        &headers,
        &body,
        |inner, body| {
            if let Some(run) = inner.runs.get_mut(&id).filter(|r| r.status == "running") {
                run.checkpoint = body.clone();
            }
            ok()
        },
    )
}

async fn run_update(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Path((id, what)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    record(
        &inner,
        format!("POST /sdk/sync/{id}/{what}"),
        &headers,
        &body,
        |inner, body| {
            let Some(run) = inner.runs.get_mut(&id).filter(|r| r.status == "running") else {
                // Stale updates are ignored with a 200, as the manager does.
                return ok();
            };
            match what.as_str() {
                "complete" => {
                    run.status = "completed".into();
                    let checkpoint = run.checkpoint.clone();
                    let source_id = run.source_id.clone();
                    if let Some(source) = inner.sources.get_mut(&source_id) {
                        // Even a null checkpoint is copied over the source's.
                        source["checkpoint"] = checkpoint;
                    }
                }
                "fail" => {
                    let Some(error) = body["error"].as_str() else {
                        return err(StatusCode::UNPROCESSABLE_ENTITY, "missing field `error`");
                    };
                    run.status = "failed".into();
                    run.error = Some(error.to_owned());
                }
                "heartbeat" | "scanned" | "updated" => {}
                other => return err(StatusCode::NOT_FOUND, format!("no route {other}")),
            }
            ok()
        },
    )
}

async fn cancel(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    record(
        &inner,
        "POST /sdk/sync/cancel".into(),
        &headers,
        &body,
        |inner, body| {
            if let Some(run) = body["sync_run_id"]
                .as_str()
                .and_then(|id| inner.runs.get_mut(id))
            {
                run.status = "cancelled".into();
            }
            (StatusCode::OK, json!({"success": true}))
        },
    )
}

/// An example served as `<example> http` on a free loopback port.
pub struct Connector {
    pub process: super::ChildGuard,
    pub url: String,
    pub logs: Arc<Mutex<String>>,
    pub client: reqwest::Client,
    token: Option<String>,
}

impl Connector {
    /// Starts `example http --listen 127.0.0.1:0` registered with `manager`
    /// (when given), with extra variables.
    pub async fn start(
        example: &str,
        manager: Option<&Manager>,
        env: &[(&str, &str)],
    ) -> Connector {
        let mut cmd = super::example(example);
        cmd.args(["http", "--listen", "127.0.0.1:0"]);
        if let Some(manager) = manager {
            cmd.env("CONNECTOR_MANAGER_URL", &manager.url);
            cmd.env("CONNECTOR_HOST_NAME", "127.0.0.1");
        }
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("start the connector");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[connector] {line}");
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let process = super::ChildGuard { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            let found = logs.lock().unwrap().lines().find_map(|l| {
                l.split("listening on ")
                    .nth(1)
                    .and_then(|u| u.split_whitespace().next())
                    .map(str::to_owned)
            });
            if let Some(url) = found {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "the connector did not listen; log:\n{}",
                logs.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let token = env
            .iter()
            .find(|(k, _)| *k == "SPOKE_HTTP_TOKEN")
            .map(|(_, v)| (*v).to_owned());
        Connector {
            process,
            url,
            logs,
            client: reqwest::Client::new(),
            token,
        }
    }

    /// `POST <path>` with a JSON body: status and JSON answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.url)).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the connector answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET <path>`: status and JSON answer.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the connector answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Starts run `run_id` of `source_id` in `mode` as the manager does: the
    /// run is created, then `/sync` is called.
    pub async fn sync(
        &self,
        manager: &Manager,
        run_id: &str,
        source_id: &str,
        mode: &str,
    ) -> (u16, Value) {
        manager.new_run(run_id, source_id);
        let checkpoint = manager.source(source_id)["checkpoint"].clone();
        let mut body = json!({"sync_run_id": run_id, "source_id": source_id, "sync_mode": mode});
        if !checkpoint.is_null() {
            body["checkpoint"] = checkpoint;
        }
        self.post("/sync", body).await
    }

    /// Waits until `GET /sync/{id}` says the run is no longer running.
    pub async fn wait_done(&self, run_id: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self.get(&format!("/sync/{run_id}")).await;
            assert_eq!(status, 200, "{body}");
            if body["running"] == false {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} still running after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The connector's log so far.
    pub fn log(&self) -> String {
        self.logs.lock().unwrap().clone()
    }
}
