//! The test kit for connector authors (feature `testing`, for
//! `[dev-dependencies]`: `spoke = { version = "...", features = ["testing"] }`).
//!
//! | item | what it does |
//! |---|---|
//! | [`TestConnector`] | builds an instance from a config map (init hook run) and calls actions by name, typed or JSON; [`TestConnector::run`] adds a deadline, cancellation and metadata, and keeps the events and progress |
//! | [`TestConnector::sync`] | runs a sync into a [`MemorySink`](crate::sync::MemorySink) (documents, events, checkpoints), from the sink's last checkpoint or a given one |
//! | [`Conformance`] | the connector's own binary through every transport compiled into it (in-process `call`, `stdio`, ...) with the same calls: the same outputs and error codes everywhere |
//! | [`check_manifest`] | every rule Spoke knows over every registered connector: duplicate names across modules, schemas valid and self-contained, Omni's and MCP's rules |
//!
//! Everything goes through the same [`Instance`](crate::Instance) the
//! transports use, so a test sees what a host would: decoding errors with
//! their paths, timeouts, panics turned into `panicked` errors.

mod conformance;
mod harness;
mod manifest_check;
#[cfg(feature = "nats")]
mod nats_leg;

pub use conformance::{Answer, Case, Conformance, Leg, Report, legs};
pub use harness::{Call, Outcome, Progress, TestConnector};
pub use manifest_check::{
    MCP_TOOL_NAME_MAX, ManifestProblems, OMNI_FORBIDDEN_KEYWORDS, Problem, check_manifest,
    check_manifest_of, mcp_tool_name_problem,
};
