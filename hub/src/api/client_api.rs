//! The `spoke.v1.Hub` service: clients invoke actions, list connectors and
//! read manifests.
//!
//! Before routing, the hub checks that the connector exists and that the
//! action (or search operator) is in its manifest; if not, `NOT_FOUND` names
//! what exists. The caller's deadline (`grpc-timeout`) becomes the
//! Invoke's `timeout_ms`; action errors travel in-band in
//! `InstanceResult.error`, hub errors as gRPC statuses.
//!
//! The Invoke's metadata is the request's `metadata`, plus what the hub
//! knows about the call (see [`invoke_metadata`]): `caller`, the client's
//! `x-spoke-caller` header or else its address, and the W3C trace context
//! headers `traceparent` and `tracestate`, forwarded unchanged when the
//! client sent them. These override entries of the same name in the request.

use std::collections::HashMap;
use std::sync::Arc;

use spoke_proto::prost::bytes::Bytes;
use spoke_proto::v1::hub_server::Hub;
use spoke_proto::v1::{
    CancelSyncRequest, CancelSyncResponse, Catalog, ConnectorSummary, DescribeRequest,
    DescribeResponse, InstanceInfo, InstanceState, InvokeKind, InvokeRequest, InvokeResponse,
    InvokeStreamItem, ListConnectorsRequest, ListConnectorsResponse, ListSyncsRequest,
    ListSyncsResponse, SyncRequest, WatchCatalogRequest, invoke_stream_item,
};
use spoke_runtime::grpc::wire_encoding::{accept_from_wire, from_wire, to_wire};
use spoke_runtime::{Manifest, Mode};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api::call_log::CallLog;
use crate::api::catalog::{self, manifest_for};
use crate::api::forward::Forwarded;
use crate::api::invoke::{self, Call};
use crate::deadline;
use crate::routing::nats_link::NatsLink;
use crate::routing::registry::Registry;
use crate::routing::route::{self, Selection, Target};
use crate::sessions::pending::ItemSender;
use crate::sessions::state::HubState;
use crate::sidecars::status::StatusMap;
use crate::trust::access::Caller;
use crate::wire::CALLER_HEADER;
use spoke_runtime::suggest;

/// How many items may wait for a streaming caller.
const STREAM_ITEMS: usize = 1024;

