//! Serving one instance as a NATS micro service: the endpoints, each
//! request from its message to its one answer, the cancels, and the drain
//! on SIGINT/SIGTERM.
//!
//! Every endpoint has a task that takes its requests in order and spawns a
//! call for each, once a slot is free (`SPOKE_MAX_IN_FLIGHT`; requests
//! beyond wait in the subscription). On a signal each subscription is
//! drained (the server sends it nothing more; what it already sent is
//! still answered), the calls under way get `SPOKE_SHUTDOWN_GRACE` to
//! finish, then are cancelled and get the cancel grace; `$SRV` is answered
//! until the end, and the connection is flushed before the process leaves.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connect::{ConnectError, connect};
use super::draining::Draining;
use super::micro::{Endpoint, EndpointInfo, Micro, QUEUE_GROUP, ServiceInfo};
use super::options::{NatsOptions, redacted};
use super::status::{self, Heartbeat, InstanceStatus};
use super::subjects::{DESCRIBE, SubjectError, Subjects, Target, check_token, target_of};
use super::sync::SyncHost;
use super::wire::{self, new_request_id};
use crate::connector::Input;
use crate::context::Context;
use crate::encoding::Encoding;
use crate::error::ActionError;
use crate::instance::Instance;
use crate::partition::Partition;
use crate::signals::Signals;

