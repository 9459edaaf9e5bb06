//! The hub on NATS (`spoke hub --nats URL`): its connectors and the ones
//! served on NATS behave as one fleet.
//!
//! - `export`: every connector attached to this hub (over gRPC or as a
//!   sidecar) is served on NATS under the subjects a connector serving
//!   NATS itself uses (`spoke.<tenant>.<connector>.<action>` and the rest,
//!   in the same queue group), so NATS callers, other hubs included, reach
//!   it; the hub routes each such call to its instances like any other.
//! - `api::forward`: a client of this hub calling a connector that has no
//!   instance here is answered over NATS, by a connector serving NATS or
//!   by the hub it is attached to. The client's token is checked here,
//!   against the manifest the connector describes on NATS, as for a
//!   connector attached here.
//!
//! A call that came over NATS is answered only by this hub's own
//! instances, never sent back to NATS: no call goes round in circles.
//! Who may publish on `spoke.<tenant>.>` is NATS's to say (the README's
//! "Hubs on NATS" gives the permissions per tenant).

pub(crate) mod export;
