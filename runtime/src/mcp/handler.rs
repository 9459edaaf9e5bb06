//! [`McpServer`]: rmcp's `ServerHandler` over one connector instance, the
//! same for stdio and Streamable HTTP, and for every protocol revision
//! rmcp speaks (the stateless 2026-07-28 and the handshake ones back to
//! 2024-11-05).

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    Implementation, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProgressToken, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::tools::{Lookup, ToolSet};
use crate::connector::Input;
use crate::context::{Context, Event, EventKind};
use crate::encoding::Encoding;
use crate::error::ActionError;
use crate::instance::Instance;

/// Who is calling: set by the HTTP layer from the caller's token; over
/// stdio, the local user (an administrator unless `--no-admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Sees and calls `admin_only` and `hidden` tools.
    pub admin: bool,
}

/// Serves one connector instance's actions as MCP tools. Cheap to clone
/// (the HTTP transport makes one per request).
#[derive(Clone)]
pub struct McpServer {
    inner: Arc<Inner>,
}

struct Inner {
    instance: Instance,
    tools: ToolSet,
    /// The caller when the transport says nothing (stdio).
    default_caller: Caller,
    timeout: Option<Duration>,
    in_flight: Semaphore,
}

impl McpServer {
    /// A server for `instance`; `default_caller` is who calls when the
    /// transport does not say (stdio).
    pub fn new(
        instance: Instance,
        default_caller: Caller,
        timeout: Option<Duration>,
        max_in_flight: usize,
    ) -> McpServer {
        let tools = ToolSet::new(instance.manifest());
        McpServer {
            inner: Arc::new(Inner {
                instance,
                tools,
                default_caller,
                timeout,
                in_flight: Semaphore::new(max_in_flight),
            }),
        }
    }

