//! The hub as one MCP server: every attached connector's actions as tools
//! named `<connector>__<action>`, listed by what the caller's client token
//! may call, called through the hub's own Hub service (so checked, routed
//! and logged as `spoke call` is), with `notifications/tools/list_changed`
//! as connectors attach and leave.
//!
//! | module | what it is |
//! |---|---|
//! | `view` | a caller's catalog as tools: names, descriptions, who sees what |
//! | `backend` | the hub behind the view: this process's, or one over gRPC |
//! | `handler` | `HubMcp`, rmcp's `ServerHandler`: lists, calls, routing by `_meta`, list changes |
//! | `serve` | `spoke hub --mcp ADDR` (Streamable HTTP) and `spoke mcp` (stdio) |
//!
//! It uses the Hub service (`api`) and the shared state; the
//! [`server`](crate::server) and the CLI use it.

mod backend;
pub mod handler;
pub(crate) mod serve;
mod view;

pub use handler::{META_DISPLAY_NAME, META_INSTANCE, META_TAG};
pub use serve::StdioError;
