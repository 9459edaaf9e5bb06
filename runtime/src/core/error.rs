//! The error an action (or search operator) returns to its caller.
//!
//! Every error carries a stable [`ErrorCode`] that hosts can branch on, a human
//! message, and optional structured details. Connector code usually returns its
//! own error type and lets `?` convert it: anything that is
//! `Into<ActionError>` works, and so does [`anyhow::Error`] (mapped to
//! [`ErrorCode::Internal`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The stable, machine-readable kind of an [`ActionError`].
///
/// The string form (`invalid_input`, `not_found`, ...) is part of the wire
/// protocol and never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The input did not match the action's input schema; `details.path` names the field.
    InvalidInput,
    /// The action, operator or object asked for does not exist.
    NotFound,
    /// The caller may not do this (for example a path that escapes a sandbox).
    Unauthorized,
    /// The system is not in a state that allows this operation.
    FailedPrecondition,
    /// The outside system is unreachable or overloaded; retrying may help.
    Unavailable,
    /// The deadline passed before the action finished.
    DeadlineExceeded,
    /// The caller cancelled the invocation.
    Cancelled,
    /// A bug or an unexpected failure.
    Internal,
    /// The action panicked; the message is the panic message.
    Panicked,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::InvalidInput,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::FailedPrecondition,
        ErrorCode::Unavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Cancelled,
        ErrorCode::Internal,
        ErrorCode::Panicked,
    ];

    /// The stable wire name, e.g. `"invalid_input"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal",
            ErrorCode::Panicked => "panicked",
        }
    }

    /// The HTTP status that means the same (the `http` transport's status,
    /// the NATS transport's `Nats-Service-Error-Code`).
    ///
    /// ```
    /// use spoke::ErrorCode;
    /// assert_eq!(ErrorCode::NotFound.http_status(), 404);
    /// assert_eq!(ErrorCode::from_http_status(504), ErrorCode::DeadlineExceeded);
    /// ```
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput => 400,
            ErrorCode::Unauthorized => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::FailedPrecondition => 409,
            ErrorCode::Unavailable => 503,
            ErrorCode::DeadlineExceeded => 504,
            // The caller went away or cancelled (nginx's "client closed request").
            ErrorCode::Cancelled => 499,
            ErrorCode::Internal | ErrorCode::Panicked => 500,
        }
    }

    /// The code an HTTP-like status means (for answers from outside Spoke):
    /// the codes' own statuses, then by class (4xx invalid input, 5xx
    /// internal).
    pub fn from_http_status(status: u16) -> ErrorCode {
        match status {
            400 | 422 => ErrorCode::InvalidInput,
            401 | 403 => ErrorCode::Unauthorized,
            404 => ErrorCode::NotFound,
            409 | 412 => ErrorCode::FailedPrecondition,
            429 | 502 | 503 => ErrorCode::Unavailable,
            408 | 504 => ErrorCode::DeadlineExceeded,
            499 => ErrorCode::Cancelled,
            400..=499 => ErrorCode::InvalidInput,
            _ => ErrorCode::Internal,
        }
    }

    /// Parses a wire name back into a code.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of an action or search operator: a stable code, a message and
/// optional structured details.
///
/// ```
/// use spoke::{ActionError, ErrorCode};
///
/// let err = ActionError::not_found("no issue #42").with_details(serde_json::json!({"id": 42}));
/// assert_eq!(err.code(), ErrorCode::NotFound);
/// assert_eq!(err.to_string(), "not_found: no issue #42");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionError {
    code: ErrorCode,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Value>,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $fn:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $fn(message: impl Into<String>) -> Self {
                Self::new(ErrorCode::$code, message)
            }
        )*
    };
}

