//! The connector model: what a connector is and how it is run, knowing no
//! transport.
//!
//! | module | what it is |
//! |---|---|
//! | [`connector`] | the [`Connector`](connector::Connector) trait the macros implement, inputs and outputs |
//! | [`registry`] | every connector type registered in this binary |
//! | [`instance`] | a running connector and the one invoke interface |
//! | [`context`] | what an action sees: deadline, cancellation, metadata, events |
//! | [`error`] | what an action returns when it fails |
//! | [`manifest`], [`schema`] | what a connector declares, and its JSON Schemas |
//! | [`config`], [`secret`] | its configuration, every problem reported at once; secrets never shown |
//! | [`producer`] | long-running producers, restarted with backoff |
//! | [`partition`] | which live instance owns a key: rendezvous hashing with a fixed hash |
//! | `constraints` | the checks generated for constraints on named action parameters (`range`, `length`, `regex`) |
//! | [`decode`] | decoding an input into the action's type, with the path of a bad field |
//! | [`store`] | `ctx.store()`: the connector's declared key-value buckets, local files or JetStream KV |
//! | [`sync`] | syncs: runs that walk an outside system into a host, with typed checkpoints |
//!
//! # The interface every transport uses
//!
//! A transport (gRPC, stdio, and those to come: HTTP, NATS, MCP) turns its
//! wire into calls of this interface and their results back into its wire,
//! and uses nothing else of the core:
//!
//! 1. **Start** an [`Instance`](instance::Instance) once, with
//!    [`Instance::start`](instance::Instance::start)`(connector type,
//!    `[`ConfigSource`](config::ConfigSource)`)`: it loads the config
//!    (every problem at once, in a
//!    [`StartError`](connector::StartError)) and runs the init hook.
//! 2. **Build a [`Context`](context::Context)** per call with
//!    [`Context::builder`](context::Context::builder)`(request id, name)`:
//!    its deadline (`.deadline(at)` / `.timeout(d)`), its cancellation token
//!    (`.cancellation(token)`: the transport cancels it when its peer
//!    cancels or goes away), the caller's metadata (`.metadata(map)`), an
//!    event sender (`.events(tx)`) through which progress, logs and
//!    custom events come out while the call runs, and, where several
//!    instances share work, the instance's
//!    [`Partition`](partition::Partition) (`.partition(p)`; one of one
//!    when not given).
//! 3. **Invoke** an action by name with its input as bytes or a JSON value
//!    ([`Instance::invoke`](instance::Instance::invoke)`(name,
//!    `[`Input`](connector::Input)`, ctx)`), or **resolve** a search
//!    operator's value ([`Instance::resolve`](instance::Instance::resolve)).
//!    Decoding happens before the returned future is polled; the future
//!    owns what it needs, so it can be spawned, and it isolates panics,
//!    enforces the deadline and answers cancellation (within
//!    [`Instance::with_cancel_grace`](instance::Instance::with_cancel_grace)).
//! 4. **Answer** with what the future returns: an
//!    [`ActionOutput`](connector::ActionOutput) (already JSON), or an
//!    [`ActionError`](error::ActionError) with its code, message and
//!    details. Exactly one answer per accepted call is the transport's duty.
//! 5. **Producers** run beside calls: [`spawn_producers`](producer::spawn_producers)
//!    gives their events to the transport until its token is cancelled.
//! 6. **Syncs** run when the host asks:
//!    [`Instance::start_sync`](instance::Instance::start_sync)`(`[`SyncRequest`](sync::SyncRequest)`,
//!    sink)` with a [`SyncSink`](sync::SyncSink) the transport implements
//!    (where events and checkpoints go); the returned
//!    [`SyncRun`](sync::SyncRun) gives its counters, cancels it, and
//!    resolves to its [`SyncOutcome`](sync::SyncOutcome).
//!
//! The manifest ([`Instance::manifest`](instance::Instance::manifest)) is
//! what a transport advertises: actions with their input and output
//! schemas, search operators, capabilities, the config schema.

pub mod config;
pub mod connector;
#[doc(hidden)]
pub mod constraints;
pub mod context;
pub mod decode;
pub mod encoding;
pub mod error;
pub mod instance;
pub mod manifest;
pub mod partition;
pub mod payload;
pub mod producer;
#[cfg(feature = "arrow")]
pub mod record_batch;
pub mod registry;
pub mod schema;
pub mod secret;
pub mod store;
pub mod sync;
