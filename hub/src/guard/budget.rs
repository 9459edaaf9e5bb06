//! Request bytes in flight, bounded: a request body that reads each gRPC
//! message's length prefix, refuses a message longer than the method
//! allows before its bytes are read, and takes each byte of a message, as
//! it arrives, from its connection's budget and from the hub's, giving
//! them back once the message is whole (tonic then decodes it). A message
//! begun must be whole within [`MESSAGE_TIME_LIMIT`]: a peer that announces
//! a message and stalls holds neither budget nor the stream for long.
//!
//! A message over its limit, or bytes the budgets cannot hold, end the
//! request with `RESOURCE_EXHAUSTED` (the gRPC convention for over-limit
//! messages); a stalled message with `DEADLINE_EXCEEDED`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::Status;

/// How long a message may take to arrive whole once its prefix is in.
pub(crate) const MESSAGE_TIME_LIMIT: Duration = Duration::from_secs(30);

/// The length prefix of a gRPC message: a compression flag and a
/// big-endian `u32`.
const PREFIX_BYTES: usize = 5;

/// The budgets a request's messages draw on, and how long they may be.
#[derive(Debug, Clone)]
pub(crate) struct Budgets {
    /// The connection's.
    pub(crate) connection: Arc<Semaphore>,
    /// The hub's, over all connections.
    pub(crate) total: Arc<Semaphore>,
    /// The longest message of the method.
    pub(crate) max_message: usize,
    /// The longest first message (a stream's opening frame, which comes
    /// before any credential), if shorter.
    pub(crate) max_first_message: Option<usize>,
}

/// Where the body is in its stream of messages.
#[derive(Debug)]
enum Position {
    /// Reading a length prefix; this much of it is in.
    Prefix {
        have: [u8; PREFIX_BYTES],
        len: usize,
    },
    /// Reading a message's bytes; this many are still to come.
    Message { declared: usize, remaining: usize },
}

/// A request body whose messages are paid for from [`Budgets`].
#[derive(Debug)]
pub(crate) struct BudgetedBody<B> {
    inner: B,
    budgets: Budgets,
    position: Position,
    messages: u64,
    held: Vec<OwnedSemaphorePermit>,
    /// When the message being read must be whole.
    due: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl<B> BudgetedBody<B> {
    /// `inner`, paid for from `budgets`.
    pub(crate) fn new(inner: B, budgets: Budgets) -> Self {
        BudgetedBody {
            inner,
            budgets,
            position: Position::Prefix {
                have: [0; PREFIX_BYTES],
                len: 0,
            },
            messages: 0,
            held: Vec::new(),
            due: None,
            failed: false,
        }
    }

    /// Follows the messages through `data`.
    fn account(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            match &mut self.position {
                Position::Prefix { have, len } => {
                    let take = (PREFIX_BYTES - *len).min(data.len());
                    have[*len..*len + take].copy_from_slice(&data[..take]);
                    *len += take;
                    data = &data[take..];
                    if *len == PREFIX_BYTES {
                        let declared =
                            u32::from_be_bytes([have[1], have[2], have[3], have[4]]) as usize;
                        self.begin_message(declared)?;
                    }
                }
                Position::Message {
                    declared,
                    remaining,
                } => {
                    let (declared, take) = (*declared, (*remaining).min(data.len()));
                    *remaining -= take;
                    let whole = *remaining == 0;
                    data = &data[take..];
                    self.hold(take, declared)?;
                    if whole {
                        self.end_message();
                    }
                }
            }
        }
        Ok(())
    }

    /// Takes `bytes` more of a message of `declared` bytes from both budgets.
    fn hold(&mut self, bytes: usize, declared: usize) -> Result<(), Status> {
        if bytes == 0 {
            return Ok(());
        }
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        let connection = Arc::clone(&self.budgets.connection)
            .try_acquire_many_owned(permits)
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "this connection already has the most request bytes in flight it may; \
                     a message of {declared} bytes was refused, send it again once others are read"
                ))
            })?;
        let total = Arc::clone(&self.budgets.total)
            .try_acquire_many_owned(permits)
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "the hub is holding the most request bytes it may; \
                     a message of {declared} bytes was refused, try again shortly"
                ))
            })?;
        self.held.push(connection);
        self.held.push(total);
        Ok(())
    }

    fn begin_message(&mut self, declared: usize) -> Result<(), Status> {
        let limit = match self.budgets.max_first_message {
            Some(first) if self.messages == 0 => first,
            _ => self.budgets.max_message,
        };
        if declared > limit {
            let which = if self.messages == 0 && self.budgets.max_first_message.is_some() {
                "an opening message"
            } else {
                "a message"
            };
            return Err(Status::resource_exhausted(format!(
                "{which} of {declared} bytes is over this method's limit of {limit} bytes"
            )));
        }
        if declared == 0 {
            self.end_message();
            return Ok(());
        }
        self.position = Position::Message {
            declared,
            remaining: declared,
        };
        self.due = Some(Box::pin(tokio::time::sleep_until(
            Instant::now() + MESSAGE_TIME_LIMIT,
        )));
        Ok(())
    }

    fn end_message(&mut self) {
        self.held.clear();
        self.due = None;
        self.messages += 1;
        self.position = Position::Prefix {
            have: [0; PREFIX_BYTES],
            len: 0,
        };
    }
}