/// The Invoke metadata key naming the caller.
const CALLER: &str = "caller";
/// The W3C trace context headers, forwarded unchanged as Invoke metadata.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// What the hub adds to a call's metadata from its request: `caller` (the
/// `x-spoke-caller` header when present and non-empty, otherwise the
/// client's address, `unknown` if even that is unknown), and `traceparent`
/// and `tracestate` when the client sent them.
pub(crate) fn invoke_metadata<T>(request: &Request<T>) -> HashMap<String, String> {
    let header = |name: &str| {
        request
            .metadata()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let caller = header(CALLER_HEADER)
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(|| crate::guard::peer_addr(request).map(|a| a.to_string()))
        .unwrap_or_else(|| "unknown".to_owned());
    let mut metadata = HashMap::from([(CALLER.to_owned(), caller)]);
    for name in TRACE_HEADERS {
        if let Some(value) = header(name) {
            metadata.insert(name.to_owned(), value);
        }
    }
    metadata
}

/// The Hub service.
#[derive(Debug, Clone)]
pub(crate) struct ClientApi {
    state: Arc<HubState>,
    sidecars: StatusMap,
}

impl ClientApi {
    /// The service over the hub's state.
    /// The service over the hub's state, also listing the supervised
    /// sidecars that are not attached.
    pub(crate) fn with_sidecars(state: Arc<HubState>, sidecars: StatusMap) -> Self {
        ClientApi { state, sidecars }
    }

    /// A client's request as asked: its caller (from its token), its
    /// deadline and what the hub adds to its metadata.
    fn asked(&self, request: Request<InvokeRequest>) -> Asked {
        Asked {
            deadline: deadline::of_request(&request),
            metadata: invoke_metadata(&request),
            caller: self.state.access.caller(request.metadata()),
            request: request.into_inner(),
            reach: Reach::Anywhere,
        }
    }

    /// Checks a call and picks its instance(s), `None` when the call must
    /// wait for one to resume ([`route::select_or_await`]). The call's log
    /// line starts here; a refused call gets it at once.
    fn prepare(&self, asked: Asked) -> Result<(Prepared, CallLog), Status> {
        let Asked {
            caller,
            request,
            deadline,
            metadata,
            reach,
        } = asked;
        let request_id = self.state.next_request_id();
        let log = CallLog::new(&request_id, &request.connector, &request.action);
        let checked = caller
            .and_then(|caller| self.check(&caller, request, request_id, deadline, metadata, reach));
        match checked {
            Ok(prepared) => Ok((prepared, log)),
            Err(status) => {
                tracing::debug!("call refused: {}", status.message());
                log.refused(&status);
                Err(status)
            }
        }
    }

    /// Runs a call to its one answer, as `Invoke` does: the NATS endpoints
    /// of this hub's connectors call here with [`Reach::Here`].
    pub(crate) async fn invoke_as(&self, asked: Asked) -> Result<InvokeResponse, Status> {
        let (prepared, log) = self.prepare(asked)?;
        let state = &self.state;
        let (call, selection) = match prepared {
            Prepared::Here(call, selection) => (call, selection),
            Prepared::Nats(forwarded, link) => {
                let request_id = forwarded.request_id.clone();
                let answer = forwarded.call(state, &link).await;
                log.answered(&answer);
                return Ok(InvokeResponse {
                    request_id,
                    results: vec![answer?],
                });
            }
        };
        let selection = match selection {
            Some(selection) => selection,
            None => invoke::select_when_ready(state, &call)
                .await
                .inspect_err(|status| log.refused(status))?,
        };
        let results = match selection {
            Selection::One(key) => {
                let retry = call.target.allows_retry();
                let id = &call.request_id;
                let answer = invoke::run_one(state, &call, id, key, retry, None, &log).await;
                log.answered(&answer);
                vec![answer?]
            }
            Selection::Broadcast(keys) => {
                let results = invoke::run_broadcast(state, &call, keys, None, &log).await;
                log.broadcast(&results);
                results
            }
        };
        Ok(InvokeResponse {
            request_id: call.request_id,
            results,
        })
    }

    fn check(
        &self,
        caller: &Caller,
        request: InvokeRequest,
        request_id: String,
        deadline: Option<Instant>,
        from_hub: HashMap<String, String>,
        reach: Reach,
    ) -> Result<Prepared, Status> {
        if self.state.is_shutting_down() {
            return Err(Status::unavailable("the hub is shutting down"));
        }
        if request.connector.is_empty() {
            return Err(Status::invalid_argument("InvokeRequest.connector is empty"));
        }
        if request.action.is_empty() {
            return Err(Status::invalid_argument("InvokeRequest.action is empty"));
        }
        let kind = InvokeKind::try_from(request.kind).map_err(|_| {
            Status::invalid_argument(format!("InvokeRequest.kind {} is unknown", request.kind))
        })?;
        let encoding = from_wire(request.encoding).map_err(|_| {
            Status::invalid_argument(format!(
                "InvokeRequest.encoding {} is unknown",
                request.encoding
            ))
        })?;
        let payload = check_payload(encoding, request.payload)?;
        let target = Target::from_route(request.route)?;
        // Before the connector is looked up: the answer says nothing about
        // whether it exists.
        caller.check_connector(&request.connector)?;

        let tenant = caller.tenant();
        let mut tables = self.state.lock();
        // No instance of it here (none ever, or all gone): NATS may have one.
        if reach == Reach::Anywhere
            && let Some(link) = self.state.nats()
            && tables
                .registry
                .instances_of(tenant, &request.connector)
                .next()
                .is_none()
        {
            return Ok(Prepared::Nats(
                Forwarded {
                    caller: caller.clone(),
                    connector: request.connector,
                    action: request.action,
                    kind,
                    payload,
                    encoding,
                    accept: accept_from_wire(&request.accept)
                        .map_err(|e| Status::invalid_argument(e.message().to_owned()))?,
                    target,
                    deadline,
                    request_id,
                },
                Arc::clone(link),
            ));
        }
        let mode = find_callable(
            &tables.registry,
            caller,
            &request.connector,
            &request.action,
            kind,
        )?;
        let selection = route::select_or_await(
            &mut tables.registry,
            tenant,
            &request.connector,
            &target,
            None,
        )?;
        drop(tables);

        let mut metadata = request.metadata;
        metadata.extend(from_hub);
        let call = Call {
            tenant: tenant.to_owned(),
            connector: request.connector,
            action: request.action,
            kind,
            payload,
            encoding: to_wire(encoding),
            accept: request.accept,
            metadata,
            mode,
            deadline,
            target,
            request_id,
        };
        Ok(Prepared::Here(call, selection))
    }
}

/// A call as its caller asked it.
pub(crate) struct Asked {
    /// Who calls, or why the hub does not know.
    pub(crate) caller: Result<Caller, Status>,
    pub(crate) request: InvokeRequest,
    /// When the caller gives up.
    pub(crate) deadline: Option<Instant>,
    /// What the hub adds to the call's metadata.
    pub(crate) metadata: HashMap<String, String>,
    pub(crate) reach: Reach,
}

/// Where a call may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// By an instance attached here or, on a hub with `--nats`, when the
    /// connector has none here, over NATS.
    Anywhere,
    /// By an instance attached here only: a call that came over NATS, never
    /// sent back there.
    Here,
}

