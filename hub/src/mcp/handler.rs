//! [`HubMcp`]: rmcp's `ServerHandler` over a hub: every connector's
//! actions as tools (see [`view`](super::view)), calls routed by the hub
//! like `spoke call`'s, and `notifications/tools/list_changed` as what the
//! caller may call changes.
//!
//! Routing: a call goes round-robin to an instance of the tool's
//! connector, unless its request `_meta` names one (arguments belong to
//! the action's schema, so routing stays out of them):
//!
//! | `_meta` key | routes to |
//! |---|---|
//! | `spoke/instance` | the instance with this id |
//! | `spoke/display_name` | an instance with this display name (round-robin among them) |
//! | `spoke/tag` | one ready instance with this tag (round-robin among them); one tool call has one result, so unlike `spoke call --tag` this is no broadcast |

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use spoke_proto::v1::{
    Catalog, Encoding, InstanceResult, InvokeKind, InvokeRequest, Route, instance_result,
    invoke_stream_item, route,
};
use spoke_runtime::mcp::handler::{Progress, error_content};
use spoke_runtime::mcp::rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter,
    Tool,
};
use spoke_runtime::mcp::rmcp::service::{
    NotificationContext, RequestContext, RoleServer, SubscriptionContext,
};
use spoke_runtime::mcp::rmcp::{ErrorData as McpError, ServerHandler};
use tonic::{Code, Status};

use super::backend::{Backend, Changes, Credentials};
use super::view::{HubTool, ToolView};

/// The `_meta` key naming the instance a call goes to.
pub const META_INSTANCE: &str = "spoke/instance";
/// The `_meta` key naming the display name of the instance a call goes to.
pub const META_DISPLAY_NAME: &str = "spoke/display_name";
/// The `_meta` key naming a tag of the instance a call goes to.
pub const META_TAG: &str = "spoke/tag";

/// Serves a hub's tools. Cheap to clone (Streamable HTTP makes one per
/// session or request).
#[derive(Clone)]
pub(crate) struct HubMcp {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// The longest a call may run; `None`: the action's own timeout only.
    timeout: Option<Duration>,
    /// Round-robin among the instances with a tag, by (connector, tag).
    tag_cursors: Mutex<HashMap<(String, String), usize>>,
    /// The views of the last catalogs seen, newest first: a catalog that
    /// did not change is not read again (its manifests parsed) per call.
    views: Mutex<Vec<(Catalog, Arc<ToolView>)>>,
}

/// How many catalogs' views are kept (one per kind of caller, roughly).
const VIEWS_KEPT: usize = 8;