    /// The caller of a request: the HTTP layer's [`Caller`], else the default.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Caller {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .copied()
            .unwrap_or(self.inner.default_caller)
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let manifest = self.inner.instance.manifest();
        let mut info = Implementation::new(manifest.name.clone(), manifest.version.clone())
            .with_title(manifest.display_name.clone());
        if !manifest.description.is_empty() {
            info = info.with_description(manifest.description.clone());
        }
        let config = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(info);
        if manifest.description.is_empty() {
            config
        } else {
            config.with_instructions(manifest.description.clone())
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let admin = self.caller(&context).admin;
        // The list depends on who asks: only that caller may cache it.
        Ok(
            ListToolsResult::with_all_items(self.inner.tools.listed(admin))
                .with_cache_scope(CacheScope::Private),
        )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.tools.get(name).map(|e| e.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let admin = self.caller(&context).admin;
        let entry = match self.inner.tools.lookup(&request.name, admin) {
            Lookup::Callable(entry) => entry,
            Lookup::AdminOnly(entry) => {
                let e = ActionError::unauthorized(format!(
                    "tool `{}` is for administrators only",
                    entry.action
                ));
                return Ok(error_result(&e).into());
            }
            Lookup::Unknown(names) => {
                return Err(McpError::invalid_params(
                    format!(
                        "unknown tool `{}`; the tools are: {}",
                        request.name,
                        names.join(", ")
                    ),
                    Some(json!({"tool": request.name, "tools": names})),
                ));
            }
        };
        // The request is ours: its arguments are taken, not cloned.
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let progress = context.meta.get_progress_token();
        // `RequestId`'s Display is the id's text (a number or the string).
        let request_id = format!("mcp-{}", context.id);
        // MCP is JSON: tools are the actions that take and give it.
        let mut builder = Context::builder(request_id, entry.action.as_str())
            .cancellation(context.ct.clone())
            .accept([Encoding::Json]);
        if let Some(timeout) = self.inner.timeout {
            builder = builder.timeout(timeout);
        }
        // A channel for the action's events only when the client asked for
        // progress (a bounded channel allocates its first block up front).
        let mut events = None;
        if progress.is_some() {
            let (tx, rx) = mpsc::channel::<Event>(64);
            builder = builder.events(tx);
            events = Some(rx);
        }
        let ctx = builder.build();
        let Ok(_permit) = self.inner.in_flight.acquire().await else {
            return Ok(
                error_result(&ActionError::unavailable("the connector is shutting down")).into(),
            );
        };
        let call = self
            .inner
            .instance
            .invoke(&entry.action, Input::Value(&arguments), ctx);
        let outcome = match events {
            None => call.await,
            Some(mut rx) => {
                tokio::pin!(call);
                let mut reporter = Progress::new(progress, &context);
                let outcome = loop {
                    tokio::select! {
                        biased;
                        Some(event) = rx.recv() => reporter.report(event).await,
                        outcome = &mut call => break outcome,
                    }
                };
                // Every event the action emitted came before its answer.
                while let Ok(event) = rx.try_recv() {
                    reporter.report(event).await;
                }
                outcome
            }
        };
        if let Err(e) = &outcome {
            tracing::info!(
                target: "spoke::mcp",
                tool = %entry.action,
                "call ended: {}: {}",
                e.code(),
                e.message()
            );
        }
        Ok(match outcome {
            Ok(output) => {
                let json = output
                    .require_json()
                    .map_err(|e| McpError::internal_error(e.message().to_owned(), None))?;
                let value: Value = serde_json::from_str(json.get()).map_err(|e| {
                    McpError::internal_error(format!("the output is not JSON: {e}"), None)
                })?;
                let value = if entry.wraps_output {
                    json!({ "result": value })
                } else {
                    value
                };
                CallToolResult::structured(value)
            }
            Err(e) => error_result(&e),
        }
        .into())
    }
}

/// A failed call: `isError`, the code and message as text (and the
/// details, when there are some, as a second block); no structured content,
/// which clients would check against the success schema.
pub fn error_result(error: &ActionError) -> CallToolResult {
    error_content(
        error.code().as_str(),
        error.message(),
        error.details().map(|d| d.to_string()),
    )
}

/// [`error_result`] from its parts: `error[<code>]: <message>`, then the
/// details (JSON text), if any, as a second block.
///
/// ```
/// use spoke::mcp::handler::error_content;
/// let result = error_content("not_found", "no ticket 7", Some(r#"{"id":7}"#.into()));
/// assert_eq!(result.is_error, Some(true));
/// assert_eq!(result.content.len(), 2);
/// assert!(result.structured_content.is_none());
/// ```
pub fn error_content(code: &str, message: &str, details: Option<String>) -> CallToolResult {
    let mut content = vec![ContentBlock::text(format!("error[{code}]: {message}"))];
    if let Some(details) = details.filter(|d| !d.is_empty()) {
        content.push(ContentBlock::text(details));
    }
    CallToolResult::error(content)
}

/// Sends an action's progress as `notifications/progress`, when the
/// client asked with a progress token: in order, each higher than the one
/// before (the protocol's rule; a lower one is dropped).
pub struct Progress<'a> {
    token: Option<ProgressToken>,
    context: &'a RequestContext<RoleServer>,
    last: Option<f64>,
}

impl<'a> Progress<'a> {
    /// Reports to the client of `context` when `token` is some.
    pub fn new(token: Option<ProgressToken>, context: &'a RequestContext<RoleServer>) -> Self {
        Progress {
            token,
            context,
            last: None,
        }
    }

    /// Sends `event` if it is progress, higher than the last sent.
    pub async fn report(&mut self, event: Event) {
        let (
            Some(token),
            EventKind::Progress {
                progress,
                total,
                message,
            },
        ) = (&self.token, event.kind)
        else {
            return;
        };
        if self.last.is_some_and(|last| progress <= last) {
            return;
        }
        self.last = Some(progress);
        let mut param = ProgressNotificationParam::new(token.clone(), progress);
        if let Some(total) = total {
            param = param.with_total(total);
        }
        if let Some(message) = message {
            param = param.with_message(message);
        }
        if let Err(e) = self.context.peer.notify_progress(param).await {
            tracing::debug!("a progress notification was not sent: {e}");
        }
    }
}
