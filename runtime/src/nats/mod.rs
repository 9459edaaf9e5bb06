//! The `nats` transport: a connector served as a NATS micro service
//! (feature `nats`), so that calls spread over every instance on every
//! machine that shares a NATS server or cluster.
//!
//! `<bin> nats` connects to `SPOKE_NATS_URL` and answers, for tenant `t`
//! and connector `c`:
//!
//! - each action on `spoke.t.c.<action>` and each search operator on
//!   `spoke.t.c.operator.<operator>`, in queue group `q`, so one instance
//!   takes each call; the manifest on `spoke.t.c.describe`;
//! - the same under `spoke.t.c.instance.<id>.` for this instance alone;
//! - ADR-32's `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (service name =
//!   connector name, version = connector version, id = instance id,
//!   metadata with the tenant, display name, tags and the manifest's
//!   SHA-256), counting every answer and every error.
//!
//! A call carries Spoke's semantics ([`wire`]): the caller's
//! `Spoke-Timeout` is the action's deadline, `Spoke-Request-Id` lets it
//! cancel on `spoke.t.c.cancel.<id>`, and an error answers with
//! `Nats-Service-Error`/`-Code` **and** a JSON body `{code, message,
//! details}`. Panics, deadlines and cancellation behave as on every
//! transport; `SPOKE_MAX_IN_FLIGHT` bounds the calls run at once; SIGTERM
//! drains. Each instance puts its status in the KV bucket `spoke_status`
//! ([`status`]) while it lives.
//!
//! | module | what it is |
//! |---|---|
//! | [`options`] | [`NatsOptions`]: the server, credentials, tenant, instance, limits, from the environment |
//! | [`connect`] | the connection: URL credentials, creds file, TLS |
//! | [`subjects`] | the subject layout and the token rule |
//! | [`wire`] | the headers of a call and the shape of an error answer |
//! | [`micro`] | ADR-32: the `$SRV` answers and the endpoints' counters |
//! | [`draining`] | a subscription read until it is drained, as every endpoint reads its requests |
//! | [`serve`] | the endpoints, each request to its one answer, cancels, drain |
//! | [`sync`] | sync runs started by a request, events to the caller's subject, checkpoints in KV |
//! | [`kv_store`] | `ctx.store()` on NATS: each declared bucket a JetStream KV bucket |
//! | [`status`] | the `spoke_status` bucket: each instance's heartbeat, `spoke ls --nats` |
//! | [`membership`] | the live instances sharing the work, from the status bucket, for [`Context::partition`](crate::context::Context::partition) |
//! | [`client`] | calling a connector over NATS (the CLI, the hub) |
//!
//! It imports the core and the shared pieces only, never another transport.

pub mod client;
pub mod connect;
pub mod draining;
pub mod kv_store;
pub mod membership;
pub mod micro;
pub mod options;
pub mod serve;
pub mod status;
pub mod subjects;
pub mod sync;
pub mod wire;

pub use async_nats;
pub use options::{NatsConnect, NatsOptions};
pub use serve::NatsServeError;