/// A checked call.
enum Prepared {
    /// To this hub's instance(s): the call, and its instance(s) if they
    /// are known yet.
    Here(Call, Option<Selection>),
    /// To a connector with no instance here, over NATS.
    Nats(Forwarded, Arc<NatsLink>),
}

/// An empty JSON payload means "no input", `{}`; any other JSON payload
/// must parse.
fn check_payload(encoding: spoke_runtime::Encoding, payload: Bytes) -> Result<Bytes, Status> {
    if encoding != spoke_runtime::Encoding::Json {
        return Ok(payload);
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        Ok(_) => Ok(payload),
        Err(e) => Err(Status::invalid_argument(format!(
            "InvokeRequest.payload is not valid JSON: {e}"
        ))),
    }
}

/// `NOT_FOUND` for a connector the caller's tenant does not have (the same
/// words whether another tenant has it or none does), naming the ones the
/// caller may use.
pub(crate) fn no_connector(registry: &Registry, caller: &Caller, connector: &str) -> Status {
    let names: Vec<&str> = registry
        .connectors(caller.tenant())
        .map(|(n, _)| n)
        .filter(|n| caller.check_connector(n).is_ok())
        .collect();
    Status::not_found(format!(
        "no connector named `{connector}` has attached to this hub{}; connectors: {}",
        suggest::hint(connector, names.iter().copied()),
        suggest::list(&names)
    ))
}

/// The mode of the action (or search operator, always a read) if the
/// connector has it and the caller may call it; `NOT_FOUND` naming what
/// exists if not (a hidden action, to a caller that is not an admin, does
/// not exist), `PERMISSION_DENIED` if the caller's token does not allow it.
fn find_callable(
    registry: &Registry,
    caller: &Caller,
    connector: &str,
    action: &str,
    kind: InvokeKind,
) -> Result<Mode, Status> {
    let Some(ty) = registry.connector(caller.tenant(), connector) else {
        return Err(no_connector(registry, caller, connector));
    };
    callable_in(&ty.manifest, caller, connector, action, kind)
}

/// [`find_callable`] in a manifest at hand (one read over NATS).
pub(crate) fn callable_in(
    manifest: &Manifest,
    caller: &Caller,
    connector: &str,
    action: &str,
    kind: InvokeKind,
) -> Result<Mode, Status> {
    match kind {
        InvokeKind::Action => match manifest.action(action).filter(|a| caller.sees(a)) {
            Some(a) => {
                caller.check_action(connector, a)?;
                Ok(a.mode)
            }
            None => {
                let visible: Vec<&str> = manifest
                    .actions
                    .iter()
                    .filter(|a| !a.hidden)
                    .map(|a| a.name.as_str())
                    .collect();
                Err(Status::not_found(format!(
                    "connector `{connector}` has no action `{action}`{}; its actions: {}",
                    suggest::hint(action, visible.iter().copied()),
                    suggest::list(&visible)
                )))
            }
        },
        InvokeKind::SearchOperator => {
            if manifest
                .search_operators
                .iter()
                .any(|o| o.operator == action)
            {
                Ok(Mode::Read)
            } else {
                let ops: Vec<&str> = manifest
                    .search_operators
                    .iter()
                    .map(|o| o.operator.as_str())
                    .collect();
                Err(Status::not_found(format!(
                    "connector `{connector}` has no search operator `{action}`{}; its search operators: {}",
                    suggest::hint(action, ops.iter().copied()),
                    suggest::list(&ops)
                )))
            }
        }
    }
}

