//! What bounds a peer before it has shown any credential (see "Limits" in
//! the README's security model):
//!
//! - [`GuardedIncoming`]: at most `max_connections` connections; each a
//!   [`GuardedConnection`](connection::GuardedConnection) closed when it
//!   opens no request within the handshake timeout or keeps none open for
//!   the idle timeout;
//! - [`GuardLayer`]: requests refused from their headers before their
//!   body is read, and request bytes in flight bounded per connection and
//!   over the hub, over-limit messages answered `RESOURCE_EXHAUSTED`.
//!
//! HTTP/2 keepalive (a PING every interval, the connection closed when one
//! goes unanswered) is the server builder's, set where the server is built.
//! The guard imports only the hub's settings and shared pieces.

mod budget;
mod connection;
mod incoming;
mod layer;

pub(crate) use connection::peer_addr;
pub(crate) use incoming::GuardedIncoming;
pub(crate) use layer::{GuardLayer, HeaderCheck};
