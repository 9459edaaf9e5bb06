//! Calls this hub's clients make to connectors with no instance here,
//! answered over NATS: by a connector serving NATS itself, or by another
//! hub it is attached to (whose `nats::export` serves it there).
//!
//! The client's token is checked here as for a connector attached here:
//! its tenant names the subjects, its scope the connectors, and the action
//! is found in the manifest the connector describes on NATS (read again
//! every few seconds), so a write action needs `--write`, a hidden one an
//! admin. A call goes to any instance (the queue group picks), or to one
//! by `route.instance`; tags and display names route among the instances
//! of this hub only, so they are refused here with that said.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use spoke_proto::prost::bytes::Bytes;
use spoke_proto::v1::{self, InstanceResult, InvokeKind};
use spoke_runtime::grpc::wire_encoding::to_wire;
use spoke_runtime::nats::client::{Callee, Payload, call_with};
use spoke_runtime::nats::subjects::Subjects;
use tokio::time::Instant;
use tonic::Status;

use crate::api::client_api::{callable_in, no_connector};
use crate::routing::nats_link::NatsLink;
use crate::routing::route::Target;
use crate::sessions::state::HubState;
use crate::trust::access::Caller;
use crate::wire::error_frame;

/// A checked call to a connector with no instance here.
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub(crate) caller: Caller,
    pub(crate) connector: String,
    pub(crate) action: String,
    pub(crate) kind: InvokeKind,
    pub(crate) payload: Bytes,
    pub(crate) encoding: spoke_runtime::Encoding,
    /// The output encodings the caller reads (empty: the action's preferred).
    pub(crate) accept: Vec<spoke_runtime::Encoding>,
    pub(crate) target: Target,
    pub(crate) deadline: Option<Instant>,
    pub(crate) request_id: String,
}

impl Forwarded {
    /// Asks NATS, and reads the answer into the one result of the call:
    /// the connector's answer or its error in-band, a refusal as a status.
    pub(crate) async fn call(
        self,
        state: &HubState,
        link: &Arc<NatsLink>,
    ) -> Result<InstanceResult, Status> {
        let tenant = self.caller.tenant();
        let instance = match &self.target {
            Target::Any => None,
            Target::Instance(id) => Some(id.as_str()),
            Target::DisplayName(_) | Target::Tag(_) => {
                return Err(Status::invalid_argument(format!(
                    "connector `{}` has no instance on this hub and is reached over NATS, where a call goes to any instance or to one by route.instance; a route by tag or display name picks among this hub's instances only",
                    self.connector
                )));
            }
        };
        let subjects = Subjects::new(tenant, &self.connector).map_err(|e| {
            // A name NATS cannot carry is one no connector serves there.
            tracing::debug!("no NATS subject for `{}`: {e}", self.connector);
            self.not_here(state)
        })?;
        let manifest = link
            .manifest(&subjects, tenant, &self.connector)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "connector `{}` could not be described over NATS: {}",
                    self.connector,
                    e.message()
                ))
            })?
            .ok_or_else(|| self.not_here(state))?;
        callable_in(
            &manifest,
            &self.caller,
            &self.connector,
            &self.action,
            self.kind,
        )?;
        let timeout = match self.deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Status::deadline_exceeded(
                        "the call's deadline passed before it was sent over NATS",
                    ));
                }
                Some(left)
            }
        };
        let callee = match self.kind {
            InvokeKind::Action => Callee::Action(&self.action),
            InvokeKind::SearchOperator => Callee::Operator(&self.action),
        };
        let started = StdInstant::now();
        let payload = Payload {
            bytes: self.payload,
            encoding: self.encoding,
            accept: &self.accept,
        };
        let answer = call_with(link.client(), &subjects, instance, callee, payload, timeout).await;
        let mut encoding = spoke_runtime::Encoding::Json;
        Ok(InstanceResult {
            instance_id: instance.unwrap_or_default().to_owned(),
            outcome: Some(match answer {
                Ok((payload, answered_in)) => {
                    encoding = answered_in;
                    v1::instance_result::Outcome::Payload(payload)
                }
                Err(e) => v1::instance_result::Outcome::Error(error_frame(&e)),
            }),
            encoding: to_wire(encoding),
            duration_us: started.elapsed().as_micros().try_into().unwrap_or(u64::MAX),
        })
    }

    /// `NOT_FOUND`: neither here nor on NATS.
    fn not_here(&self, state: &HubState) -> Status {
        let tables = state.lock();
        let here = no_connector(&tables.registry, &self.caller, &self.connector);
        Status::not_found(format!(
            "{}; nor does one serve tenant `{}` on NATS",
            here.message(),
            self.caller.tenant()
        ))
    }
}
