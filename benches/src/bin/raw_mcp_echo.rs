//! The baseline of path 10: a minimal MCP server with the official Rust SDK
//! (rmcp, pinned as the runtime pins it) and one hand-written `echo` tool,
//! the way a connector written straight against rmcp would serve it.
//!
//! It serves over stdio (`rmcp::transport::stdio()`, as `<connector> mcp`
//! does) on tokio's multi-thread runtime (a worker per core, as `<connector>
//! mcp` runs). Its `ServerHandler` is written by hand: `get_info` with tools
//! enabled, `list_tools` with the one tool (the input and output schemas of
//! the echo example's tool), and `call_tool`, which takes `text` from the
//! arguments and answers `CallToolResult::structured({"result": text})`, the
//! structured content `<echo> mcp` answers (a string output is wrapped as
//! `{"result": ..}`, since MCP's structured content is an object). No
//! logger is installed; nothing is written to stdout but protocol frames.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use serde_json::{Value, json};

#[derive(Clone)]
struct Echo {
    tool: Tool,
}

/// A JSON object literal as rmcp's `JsonObject`.
fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

impl Echo {
    fn new() -> Echo {
        // The schemas `<echo> mcp` lists for its tool.
        let input = object(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
            "additionalProperties": false,
        }));
        let output = object(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"result": {"type": "string"}},
            "required": ["result"],
        }));
        let tool = Tool::new("echo", "Return the text, prefixed.", input)
            .with_title("Echo")
            .with_raw_output_schema(Arc::new(output))
            .with_annotations(ToolAnnotations::with_title("Echo").read_only(true));
        Echo { tool }
    }
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("raw-mcp-echo", "0.1.0"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(vec![self.tool.clone()]))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (name == self.tool.name).then(|| self.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != "echo" {
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`; the tools are: echo", request.name),
                None,
            ));
        }
        let text = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("text"))
            .and_then(Value::as_str)
            .ok_or_else(|| McpError::invalid_params("`text` must be a string", None))?;
        Ok(CallToolResult::structured(json!({ "result": text })).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let running = Echo::new().serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}
