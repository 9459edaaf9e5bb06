//! Serving the connectors attached to this hub on NATS, under the subjects
//! a connector serving NATS itself answers (see `spoke::nats`): for tenant
//! `t` and connector `c` with at least one ready instance here,
//!
//! - each action on `spoke.t.c.<action>`, each search operator on
//!   `spoke.t.c.operator.<operator>`, the manifest on `spoke.t.c.describe`,
//!   in the same queue group as every instance serving NATS directly, so a
//!   call goes to one of them or to this hub;
//! - `spoke.t.c.instance.<id>.>` for each instance attached here;
//! - the callers' cancels, `spoke.t.c.cancel.<request id>`.
//!
//! Each call is routed to this hub's own instances as a client's would be,
//! as a caller of tenant `t` that may call every action that is not
//! admin-only (who may publish there is NATS's permissions' to say). The
//! subscriptions follow the registry: a connector's appear when its first
//! instance is ready and are drained when its last one leaves, an
//! instance's with it. On shutdown every subscription is drained and the
//! calls already taken are answered.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use spoke_proto::prost::bytes::Bytes;
use spoke_proto::v1::{self, InvokeKind, InvokeRequest, Route, route};
use spoke_runtime::grpc::wire_encoding::{from_wire, to_wire};
use spoke_runtime::nats::async_nats::{Client, Message, Subscriber};
use spoke_runtime::nats::draining::Draining;
use spoke_runtime::nats::micro::QUEUE_GROUP;
use spoke_runtime::nats::subjects::{DESCRIBE, Subjects, Target, check_token, target_of};
use spoke_runtime::nats::wire;
use spoke_runtime::{ActionError, ErrorCode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Code, Status};

use crate::api::client_api::{Asked, ClientApi, Reach};
use crate::sessions::state::HubState;
use crate::trust::access::Caller;

/// What a subscription serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Serves {
    /// An action of `connector` in `tenant`.
    Action(Names, String),
    /// A search operator.
    Operator(Names, String),
    /// The manifest.
    Describe(Names),
    /// Everything under one instance's prefix: its id, and the prefix
    /// (`...instance.<id>.`).
    Instance(Names, String, String),
    /// The callers' cancels.
    Cancels(Names),
}

/// A connector of a tenant, and its subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    tenant: String,
    connector: String,
    subjects: Subjects,
}

/// A subscription: the subject, its queue group, what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    subject: String,
    queue: bool,
    serves: Serves,
}

/// A subscription being served; `drain` ends it.
struct Running {
    drain: CancellationToken,
    pump: tokio::task::JoinHandle<()>,
}

/// What every call shares.
struct Shared {
    state: Arc<HubState>,
    api: ClientApi,
    client: Client,
    /// The calls under way by their cancel subject (callers that sent a
    /// request id).
    cancels: Mutex<HashMap<String, CancellationToken>>,
    calls: TaskTracker,
}

/// Serves the attached connectors on NATS until `stop`, then drains.
pub(crate) async fn run(
    state: Arc<HubState>,
    api: ClientApi,
    client: Client,
    stop: CancellationToken,
) {
    let shared = Arc::new(Shared {
        state: Arc::clone(&state),
        api,
        client: client.clone(),
        cancels: Mutex::default(),
        calls: TaskTracker::new(),
    });
    let mut changes = state.lock().registry.watch_changes();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut refused = HashSet::new();
    loop {
        let wanted = wanted(&state, &mut refused);
        reconcile(&shared, &mut running, wanted).await;
        tokio::select! {
            () = stop.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
        }
    }
    for (_, sub) in running.iter() {
        sub.drain.cancel();
    }
    for (_, sub) in running {
        let _ = sub.pump.await;
    }
    shared.calls.close();
    let grace = state.config.shutdown_grace;
    if tokio::time::timeout(grace, shared.calls.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "NATS: {} calls still running after the shutdown grace",
            shared.calls.len()
        );
    }
    if let Err(e) = client.flush().await {
        tracing::warn!("NATS: flushing the last answers: {e}");
    }
}

