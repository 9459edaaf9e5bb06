//! The `grpc` transport: a connector attached to a Spoke hub over gRPC
//! (feature `grpc`, on by default).
//!
//! It speaks `proto/spoke/v1/spoke.proto` (the `spoke-proto` crate): one
//! `ConnectorHub.Attach` stream per instance, which registers the manifest
//! with a signed assertion of the instance's key, then carries Invoke,
//! Cancel, Resolve and Drain down and Results, Chunks and Events up. Every
//! call goes to the core's one interface ([`Instance::invoke`] /
//! [`Instance::resolve`] with a [`Context`] carrying its deadline,
//! cancellation and event sender), and every accepted call gets exactly one
//! Result, kept in an outbox until the hub acknowledges it, across
//! reconnects.
//!
//! | module | what it is |
//! |---|---|
//! | [`serve`] | the `serve` command: attach, reconnect with backoff, drain, shut down |
//! | [`options`] | [`AttachOptions`](options::AttachOptions): identity, hub, key, limits |
//! | [`env`] | the `SPOKE_*` variables `serve` reads |
//! | [`tls`] | dialing the hub over TLS (shared with the `spoke` CLI and the hub's sidecar bridge) |
//! | [`identity`] | the instance's Ed25519 key and the signed assertions that prove it |
//! | `attach` | one Attach session: Register, the frames in and out, heartbeats |
//! | `dispatch` | running the calls of a session in the core, bounded by `max_in_flight` |
//! | `outbox` | results not yet acknowledged, resent after a reconnect |
//! | `syncs` | the sync runs the hub starts: a sink that waits for the hub's acknowledgements |
//!
//! It imports the core and the shared pieces only, never another transport.
//!
//! [`Instance::invoke`]: crate::Instance::invoke
//! [`Instance::resolve`]: crate::Instance::resolve
//! [`Context`]: crate::Context

mod attach;
mod dispatch;
pub mod env;
pub mod identity;
pub mod options;
mod outbox;
pub mod serve;
mod syncs;
pub mod tls;
pub mod wire_encoding;

pub use syncs::wire_counters;
