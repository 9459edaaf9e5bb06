//! One accepted connection: its socket wrapped with a watchdog that closes
//! it when it opens no request in time (handshake timeout) or keeps none
//! open for too long (idle timeout), and what its requests can learn of it
//! ([`ConnectionInfo`]: the peer's address, its open requests, its budget
//! for request bytes).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TlsConnectInfo};

/// The two timeouts a connection's watchdog applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// From accept to the first request.
    pub(crate) handshake: Duration,
    /// With no request open.
    pub(crate) idle: Duration,
}

/// What a connection's requests share: how many are open, when the last
/// one closed, and the connection's budget for request bytes in flight.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    accepted: Instant,
    open_requests: AtomicUsize,
    /// Requests opened so far.
    opened: AtomicU64,
    /// When the connection last went without an open request.
    idle_since: Mutex<Instant>,
    /// Bytes of request messages this connection may have in flight.
    pub(crate) budget: Arc<Semaphore>,
}

impl ConnectionState {
    fn new(budget: usize) -> Self {
        let now = Instant::now();
        ConnectionState {
            accepted: now,
            open_requests: AtomicUsize::new(0),
            opened: AtomicU64::new(0),
            idle_since: Mutex::new(now),
            budget: Arc::new(Semaphore::new(budget)),
        }
    }

    /// Counts a request as open until the returned guard is dropped.
    pub(crate) fn open_request(self: &Arc<Self>) -> OpenRequest {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.open_requests.fetch_add(1, Ordering::AcqRel);
        OpenRequest(Arc::clone(self))
    }

    /// When the connection expires if nothing changes: `None` while a
    /// request is open.
    fn expires_at(&self, timeouts: Timeouts) -> Option<(Instant, &'static str)> {
        if self.open_requests.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.opened.load(Ordering::Relaxed) == 0 {
            return Some((
                self.accepted + timeouts.handshake,
                "opened no request within the handshake timeout",
            ));
        }
        let idle_since = *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some((
            idle_since + timeouts.idle,
            "had no request open for the idle timeout",
        ))
    }
}

/// An open request of a connection; dropping it closes the request.
#[derive(Debug)]
pub(crate) struct OpenRequest(Arc<ConnectionState>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        // The lock orders "last request closed" before a watchdog's read.
        let mut idle_since = self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.0.open_requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            *idle_since = Instant::now();
        }
    }
}

/// What the hub's services can learn of a request's connection (a request
/// extension, inside a [`TlsConnectInfo`] with TLS).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    /// The peer's address.
    pub(crate) remote: Option<SocketAddr>,
    /// The connection's shared state.
    pub(crate) state: Arc<ConnectionState>,
}

impl ConnectionInfo {
    /// The connection info of a request, with or without TLS.
    pub(crate) fn of(extensions: &http::Extensions) -> Option<&ConnectionInfo> {
        extensions.get::<ConnectionInfo>().or_else(|| {
            extensions
                .get::<TlsConnectInfo<ConnectionInfo>>()
                .map(TlsConnectInfo::get_ref)
        })
    }
}

/// The peer address of a request to the hub, if known.
pub(crate) fn peer_addr<T>(request: &tonic::Request<T>) -> Option<SocketAddr> {
    ConnectionInfo::of(request.extensions())
        .and_then(|info| info.remote)
        .or_else(|| request.remote_addr())
}

/// An accepted TCP connection under the watchdog; it holds one of the
/// hub's connection slots until it closes.
#[derive(Debug)]
pub(crate) struct GuardedConnection {
    io: TcpStream,
    info: ConnectionInfo,
    timeouts: Timeouts,
    watchdog: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl GuardedConnection {
    /// Guards `io`, which holds `slot`.
    pub(crate) fn new(
        io: TcpStream,
        slot: OwnedSemaphorePermit,
        timeouts: Timeouts,
        budget: usize,
    ) -> Self {
        let state = Arc::new(ConnectionState::new(budget));
        let first_check = state.accepted + timeouts.handshake;
        GuardedConnection {
            info: ConnectionInfo {
                remote: io.peer_addr().ok(),
                state,
            },
            io,
            timeouts,
            watchdog: Box::pin(tokio::time::sleep_until(first_check)),
            _slot: slot,
        }
    }

    /// Whether the watchdog says the connection must close (it is polled
    /// whenever a read waits, which an HTTP/2 server always has pending).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.watchdog.as_mut().poll(cx));
            let now = Instant::now();
            match self.info.state.expires_at(self.timeouts) {
                Some((at, why)) if at <= now => {
                    let peer = self
                        .info
                        .remote
                        .map_or_else(|| "unknown peer".to_owned(), |a| a.to_string());
                    tracing::debug!("closing the connection from {peer}: it {why}");
                    return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, why));
                }
                Some((at, _)) => self.watchdog.as_mut().reset(at),
                // Looked at again after an idle timeout; a request that
                // closes meanwhile restarts the idle clock.
                None => self.watchdog.as_mut().reset(now + self.timeouts.idle),
            }
        }
    }
}

impl Connected for GuardedConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for GuardedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => this.poll_expired(cx).map(Err),
            ready => ready,
        }
    }
}

impl AsyncWrite for GuardedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        handshake: Duration::from_secs(10),
        idle: Duration::from_secs(300),
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_expires_by_handshake_then_idle_and_never_with_a_request_open() {
        let state = Arc::new(ConnectionState::new(1));
        let (at, why) = state.expires_at(TIMEOUTS).unwrap();
        assert_eq!(at, state.accepted + TIMEOUTS.handshake);
        assert!(why.contains("handshake"), "{why}");
        let open = state.open_request();
        assert_eq!(state.expires_at(TIMEOUTS), None);
        let second = state.open_request();
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(open);
        assert_eq!(
            state.expires_at(TIMEOUTS),
            None,
            "one request is still open"
        );
        drop(second);
        let (at, why) = state.expires_at(TIMEOUTS).unwrap();
        assert_eq!(at, Instant::now() + TIMEOUTS.idle);
        assert!(why.contains("idle"), "{why}");
    }
}
