//! What a call carries on NATS besides its payload: the headers a caller
//! sends and the shape of an error answer. The server and the client both
//! use these, so they cannot drift.
//!
//! **Request**: the payload is the action's input as JSON (an empty payload
//! is `{}`); for a search operator, `{"value": "..."}`. Headers, all
//! optional:
//!
//! | header | meaning |
//! |---|---|
//! | `Spoke-Request-Id` | the caller's id for the call (`[A-Za-z0-9_-]`, at most 64): it names the call in logs, and the caller cancels by publishing to `spoke.<tenant>.<connector>.cancel.<id>` |
//! | `Spoke-Timeout` | how long the caller waits, in milliseconds: the action's deadline (a relative time, so clocks need not agree) |
//! | `Content-Type` | the input's encoding, as a MIME type or a name (`application/msgpack`, `msgpack`); absent: JSON |
//! | `Accept` | the output encodings the caller reads, the preferred first, comma-separated; absent: JSON (what a caller from before encodings reads); `*/*`: the action's preferred |
//!
//! **Answer**: success is the action's output, as JSON with no headers, or
//! in another encoding with `Content-Type` saying which. An answer larger
//! than the server's `max_payload` (1 MiB unless configured) is an error
//! answer that says so, never silence. An
//! error has ADR-32's headers, `Nats-Service-Error` (the message) and
//! `Nats-Service-Error-Code` (an HTTP-like number, [`ErrorCode::http_status`]),
//! plus `Spoke-Error-Code` (the code's name), **and** a JSON body
//! `{"code", "message", "details"}`, where a plain micro service sends an
//! empty one.

use async_nats::HeaderMap;
use bytes::Bytes;
use std::time::Duration;

use crate::encoding::Encoding;
use crate::error::{ActionError, ErrorCode};

/// `Spoke-Request-Id`.
pub const REQUEST_ID: &str = "Spoke-Request-Id";
/// `Spoke-Timeout`, in milliseconds.
pub const TIMEOUT: &str = "Spoke-Timeout";
/// `Spoke-Error-Code`, the code's name on an error answer.
pub const ERROR_CODE: &str = "Spoke-Error-Code";
/// ADR-32's error message header.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// ADR-32's error code header (a number).
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// `Content-Type`: the encoding of a request's or an answer's payload.
pub const CONTENT_TYPE: &str = "Content-Type";
/// `Accept`: the output encodings a caller reads.
pub const ACCEPT: &str = "Accept";

/// The encoding `Content-Type` names (absent: JSON).
///
/// ```
/// use async_nats::HeaderMap;
/// use spoke::Encoding;
/// use spoke::nats::wire::{CONTENT_TYPE, content_type};
/// let mut h = HeaderMap::new();
/// h.insert(CONTENT_TYPE, "application/vnd.apache.arrow.stream");
/// assert_eq!(content_type(Some(&h)).unwrap(), Encoding::ArrowIpc);
/// assert_eq!(content_type(None).unwrap(), Encoding::Json);
/// ```
pub fn content_type(headers: Option<&HeaderMap>) -> Result<Encoding, ActionError> {
    match headers.and_then(|h| h.get(CONTENT_TYPE)) {
        None => Ok(Encoding::Json),
        Some(value) => Encoding::parse(value.as_str())
            .map_err(|e| ActionError::invalid_input(format!("header {CONTENT_TYPE}: {e}"))),
    }
}

/// The encodings `Accept` lists (absent: JSON; `*/*` alone: the action's
/// preferred, an empty list).
pub fn accept(headers: Option<&HeaderMap>) -> Result<Vec<Encoding>, ActionError> {
    match headers.and_then(|h| h.get(ACCEPT)) {
        None => Ok(vec![Encoding::Json]),
        Some(value) => Encoding::parse_list(value.as_str())
            .map_err(|e| ActionError::invalid_input(format!("header {ACCEPT}: {e}"))),
    }
}

