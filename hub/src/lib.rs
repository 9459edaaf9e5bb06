//! The Spoke hub: connectors attach over gRPC (`spoke.v1.ConnectorHub`) and
//! clients call their actions through it (`spoke.v1.Hub`); plus the `spoke`
//! command line that runs a hub ([`cli`]) and talks to one ([`client`]).
//!
//! The wire contract, including the session, heartbeat, resume, cancel and
//! drain semantics, is `proto/spoke/v1/spoke.proto`. A folder per role:
//!
//! | where | what |
//! |---|---|
//! | `api/` | the services clients call: Hub (checks, routing, deadlines, one call's life with cancel and retry, the call log) and Admin |
//! | `sessions/` | the ConnectorHub service: one Attach stream per instance (register, relay, heartbeats, the outbound queue), the pending calls, the hub's shared state |
//! | `routing/` | the registry of connector types and instances, and which instance(s) serve a call |
//! | `database` | the SQLite files of the data directory (`hub.db`, `syncs.db`): opened private, WAL, migrated by `user_version` |
//! | `syncs/` | syncs through the hub: `Sync`, `ListSyncs`, `CancelSync` and the checkpoint calls, one task per run, the store of checkpoints and runs |
//! | `trust/` | the durable store, instances' signed assertions, approval on Attach, client tokens' access, the listener's TLS |
//! | `sidecars/` | `--sidecars FILE.toml` ([`sidecars_config`]): stdio sidecars supervised, restarted and bridged to the hub as connectors |
//! | [`cli`] | the `spoke` command line: [`client`] and [`admin_client`] commands, and `spoke hub` |
//! | [`server`] | the gRPC server (ConnectorHub, Hub, Admin, `grpc.health.v1`, reflection v1 and v1alpha) and its graceful shutdown |
//! | `reflection` | server reflection v1 and v1alpha for the server: tonic-reflection's lookups, with a failed lookup answered in-stream (an `ErrorResponse`) and the stream kept open |
//! | `nats/` | `spoke hub --nats`: the attached connectors served on NATS (calls to connectors with no instance here go there through `api`) |
//! | `mcp/` | the hub as one MCP server (`spoke hub --mcp`, `spoke mcp`): every connector's actions as `<connector>__<action>` tools, by what the caller's token may call, with list changes |
//! | `guard/` | what bounds a peer before any credential: the connection limit, handshake and idle timeouts, the token checked from headers before a body is read, request bytes in flight per connection and overall |
//! | [`config`] | the hub's settings |
//! | `ids`, `wire`, `deadline` | shared pieces: request and session ids, tokens, the clock, the default tenant; the caller header and status code names; `grpc-timeout` |
//!
//! Imports point one way, and no two folders import each other:
//! `cli → server → mcp, nats → api → sessions → trust → routing → shared pieces`, and
//! `sidecars` (used by the server, the CLI and the Hub service) imports
//! nothing else of the hub, nor does `reflection` (used by the server);
//! `guard` imports only the settings and shared pieces (`deadline`; the server gives it
//! the token check as a function; `api` and `sessions` ask it for a
//! request's peer address). The
//! store needs only the shared ids; the registry does not know the routing
//! rules.

#![warn(missing_docs)]

mod api;
pub mod cli;
pub mod config;
mod database;
mod deadline;
mod guard;
mod ids;
pub mod mcp;
mod nats;
mod reflection;
mod routing;
pub mod server;
mod sessions;
mod sidecars;
pub(crate) mod syncs;
mod trust;
mod wire;

pub use cli::{admin_client, client};
pub use config::HubConfig;
pub use server::{ServeError, run, run_supervised, run_until, run_until_supervised};
pub use sidecars::config as sidecars_config;
