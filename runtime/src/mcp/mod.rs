//! The `mcp` transport: a connector's actions served as Model Context
//! Protocol tools (feature `mcp`), so that any AI agent can call them.
//!
//! `<bin> mcp` serves over stdio, for an agent that starts the connector
//! itself; `<bin> mcp --http ADDR` over Streamable HTTP at
//! `http://ADDR/mcp`. One handler serves both, and every revision rmcp
//! speaks: the stateless 2026-07-28 and the handshake revisions
//! (2025-11-25, 2025-06-18, 2024-11-05).
//!
//! The tools are derived from the manifest ([`tools`] has the mapping):
//! nothing MCP-specific is declared, so nothing can drift. A call runs the
//! action as every other transport does, with its deadline, cancellation
//! (the client's `notifications/cancelled`, or a closed HTTP stream) and
//! panic isolation; progress the action reports becomes
//! `notifications/progress` when the client sent a progress token. stdout
//! carries protocol frames only: logs go to stderr.
//!
//! | module | what it is |
//! |---|---|
//! | [`options`] | [`McpOptions`]: flags and variables |
//! | [`tools`] | the action → tool mapping, and who may call what |
//! | [`handler`] | [`McpServer`], rmcp's `ServerHandler` over an instance |
//! | [`auth`] | who calls over HTTP: [`Authorize`], and the bearer tokens of `<bin> mcp --http` |
//! | [`serve`] | stdio and Streamable HTTP |
//!
//! A host serving many connectors as one MCP server (the hub) builds on the
//! same pieces: [`tools::qualified_name`] and [`tools::ToolEntry::of`] for
//! the tools, [`handler::error_result`] and [`handler::Progress`] for the
//! calls, [`serve::serve_http`] with its own [`Authorize`].
//!
//! It imports the core and the shared pieces only, never another transport.

pub mod auth;
pub mod handler;
pub mod options;
pub mod serve;
pub mod tools;

pub use auth::Authorize;
pub use handler::{Caller, McpServer};
pub use options::McpOptions;
pub use serve::{HttpLimits, McpServeError};
pub use tools::ToolSet;

/// The MCP SDK this transport is built on (rmcp, pinned), for a host that
/// writes its own handler over Spoke's pieces (the hub's MCP view).
pub use rmcp;
