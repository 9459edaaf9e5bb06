//! Sidecars (`spoke hub --sidecars FILE.toml`): stdio connectors the hub
//! runs, restarts, and bridges to itself as ordinary gRPC connectors.
//!
//! | module | what it is |
//! |---|---|
//! | [`config`] | the `--sidecars` TOML file: name, command, args, env, timeouts, `max_failures` |
//! | `supervisor` | one task per sidecar: run it, restart it with backoff, stop after `max_failures` (the circuit breaker) |
//! | `bridge` | one run of a sidecar: spawn it, wait for `ready`, attach to the hub over gRPC and translate frames to the stdio protocol and back |
//! | `identity` | the Ed25519 keys the bridges attach with under auth (`<data>/keys/sidecar_<name>.pem`), which the hub trusts |
//! | `status` | what is known about each sidecar (starting, attached, broken; its last error), shown by `ListConnectors` |
//!
//! A bridge talks to the hub only over the wire, like any connector: this
//! folder imports nothing else of the hub (its tests check a bridge's
//! credentials with [`trust`](crate::trust)'s assertion check). The
//! server starts the supervisor; the Hub service reads the status.

pub(crate) mod bridge;
pub mod config;
pub(crate) mod identity;
pub(crate) mod status;
pub(crate) mod supervisor;
