//! Routing: which connectors and instances exist, and which instance(s)
//! serve a call.
//!
//! | module | what it is |
//! |---|---|
//! | `registry` | connector types by tenant and name, their live instances (`InstanceKey`, status, session, link to the stream), the `Registration` an instance is admitted with, round-robin cursors |
//! | `nats_link` | with `spoke hub --nats`: the connection to NATS, where calls to connectors with no instance here go, and the manifests read there |
//! | `route` | a call's route (`Target`: any, instance, display name, tag) and picking the instance(s) along it (`select`), with `NOT_FOUND` / `UNAVAILABLE` that say what exists |
//!
//! It uses only the shared ids: the registry does not know the routing
//! rules (a route hands it the name of the cursor to advance), and nothing
//! here knows sessions, trust or the services.

pub(crate) mod nats_link;
pub(crate) mod registry;
pub(crate) mod route;