#[tonic::async_trait]
impl Hub for ClientApi {
    async fn invoke(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        self.invoke_as(self.asked(request)).await.map(Response::new)
    }

    type InvokeStreamStream = ReceiverStream<Result<InvokeStreamItem, Status>>;

    async fn invoke_stream(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<Self::InvokeStreamStream>, Status> {
        let (prepared, log) = self.prepare(self.asked(request))?;
        let (tx, rx) = mpsc::channel(STREAM_ITEMS);
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            let work = async {
                match prepared {
                    Prepared::Here(call, selection) => {
                        stream_call(&state, &call, selection, &tx, &log).await;
                    }
                    Prepared::Nats(forwarded, link) => {
                        let answer = forwarded.call(&state, &link).await;
                        log.answered(&answer);
                        let item = |result| InvokeStreamItem {
                            item: Some(invoke_stream_item::Item::Result(result)),
                        };
                        let _ = tx.send(answer.map(item)).await;
                    }
                }
            };
            tokio::select! {
                () = work => {}
                // The caller went away: dropping `work` cancels its calls.
                () = tx.closed() => {}
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_connectors(
        &self,
        request: Request<ListConnectorsRequest>,
    ) -> Result<Response<ListConnectorsResponse>, Status> {
        let caller = self.caller(&request, "-", "ListConnectors")?;
        let tables = self.state.lock();
        let connectors = tables
            .registry
            .all_connectors()
            .filter(|(tenant, name, _)| {
                caller.is_operator()
                    || (*tenant == caller.tenant() && caller.check_connector(name).is_ok())
            })
            .map(|(tenant, name, ty)| ConnectorSummary {
                name: name.to_owned(),
                version: ty.manifest.version.clone(),
                display_name: ty.manifest.display_name.clone(),
                description: ty.manifest.description.clone(),
                instances: tables
                    .registry
                    .instances_of(tenant, name)
                    .map(|(key, i)| InstanceState {
                        info: Some(i.info.clone()),
                        state: i.status.as_str().to_owned(),
                        session_id: i.session_id.clone(),
                        connected_unix_ms: i.connected_unix_ms,
                        in_flight: tables.pending.in_flight(key),
                        tenant: i.tenant.clone(),
                    })
                    .collect(),
            })
            .collect();
        drop(tables);
        let connectors = if caller.may_act_on(crate::ids::DEFAULT_TENANT) {
            add_detached_sidecars(connectors, &self.sidecars)
        } else {
            connectors
        };
        Ok(Response::new(ListConnectorsResponse { connectors }))
    }

    type SyncStream = crate::syncs::api::SyncStream;

    async fn sync(
        &self,
        request: Request<SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        crate::syncs::api::sync(&self.state, request).await
    }

    async fn list_syncs(
        &self,
        request: Request<ListSyncsRequest>,
    ) -> Result<Response<ListSyncsResponse>, Status> {
        crate::syncs::api::list_syncs(&self.state, request).await
    }

    async fn cancel_sync(
        &self,
        request: Request<CancelSyncRequest>,
    ) -> Result<Response<CancelSyncResponse>, Status> {
        crate::syncs::api::cancel_sync(&self.state, request).await
    }

    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeResponse>, Status> {
        let connector = request.get_ref().connector.clone();
        let caller = self.caller(&request, &connector, "Describe")?;
        let refused = |status: Status| {
            CallLog::new("-", &connector, "Describe").refused(&status);
            status
        };
        caller.check_connector(&connector).map_err(refused)?;
        let tables = self.state.lock();
        match tables.registry.connector(caller.tenant(), &connector) {
            Some(ty) => Ok(Response::new(DescribeResponse {
                manifest_json: manifest_for(ty, &caller)?,
            })),
            None => Err(refused(no_connector(&tables.registry, &caller, &connector))),
        }
    }

    type WatchCatalogStream = ReceiverStream<Result<Catalog, Status>>;

    async fn watch_catalog(
        &self,
        request: Request<WatchCatalogRequest>,
    ) -> Result<Response<Self::WatchCatalogStream>, Status> {
        // Refused at once when the token is not good; checked again at
        // each change.
        self.caller(&request, "-", "WatchCatalog")?;
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes().to_vec());
        Ok(Response::new(ReceiverStream::new(catalog::watch(
            &self.state,
            authorization,
        ))))
    }
}

impl ClientApi {
    /// The caller of a listing request; a refusal gets its log line.
    fn caller<T>(
        &self,
        request: &Request<T>,
        connector: &str,
        what: &str,
    ) -> Result<Caller, Status> {
        self.state
            .access
            .caller(request.metadata())
            .inspect_err(|status| {
                CallLog::new("-", connector, what).refused(status);
            })
    }
}

/// Runs a streamed call: events and chunks as they come, then the result(s),
/// or an error status as the last item.
async fn stream_call(
    state: &Arc<HubState>,
    call: &Call,
    selection: Option<Selection>,
    tx: &ItemSender,
    log: &CallLog,
) {
    let item = |result| InvokeStreamItem {
        item: Some(invoke_stream_item::Item::Result(result)),
    };
    let selection = match selection {
        Some(selection) => selection,
        None => match invoke::select_when_ready(state, call).await {
            Ok(selection) => selection,
            Err(status) => {
                log.refused(&status);
                let _ = tx.send(Err(status)).await;
                return;
            }
        },
    };
    match selection {
        Selection::One(key) => {
            let retry = call.target.allows_retry();
            let answer =
                invoke::run_one(state, call, &call.request_id, key, retry, Some(tx), log).await;
            log.answered(&answer);
            let _ = tx.send(answer.map(item)).await;
        }
        Selection::Broadcast(keys) => {
            let results = invoke::run_broadcast(state, call, keys, Some(tx), log).await;
            log.broadcast(&results);
            for result in results {
                if tx.send(Ok(item(result))).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Adds the supervised sidecars that are not attached (starting, restarting
/// or broken) as instances of their connector, with state `broken` or
/// `starting` and metadata `last_error`.
fn add_detached_sidecars(
    mut connectors: Vec<ConnectorSummary>,
    sidecars: &StatusMap,
) -> Vec<ConnectorSummary> {
    for (name, status) in sidecars.lock().iter() {
        if status.state == "attached" {
            continue;
        }
        let attached = connectors.iter().any(|c| {
            c.name == status.connector
                && c.instances
                    .iter()
                    .any(|i| i.info.as_ref().is_some_and(|info| info.id == *name))
        });
        if attached {
            continue;
        }
        let mut metadata = HashMap::from([("transport".to_owned(), "stdio".to_owned())]);
        if let Some(error) = &status.last_error {
            metadata.insert("last_error".to_owned(), error.clone());
        }
        let instance = InstanceState {
            info: Some(InstanceInfo {
                id: name.clone(),
                display_name: name.clone(),
                tags: Vec::new(),
                metadata,
            }),
            state: status.state.to_owned(),
            ..InstanceState::default()
        };
        match connectors.iter_mut().find(|c| c.name == status.connector) {
            Some(c) => c.instances.push(instance),
            None => connectors.push(ConnectorSummary {
                name: status.connector.clone(),
                instances: vec![instance],
                ..ConnectorSummary::default()
            }),
        }
    }
    connectors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_is_its_header_or_its_address_and_trace_headers_travel() {
        let mut request = Request::new(());
        let named = |request: &Request<()>| invoke_metadata(request);
        assert_eq!(
            named(&request),
            HashMap::from([("caller".to_owned(), "unknown".to_owned())])
        );
        request
            .metadata_mut()
            .insert(CALLER_HEADER, "billing-job".parse().unwrap());
        request.metadata_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        request
            .metadata_mut()
            .insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
        request
            .metadata_mut()
            .insert("x-other", "not forwarded".parse().unwrap());
        assert_eq!(
            named(&request),
            HashMap::from([
                ("caller".to_owned(), "billing-job".to_owned()),
                (
                    "traceparent".to_owned(),
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()
                ),
                ("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned()),
            ])
        );
    }

    #[test]
    fn empty_json_payloads_mean_no_input_and_bad_json_is_refused() {
        use spoke_runtime::Encoding;
        assert_eq!(
            check_payload(Encoding::Json, Bytes::new()).unwrap(),
            &b"{}"[..]
        );
        assert_eq!(
            // Unspecified on the wire (0) is JSON.
            check_payload(from_wire(0).unwrap(), Bytes::from_static(b" {\"a\":1}")).unwrap(),
            &b" {\"a\":1}"[..]
        );
        let err = check_payload(Encoding::Json, b"{nope".to_vec().into()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            check_payload(Encoding::RawBytes, Bytes::from_static(b"{nope")).unwrap(),
            &b"{nope"[..]
        );
    }
}
