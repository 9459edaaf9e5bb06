//! Calling a connector over NATS, as the `spoke` command line and the hub
//! do: the deadline and a request id in the headers, the error answer read
//! back into an [`ActionError`], and a cancel published when the caller
//! gives up (its deadline passed, or the call's future was dropped).

use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};
use bytes::Bytes;

use super::subjects::Subjects;
use super::sync::SyncAsk;
use super::wire::{self, error_of, new_request_id};
use crate::encoding::Encoding;
use crate::error::ActionError;
use crate::instance::unknown_name;

/// How long [`start_sync`] waits for a run to start.
pub const SYNC_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a run of `sync` over NATS, on any instance of the connector at
/// `subjects` (or on `instance`), its events to a fresh inbox this client
/// listens on before it asks (what `ask.events` says is replaced). The
/// answer says which run started (`{"run_id", "instance", "sync",
/// "source_id", "mode", "is_resume"}`); then each event is a message of
/// the subscription, and the last one has the header
/// [`SYNC_END_HEADER`](super::sync::SYNC_END_HEADER) and the run's
/// outcome as its body. A connector nobody serves is `unavailable`, a
/// sync it does not have `not_found`.
pub async fn start_sync(
    client: &Client,
    subjects: &Subjects,
    instance: Option<&str>,
    sync: &str,
    mut ask: SyncAsk,
) -> Result<(serde_json::Value, async_nats::Subscriber), ActionError> {
    ask.events = client.new_inbox();
    let events = client
        .subscribe(ask.events.clone())
        .await
        .map_err(|e| ActionError::unavailable(format!("subscribing to the run's events: {e}")))?;
    let at = match instance {
        Some(id) => subjects.instance(id),
        None => subjects.clone(),
    };
    let body = serde_json::to_vec(&ask).map_err(|e| ActionError::internal(e.to_string()))?;
    let answer = request(
        client,
        subjects,
        at.sync(sync),
        Bytes::from(body),
        Some(SYNC_START_TIMEOUT),
    )
    .await?;
    let started = serde_json::from_slice(&answer).map_err(|e| {
        ActionError::internal(format!("the answer to a sync request is not JSON: {e}"))
    })?;
    Ok((started, events))
}

/// How much longer than its deadline a caller waits for the answer, so
/// that the instance's own `deadline_exceeded` (with its message) arrives
/// rather than a bare timeout.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// Publishes the call's cancel when dropped, unless disarmed (the answer
/// came).
struct CancelOnDrop {
    client: Client,
    subject: Option<String>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.subject = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(subject) = self.subject.take() else {
            return;
        };
        let client = self.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Best effort: a cancel that does not arrive leaves the
                // deadline to end the call.
                let _ = client.publish(subject, Bytes::new()).await;
                let _ = client.flush().await;
            });
        }
    }
}

/// What a request came to, before a nobody-listening is explained: the
/// answer's body and its encoding (`Content-Type`; JSON without one).
enum Sent {
    Answer(Result<(Bytes, Encoding), ActionError>),
    NoResponders,
}

/// A call's payload as it travels: its bytes, their encoding, and the
/// output encodings the caller reads (the preferred first; empty: the
/// action's preferred).
#[derive(Debug, Clone)]
pub struct Payload<'a> {
    /// The input.
    pub bytes: Bytes,
    /// Its encoding.
    pub encoding: Encoding,
    /// The output encodings the caller reads.
    pub accept: &'a [Encoding],
}

impl Payload<'_> {
    /// JSON in, JSON out.
    pub fn json(bytes: Bytes) -> Payload<'static> {
        Payload {
            bytes,
            encoding: Encoding::Json,
            accept: &[Encoding::Json],
        }
    }
}

/// Sends `payload` to `subject` (one of `subjects`' action, operator or
/// describe subjects, possibly of one instance) and waits up to `timeout`
/// (none: as long as it takes) for the answer.
///
/// The answer's body on success; an error answer as its [`ActionError`];
/// no instance listening is `unavailable`, no answer in time
/// `deadline_exceeded`.
pub async fn request(
    client: &Client,
    subjects: &Subjects,
    subject: String,
    payload: Bytes,
    timeout: Option<Duration>,
) -> Result<Bytes, ActionError> {
    match send(
        client,
        subjects,
        subject.clone(),
        Payload::json(payload),
        timeout,
    )
    .await
    {
        Sent::Answer(answer) => answer.map(|(body, _)| body),
        Sent::NoResponders => Err(nobody_serves(&subject)),
    }
}

fn nobody_serves(subject: &str) -> ActionError {
    ActionError::unavailable(format!(
        "no instance answers on {subject}: none is serving it on this NATS"
    ))
}