/// The subscriptions the registry asks for now. A name NATS cannot carry
/// is said once (in `refused`) and left out.
fn wanted(state: &HubState, refused: &mut HashSet<String>) -> Vec<Wanted> {
    let tables = state.lock();
    let mut out = Vec::new();
    let mut skip = |what: String| {
        if refused.insert(what.clone()) {
            tracing::warn!("NATS: not served there: {what}");
        }
    };
    for (tenant, connector, ty) in tables.registry.all_connectors() {
        if ty.ready().is_empty() {
            continue;
        }
        let subjects = match Subjects::new(tenant, connector) {
            Ok(subjects) => subjects,
            Err(e) => {
                skip(format!("connector `{connector}` of tenant `{tenant}`: {e}"));
                continue;
            }
        };
        let names = Names {
            tenant: tenant.to_owned(),
            connector: connector.to_owned(),
            subjects: subjects.clone(),
        };
        let mut add = |subject: String, queue: bool, serves: Serves| {
            out.push(Wanted {
                subject,
                queue,
                serves,
            });
        };
        for action in &ty.manifest.actions {
            match check_token("action", &action.name) {
                Ok(()) if action.name != DESCRIBE => add(
                    subjects.action(&action.name),
                    true,
                    Serves::Action(names.clone(), action.name.clone()),
                ),
                Ok(()) => skip(format!(
                    "action `describe` of `{connector}`: its subject is the manifest's"
                )),
                Err(e) => skip(format!("connector `{connector}`: {e}")),
            }
        }
        for operator in &ty.manifest.search_operators {
            match check_token("search operator", &operator.operator) {
                Ok(()) => add(
                    subjects.operator(&operator.operator),
                    true,
                    Serves::Operator(names.clone(), operator.operator.clone()),
                ),
                Err(e) => skip(format!("connector `{connector}`: {e}")),
            }
        }
        add(subjects.describe(), true, Serves::Describe(names.clone()));
        add(
            subjects.cancel_wildcard(),
            false,
            Serves::Cancels(names.clone()),
        );
        for id in ty.ready() {
            match check_token("instance id", id) {
                Ok(()) => add(
                    subjects.instance_wildcard(id),
                    false,
                    Serves::Instance(
                        names.clone(),
                        id.clone(),
                        format!("{}.", subjects.instance(id).base()),
                    ),
                ),
                Err(e) => skip(format!("an instance of `{connector}`: {e}")),
            }
        }
    }
    out
}

/// Drains what is no longer wanted and subscribes to what is new.
async fn reconcile(
    shared: &Arc<Shared>,
    running: &mut HashMap<String, Running>,
    wanted: Vec<Wanted>,
) {
    let keep: HashSet<&str> = wanted.iter().map(|w| w.subject.as_str()).collect();
    running.retain(|subject, sub| {
        let kept = keep.contains(subject.as_str());
        if !kept {
            tracing::debug!("NATS: draining {subject}");
            sub.drain.cancel();
        }
        kept
    });
    let mut added = false;
    for want in wanted {
        if running.contains_key(&want.subject) {
            continue;
        }
        let subscribed = if want.queue {
            shared
                .client
                .queue_subscribe(want.subject.clone(), QUEUE_GROUP.to_owned())
                .await
        } else {
            shared.client.subscribe(want.subject.clone()).await
        };
        let subscriber = match subscribed {
            Ok(subscriber) => subscriber,
            Err(e) => {
                tracing::warn!("NATS: cannot subscribe to {}: {e}", want.subject);
                continue;
            }
        };
        let drain = CancellationToken::new();
        let pump = tokio::spawn(pump(
            Arc::clone(shared),
            want.serves,
            subscriber,
            drain.clone(),
        ));
        running.insert(want.subject, Running { drain, pump });
        added = true;
    }
    if added && let Err(e) = shared.client.flush().await {
        tracing::warn!("NATS: flushing subscriptions: {e}");
    }
}

