//! # Spoke
//!
//! A declarative, macro-driven SDK for writing *connectors*: small programs
//! that give a host platform typed actions and search operators over some
//! outside system. Annotate plain Rust; the macros generate the manifest, the
//! JSON Schemas, the dispatch table and the registration, and the runtime
//! does the rest.
//!
//! ```no_run
//! use spoke::prelude::*;
//!
//! /// Echoes text back.
//! #[connector(name = "echo")]
//! pub struct Echo {
//!     /// Prefix added to every reply.
//!     #[config_field(env = "ECHO_PREFIX", default = "")]
//!     prefix: String,
//! }
//!
//! #[connector]
//! impl Echo {
//!     /// Return the text, prefixed.
//!     #[action(read)]
//!     async fn echo(&self, text: String) -> Result<String, ActionError> {
//!         Ok(format!("{}{text}", self.prefix))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode { spoke::main() }
//! ```
//!
//! See the README for every attribute, the CLI and the runtime guarantees.

pub use spoke_macros::{action, connector, producer, search_operator, sync};
pub use spoke_runtime::*;

/// Support for generated code; not a public API.
#[doc(hidden)]
pub use spoke_runtime::__private;

/// Everything a connector author usually needs: `use spoke::prelude::*;`.
///
/// It also brings `JsonSchema` (the trait and its derive) and the
/// `schemars` it derives through, so a connector crate needs no
/// `schemars` dependency of its own, and `Serialize`/`Deserialize` (whose
/// derives need `serde = { version = "1", features = ["derive"] }` in the
/// crate's `Cargo.toml`: serde's derive names its crate directly).
pub mod prelude {
    pub use spoke_macros::{action, connector, producer, search_operator, sync};
    pub use spoke_runtime::schemars::{self, JsonSchema};
    pub use spoke_runtime::serde::{Deserialize, Serialize};
    pub use spoke_runtime::{ActionError, Context, ErrorCode, Secret, SyncContext};
}

/// The README's Rust examples, compiled as doctests so they never rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
