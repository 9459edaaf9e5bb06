//! The Spoke hub: connectors attach over gRPC (`spoke.v1.ConnectorHub`) and
//! clients call their actions through it (`spoke.v1.Hub`); plus the `spoke`
//! command line that runs a hub ([`cli`]) and talks to one ([`client`]).
//!
//! The wire contract, including the session, heartbeat, resume, cancel and
//! drain semantics, is `proto/spoke/v1/spoke.proto`. The pieces:
//!
//! - [`server`]: the gRPC server (ConnectorHub, Hub, `grpc.health.v1`,
//!   reflection v1 and v1alpha) and its graceful shutdown;
//! - `attach`: one task per Attach stream (register, relay, heartbeats),
//!   with `register` (checking a Register frame) and `outbound` (the
//!   hub-to-connector queue, closable gracefully or at once);
//! - `client_api`: the Hub service (checks, routing, deadlines);
//! - `registry`, `session`, `routing`, `pending`, `invoke`: connector types
//!   and instances, session tokens and the resume window, instance
//!   selection, in-flight calls (each with the Invoke it sent, sent again
//!   when its instance resumes), and one call's life with cancel and retry
//!   (once, elsewhere: a lost `read`, or any call refused as never started);
//!   `call_log`: the one log line of every call;
//! - `state`: the registry and pending calls behind one lock; `deadline`:
//!   `grpc-timeout`; `request_id`;
//! - [`config`]: the hub's settings;
//! - `supervisor`, `sidecar_bridge`, [`sidecars_config`]: `spoke hub
//!   --sidecars FILE.toml`, stdio sidecars run, restarted and bridged to
//!   the hub as connectors;
//! - auth (see "Trust." in the proto): `store` (the durable SQLite store
//!   under `--data`), `trust` (checking an instance's signed assertion),
//!   `approval` (pending, approved, rejected, revoked on Attach), `access`
//!   (client bearer tokens and what they grant), `admin_api` (the Admin
//!   service), `tls` (the listener's certificate).

#![warn(missing_docs)]

mod access;
mod admin_api;
pub mod admin_client;
mod approval;
mod attach;
mod bridge_identity;
mod call_log;
pub mod cli;
pub mod client;
mod client_api;
pub mod config;
mod deadline;
mod invoke;
mod outbound;
mod pending;
mod register;
mod registry;
mod request_id;
mod routing;
pub mod server;
mod session;
mod sidecar_bridge;
pub mod sidecars_config;
mod state;
mod store;
mod supervisor;
mod tls;
mod trust;

pub use config::HubConfig;
pub use server::{ServeError, run, run_supervised, run_until, run_until_supervised};
