//! The hub's accepted connections, bounded in number: each one accepted
//! beyond [`ConnectionLimits::max_connections`] is closed at once, and a
//! warning counts them (at most one every ten seconds).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::transport::server::TcpIncoming;

use crate::config::ConnectionLimits;
use crate::guard::connection::{GuardedConnection, Timeouts};

/// How often, at most, the hub warns of refused connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The accepted connections, each a [`GuardedConnection`].
#[derive(Debug)]
pub(crate) struct GuardedIncoming {
    inner: TcpIncoming,
    slots: Arc<Semaphore>,
    max: usize,
    timeouts: Timeouts,
    budget: usize,
    refused: u64,
    warned_at: Option<Instant>,
}

impl GuardedIncoming {
    /// Guards the connections `inner` accepts.
    pub(crate) fn new(inner: TcpIncoming, limits: &ConnectionLimits) -> Self {
        GuardedIncoming {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            max: limits.max_connections,
            timeouts: Timeouts {
                handshake: limits.handshake_timeout,
                idle: limits.idle_timeout,
            },
            budget: limits.connection_budget,
            refused: 0,
            warned_at: None,
        }
    }

    fn refuse(&mut self, peer: Option<std::net::SocketAddr>) {
        self.refused += 1;
        let now = Instant::now();
        if self.warned_at.is_none_or(|at| now >= at + WARN_EVERY) {
            let peer = peer.map_or_else(|| "unknown peer".to_owned(), |a| a.to_string());
            tracing::warn!(
                "closed {} connection(s) over the limit of {} (the latest from {peer}); \
                 raise --max-connections if they are legitimate",
                self.refused,
                self.max
            );
            self.refused = 0;
            self.warned_at = Some(now);
        }
    }
}

impl Stream for GuardedIncoming {
    type Item = std::io::Result<GuardedConnection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let stream = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(stream))) => stream,
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            match Arc::clone(&this.slots).try_acquire_owned() {
                Ok(slot) => {
                    return Poll::Ready(Some(Ok(GuardedConnection::new(
                        stream,
                        slot,
                        this.timeouts,
                        this.budget,
                    ))));
                }
                Err(_) => {
                    let peer = stream.peer_addr().ok();
                    drop(stream);
                    this.refuse(peer);
                }
            }
        }
    }
}