impl ActionError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ActionError {
            code,
            message: message.into(),
            details: None,
        }
    }

    constructors! {
        /// An [`ErrorCode::InvalidInput`] error. Prefer [`ActionError::invalid_input_at`] when a field is to blame.
        invalid_input => InvalidInput;
        /// An [`ErrorCode::NotFound`] error.
        not_found => NotFound;
        /// An [`ErrorCode::Unauthorized`] error.
        unauthorized => Unauthorized;
        /// An [`ErrorCode::FailedPrecondition`] error.
        failed_precondition => FailedPrecondition;
        /// An [`ErrorCode::Unavailable`] error.
        unavailable => Unavailable;
        /// An [`ErrorCode::DeadlineExceeded`] error.
        deadline_exceeded => DeadlineExceeded;
        /// An [`ErrorCode::Cancelled`] error.
        cancelled => Cancelled;
        /// An [`ErrorCode::Internal`] error.
        internal => Internal;
        /// An [`ErrorCode::Panicked`] error.
        panicked => Panicked;
    }

    /// An [`ErrorCode::InvalidInput`] error that names the JSON path of the bad
    /// field (`details.path`), e.g. `"items[2].name"`.
    pub fn invalid_input_at(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        let message = message.into();
        ActionError::new(ErrorCode::InvalidInput, format!("{path}: {message}"))
            .with_details(serde_json::json!({ "path": path }))
    }

    /// Attaches structured details (replacing any present).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Structured details, if any.
    pub fn details(&self) -> Option<&Value> {
        self.details.as_ref()
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ActionError {}

impl From<anyhow::Error> for ActionError {
    /// An `anyhow::Error` becomes [`ErrorCode::Internal`] unless it wraps an
    /// `ActionError`, whose code is kept. The message includes the whole
    /// context chain.
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<ActionError>() {
            Ok(action) => action,
            Err(err) => ActionError::internal(format!("{err:#}")),
        }
    }
}

impl From<std::io::Error> for ActionError {
    /// Maps I/O errors onto the closest code (`NotFound`, `Unauthorized` for
    /// permission errors, `DeadlineExceeded` for timeouts, `Internal` otherwise).
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind;
        let code = match err.kind() {
            ErrorKind::NotFound => ErrorCode::NotFound,
            ErrorKind::PermissionDenied => ErrorCode::Unauthorized,
            ErrorKind::TimedOut => ErrorCode::DeadlineExceeded,
            ErrorKind::InvalidInput | ErrorKind::InvalidData => ErrorCode::InvalidInput,
            ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ActionError::new(code, err.to_string())
    }
}

impl From<crate::context::EmitError> for ActionError {
    /// An event that could not be emitted ends the action as
    /// [`ErrorCode::Cancelled`]: either the call was cancelled while the
    /// event waited for room, or whoever was receiving its events (the
    /// caller, the transport) is gone. `?` after `ctx.emit(...)` is enough:
    ///
    /// ```
    /// use spoke::prelude::*;
    ///
    /// async fn report(ctx: &Context) -> Result<(), ActionError> {
    ///     ctx.progress(1.0, Some(2.0), None).await?;
    ///     Ok(())
    /// }
    /// ```
    fn from(err: crate::context::EmitError) -> Self {
        ActionError::cancelled(err.to_string())
    }
}

impl From<std::convert::Infallible> for ActionError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, Value::String(code.as_str().to_owned()));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn anyhow_keeps_an_inner_action_error_and_the_context_chain() {
        let inner: anyhow::Error = ActionError::not_found("gone").into();
        assert_eq!(ActionError::from(inner).code(), ErrorCode::NotFound);

        let chained = anyhow::anyhow!("disk full").context("saving report");
        let err = ActionError::from(chained);
        assert_eq!(err.code(), ErrorCode::Internal);
        assert_eq!(err.message(), "saving report: disk full");
    }

    #[test]
    fn invalid_input_at_records_the_path() {
        let err = ActionError::invalid_input_at("items[2].name", "expected a string");
        assert_eq!(err.details().unwrap()["path"], "items[2].name");
        assert_eq!(err.message(), "items[2].name: expected a string");
    }

    #[test]
    fn io_errors_map_to_close_codes() {
        let nf = std::io::Error::new(std::io::ErrorKind::NotFound, "x");
        assert_eq!(ActionError::from(nf).code(), ErrorCode::NotFound);
        let pd = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "x");
        assert_eq!(ActionError::from(pd).code(), ErrorCode::Unauthorized);
    }

    #[test]
    fn emit_errors_end_the_action_as_cancelled() {
        use crate::context::EmitError;
        let closed = ActionError::from(EmitError::Closed);
        assert_eq!(closed.code(), ErrorCode::Cancelled);
        assert!(closed.message().contains("receiver is closed"), "{closed}");
        assert_eq!(
            ActionError::from(EmitError::Cancelled).code(),
            ErrorCode::Cancelled
        );
    }

    #[test]
    fn serializes_without_empty_details() {
        let json = serde_json::to_value(ActionError::cancelled("stop")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "cancelled", "message": "stop"})
        );
    }
}