impl<B> Body for BudgetedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(err))) => {
                return Poll::Ready(Some(Err(Status::from_error(err.into()))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                if let Some(due) = this.due.as_mut()
                    && due.as_mut().poll(cx).is_ready()
                {
                    let declared = match this.position {
                        Position::Message { declared, .. } => declared,
                        Position::Prefix { .. } => 0,
                    };
                    this.failed = true;
                    this.held.clear();
                    this.due = None;
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "a message of {declared} bytes did not arrive whole within {MESSAGE_TIME_LIMIT:?}"
                    )))));
                }
                return Poll::Pending;
            }
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = this.account(data.chunk())
        {
            this.failed = true;
            this.held.clear();
            return Poll::Ready(Some(Err(status)));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(connection: usize, total: usize) -> Budgets {
        Budgets {
            connection: Arc::new(Semaphore::new(connection)),
            total: Arc::new(Semaphore::new(total)),
            max_message: 1000,
            max_first_message: Some(100),
        }
    }

    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&(len as u32).to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, len));
        bytes
    }

    #[tokio::test]
    async fn bytes_are_held_as_they_arrive_and_given_back_when_the_message_is_whole() {
        let b = budgets(500, 10_000);
        let mut body = BudgetedBody::new((), b.clone());
        let first = message(50);
        // Split everywhere, the prefix included.
        body.account(&first[..3]).unwrap();
        assert_eq!(b.connection.available_permits(), 500);
        body.account(&first[3..20]).unwrap();
        assert_eq!(b.connection.available_permits(), 485, "15 bytes in");
        assert_eq!(b.total.available_permits(), 9985);
        body.account(&first[20..]).unwrap();
        assert_eq!(b.connection.available_permits(), 500);
        // Two whole messages in one chunk.
        let mut two = message(400);
        two.extend(message(0));
        body.account(&two).unwrap();
        assert_eq!(b.connection.available_permits(), 500);
        assert_eq!(body.messages, 3);
        // A prefix alone holds nothing.
        body.account(&message(400)[..5]).unwrap();
        assert_eq!(b.connection.available_permits(), 500);
    }

    #[tokio::test]
    async fn over_limit_and_over_budget_messages_are_resource_exhausted() {
        let mut body = BudgetedBody::new((), budgets(500, 10_000));
        let err = body.account(&message(101)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(
            err.message().contains("an opening message of 101 bytes"),
            "{err:?}"
        );

        let mut body = BudgetedBody::new((), budgets(500, 10_000));
        body.account(&message(10)).unwrap();
        let err = body.account(&message(1001)[..5]).unwrap_err();
        assert!(
            err.message().contains("a message of 1001 bytes is over"),
            "{err:?}"
        );

        let b = budgets(500, 10_000);
        let mut held = BudgetedBody::new((), b.clone());
        held.account(&message(10)).unwrap();
        held.account(&message(400)[..305]).unwrap();
        assert_eq!(b.connection.available_permits(), 200);
        let mut other = BudgetedBody::new((), b.clone());
        other.account(&message(10)).unwrap();
        let err = other.account(&message(300)).unwrap_err();
        assert!(err.message().contains("this connection"), "{err:?}");
        assert_eq!(
            b.connection.available_permits(),
            200,
            "the refused bytes are not held"
        );
        drop(held);
        assert_eq!(b.connection.available_permits(), 500);

        let mut body = BudgetedBody::new((), budgets(5000, 300));
        body.account(&message(10)).unwrap();
        let err = body.account(&message(400)).unwrap_err();
        assert!(err.message().contains("the hub is holding"), "{err:?}");
    }

    /// A body that sends a prefix and some bytes, then nothing.
    struct Stalled(Vec<Option<Bytes>>);

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Status;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            match self.0.pop() {
                Some(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                _ => Poll::Pending,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_stalls_is_ended_and_its_bytes_given_back() {
        let b = budgets(5000, 10_000);
        let mut started = message(10);
        started.extend_from_slice(&message(400)[..100]);
        let mut body = BudgetedBody::new(Stalled(vec![Some(Bytes::from(started))]), b.clone());
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(matches!(first, Some(Ok(_))));
        assert_eq!(b.connection.available_permits(), 4905);
        let ended = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let err = ended.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        assert!(
            err.message()
                .contains("a message of 400 bytes did not arrive whole within 30s"),
            "{err:?}"
        );
        assert_eq!(b.connection.available_permits(), 5000);
        assert!(
            std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
                .await
                .is_none()
        );
    }
}