impl HubMcp {
    pub(crate) fn new(backend: Backend, timeout: Option<Duration>) -> HubMcp {
        HubMcp {
            inner: Arc::new(Inner {
                backend,
                timeout,
                tag_cursors: Mutex::new(HashMap::new()),
                views: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Who calls: what the HTTP layer found, or nobody in particular (the
    /// remote hub's channel carries the token).
    fn who(extensions: &spoke_runtime::mcp::rmcp::model::Extensions) -> Credentials {
        extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Credentials>())
            .cloned()
            .unwrap_or_default()
    }

    fn view(&self, who: &Credentials) -> Result<Arc<ToolView>, McpError> {
        let catalog = self
            .inner
            .backend
            .catalog(who)
            .map_err(|s| McpError::internal_error(status_text(&s), None))?;
        let mut views = self
            .inner
            .views
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = views.iter().position(|(seen, _)| *seen == catalog) {
            let kept = views.remove(at);
            let view = Arc::clone(&kept.1);
            views.insert(0, kept);
            return Ok(view);
        }
        let view = Arc::new(ToolView::of(&catalog));
        views.insert(0, (catalog, Arc::clone(&view)));
        views.truncate(VIEWS_KEPT);
        Ok(view)
    }

    /// Watches the names `who` sees listed. It subscribes to the changes
    /// before it reads the list, so no change falls between the two, and
    /// keeps that one subscription: a change while a notification is being
    /// sent is seen on the next turn, not lost.
    fn watch_list(&self, who: Credentials) -> ListWatch {
        let changes = self.inner.backend.changes();
        let last = self.listed_now(&who);
        ListWatch {
            server: self.clone(),
            who,
            changes,
            last,
        }
    }

    fn listed_now(&self, who: &Credentials) -> Vec<String> {
        self.view(who)
            .map(|v| v.listed_names().into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The route `_meta` asks for, if any.
    fn route_of(
        &self,
        meta: &serde_json::Map<String, Value>,
        tool: &HubTool,
    ) -> Result<Option<Route>, Unroutable> {
        let text = |key: &str| -> Result<Option<String>, Unroutable> {
            match meta.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                Some(other) => Err(Unroutable::Malformed(format!(
                    "_meta `{key}` must be a non-empty string, not {other}"
                ))),
            }
        };
        let asked = [
            (META_INSTANCE, text(META_INSTANCE)?),
            (META_DISPLAY_NAME, text(META_DISPLAY_NAME)?),
            (META_TAG, text(META_TAG)?),
        ];
        let given: Vec<_> = asked.iter().filter(|(_, v)| v.is_some()).collect();
        if given.len() > 1 {
            return Err(Unroutable::Malformed(format!(
                "_meta names more than one route ({}); give one of `{META_INSTANCE}`, `{META_DISPLAY_NAME}`, `{META_TAG}`",
                given
                    .iter()
                    .map(|(k, _)| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let Some((key, Some(value))) = given.first().map(|(k, v)| (*k, v.clone())) else {
            return Ok(None);
        };
        let target = match key {
            META_INSTANCE => route::Target::Instance(value),
            META_DISPLAY_NAME => route::Target::DisplayName(value),
            _ => route::Target::Instance(
                self.pick_tagged(tool, &value)
                    .map_err(Unroutable::NoInstance)?,
            ),
        };
        Ok(Some(Route {
            target: Some(target),
        }))
    }

    /// One ready instance of the tool's connector with `tag`, round-robin.
    fn pick_tagged(&self, tool: &HubTool, tag: &str) -> Result<String, String> {
        let tagged: Vec<&str> = tool
            .instances
            .iter()
            .filter(|i| i.state == "ready")
            .filter_map(|i| i.info.as_ref())
            .filter(|info| info.tags.iter().any(|t| t == tag))
            .map(|info| info.id.as_str())
            .collect();
        if tagged.is_empty() {
            let mut tags: Vec<&str> = tool
                .instances
                .iter()
                .filter(|i| i.state == "ready")
                .filter_map(|i| i.info.as_ref())
                .flat_map(|info| info.tags.iter().map(String::as_str))
                .collect();
            tags.sort_unstable();
            tags.dedup();
            return Err(format!(
                "no ready instance of connector `{}` has tag `{tag}`; the tags of its ready instances: {}",
                tool.connector,
                if tags.is_empty() {
                    "none".to_owned()
                } else {
                    tags.join(", ")
                }
            ));
        }
        let mut cursors = self
            .inner
            .tag_cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cursor = cursors
            .entry((tool.connector.clone(), tag.to_owned()))
            .or_default();
        let id = tagged[*cursor % tagged.len()].to_owned();
        *cursor = cursor.wrapping_add(1);
        Ok(id)
    }
}

impl ServerHandler for HubMcp {
    fn get_info(&self) -> ServerConfig {
        let info = Implementation::new("spoke-hub", env!("CARGO_PKG_VERSION"))
            .with_title("Spoke hub")
            .with_description("The actions of the connectors attached to a Spoke hub.");
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(info)
        .with_instructions(
            "The actions of the connectors attached to a Spoke hub, as tools named \
             <connector>__<action>. The list changes as connectors attach and leave.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let view = self.view(&Self::who(&context.extensions))?;
        // The list depends on who asks, and changes: private, not cached.
        Ok(ListToolsResult::with_all_items(view.listed())
            .with_cache_scope(CacheScope::Private)
            .with_ttl_ms(0))
    }

    fn get_tool(&self, _name: &str) -> Option<Tool> {
        // Which tools exist depends on the caller, which this is not told.
        None
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let who = Self::who(&context.extensions);
        let view = self.view(&who)?;
        let Some(tool) = view.find(&request.name) else {
            let names = view.listed_names();
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool `{}`; the tools are: {}",
                    request.name,
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
                Some(json!({"tool": request.name, "tools": names})),
            ));
        };
        let mut meta = context.meta.0.0.clone();
        if let Some(own) = &request.meta {
            for (k, v) in own.0.0.iter() {
                meta.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let route = match self.route_of(&meta, tool) {
            Ok(route) => route,
            Err(Unroutable::Malformed(why)) => return Err(McpError::invalid_params(why, None)),
            Err(Unroutable::NoInstance(why)) => {
                return Ok(error_content("not_found", &why, None).into());
            }
        };
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        let call = InvokeRequest {
            connector: tool.connector.clone(),
            action: tool.entry.action.clone(),
            payload: serde_json::to_vec(&arguments)
                .map_err(|e| McpError::internal_error(e.to_string(), None))?
                .into(),
            encoding: Encoding::Json.into(),
            route,
            metadata: HashMap::new(),
            kind: InvokeKind::Action.into(),
            // MCP is JSON: a tool's answer is parsed as JSON.
            accept: vec![Encoding::Json.into()],
        };
        let wraps = tool.entry.wraps_output;
        let stream = match self
            .inner
            .backend
            .invoke(&who, call, self.inner.timeout)
            .await
        {
            Ok(stream) => stream,
            Err(status) => return Ok(status_result(&status).into()),
        };
        let progress = context.meta.get_progress_token();
        let mut reporter = Progress::new(progress, &context);
        let outcome = tokio::select! {
            outcome = answer(stream, &mut reporter) => outcome,
            // The client cancelled: dropping the stream cancels the call
            // at the hub, which cancels it at the connector.
            () = context.ct.cancelled() => {
                return Ok(error_content("cancelled", "the client cancelled the call", None).into());
            }
        };
        Ok(match outcome {
            Err(status) => status_result(&status),
            Ok(result) => match result.outcome {
                Some(instance_result::Outcome::Payload(payload)) => {
                    match serde_json::from_slice::<Value>(&payload) {
                        Ok(value) if wraps => CallToolResult::structured(json!({"result": value})),
                        Ok(value) => CallToolResult::structured(value),
                        Err(e) => error_content(
                            "internal",
                            &format!("the connector's answer is not JSON: {e}"),
                            None,
                        ),
                    }
                }
                Some(instance_result::Outcome::Error(e)) => {
                    error_content(&e.code, &e.message, Some(e.details_json))
                }
                None => error_content("internal", "the hub's answer has no outcome", None),
            },
        }
        .into())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // A session (stdio, or Streamable HTTP before 2026-07-28): told of
        // every change of its list on the session itself.
        let who = Self::who(&context.extensions);
        let mut list = self.watch_list(who);
        let peer = context.peer;
        tokio::spawn(async move {
            while list.next().await.is_some() {
                if peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        });
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        // 2026-07-28: told on the `subscriptions/listen` stream.
        let who = Self::who(&subscription.request_context().extensions);
        let mut list = self.watch_list(who);
        loop {
            tokio::select! {
                () = subscription.cancelled() => return Ok(()),
                next = list.next() => {
                    if next.is_none() || subscription.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// The list of tools one client sees, and its changes (see
/// `HubMcp::watch_list`).
struct ListWatch {
    server: HubMcp,
    who: Credentials,
    changes: Changes,
    last: Vec<String>,
}

impl ListWatch {
    /// Completes when the listed names differ from the last ones seen,
    /// `None` when no change will come.
    async fn next(&mut self) -> Option<()> {
        loop {
            if !self.changes.changed().await {
                return None;
            }
            let Ok(view) = self.server.view(&self.who) else {
                continue;
            };
            let names: Vec<String> = view.listed_names().into_iter().map(str::to_owned).collect();
            if names != self.last {
                self.last = names;
                return Some(());
            }
        }
    }
}

/// Why a call's `_meta` gives no route.
enum Unroutable {
    /// `_meta` is wrong: a protocol error.
    Malformed(String),
    /// No instance fits: a failed call, as the hub answers for an unknown
    /// instance.
    NoInstance(String),
}

/// Reads a streamed call to its result: progress events to the client,
/// chunks put together (a retried attempt's replace the lost one's).
async fn answer(
    mut stream: super::backend::ItemStream,
    reporter: &mut Progress<'_>,
) -> Result<InstanceResult, Status> {
    let mut attempt = String::new();
    let mut chunks: Vec<u8> = Vec::new();
    while let Some(item) = stream.next().await {
        match item?.item {
            Some(invoke_stream_item::Item::Event(event)) if event.kind == "progress" => {
                if let Ok(event) = serde_json::from_str(&event.json) {
                    reporter.report(event).await;
                }
            }
            Some(invoke_stream_item::Item::Chunk(chunk)) => {
                if chunk.request_id != attempt {
                    attempt = chunk.request_id;
                    chunks.clear();
                }
                chunks.extend_from_slice(&chunk.data);
            }
            Some(invoke_stream_item::Item::Result(mut result)) => {
                if !chunks.is_empty() {
                    match &mut result.outcome {
                        Some(instance_result::Outcome::Payload(p)) if p.is_empty() => {
                            *p = chunks.into();
                        }
                        None => {
                            result.outcome = Some(instance_result::Outcome::Payload(chunks.into()));
                        }
                        _ => {}
                    }
                }
                return Ok(result);
            }
            _ => {}
        }
    }
    Err(Status::unavailable(
        "the hub ended the call without an answer",
    ))
}

/// A hub refusal as a failed tool call, with the Spoke error code that
/// says the same (`PERMISSION_DENIED` is `unauthorized`, ...).
fn status_result(status: &Status) -> CallToolResult {
    let code = match status.code() {
        Code::PermissionDenied | Code::Unauthenticated => "unauthorized",
        Code::NotFound => "not_found",
        Code::InvalidArgument | Code::OutOfRange => "invalid_input",
        Code::FailedPrecondition => "failed_precondition",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::Cancelled => "cancelled",
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted => "unavailable",
        _ => "internal",
    };
    error_content(code, status.message(), None)
}

fn status_text(status: &Status) -> String {
    format!(
        "{}: {}",
        crate::wire::code_name(status.code()),
        status.message()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_refusals_become_spoke_error_codes() {
        let text = |s: Status| {
            serde_json::to_value(status_result(&s)).unwrap()["content"][0]["text"].clone()
        };
        assert_eq!(
            text(Status::permission_denied("a write action")),
            "error[unauthorized]: a write action"
        );
        assert_eq!(text(Status::not_found("nope")), "error[not_found]: nope");
        assert_eq!(
            text(Status::deadline_exceeded("late")),
            "error[deadline_exceeded]: late"
        );
        assert_eq!(text(Status::unknown("?")), "error[internal]: ?");
    }
}
