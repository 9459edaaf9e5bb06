//! The services clients call: `spoke.v1.Hub` (list connectors, read their
//! manifests, call their actions) and `spoke.v1.Admin` (approve, reject and
//! revoke instances; registration and client tokens), and the life of each
//! call from a client's request to its one answer.
//!
//! | module | what it is |
//! |---|---|
//! | `client_api` | the Hub service: the caller's access, manifest checks, routing, deadlines, unary and streamed answers, the sidecars not attached in `ListConnectors` |
//! | `admin_api` | the Admin service: every call needs an admin token and acts on its tenant |
//! | `invoke` | one call's life: hand an Invoke to an instance, wait until the deadline, cancel, retry once elsewhere when safe |
//! | `catalog` | what one client may call, sent again as it changes (`WatchCatalog`), also read by the hub's MCP view |
//! | `forward` | with `spoke hub --nats`: a call to a connector with no instance here, checked against the manifest it describes on NATS and answered there |
//! | `call_log` | the one log line of every call (request id, connector, instances tried, action, duration, outcome) |
//!
//! It uses the connector sessions (the shared state, the pending calls),
//! routing, trust (access, approval, the store) and the sidecars' status;
//! only the [`server`](crate::server) imports it.

pub(crate) mod admin_api;
pub(crate) mod call_log;
pub(crate) mod catalog;
pub(crate) mod client_api;
pub(crate) mod forward;
pub(crate) mod invoke;
