//! The runtime of the Spoke connector SDK.
//!
//! Connector authors use it through the `spoke` facade crate; the macros in
//! `spoke-macros` generate code against [`__private`]. The pieces:
//!
//! - [`registry`]: every connector type registered in this binary;
//! - [`instance`]: a running connector and the one invoke interface all
//!   transports share, with panic isolation, deadlines and cancellation;
//! - [`manifest`], [`schema`], [`config`]: what a connector declares;
//! - [`context`], [`error`]: what an action sees and returns;
//! - [`backoff`](mod@backoff), [`retry`](mod@retry): retry policies for connector code and transports;
//! - [`cli`]: the command line of every connector binary;
//! - [`serve`], [`hub_env`]: attaching to a Spoke hub over gRPC (the
//!   default command), configured by `SPOKE_*` variables;
//! - [`identity`], [`hub_tls`]: the instance's key and the signed
//!   assertions that prove it, and dialing the hub over TLS (shared with
//!   the `spoke` command line and the hub's sidecar bridge);
//! - [`stdio`], [`librefang`], [`describe_form`]: serving over stdin/stdout
//!   as a sidecar of the hub's supervisor or of LibreFang.

#![warn(missing_docs)]

mod attach;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod connector;
pub mod context;
pub mod decode;
pub mod describe_form;
mod dispatch;
pub mod duration;
pub mod error;
pub mod hub_env;
pub mod hub_tls;
pub mod identity;
pub mod instance;
pub mod librefang;
pub mod logging;
pub mod manifest;
mod outbox;
pub mod producer;
pub mod registry;
pub mod retry;
pub mod schema;
pub mod secret;
pub mod serve;
pub mod stdio;
mod stdio_line;
mod stdio_out;
mod stdio_request;
mod stdio_session;
mod stdio_threads;
pub mod suggest;

#[doc(hidden)]
pub mod __private;

pub use backoff::{Backoff, BackoffError};
pub use cli::main;
pub use config::{ConfigErrors, ConfigSource};
pub use connector::{ActionOutput, Connector, Input, StartError};
pub use context::{Context, EmitError, Event, EventKind};
pub use error::{ActionError, ErrorCode};
pub use hub_tls::{HubTls, hub_endpoint};
pub use identity::{InstanceKey, KeySource};
pub use instance::Instance;
pub use librefang::LibreFangEmit;
pub use manifest::{Manifest, Mode, ValueType};
pub use producer::spawn_producers;
pub use registry::{Registry, RegistryError};
pub use retry::{retry, retry_if};
pub use secret::Secret;
pub use serve::{AttachOptions, InstanceIdentity, ServeError, ServeOutcome};
pub use stdio::{StdioError, StdioOptions};
pub use tokio_util::sync::CancellationToken;