/// Takes a subscription's messages until it is drained.
async fn pump(
    shared: Arc<Shared>,
    serves: Serves,
    subscriber: Subscriber,
    drain: CancellationToken,
) {
    let mut messages = Draining::new(subscriber, drain);
    while let Some(message) = messages.next().await {
        if let Serves::Cancels(_) = serves {
            cancel(&shared, &message);
            continue;
        }
        let (shared, serves) = (Arc::clone(&shared), serves.clone());
        // Boxed, as a connector's own endpoints do: only a pointer moves.
        shared.calls.clone().spawn(async move {
            Box::pin(answer(&shared, &serves, message)).await;
        });
    }
}

/// Cancels the call a caller gave up on.
fn cancel(shared: &Shared, message: &Message) {
    let token = shared
        .cancels
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(message.subject.as_str())
        .cloned();
    if let Some(token) = token {
        token.cancel();
    }
}

/// Answers one request (a message without a reply subject gets none).
async fn answer(shared: &Shared, serves: &Serves, message: Message) {
    let Some(reply) = message.reply.clone() else {
        return;
    };
    let answered = call(shared, serves, &message).await;
    let (sent, _) = wire::publish_answer(&shared.client, reply, answered).await;
    if let Err(e) = sent {
        tracing::warn!("NATS: answering {}: {e}", message.subject);
    }
}

/// Removes a call's cancel entry when it ends.
struct Registered<'a> {
    shared: &'a Shared,
    subject: Option<String>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(subject) = self.subject.take() {
            self.shared
                .cancels
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&subject);
        }
    }
}

async fn call(
    shared: &Shared,
    serves: &Serves,
    message: &Message,
) -> Result<(Bytes, spoke_runtime::Encoding), ActionError> {
    let (names, target, instance) = match serves {
        Serves::Action(names, action) => (names, Target::Action(action), None),
        Serves::Operator(names, operator) => (names, Target::Operator(operator), None),
        Serves::Describe(names) => (names, Target::Describe, None),
        Serves::Instance(names, id, prefix) => {
            let rest = message
                .subject
                .as_str()
                .strip_prefix(prefix.as_str())
                .unwrap_or_default();
            let target = target_of(rest).ok_or_else(|| {
                ActionError::not_found(format!(
                    "nothing is served at {}: an instance serves `<action>`, `operator.<operator>` and `describe` under {prefix}",
                    message.subject
                ))
            })?;
            (names, target, Some(id.clone()))
        }
        Serves::Cancels(_) => return Err(ActionError::internal("a cancel is not a call")),
    };
    let (action, kind) = match target {
        Target::Describe => {
            return describe(shared, names).map(|body| (body, spoke_runtime::Encoding::Json));
        }
        Target::Sync(_) => {
            return Err(ActionError::unavailable(format!(
                "connector `{}` is attached to a hub: start its syncs through the hub (spoke sync), not over NATS",
                names.connector
            )));
        }
        Target::Action(action) => (action, InvokeKind::Action),
        Target::Operator(operator) => (operator, InvokeKind::SearchOperator),
    };
    let headers = message.headers.as_ref();
    let request_id = wire::request_id(headers)?;
    let deadline = wire::timeout(headers)?.map(|t| Instant::now() + t);
    let input_encoding = wire::content_type(headers)?;
    let accept = match kind {
        InvokeKind::Action => wire::accept(headers)?,
        InvokeKind::SearchOperator => Vec::new(),
    };
    let token = CancellationToken::new();
    let _registered = Registered {
        shared,
        subject: request_id.map(|id| {
            let subject = names.subjects.cancel(&id);
            shared
                .cancels
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(subject.clone(), token.clone());
            subject
        }),
    };
    let request = InvokeRequest {
        connector: names.connector.clone(),
        action: action.to_owned(),
        payload: message.payload.clone(),
        encoding: to_wire(input_encoding),
        route: instance.map(|id| Route {
            target: Some(route::Target::Instance(id)),
        }),
        metadata: HashMap::new(),
        kind: kind.into(),
        accept: accept.iter().map(|e| to_wire(*e)).collect(),
    };
    let metadata = HashMap::from([("caller".to_owned(), "nats".to_owned())]);
    let work = shared.api.invoke_as(Asked {
        caller: Ok(Caller::nats(&names.tenant)),
        request,
        deadline,
        metadata,
        reach: Reach::Here,
    });
    // Dropping the call cancels it at the instance.
    let response = tokio::select! {
        response = work => response,
        () = token.cancelled() => return Err(ActionError::cancelled("the caller cancelled the call")),
    };
    let result = response
        .map_err(|status| action_error(&status))?
        .results
        .into_iter()
        .next()
        .ok_or_else(|| ActionError::internal("the hub's answer has no result"))?;
    match result.outcome {
        Some(v1::instance_result::Outcome::Payload(payload)) => {
            Ok((payload, from_wire(result.encoding)?))
        }
        Some(v1::instance_result::Outcome::Error(e)) => Err(from_frame(e)),
        None => Err(ActionError::internal(
            "the connector's answer has no outcome",
        )),
    }
}

