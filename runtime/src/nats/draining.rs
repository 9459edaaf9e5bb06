//! A subscription read until it is drained: once its stop fires the
//! server is told to send nothing more, and what it already sent still
//! comes. Every endpoint of a connector on NATS reads its requests so, and
//! so does a hub serving its connectors there.

use async_nats::{Message, Subscriber};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

/// A subscription's messages, up to the last one sent before its drain.
///
/// ```no_run
/// # async fn run(client: spoke::nats::async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use spoke::nats::draining::Draining;
/// use tokio_util::sync::CancellationToken;
///
/// let stop = CancellationToken::new();
/// let mut requests = Draining::new(client.subscribe("spoke.default.echo.echo").await?, stop.clone());
/// while let Some(message) = requests.next().await {
///     // answer it; after `stop.cancel()` only what was already sent comes
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Draining {
    subscriber: Subscriber,
    stop: CancellationToken,
    draining: bool,
}

impl Draining {
    /// Reads `subscriber` until `stop`, then drains it.
    pub fn new(subscriber: Subscriber, stop: CancellationToken) -> Draining {
        Draining {
            subscriber,
            stop,
            draining: false,
        }
    }

    /// The next message; `None` once the subscription is drained (or the
    /// drain could not be asked for, when the connection is gone).
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            if self.draining {
                return self.subscriber.next().await;
            }
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    if let Err(e) = self.subscriber.drain().await {
                        tracing::warn!(target: "spoke::nats", "draining a subscription: {e}");
                        return None;
                    }
                    self.draining = true;
                }
                next = self.subscriber.next() => return next,
            }
        }
    }
}