/// The headers of a successful answer in `encoding`: none for JSON.
pub fn answer_headers(encoding: Encoding) -> Option<HeaderMap> {
    (encoding != Encoding::Json).then(|| {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, encoding.mime());
        headers
    })
}

/// Publishes a call's one answer to `reply`: its output (with
/// `Content-Type` unless JSON) or its error answer. An output larger than
/// the server carries in one message (`max_payload`) is answered with the
/// error that says so (`failed_precondition`), never left unanswered.
/// Returns how the publish went, and the error answered, if any.
pub async fn publish_answer(
    client: &async_nats::Client,
    reply: async_nats::Subject,
    answer: Result<(Bytes, Encoding), ActionError>,
) -> (
    Result<(), async_nats::client::PublishError>,
    Option<ActionError>,
) {
    let max = client.server_info().max_payload;
    let answer = answer.and_then(|(body, encoding)| {
        // The server counts the headers too.
        let len = body.len() + answer_headers_len(encoding);
        match oversized(len, encoding, max) {
            Some(error) => Err(error),
            None => Ok((body, encoding)),
        }
    });
    match answer {
        Ok((body, encoding)) => {
            let sent = match answer_headers(encoding) {
                None => client.publish(reply.clone(), body).await,
                Some(headers) => {
                    client
                        .publish_with_headers(reply.clone(), headers, body)
                        .await
                }
            };
            let Err(e) = sent else {
                return (Ok(()), None);
            };
            // The answer could not go: the error that says why still can.
            let error = ActionError::internal(format!("the answer could not be sent: {e}"));
            let (headers, body) = error_answer(&error);
            let sent = client.publish_with_headers(reply, headers, body).await;
            (sent, Some(error))
        }
        Err(error) => {
            let (headers, body) = error_answer(&error);
            let sent = client.publish_with_headers(reply, headers, body).await;
            (sent, Some(error))
        }
    }
}

/// The bytes [`answer_headers`] add to an answer in `encoding` on the wire
/// (`NATS/1.0\r\n`, the header line, the blank line).
fn answer_headers_len(encoding: Encoding) -> usize {
    if encoding == Encoding::Json {
        return 0;
    }
    "NATS/1.0\r\n".len() + CONTENT_TYPE.len() + ": \r\n".len() + encoding.mime().len() + 2
}

/// The error of an output of `len` bytes a server with `max_payload` does
/// not carry, if it does not (`0`: no limit known).
///
/// ```
/// use spoke::Encoding;
/// use spoke::nats::wire::oversized;
/// assert!(oversized(1024, Encoding::Json, 1 << 20).is_none());
/// let e = oversized(2 << 20, Encoding::ArrowIpc, 1 << 20).unwrap();
/// assert_eq!(e.code(), spoke::ErrorCode::FailedPrecondition);
/// ```
pub fn oversized(len: usize, encoding: Encoding, max_payload: usize) -> Option<ActionError> {
    (max_payload > 0 && len > max_payload).then(|| {
        ActionError::failed_precondition(format!(
            "the output is {len} bytes of {encoding}, more than this NATS server carries in one message (max_payload {max_payload}): ask for less, or call through a hub"
        ))
        .with_details(serde_json::json!({ "bytes": len, "max_payload": max_payload }))
    })
}

/// The longest request id a caller may send.
pub const MAX_REQUEST_ID: usize = 64;

/// The error answer's headers and body.
pub fn error_answer(error: &ActionError) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    // A header value is one line.
    let message: String = error
        .message()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert(SERVICE_ERROR, message.as_str());
    headers.insert(
        SERVICE_ERROR_CODE,
        error.code().http_status().to_string().as_str(),
    );
    headers.insert(ERROR_CODE, error.code().as_str());
    let body = serde_json::to_vec(error).unwrap_or_default();
    (headers, Bytes::from(body))
}

