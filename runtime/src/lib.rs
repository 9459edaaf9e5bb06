//! The runtime of the Spoke connector SDK.
//!
//! Connector authors use it through the `spoke` facade crate; the macros in
//! `spoke-macros` generate code against [`__private`]. It is one core and a
//! folder per transport, each behind a cargo feature:
//!
//! | where | what | feature |
//! |---|---|---|
//! | [`core`] | the connector model, and the interface every transport uses (its docs say how) | always |
//! | [`grpc`] | attached to a Spoke hub over gRPC: `serve`, the instance's key, TLS | `grpc` (default) |
//! | `http` | Omni's connector contract over HTTP: `<bin> http`, registration, syncs and actions for Omni's connector-manager | `http` |
//! | `nats` | a NATS micro service: `<bin> nats`, actions and search operators on `spoke.<tenant>.<connector>.*` in a queue group, `$SRV` discovery | `nats` |
//! | [`stdio`] | a sidecar over stdin/stdout, for the hub's supervisor and LibreFang; LibreFang's protocol types and `--describe` form | `stdio` (default) |
//! | `testing` | the test kit for connector authors: an instance in one line, calls by name, manifest rules | `testing` |
//! | [`cli`] | the command line of every connector binary: the commands of the transports compiled in | always |
//! | [`env`] | the `SPOKE_*` variables every transport reads | always |
//! | [`backoff`](mod@backoff), [`retry`](mod@retry), [`duration`], [`suggest`], [`logging`], [`signals`] | shared pieces: retry policies, `30s`-style durations, did-you-mean, the log format, SIGINT/SIGTERM | always |
//!
//! The core's modules are also at the top (`config`, `context`, ...), as
//! are the types connector code uses; the `spoke` facade re-exports all of it
//! (`spoke::config`, `spoke::Context`, ...), the paths connector crates use.
//! Imports point one way: transports and the CLI use the core; the core
//! uses no transport; no transport uses another.
//!
//! **Adding a transport**: a folder `src/<name>/` whose `mod.rs` says what it
//! speaks and guarantees, behind a feature of that name (its heavy
//! dependencies optional, enabled by the feature), using only [`core`]'s
//! interface and the shared pieces; a command in [`cli`] under the same
//! `cfg`; the feature re-exported by the `spoke` facade; a CI step that
//! builds it alone.

#![warn(missing_docs)]

#[cfg(any(feature = "http", feature = "mcp"))]
pub mod bearer;
pub mod core;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "mcp")]
pub mod mcp;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "stdio")]
pub mod stdio;
#[cfg(feature = "testing")]
pub mod testing;

pub mod backoff;
pub mod cli;
pub mod duration;
pub mod env;
pub mod logging;
pub mod retry;
pub mod signals;
pub mod suggest;

#[doc(hidden)]
pub mod __private;

#[cfg(test)]
mod props;

#[cfg(feature = "arrow")]
pub use self::core::record_batch;
pub use self::core::{
    config, connector, context, decode, encoding, error, instance, manifest, partition, payload,
    producer, registry, schema, secret, store, sync,
};
#[cfg(feature = "stdio")]
pub use stdio::{describe_form, librefang};

pub use backoff::{Backoff, BackoffError};
pub use cli::main;
pub use config::{ConfigErrors, ConfigSource};
pub use connector::{ActionOutput, Config, Connector, Input, StartError};
pub use context::{Context, EmitError, Event, EventKind};
pub use encoding::Encoding;
pub use error::{ActionError, ErrorCode};
#[cfg(feature = "grpc")]
pub use grpc::identity::{InstanceKey, KeySource};
#[cfg(feature = "grpc")]
pub use grpc::serve::{AttachOptions, InstanceIdentity, ServeError, ServeOutcome};
#[cfg(feature = "grpc")]
pub use grpc::tls::{HubTls, hub_endpoint};
pub use instance::Instance;
pub use manifest::{Manifest, Mode, ValueType};
pub use payload::{Bytes, JsonLines};
pub use producer::spawn_producers;
pub use registry::{Registry, RegistryError};
pub use retry::{retry, retry_if};
pub use secret::Secret;
#[cfg(feature = "stdio")]
pub use stdio::librefang::LibreFangEmit;
#[cfg(feature = "stdio")]
pub use stdio::{StdioError, StdioOptions};
pub use sync::{SyncContext, SyncMode};
pub use tokio_util::sync::CancellationToken;

// The majors Spoke's traits come from, for connector crates: `spoke::schemars`
// derives through `use spoke::prelude::*`, with no `schemars` dependency to
// keep in step (schemars 0.8's `JsonSchema` is another trait).
pub use prost;
pub use schemars;

/// The Arrow crates Spoke's record batches come from (feature `arrow`):
/// build batches with these, so their types are the ones Spoke encodes
/// (arrow-rs 60).
#[cfg(feature = "arrow")]
pub mod arrow {
    pub use arrow_array as array;
    pub use arrow_array::RecordBatch;
    pub use arrow_schema as schema;
    pub use arrow_select as select;
}
pub use serde;
pub use serde_json;