/// The manifest of a connector attached here.
fn describe(shared: &Shared, names: &Names) -> Result<Bytes, ActionError> {
    let tables = shared.state.lock();
    tables
        .registry
        .connector(&names.tenant, &names.connector)
        .map(|ty| Bytes::copy_from_slice(ty.manifest_json.as_bytes()))
        .ok_or_else(|| {
            ActionError::unavailable(format!("connector `{}` has left this hub", names.connector))
        })
}

/// A connector's error from the hub's wire.
fn from_frame(e: v1::Error) -> ActionError {
    let code = ErrorCode::parse(&e.code).unwrap_or(ErrorCode::Internal);
    let error = ActionError::new(code, e.message);
    match serde_json::from_str(&e.details_json) {
        Ok(details) if !e.details_json.is_empty() => error.with_details(details),
        _ => error,
    }
}

/// The hub's refusal of a call, as the error a NATS caller reads.
fn action_error(status: &Status) -> ActionError {
    let code = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidInput,
        Code::NotFound => ErrorCode::NotFound,
        Code::PermissionDenied | Code::Unauthenticated => ErrorCode::Unauthorized,
        Code::FailedPrecondition => ErrorCode::FailedPrecondition,
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted => ErrorCode::Unavailable,
        Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        Code::Cancelled => ErrorCode::Cancelled,
        _ => ErrorCode::Internal,
    };
    ActionError::new(code, status.message())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::error_frame;

    #[test]
    fn errors_cross_the_hub_whole() {
        let error =
            ActionError::not_found("no ticket 7").with_details(serde_json::json!({"id": 7}));
        assert_eq!(from_frame(error_frame(&error)), error);
        let odd = v1::Error {
            code: "exploded".into(),
            message: "boom".into(),
            details_json: "not json".into(),
        };
        assert_eq!(
            from_frame(odd),
            ActionError::new(ErrorCode::Internal, "boom")
        );
    }

    #[test]
    fn the_hubs_refusals_keep_their_meaning() {
        let cases = [
            (Status::permission_denied("no"), ErrorCode::Unauthorized),
            (Status::not_found("no"), ErrorCode::NotFound),
            (Status::invalid_argument("no"), ErrorCode::InvalidInput),
            (Status::unavailable("no"), ErrorCode::Unavailable),
            (Status::deadline_exceeded("no"), ErrorCode::DeadlineExceeded),
            (Status::cancelled("no"), ErrorCode::Cancelled),
            (Status::data_loss("no"), ErrorCode::Internal),
        ];
        for (status, code) in cases {
            let error = action_error(&status);
            assert_eq!(error.code(), code, "{status:?}");
            assert_eq!(error.message(), "no");
        }
    }
}
