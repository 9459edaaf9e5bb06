//! The hub-to-connector half of an Attach stream: a bounded queue of frames
//! that the stream's task can close, gracefully (what is queued, such as a
//! final `Goodbye`, still goes out) or at once (with an error status, for a
//! peer that stopped answering).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use spoke_proto::v1::HubFrame;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// How the stream's task closes the outbound half.
#[derive(Debug)]
pub(crate) enum Close {
    /// Send what is queued, then end the stream (status OK).
    Graceful,
    /// Drop what is queued and end the stream with this status.
    Abort(Status),
}

/// The response stream of one Attach call.
#[derive(Debug)]
pub(crate) struct Outbound {
    rx: mpsc::Receiver<HubFrame>,
    close: Option<oneshot::Receiver<Close>>,
    aborted: bool,
}

impl Outbound {
    /// A stream of the frames sent into `rx`, closed through `close` (or
    /// gracefully when the closing side is dropped).
    pub(crate) fn new(rx: mpsc::Receiver<HubFrame>, close: oneshot::Receiver<Close>) -> Self {
        Outbound {
            rx,
            close: Some(close),
            aborted: false,
        }
    }
}

impl Stream for Outbound {
    type Item = Result<HubFrame, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.aborted {
            return Poll::Ready(None);
        }
        if let Some(close) = this.close.as_mut()
            && let Poll::Ready(how) = Pin::new(close).poll(cx)
        {
            this.close = None;
            // Senders fail from now on; what is queued can still be taken.
            this.rx.close();
            if let Ok(Close::Abort(status)) = how {
                while this.rx.try_recv().is_ok() {}
                this.aborted = true;
                return Poll::Ready(Some(Err(status)));
            }
        }
        this.rx.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use spoke_proto::v1::{Ping, hub_frame};

    use super::*;

    fn ping(nonce: u64) -> HubFrame {
        HubFrame {
            frame: Some(hub_frame::Frame::Ping(Ping { nonce })),
        }
    }

    #[tokio::test]
    async fn graceful_close_sends_what_is_queued() {
        let (tx, rx) = mpsc::channel(4);
        let (close_tx, close_rx) = oneshot::channel();
        let mut out = Outbound::new(rx, close_rx);
        tx.send(ping(1)).await.unwrap();
        close_tx.send(Close::Graceful).unwrap();
        assert_eq!(out.next().await.unwrap().unwrap(), ping(1));
        assert!(tx.send(ping(2)).await.is_err(), "closed to new frames");
        assert!(out.next().await.is_none());
    }

    #[tokio::test]
    async fn abort_drops_the_queue_and_ends_with_the_status() {
        let (tx, rx) = mpsc::channel(4);
        let (close_tx, close_rx) = oneshot::channel();
        let mut out = Outbound::new(rx, close_rx);
        tx.send(ping(1)).await.unwrap();
        close_tx
            .send(Close::Abort(Status::unavailable("gone")))
            .unwrap();
        let status = out.next().await.unwrap().unwrap_err();
        assert_eq!(status.message(), "gone");
        assert!(out.next().await.is_none());
        // The task holding the sender and the closer may drop at any time.
        drop(tx);
    }
}
