//! The tower layer in front of every service of the hub. For each request
//! it
//!
//! - counts it open on its connection until its response ends (the idle
//!   timeout runs only while none is open);
//! - asks the [`HeaderCheck`] whether the request may go on from its path
//!   and headers alone, and if not answers at once, before a byte of its
//!   body is read (a Hub or Admin call without a valid token);
//! - makes its body a [`BudgetedBody`], bounded by the method's message
//!   limits and the connection's and the hub's budgets;
//! - fixes the call's deadline ([`CallDeadline`]) from its `grpc-timeout`
//!   as it arrives, and answers `DEADLINE_EXCEEDED` by it if the service
//!   has not answered (tonic's own timer on the header, a little later,
//!   would answer `CANCELLED`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use spoke_proto::MAX_MESSAGE_BYTES;
use spoke_proto::limits::MAX_REGISTER_BYTES;
use spoke_proto::v1::{admin_server, connector_hub_server, hub_server};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::deadline::{self, CallDeadline};
use crate::guard::budget::{BudgetedBody, Budgets};
use crate::guard::connection::{ConnectionInfo, OpenRequest};

/// Whether a request may go on, from its path and headers alone.
pub(crate) type HeaderCheck =
    Arc<dyn Fn(&str, &http::HeaderMap) -> Result<(), Status> + Send + Sync>;

/// tonic's default limit on a decoded message, which the services without
/// their own keep (Admin, whose calls carry a token).
const DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// The longest message of the services anyone may call without a
/// credential, health and reflection: their requests are a few names.
const OPEN_SERVICE_MAX_MESSAGE: usize = 64 * 1024;

/// The longest first frame of an Attach stream, which comes before any
/// proof of who is attaching: a `ConnectorFrame` holding the `Register`,
/// whose own limit is [`MAX_REGISTER_BYTES`]. Twice that, so that a
/// Register somewhat over its limits is read and refused with the error
/// naming its field.
pub(crate) const MAX_ATTACH_OPENING_BYTES: usize = 2 * MAX_REGISTER_BYTES;

/// The longest message, and the longest first message, of a method.
fn message_limits(path: &str) -> (usize, Option<usize>) {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if service == connector_hub_server::SERVICE_NAME {
        (MAX_MESSAGE_BYTES, Some(MAX_ATTACH_OPENING_BYTES))
    } else if service == hub_server::SERVICE_NAME {
        (MAX_MESSAGE_BYTES, None)
    } else if service == admin_server::SERVICE_NAME {
        (DEFAULT_MAX_MESSAGE, None)
    } else {
        (OPEN_SERVICE_MAX_MESSAGE, None)
    }
}

/// The layer; see the module docs.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    check: HeaderCheck,
    total: Arc<Semaphore>,
}

impl GuardLayer {
    /// A layer refusing what `check` refuses, with `total` bytes of
    /// request messages in flight over all connections.
    pub(crate) fn new(check: HeaderCheck, total: usize) -> Self {
        GuardLayer {
            check,
            total: Arc::new(Semaphore::new(total)),
        }
    }
}

impl std::fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardLayer")
            .field("total", &self.total.available_permits())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`GuardLayer`] wraps around the hub's.
#[derive(Debug, Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

type GuardFuture<E> = Pin<Box<dyn Future<Output = Result<http::Response<Body>, E>> + Send>>;

impl<S> Service<http::Request<Body>> for Guard<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = GuardFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let info = ConnectionInfo::of(request.extensions()).cloned();
        let open = info.as_ref().map(|info| info.state.open_request());
        let path = request.uri().path();
        if let Err(status) = (self.layer.check)(path, request.headers()) {
            let peer = info
                .as_ref()
                .and_then(|info| info.remote)
                .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
            tracing::info!(
                "call refused before its body was read method={path} peer={peer} outcome={} reason={:?}",
                crate::wire::code_name(status.code()),
                status.message()
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let (max_message, max_first_message) = message_limits(path);
        let connection = info.map_or_else(
            || Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            |info| Arc::clone(&info.state.budget),
        );
        let budgets = Budgets {
            connection,
            total: Arc::clone(&self.layer.total),
            max_message,
            max_first_message,
        };
        let deadline = deadline::from_headers(request.headers(), Instant::now());
        let mut request = request.map(|body| Body::new(BudgetedBody::new(body, budgets)));
        request.extensions_mut().insert(CallDeadline(deadline));
        // The clone is ready only if polled; the one polled goes on.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let respond = inner.call(request);
            let response = match deadline {
                None => respond.await?,
                // The service answers by the same deadline and is polled
                // first; this answers for a request still being read.
                Some(at) => {
                    tokio::pin!(respond);
                    tokio::select! {
                        biased;
                        response = &mut respond => response?,
                        () = tokio::time::sleep_until(at) => {
                            return Ok(Status::deadline_exceeded(
                                "the deadline passed before the request was read",
                            )
                            .into_http());
                        }
                    }
                }
            };
            Ok(response.map(|body| Body::new(OpenBody { body, _open: open })))
        })
    }
}

/// A response body that keeps its request counted open until it ends.
struct OpenBody {
    body: Body,
    _open: Option<OpenRequest>,
}

impl http_body::Body for OpenBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_limits_its_opening_message_and_open_services_take_small_ones() {
        assert_eq!(
            message_limits("/spoke.v1.ConnectorHub/Attach"),
            (MAX_MESSAGE_BYTES, Some(2 * MAX_REGISTER_BYTES))
        );
        assert_eq!(
            message_limits("/spoke.v1.Hub/Invoke"),
            (MAX_MESSAGE_BYTES, None)
        );
        assert_eq!(
            message_limits("/spoke.v1.Admin/ListPending"),
            (DEFAULT_MAX_MESSAGE, None)
        );
        assert_eq!(
            message_limits("/grpc.health.v1.Health/Watch"),
            (64 * 1024, None)
        );
        assert_eq!(message_limits("garbage"), (64 * 1024, None));
    }
}