/// What [`call`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee<'a> {
    /// An action, with its JSON input.
    Action(&'a str),
    /// A search operator, with `{"value": "..."}`.
    Operator(&'a str),
}

/// Calls an action or search operator of the connector at `subjects` (of
/// one instance when `instance` is given), as [`request`] does. When no
/// instance listens on its subject, the connector's `describe` tells the
/// two cases apart: a connector that is served but has no such action is
/// `not_found`, naming its actions (with a did-you-mean); one that nobody
/// serves is `unavailable`.
pub async fn call(
    client: &Client,
    subjects: &Subjects,
    instance: Option<&str>,
    callee: Callee<'_>,
    payload: Bytes,
    timeout: Option<Duration>,
) -> Result<Bytes, ActionError> {
    call_with(
        client,
        subjects,
        instance,
        callee,
        Payload::json(payload),
        timeout,
    )
    .await
    .map(|(body, _)| body)
}

/// [`call`] with a payload in any encoding: the answer's body and its
/// encoding. An instance from before encodings answers JSON whatever the
/// caller accepts: check the encoding.
pub async fn call_with(
    client: &Client,
    subjects: &Subjects,
    instance: Option<&str>,
    callee: Callee<'_>,
    payload: Payload<'_>,
    timeout: Option<Duration>,
) -> Result<(Bytes, Encoding), ActionError> {
    let at = match instance {
        Some(id) => subjects.instance(id),
        None => subjects.clone(),
    };
    let subject = match callee {
        Callee::Action(action) => at.action(action),
        Callee::Operator(operator) => at.operator(operator),
    };
    match send(client, subjects, subject.clone(), payload, timeout).await {
        Sent::Answer(answer) => answer,
        Sent::NoResponders => {
            let probe = timeout.unwrap_or(PROBE_TIMEOUT).min(PROBE_TIMEOUT);
            let describe = Payload::json(Bytes::new());
            let Sent::Answer(Ok((manifest, _))) =
                send(client, subjects, at.describe(), describe, Some(probe)).await
            else {
                return Err(match instance {
                    Some(id) => ActionError::unavailable(format!(
                        "instance `{id}` of {subjects} is not serving on this NATS"
                    )),
                    None => nobody_serves(&subject),
                });
            };
            let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap_or_default();
            let (kind, key, field, name) = match callee {
                Callee::Action(a) => ("action", "actions", "name", a),
                Callee::Operator(o) => ("search operator", "search_operators", "operator", o),
            };
            let known: Vec<&str> = manifest[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|entry| entry["hidden"] != true)
                .filter_map(|entry| entry[field].as_str())
                .collect();
            let connector = manifest["name"].as_str().unwrap_or_default();
            Err(unknown_name(connector, kind, name, &known))
        }
    }
}

/// How long [`call`] waits for `describe` when nobody answered a call.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn send(
    client: &Client,
    subjects: &Subjects,
    subject: String,
    payload: Payload<'_>,
    timeout: Option<Duration>,
) -> Sent {
    let id = new_request_id();
    let mut headers = HeaderMap::new();
    headers.insert(wire::REQUEST_ID, id.as_str());
    if payload.encoding != Encoding::Json {
        headers.insert(wire::CONTENT_TYPE, payload.encoding.mime());
    }
    if payload.accept != [Encoding::Json] {
        let accept: Vec<&str> = payload.accept.iter().map(|e| e.mime()).collect();
        let accept = if accept.is_empty() {
            "*/*".to_owned()
        } else {
            accept.join(", ")
        };
        headers.insert(wire::ACCEPT, accept.as_str());
    }
    if let Some(timeout) = timeout {
        headers.insert(
            wire::TIMEOUT,
            timeout.as_millis().max(1).to_string().as_str(),
        );
    }
    let mut guard = CancelOnDrop {
        client: client.clone(),
        subject: Some(subjects.cancel(&id)),
    };
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(payload.bytes)
        .timeout(timeout.map(|t| t + ANSWER_MARGIN));
    Sent::Answer(match client.send_request(subject.clone(), request).await {
        Ok(message) => {
            guard.disarm();
            let headers = message.headers.as_ref();
            match error_of(headers, &message.payload) {
                Some(error) => Err(error),
                None => wire::content_type(headers)
                    .map(|encoding| (message.payload, encoding))
                    .map_err(|e| {
                        ActionError::internal(format!("the answer on {subject}: {}", e.message()))
                    }),
            }
        }
        Err(e) => match e.kind() {
            RequestErrorKind::NoResponders => {
                guard.disarm();
                return Sent::NoResponders;
            }
            RequestErrorKind::TimedOut => Err(ActionError::deadline_exceeded(format!(
                "no answer on {subject} within {:?}; the call was cancelled",
                timeout.unwrap_or_default()
            ))),
            _ => {
                guard.disarm();
                Err(ActionError::unavailable(format!(
                    "the request on {subject} failed: {e}"
                )))
            }
        },
    })
}
