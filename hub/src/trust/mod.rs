//! Trust (see "Trust." in `proto/spoke/v1/spoke.proto`): who may attach as
//! which instance, who may call what, and the hub's TLS identity.
//!
//! | module | what it is |
//! |---|---|
//! | `store` | the durable SQLite store under `--data`: tenants, instances with their keys and approval, registration and client tokens (only their hashes) |
//! | `assertion` | checking an instance's signed assertion of its key: signature, claim, time window, replayed nonces |
//! | `approval` | `Trust`, the approval flow on Attach: trusted (sidecar) keys, known keys, registration tokens, else pending |
//! | `access` | client bearer tokens (cached from the store) and what they grant: tenant, connectors, write, admin |
//! | `tls` | the listener's certificate (`--tls-cert`, `--tls-key`), and how the hub's sidecar bridges trust it |
//!
//! The store uses nothing of the hub but the shared ids; the others use the
//! store, the registry's names for an instance (`InstanceKey`,
//! `Registration`) and the settings. Sessions, the services and the server
//! use it.

pub(crate) mod access;
pub(crate) mod approval;
pub(crate) mod assertion;
pub(crate) mod store;
pub(crate) mod tls;
