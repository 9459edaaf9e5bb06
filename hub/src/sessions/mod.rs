//! Connector sessions: the `spoke.v1.ConnectorHub` service, where each
//! connector instance holds one Attach stream, and the hub's shared state
//! that a session lives in (registered, approved or pending, lost and
//! resumed within the resume window, ended), with the calls in flight on it.
//!
//! | module | what it is |
//! |---|---|
//! | `attach` | one task per Attach stream: Register, Registered, relaying frames, heartbeats, drain and Goodbye |
//! | `register` | checking a `Register` frame (its sizes against the limits, then protocol, manifest, instance id, tenant) into a `Registration` |
//! | `rate` | the per-address rate limit on Attach streams (a bounded keyed token bucket, governor's GCRA) |
//! | `outbound` | the hub-to-connector queue of a stream, closable gracefully or at once |
//! | `pending` | in-flight calls by request id, each answered exactly once; resent when an instance resumes |
//! | `state` | `HubState`: the registry and the pending calls behind one lock, request ids, trust and access, the rate limit, shutdown; a session's transitions; the expiry of pending instances |
//!
//! It uses routing (the registry), trust (approval on Attach, access kept
//! in the state) and the shared pieces; the client [`api`](crate::api) and
//! the [`server`](crate::server) use it.

pub(crate) mod attach;
pub(crate) mod outbound;
pub(crate) mod pending;
pub(crate) mod rate;
pub(crate) mod register;
#[cfg(test)]
mod register_props;
pub(crate) mod state;