/// The error an answer carries, if it is one: from its JSON body when it
/// has one, else from the headers alone (a plain micro service's answer).
///
/// ```
/// use spoke::ActionError;
/// use spoke::nats::wire::{error_answer, error_of};
/// let (headers, body) = error_answer(&ActionError::not_found("no ticket 7"));
/// let back = error_of(Some(&headers), &body).unwrap();
/// assert_eq!(back, ActionError::not_found("no ticket 7"));
/// ```
pub fn error_of(headers: Option<&HeaderMap>, body: &[u8]) -> Option<ActionError> {
    let headers = headers?;
    let message = headers.get(SERVICE_ERROR)?.as_str().to_owned();
    if let Ok(error) = serde_json::from_slice::<ActionError>(body) {
        return Some(error);
    }
    let code = headers
        .get(ERROR_CODE)
        .and_then(|c| ErrorCode::parse(c.as_str()))
        .or_else(|| {
            let status = headers.get(SERVICE_ERROR_CODE)?.as_str().parse().ok()?;
            Some(ErrorCode::from_http_status(status))
        })
        .unwrap_or(ErrorCode::Internal);
    Some(ActionError::new(code, message))
}

/// The caller's request id, when it sent a usable one.
pub fn request_id(headers: Option<&HeaderMap>) -> Result<Option<String>, ActionError> {
    let Some(value) = headers.and_then(|h| h.get(REQUEST_ID)) else {
        return Ok(None);
    };
    let id = value.as_str().trim();
    let usable = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if usable {
        Ok(Some(id.to_owned()))
    } else {
        Err(ActionError::invalid_input(format!(
            "header {REQUEST_ID}: `{}` is not a request id (1 to {MAX_REQUEST_ID} of A-Z, a-z, 0-9, `_`, `-`)",
            id.chars().take(80).collect::<String>()
        )))
    }
}

/// How long the caller waits, from `Spoke-Timeout`.
pub fn timeout(headers: Option<&HeaderMap>) -> Result<Option<Duration>, ActionError> {
    let Some(value) = headers.and_then(|h| h.get(TIMEOUT)) else {
        return Ok(None);
    };
    match value.as_str().trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(ActionError::invalid_input(format!(
            "header {TIMEOUT}: `{}` is not a positive number of milliseconds",
            value.as_str().chars().take(80).collect::<String>()
        ))),
    }
}

/// A fresh request id: 16 random hex digits.
pub fn new_request_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        let mut h = HeaderMap::new();
        h.insert(TIMEOUT, "250");
        h.insert(REQUEST_ID, "abc-1");
        assert_eq!(timeout(Some(&h)).unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(request_id(Some(&h)).unwrap().as_deref(), Some("abc-1"));
        let mut bad = HeaderMap::new();
        bad.insert(TIMEOUT, "soon");
        bad.insert(REQUEST_ID, "a.b");
        let e = timeout(Some(&bad)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(e.message().contains("soon"), "{e}");
        assert!(
            request_id(Some(&bad))
                .unwrap_err()
                .message()
                .contains("a.b")
        );
        assert_eq!(timeout(None).unwrap(), None);
    }

    #[test]
    fn errors_round_trip_and_plain_micro_errors_are_read() {
        let e =
            ActionError::invalid_input("bad\nline").with_details(serde_json::json!({"path": "/x"}));
        let (headers, body) = error_answer(&e);
        assert_eq!(headers.get(SERVICE_ERROR).unwrap().as_str(), "bad line");
        assert_eq!(headers.get(SERVICE_ERROR_CODE).unwrap().as_str(), "400");
        assert_eq!(error_of(Some(&headers), &body), Some(e));
        let mut plain = HeaderMap::new();
        plain.insert(SERVICE_ERROR, "not ready");
        plain.insert(SERVICE_ERROR_CODE, "503");
        let e = error_of(Some(&plain), b"").unwrap();
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert_eq!(e.message(), "not ready");
        assert_eq!(error_of(None, b"{}"), None);
    }
}
