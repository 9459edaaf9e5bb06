//! What the hub's services and its clients (the `spoke` CLI, `spoke mcp`)
//! agree on beyond `spoke.proto`: the header a client names itself in, how
//! a client presents its token, and the names the hub's logs and the CLI
//! give gRPC status codes. Imports nothing of the hub.

use spoke_proto::v1::SyncCounters;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The request header a client names itself in; it becomes the Invoke's
/// `caller` metadata.
pub(crate) const CALLER_HEADER: &str = "x-spoke-caller";

/// A connector's error as the wire carries it.
pub(crate) fn error_frame(e: &spoke_runtime::ActionError) -> spoke_proto::v1::Error {
    spoke_proto::v1::Error {
        code: e.code().as_str().to_owned(),
        message: e.message().to_owned(),
        details_json: e.details().map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub(crate) struct Bearer(pub(crate) Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

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

/// The snake_case name of a gRPC status code (`not_found`, `unavailable`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// A sync run's counters as JSON, as the hub stores them and `spoke syncs
/// --json` prints them: `progress` and `total` only when known.
pub(crate) fn sync_counters_json(c: &SyncCounters) -> serde_json::Value {
    let mut value = serde_json::json!({
        "scanned": c.scanned,
        "updated": c.updated,
        "emitted": c.emitted,
        "deleted": c.deleted,
        "failed": c.failed,
        "delivered": c.delivered,
    });
    if let Some(progress) = c.progress {
        value["progress"] = progress.into();
    }
    if let Some(total) = c.total {
        value["total"] = total.into();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_snake_case() {
        assert_eq!(code_name(Code::NotFound), "not_found");
        assert_eq!(code_name(Code::DeadlineExceeded), "deadline_exceeded");
        assert_eq!(code_name(Code::Unavailable), "unavailable");
    }
}