/// Why `nats` could not serve.
#[derive(Debug, thiserror::Error)]
pub enum NatsServeError {
    /// A name cannot be a subject token, or takes a reserved one.
    #[error("{0}")]
    Name(#[from] SubjectError),
    /// Two endpoints would have the same name.
    #[error("{0}")]
    Clash(String),
    /// No connection.
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// A subscription failed.
    #[error("subscribing on NATS failed: {0}")]
    Subscribe(String),
    /// The connector's buckets could not be made.
    #[error("the connector's store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What an endpoint serves.
#[derive(Debug, Clone)]
enum Kind {
    Action(String),
    Operator(String),
    Describe,
    /// The connector's syncs: `...sync.<name>`.
    Sync,
    /// Everything under this instance's own prefix.
    Instance,
}

/// The state every call shares.
struct Shared {
    instance: Instance,
    client: Client,
    /// `spoke.<tenant>.<connector>.instance.<id>.`
    instance_prefix: String,
    manifest: Bytes,
    timeout: Option<Duration>,
    in_flight: Arc<Semaphore>,
    /// The calls and sync runs under way, by request id (the caller's, or
    /// one made up) or run id.
    cancels: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// Where sync runs keep their state; why not, when JetStream is not
    /// there (a sync request then answers `unavailable`).
    syncs: Result<Arc<SyncHost>, String>,
    calls: TaskTracker,
    /// This instance's share of the work, given to every call.
    partition: Partition,
    /// Told when calls start and end, once the heartbeat runs.
    heartbeat: OnceLock<Heartbeat>,
}

impl Shared {
    fn status_changed(&self) {
        if let Some(heartbeat) = self.heartbeat.get() {
            heartbeat.changed();
        }
    }
}

/// Removes a call's cancel entry when the call ends.
struct Registered<'a> {
    shared: &'a Shared,
    id: String,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// The body of a search operator request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorRequest {
    value: String,
}

/// The endpoints of `instance` under `subjects`, for this instance `id`.
fn endpoints(
    instance: &Instance,
    subjects: &Subjects,
    id: &str,
) -> Result<Vec<(Kind, Arc<Endpoint>)>, NatsServeError> {
    let manifest = instance.manifest();
    let meta = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let shared = |name: String, subject: String, metadata| {
        Arc::new(Endpoint::new(EndpointInfo {
            name,
            subject,
            queue_group: Some(QUEUE_GROUP.to_owned()),
            metadata,
        }))
    };
    let mut out = Vec::new();
    for action in &manifest.actions {
        check_token("action", &action.name)?;
        if action.name == DESCRIBE {
            return Err(SubjectError {
                kind: "action",
                name: action.name.clone(),
                why: format!(
                    "its subject, {}, is the describe endpoint's; rename the action (#[action(name = \"...\")])",
                    subjects.describe()
                ),
            }
            .into());
        }
        let metadata = meta(&[
            ("spoke.kind", "action"),
            ("spoke.mode", action.mode.as_str()),
        ]);
        out.push((
            Kind::Action(action.name.clone()),
            shared(action.name.clone(), subjects.action(&action.name), metadata),
        ));
    }
    for operator in &manifest.search_operators {
        check_token("search operator", &operator.operator)?;
        out.push((
            Kind::Operator(operator.operator.clone()),
            shared(
                format!("operator-{}", operator.operator),
                subjects.operator(&operator.operator),
                meta(&[("spoke.kind", "operator")]),
            ),
        ));
    }
    if !instance.connector_type().syncs().is_empty() {
        out.push((
            Kind::Sync,
            shared(
                "spoke-sync".to_owned(),
                subjects.sync_wildcard(),
                meta(&[("spoke.kind", "sync")]),
            ),
        ));
    }
    out.push((
        Kind::Describe,
        shared(
            "spoke-describe".to_owned(),
            subjects.describe(),
            meta(&[("spoke.kind", "describe")]),
        ),
    ));
    out.push((
        Kind::Instance,
        Arc::new(Endpoint::new(EndpointInfo {
            name: "spoke-instance".to_owned(),
            subject: subjects.instance_wildcard(id),
            queue_group: None,
            metadata: meta(&[("spoke.kind", "instance")]),
        })),
    ));
    let mut seen = HashMap::new();
    for (kind, endpoint) in &out {
        if let Some(other) = seen.insert(endpoint.info.name.clone(), kind.clone()) {
            return Err(NatsServeError::Clash(format!(
                "two endpoints would both be named `{}` ({other:?} and {kind:?}): rename one",
                endpoint.info.name
            )));
        }
    }
    Ok(out)
}

/// The manifest's SHA-256, hex: what INFO's metadata says of the version
/// of the connector every instance serves.
pub fn manifest_digest(manifest: &[u8]) -> String {
    Sha256::digest(manifest)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves `instance` on NATS as `options` say, until SIGINT/SIGTERM, then
/// drains.
pub async fn run(instance: Instance, options: NatsOptions) -> Result<(), NatsServeError> {
    let signals = Signals::install();
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(async move {
        let signal = signals.next().await;
        tracing::info!(target: "spoke::nats", "{signal}: draining");
        stopping.cancel();
    });
    let served = serve(instance.clone(), options, stop).await;
    instance.cancel_all_syncs();
    served
}

/// [`run`] with the stop in the caller's hands (tests, embedding hosts).
pub async fn serve(
    instance: Instance,
    options: NatsOptions,
    stop: CancellationToken,
) -> Result<(), NatsServeError> {
    let manifest = instance.manifest().clone();
    let subjects = Subjects::new(&options.tenant, &manifest.name)?;
    let id = options.instance_id.clone();
    let endpoints = endpoints(&instance, &subjects, &id)?;
    let manifest_json = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
    let client = connect(&options.connect, &format!("spoke {} {id}", manifest.name)).await?;
    // The store's buckets exist before any call can use them.
    let buckets = instance.connector_type().registration().buckets;
    let instance = if buckets.is_empty() {
        instance
    } else {
        let js = async_nats::jetstream::new(client.clone());
        let store = super::kv_store::KvStore::open(&js, &manifest.name, buckets).await?;
        instance.with_store_backend(&options.tenant, Arc::new(store))
    };
    let display_name = options
        .display_name
        .clone()
        .unwrap_or_else(|| manifest.display_name.clone());
    let mut metadata = BTreeMap::from([
        ("spoke.tenant".to_owned(), options.tenant.clone()),
        ("spoke.display_name".to_owned(), display_name.clone()),
        (
            "spoke.manifest_sha256".to_owned(),
            manifest_digest(&manifest_json),
        ),
        (
            "spoke.sdk_version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    if !options.tags.is_empty() {
        metadata.insert("spoke.tags".to_owned(), options.tags.join(","));
    }
    let micro = Arc::new(Micro::new(
        ServiceInfo {
            name: manifest.name.clone(),
            id: id.clone(),
            version: manifest.version.clone(),
            description: manifest.description.clone(),
            metadata,
        },
        endpoints.iter().map(|(_, e)| e.clone()).collect(),
    ));
    // The members come from the status bucket: without heartbeats there
    // are none to follow, and this instance works alone.
    let membership_stop = CancellationToken::new();
    let _membership_stopped_on_return = membership_stop.clone().drop_guard();
    let partition = match options.status_every {
        Some(_) => super::membership::follow(
            async_nats::jetstream::new(client.clone()),
            options.tenant.clone(),
            manifest.name.clone(),
            id.clone(),
            membership_stop.clone(),
        ),
        None => Partition::solo(id.clone()),
    };
    let subscribe_error = |e: async_nats::SubscribeError| NatsServeError::Subscribe(e.to_string());
    let verbs = CancellationToken::new();
    micro
        .clone()
        .answer_verbs(client.clone(), verbs.clone())
        .await
        .map_err(subscribe_error)?;
    let syncs = if instance.connector_type().syncs().is_empty() {
        Err("the connector has no syncs".to_owned())
    } else {
        match SyncHost::open(
            client.clone(),
            &options.tenant,
            &manifest.name,
            &id,
            stop.clone(),
        )
        .await
        {
            Ok(host) => Ok(Arc::new(host)),
            Err(e) => {
                tracing::warn!(target: "spoke::nats", "syncs cannot run here: {e}");
                Err(e.to_string())
            }
        }
    };
    let shared = Arc::new(Shared {
        instance,
        client: client.clone(),
        instance_prefix: format!("{}.", subjects.instance(&id).base()),
        manifest: manifest_json,
        timeout: options.timeout,
        in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
        cancels: Arc::default(),
        syncs,
        calls: TaskTracker::new(),
        heartbeat: OnceLock::new(),
        partition,
    });
    let cancels = client
        .subscribe(subjects.cancel_wildcard())
        .await
        .map_err(subscribe_error)?;
    let cancel_listener = tokio::spawn(listen_for_cancels(shared.clone(), cancels));
    let mut pumps = Vec::new();
    for (kind, endpoint) in endpoints {
        let subscriber = match &endpoint.info.queue_group {
            Some(group) => {
                client
                    .queue_subscribe(endpoint.info.subject.clone(), group.clone())
                    .await
            }
            None => client.subscribe(endpoint.info.subject.clone()).await,
        }
        .map_err(subscribe_error)?;
        pumps.push(tokio::spawn(pump(
            shared.clone(),
            endpoint,
            kind,
            subscriber,
            stop.clone(),
        )));
    }
    // The server has every subscription before anyone is told we serve.
    if let Err(e) = client.flush().await {
        return Err(NatsServeError::Subscribe(e.to_string()));
    }
    tracing::info!(
        target: "spoke::nats",
        instance = %id,
        "serving on NATS at {} as {subjects} ({} endpoints)",
        redacted(options.connect.url.expose()),
        pumps.len()
    );
    let heartbeat_stop = CancellationToken::new();
    let heartbeat = options.status_every.map(|every| {
        let status = status_source(
            &options,
            display_name,
            &micro,
            &shared,
            stop.clone(),
            status::ttl_for(every),
        );
        let (heartbeat, task) = Heartbeat::spawn(
            async_nats::jetstream::new(client.clone()),
            every,
            status,
            heartbeat_stop.clone(),
        );
        let _ = shared.heartbeat.set(heartbeat);
        task
    });
    stop.cancelled().await;
    if shared.syncs.is_ok() {
        // Sync runs stop now, recorded `interrupted` (the host sees `stop`):
        // the next request, to any instance, resumes them.
        shared.instance.cancel_all_syncs();
    }
    shared.status_changed();
    for pump in pumps {
        let _ = pump.await;
    }
    shared.calls.close();
    if tokio::time::timeout(options.shutdown_grace, shared.calls.wait())
        .await
        .is_err()
    {
        let running: Vec<CancellationToken> = shared
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        tracing::warn!(
            target: "spoke::nats",
            "{} calls still running after the shutdown grace: cancelling them",
            shared.calls.len()
        );
        for token in running {
            token.cancel();
        }
        let grace = shared.instance.cancel_grace() + Duration::from_millis(200);
        let _ = tokio::time::timeout(grace, shared.calls.wait()).await;
    }
    cancel_listener.abort();
    heartbeat_stop.cancel();
    if let Some(task) = heartbeat {
        let _ = task.await;
    }
    verbs.cancel();
    if let Err(e) = client.flush().await {
        tracing::warn!(target: "spoke::nats", "flushing the last answers: {e}");
    }
    tracing::info!(target: "spoke::nats", instance = %id, "left NATS");
    Ok(())
}

/// What the heartbeat puts: this instance's status as of now.
fn status_source(
    options: &NatsOptions,
    display_name: String,
    micro: &Arc<Micro>,
    shared: &Arc<Shared>,
    draining: CancellationToken,
    ttl: Duration,
) -> impl Fn() -> InstanceStatus + Send + 'static {
    let info = micro.info();
    let fixed = InstanceStatus {
        tenant: options.tenant.clone(),
        connector: info.name.clone(),
        instance_id: info.id.clone(),
        display_name,
        version: info.version.clone(),
        sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
        tags: options.tags.clone(),
        state: String::new(),
        in_flight: 0,
        requests: 0,
        errors: 0,
        started: micro.started().to_owned(),
        updated: String::new(),
        ttl_seconds: ttl.as_secs(),
    };
    let (micro, shared) = (micro.clone(), Arc::downgrade(shared));
    move || {
        let mut now = fixed.clone();
        now.state = if draining.is_cancelled() {
            "draining"
        } else {
            "serving"
        }
        .to_owned();
        for endpoint in micro.endpoints() {
            let (requests, errors) = endpoint.counts();
            now.requests += requests;
            now.errors += errors;
        }
        now.in_flight = shared.upgrade().map_or(0, |s| s.calls.len() as u64);
        now.updated = jiff::Timestamp::now().to_string();
        now
    }
}

/// Takes `subscriber`'s requests in order until it is drained after `stop`.
async fn pump(
    shared: Arc<Shared>,
    endpoint: Arc<Endpoint>,
    kind: Kind,
    subscriber: Subscriber,
    stop: CancellationToken,
) {
    let mut requests = Draining::new(subscriber, stop);
    while let Some(message) = requests.next().await {
        let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
            return;
        };
        let (shared2, endpoint, kind) = (shared.clone(), endpoint.clone(), kind.clone());
        shared.calls.spawn(async move {
            shared2.status_changed();
            // Boxed: the call's future is some kilobytes, which the task
            // would otherwise be moved whole with (into its cell, and
            // again as it completes); now only a pointer moves.
            Box::pin(answer(&shared2, &endpoint, &kind, message)).await;
            drop(permit);
            shared2.status_changed();
        });
    }
}

/// Cancels the calls callers cancel: `...cancel.<request id>`.
async fn listen_for_cancels(shared: Arc<Shared>, mut cancels: Subscriber) {
    while let Some(message) = cancels.next().await {
        let Some(id) = message.subject.as_str().rsplit('.').next() else {
            continue;
        };
        let token = shared
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(token) = token {
            tracing::debug!(target: "spoke::nats", request = id, "cancelled by its caller");
            token.cancel();
        }
    }
}

/// Runs one request and sends its one answer (none when it has no reply
/// subject: a publish, not a request).
async fn answer(shared: &Shared, endpoint: &Endpoint, kind: &Kind, message: Message) {
    let started = Instant::now();
    let Some(reply) = message.reply.clone() else {
        tracing::debug!(
            target: "spoke::nats",
            subject = %message.subject,
            "a message with no reply subject: nothing to answer"
        );
        return;
    };
    let answered = call(shared, kind, &message).await;
    let (sent, error) = wire::publish_answer(&shared.client, reply, answered).await;
    if let Some(e) = &error {
        tracing::info!(
            target: "spoke::nats",
            subject = %message.subject,
            "call ended: {}: {}",
            e.code(),
            e.message()
        );
    }
    let last = error.map(|e| format!("{}:{}", e.code().http_status(), e.message()));
    endpoint.record(started.elapsed(), last);
    if let Err(e) = sent {
        tracing::warn!(target: "spoke::nats", subject = %message.subject, "answering: {e}");
    }
}

async fn call(
    shared: &Shared,
    kind: &Kind,
    message: &Message,
) -> Result<(Bytes, Encoding), ActionError> {
    let target = match kind {
        Kind::Action(action) => Target::Action(action),
        Kind::Operator(operator) => Target::Operator(operator),
        Kind::Describe => Target::Describe,
        Kind::Sync => Target::Sync(
            message
                .subject
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or_default(),
        ),
        Kind::Instance => {
            let rest = message
                .subject
                .as_str()
                .strip_prefix(shared.instance_prefix.as_str())
                .unwrap_or_default();
            target_of(rest).ok_or_else(|| {
                ActionError::not_found(format!(
                    "nothing is served at {}: this instance serves `<action>`, `operator.<operator>`, `sync.<sync>` and `describe` under {}",
                    message.subject, shared.instance_prefix
                ))
            })?
        }
    };
    let (name, operator) = match target {
        Target::Describe => return Ok((shared.manifest.clone(), Encoding::Json)),
        Target::Sync(sync) => {
            let host = shared.syncs.as_ref().map_err(|why| {
                ActionError::unavailable(format!("syncs cannot run on this instance: {why}"))
            })?;
            return host
                .start(
                    &shared.instance,
                    sync,
                    &message.payload,
                    &shared.cancels,
                    &shared.calls,
                )
                .await
                .map(|body| (body, Encoding::Json));
        }
        Target::Action(action) => (action, false),
        Target::Operator(operator) => (operator, true),
    };
    let headers = message.headers.as_ref();
    let caller_id = wire::request_id(headers)?;
    let timeout = match (wire::timeout(headers)?, shared.timeout) {
        (Some(caller), Some(own)) => Some(caller.min(own)),
        (caller, own) => caller.or(own),
    };
    // Every call is registered, so that a drain past its grace can cancel
    // it; a caller cancels by the id it sent.
    let token = CancellationToken::new();
    let request_id = caller_id.unwrap_or_else(new_request_id);
    shared
        .cancels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(request_id.clone(), token.clone());
    let _registered = Registered {
        shared,
        id: request_id.clone(),
    };
    let mut builder = Context::builder(format!("nats-{request_id}"), name)
        .cancellation(token)
        .partition(shared.partition.clone());
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    let input_encoding = wire::content_type(headers)?;
    if operator && input_encoding != Encoding::Json {
        return Err(ActionError::invalid_input(format!(
            "search operator `{name}` takes JSON, not {input_encoding}"
        )));
    }
    if !operator {
        builder = builder.accept(wire::accept(headers)?);
    }
    let ctx = builder.build();
    let payload: &[u8] = if message.payload.is_empty() && input_encoding == Encoding::Json {
        b"{}"
    } else {
        &message.payload
    };
    let output = if operator {
        // An operator the connector lacks gets its own not_found (naming
        // the operators), whatever the body.
        let value = match shared.instance.connector_type().operator(name) {
            None => String::new(),
            Some(_) => {
                serde_json::from_slice::<OperatorRequest>(payload)
                    .map_err(|e| {
                        ActionError::invalid_input(format!(
                            "a search operator takes {{\"value\": \"...\"}}: {e}"
                        ))
                    })?
                    .value
            }
        };
        shared.instance.resolve(name, &value, ctx).await?
    } else {
        let input = match input_encoding {
            Encoding::Json => Input::Bytes(payload),
            encoding => Input::Encoded {
                encoding,
                bytes: payload,
            },
        };
        shared.instance.invoke(name, input, ctx).await?
    };
    let encoding = output.encoding();
    Ok((output.into_bytes(), encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha256_hex() {
        assert_eq!(
            manifest_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
