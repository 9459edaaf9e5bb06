//! The one log line of every call a client makes through the hub, written at
//! info when the call ends: its request id, connector, the instance(s) that
//! were tried (`f1,f2` when a call was retried elsewhere; every member of a
//! tag broadcast), action, duration and outcome. The outcome is `ok`, the
//! connector's error code (`error:not_found`), the hub's status
//! (`deadline_exceeded`, `unavailable`, ...), `caller_gone` when the caller
//! went away first, and for a broadcast one of these per instance, in
//! instance order. A call refused before it was routed gets its line too,
//! with instance `-`. `duration_ms` is in milliseconds to the microsecond
//! (`12.345`).

use std::sync::Mutex;
use std::time::Duration;

use spoke_proto::v1::{InstanceResult, instance_result};
use tokio::time::Instant;
use tonic::Status;

use crate::routing::registry::InstanceKey;
use crate::wire::code_name;

/// A call's log line, written once when dropped; see the module docs.
#[derive(Debug)]
pub(crate) struct CallLog {
    request_id: String,
    connector: String,
    action: String,
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tried: Vec<String>,
    outcome: Option<String>,
}

impl CallLog {
    /// Starts the line of call `request_id`.
    pub(crate) fn new(request_id: &str, connector: &str, action: &str) -> CallLog {
        CallLog {
            request_id: request_id.to_owned(),
            connector: connector.to_owned(),
            action: action.to_owned(),
            started: Instant::now(),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An attempt of the call goes to `key`.
    pub(crate) fn tried(&self, key: &InstanceKey) {
        let mut inner = self.lock();
        if !inner.tried.contains(&key.id) {
            inner.tried.push(key.id.clone());
        }
    }

    /// The call ended with this answer for its one instance.
    pub(crate) fn answered(&self, answer: &Result<InstanceResult, Status>) {
        self.lock().outcome = Some(match answer {
            Ok(result) => result_outcome(result),
            Err(status) => code_name(status.code()).to_owned(),
        });
    }

    /// A broadcast ended with these results (sorted by instance).
    pub(crate) fn broadcast(&self, results: &[InstanceResult]) {
        let outcomes: Vec<String> = results.iter().map(result_outcome).collect();
        self.lock().outcome = Some(if outcomes.is_empty() {
            "no_instances".to_owned()
        } else {
            outcomes.join(",")
        });
    }

    /// The call was refused before it was routed.
    pub(crate) fn refused(&self, status: &Status) {
        self.lock().outcome = Some(code_name(status.code()).to_owned());
    }

    /// The line's fields: instance(s), outcome, duration.
    fn fields(&self) -> (String, String, Duration) {
        let inner = self.lock();
        let instance = if inner.tried.is_empty() {
            "-".to_owned()
        } else {
            inner.tried.join(",")
        };
        let outcome = inner
            .outcome
            .clone()
            .unwrap_or_else(|| "caller_gone".to_owned());
        (instance, outcome, self.started.elapsed())
    }
}

/// A duration in milliseconds to the microsecond, for log lines:
/// `12.345`, `0.042`, `1500.000` (always three decimals, never a long float).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Millis(pub(crate) Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

fn result_outcome(result: &InstanceResult) -> String {
    match &result.outcome {
        Some(instance_result::Outcome::Error(e)) => format!("error:{}", e.code),
        _ => "ok".to_owned(),
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        let (instance, outcome, took) = self.fields();
        tracing::info!(
            request_id = %self.request_id,
            connector = %self.connector,
            instance = %instance,
            action = %self.action,
            duration_ms = %Millis(took),
            outcome = %outcome,
            "call"
        );
    }
}

#[cfg(test)]
mod tests {
    use spoke_proto::v1::Error;

    use super::*;

    fn key(id: &str) -> InstanceKey {
        InstanceKey {
            tenant: "default".into(),
            connector: "c".into(),
            id: id.into(),
        }
    }

    fn ok(id: &str) -> InstanceResult {
        InstanceResult {
            instance_id: id.into(),
            outcome: Some(instance_result::Outcome::Payload(b"1".to_vec().into())),
            ..InstanceResult::default()
        }
    }

    fn failed(id: &str, code: &str) -> InstanceResult {
        InstanceResult {
            instance_id: id.into(),
            outcome: Some(instance_result::Outcome::Error(Error {
                code: code.into(),
                ..Error::default()
            })),
            ..InstanceResult::default()
        }
    }

    #[test]
    fn durations_are_milliseconds_to_the_microsecond() {
        let shown = |d: Duration| Millis(d).to_string();
        assert_eq!(shown(Duration::from_nanos(12_345_678)), "12.345");
        assert_eq!(shown(Duration::from_micros(42)), "0.042");
        assert_eq!(shown(Duration::from_millis(1500)), "1500.000");
        assert_eq!(shown(Duration::ZERO), "0.000");
        assert_eq!(shown(Duration::from_nanos(999)), "0.000");
    }

    #[test]
    fn a_retried_call_names_both_instances() {
        let log = CallLog::new("7", "c", "get");
        log.tried(&key("f1"));
        log.tried(&key("f2"));
        log.tried(&key("f2"));
        log.answered(&Ok(ok("f2")));
        let (instance, outcome, _) = log.fields();
        assert_eq!((instance.as_str(), outcome.as_str()), ("f1,f2", "ok"));
    }

    #[test]
    fn outcomes_name_the_error() {
        let log = CallLog::new("7", "c", "get");
        log.tried(&key("f1"));
        log.answered(&Ok(failed("f1", "not_found")));
        assert_eq!(log.fields().1, "error:not_found");
        log.answered(&Err(Status::deadline_exceeded("late")));
        assert_eq!(log.fields().1, "deadline_exceeded");
    }

    #[test]
    fn broadcasts_list_each_outcome_and_unfinished_calls_lost_their_caller() {
        let log = CallLog::new("7", "c", "get");
        log.broadcast(&[ok("a"), failed("b", "internal")]);
        assert_eq!(log.fields().1, "ok,error:internal");
        let gone = CallLog::new("8", "c", "get");
        let (instance, outcome, _) = gone.fields();
        assert_eq!((instance.as_str(), outcome.as_str()), ("-", "caller_gone"));
        let refused = CallLog::new("9", "c", "get");
        refused.refused(&Status::not_found("no such connector"));
        assert_eq!(refused.fields().1, "not_found");
    }
}
