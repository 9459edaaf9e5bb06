//! The `http` transport: a connector served over Omni's connector
//! contract (feature `http`), so that every Spoke connector is an Omni
//! connector.
//!
//! `<bin> http` listens on `127.0.0.1:$PORT` (or `--listen ADDR`) and
//! serves the routes Omni's connector-manager calls: `GET /health`,
//! `GET /manifest`, `POST /sync`, `GET /sync/{id}`, `POST /cancel` and
//! `POST /action`. With `CONNECTOR_MANAGER_URL` and `CONNECTOR_HOST_NAME`
//! it registers its manifest with the manager right after binding, then
//! every 30 s, and sends a sync's events, checkpoints and end back to it.
//! Where Omni's contract has a trap, Spoke avoids it:
//!
//! - `/cancel` frees the source's slot within the cancel grace, even for a
//!   sync that ignores its token, so a stuck run never makes every later
//!   `/sync` a 409;
//! - a `/sync` the manager sends again for a run already started (after
//!   its own timeout) is answered `started`, not 409;
//! - a run that stored no checkpoint stores the one it started from before
//!   `complete`, which would otherwise wipe the source's checkpoint;
//! - every call to the manager has connect and request timeouts and is
//!   retried on transport errors, 429 (honouring `Retry-After`) and 5xx;
//! - a panicking sync is reported failed, not left for the stale sweep;
//! - the manifest is checked against the manager's schema rules before
//!   the connector starts, naming the action and the keyword;
//! - an optional bearer token (`SPOKE_HTTP_TOKEN`) guards every route but
//!   `/health`, and `SPOKE_MANAGER_TOKEN` is sent to the manager; bodies
//!   are bounded (16 MiB by default, 413 beyond).
//!
//! | module | what it is |
//! |---|---|
//! | [`options`] | [`HttpOptions`]: address, manager, tokens, limits, from the environment |
//! | [`serve`] | binding, registering, serving, shutting down |
//! | `routes` | the routes, their bodies and status codes |
//! | `auth` | the bearer token |
//! | [`manifest`] | the Omni manifest, and the manager's schema rules |
//! | `sources` | one connector instance per source, from its config and credentials |
//! | `runs` | the runs under way, one per (source, slot class), and how they end |
//! | `sink` | a run's events and checkpoints sent to the manager |
//! | [`manager`] | the calls to the manager, with timeouts and retries |
//! | [`wire`] | Omni's JSON bodies |
//!
//! It imports the core and the shared pieces only, never another transport.

mod auth;
pub mod manager;
pub mod manifest;
pub mod options;
mod routes;
mod runs;
pub mod serve;
mod sink;
mod sources;
pub mod wire;

pub use manifest::{manifest_schema_problems, omni_manifest, omni_schema_problems};
pub use options::HttpOptions;
pub use serve::HttpError;
pub use sink::omni_event;
