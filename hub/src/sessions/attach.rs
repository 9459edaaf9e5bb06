//! The `spoke.v1.ConnectorHub` service: one Attach stream per connector
//! instance.
//!
//! With auth, a peer address that opens streams faster than the rate limit
//! allows (`rate`) is refused with RESOURCE_EXHAUSTED before its stream is
//! read at all.
//!
//! Each stream runs in its own task: it waits for `Register` (anything else
//! first is INVALID_ARGUMENT; a Register over the size limits of `register`
//! is INVALID_ARGUMENT naming the field; one the hub cannot use is answered
//! with `Goodbye`, and the stream is closed; the trust checks end it with
//! their status), answers `Registered`, then relays frames: `Result`, `Chunk`
//! and `Event` go to the pending calls, `Ping` is answered with `Pong`, and
//! the hub pings every heartbeat interval. A peer that sends nothing for two
//! intervals is dropped. Frames to the connector go through a bounded queue
//! per stream, so a slow connector only ever slows its own calls.
//!
//! A stream that resumes a session first sends, after `Registered`, the
//! Invoke of every call still pending on the session (and a Cancel for those
//! whose caller gave up), before it handles any frame: an Invoke queued for
//! the lost stream may never have left the hub. They come before any Pong on
//! the new stream, so a connector never learns that the hub read a Result
//! before it has seen the re-sent Invoke of that call (which it ignores).

use std::sync::Arc;
use std::time::Duration;

use spoke_proto::v1::connector_hub_server::ConnectorHub;
use spoke_proto::v1::{ConnectorFrame, Goodbye, HubFrame, Ping, Pong, connector_frame, hub_frame};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tonic::{Request, Response, Status, Streaming};

use crate::ids::unix_ms;
use crate::routing::registry::{Admitted, InstanceKey, Registration};
use crate::sessions::outbound::{Close, Outbound};
use crate::sessions::pending::Delivery;
use crate::sessions::rate::PeerKey;
use crate::sessions::register::{self, Invalid};
use crate::sessions::state::HubState;
use crate::trust::assertion::{self, Claim};

/// While the hub shuts down, how often a stream checks whether its calls
/// are all answered.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// How many frames may wait to be sent to one connector.
pub(crate) const OUTBOUND_CAPACITY: usize = 256;

/// The ConnectorHub service.
#[derive(Debug, Clone)]
pub(crate) struct AttachService {
    state: Arc<HubState>,
}

impl AttachService {
    /// The service over the hub's state.
    pub(crate) fn new(state: Arc<HubState>) -> Self {
        AttachService { state }
    }
}

#[tonic::async_trait]
impl ConnectorHub for AttachService {
    type AttachStream = Outbound;

    async fn attach(
        &self,
        request: Request<Streaming<ConnectorFrame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        if self.state.is_shutting_down() {
            return Err(Status::unavailable(
                "the hub is shutting down and accepts no new connectors",
            ));
        }
        let addr = crate::guard::peer_addr(&request);
        // Before anything of the stream is read: a flood of registrations
        // costs no signature check, no parsing and no store work.
        if let Some(limiter) = &self.state.register_limiter {
            let key = PeerKey::of(addr);
            if let Err(wait) = limiter.check(key) {
                let refusal = limiter.refusal(key, wait);
                if let Some(unlogged) = limiter.log_refusal() {
                    tracing::warn!(
                        "refused an Attach stream from {}: resource_exhausted: {refusal}{}",
                        addr.map_or_else(|| "an unknown peer".to_owned(), |a| a.to_string()),
                        if unlogged > 0 {
                            format!(" ({unlogged} more refusal(s) for the rate limit not logged)")
                        } else {
                            String::new()
                        }
                    );
                }
                return Err(Status::resource_exhausted(refusal));
            }
        }
        let peer = addr.map_or_else(|| "unknown peer".to_owned(), |a| a.to_string());
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let (close_tx, close_rx) = oneshot::channel();
        let task = StreamTask {
            state: Arc::clone(&self.state),
            inbound: request.into_inner(),
            tx,
            close: Some(close_tx),
            peer,
        };
        tokio::spawn(task.run());
        Ok(Response::new(Outbound::new(rx, close_rx)))
    }
}

/// Why a stream's main loop ended.
enum Exit {
    /// The connector said Goodbye.
    Goodbye(String),
    /// The stream ended or failed without a Goodbye.
    Lost(String),
    /// The peer stopped sending anything.
    Silent(Duration),
    /// The peer stopped reading what the hub sends.
    Stalled(String),
    /// A resumed stream took the session over.
    Replaced,
    /// An administrator rejected or revoked the instance.
    Denied,
    /// The hub is shutting down and the session's calls are answered (or
    /// the grace passed).
    Drained,
}

/// Why a stream was not admitted.
enum Refusal {
    /// A bad Register: answered with a Goodbye naming the problem.
    Goodbye(String),
    /// The instance (named) was refused by the trust checks, or the peer
    /// (an unregistered one) did not open with a Register: the stream ends
    /// with this status.
    Status(String, Status),
    /// The stream ended before a Register came.
    Ended,
}

struct StreamTask {
    state: Arc<HubState>,
    inbound: Streaming<ConnectorFrame>,
    tx: mpsc::Sender<HubFrame>,
    close: Option<oneshot::Sender<Close>>,
    peer: String,
}

impl StreamTask {
    async fn run(mut self) {
        let admitted = match self.register().await {
            Ok(admitted) => admitted,
            Err(Refusal::Goodbye(reason)) => {
                tracing::warn!("refused an Attach stream from {}: {reason}", self.peer);
                self.goodbye(reason);
                return;
            }
            Err(Refusal::Status(who, status)) => {
                tracing::warn!(
                    "refused {who} attaching from {}: {}: {}",
                    self.peer,
                    crate::wire::code_name(status.code()),
                    status.message()
                );
                self.close(Close::Abort(status));
                return;
            }
            Err(Refusal::Ended) => return,
        };
        let mut admitted = admitted;
        let key = admitted.key.clone();
        let generation = admitted.generation;
        let exit = match self.resend(&mut admitted).await {
            Some(exit) => exit,
            None => self.serve(&admitted).await,
        };
        match exit {
            Exit::Goodbye(reason) => {
                self.close(Close::Graceful);
                self.state
                    .end_session(&key, generation, &format!("said goodbye: {reason}"));
            }
            Exit::Lost(why) => {
                self.close(Close::Graceful);
                self.state.stream_lost(&key, generation, &why);
            }
            Exit::Silent(silence) => {
                let why = format!("nothing received for {silence:?}, two heartbeat intervals");
                self.close(Close::Abort(Status::unavailable(format!(
                    "the hub dropped this stream: {why}"
                ))));
                self.state.stream_lost(&key, generation, &why);
            }
            Exit::Stalled(why) => {
                self.close(Close::Abort(Status::unavailable(format!(
                    "the hub dropped this stream: {why}"
                ))));
                self.state.stream_lost(&key, generation, &why);
            }
            Exit::Denied => {
                self.close(Close::Abort(Status::permission_denied(format!(
                    "{key} was rejected or revoked by an administrator of this hub; its session ended"
                ))));
            }
            Exit::Replaced => {
                self.goodbye("a newer stream resumed this session".to_owned());
            }
            Exit::Drained => {
                self.goodbye("the hub is shutting down".to_owned());
                self.state
                    .end_session(&key, generation, "the hub shut down");
            }
        }
    }

    /// Waits for the Register frame, checks the instance's proof (with
    /// auth) and admits it.
    async fn register(&mut self) -> Result<Admitted, Refusal> {
        let wait = self
            .state
            .config
            .liveness_timeout()
            .max(Duration::from_secs(1));
        let frame = match tokio::time::timeout(wait, self.inbound.message()).await {
            Err(_) => {
                return Err(Refusal::Goodbye(format!(
                    "no Register frame within {wait:?}"
                )));
            }
            // Bytes that are not a ConnectorFrame (tonic's codec says
            // `failed to decode`): a refusal like any other, with its status
            // and log line, not a silent end.
            Ok(Err(status)) if status.code() == tonic::Code::Internal => {
                return Err(Refusal::Status(
                    "an unregistered peer".to_owned(),
                    Status::invalid_argument(format!(
                        "the first frame of an Attach stream must be a Register ConnectorFrame: {}",
                        status.message()
                    )),
                ));
            }
            // Over a message limit or the bytes-in-flight budgets (the
            // guard's answer, made before the bytes were read).
            Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
                return Err(Refusal::Status("an unregistered peer".to_owned(), status));
            }
            Ok(Err(status)) => {
                tracing::debug!(
                    "Attach stream from {} failed before Register: {status}",
                    self.peer
                );
                return Err(Refusal::Ended);
            }
            Ok(Ok(None)) => return Err(Refusal::Ended),
            Ok(Ok(Some(frame))) => frame,
        };
        let register = match frame.frame {
            Some(connector_frame::Frame::Register(register)) => register,
            other => {
                return Err(Refusal::Status(
                    "an unregistered peer".to_owned(),
                    Status::invalid_argument(format!(
                        "the first frame of an Attach stream must be Register, got {}",
                        frame_name(other.as_ref())
                    )),
                ));
            }
        };
        let registration = register::check(register, self.state.trust.is_some()).map_err(
            |invalid| match invalid {
                Invalid::TooLarge(message) => Refusal::Status(
                    "an unregistered peer".to_owned(),
                    Status::invalid_argument(message),
                ),
                Invalid::Unusable(message) => Refusal::Goodbye(message),
            },
        )?;
        let approved = match &self.state.trust {
            None => true,
            Some(trust) => trust
                .check_attach(&registration, &self.peer, &self.state.config.registrations)
                .await
                .map_err(|status| Refusal::Status(registration.key().to_string(), status))?,
        };
        let proven_key = proven_key(&registration, &self.state);
        let tenant = registration.tenant.clone();
        let sdk = registration.sdk_version.clone();
        let admitted = self
            .state
            .admit(registration, self.tx.clone(), approved, proven_key)
            .map_err(Refusal::Goodbye)?;
        tracing::info!(
            "{} {} session {} from {} (tenant {tenant:?}, sdk {sdk:?}){}",
            admitted.key,
            if admitted.resumed {
                "resumed"
            } else {
                "attached with"
            },
            admitted.session_id,
            self.peer,
            if approved {
                ""
            } else {
                "; pending an administrator's approval (spoke pending, spoke approve), nothing is routed to it"
            }
        );
        Ok(admitted)
    }

    /// Sends what a resumed session must hear again (`Admitted::resend`), in
    /// order, before the stream handles any frame. `Some` if the stream
    /// ended or stopped taking frames meanwhile.
    async fn resend(&mut self, admitted: &mut Admitted) -> Option<Exit> {
        let frames = std::mem::take(&mut admitted.resend);
        if frames.is_empty() {
            return None;
        }
        let invokes = frames
            .iter()
            .filter(|f| matches!(f.frame, Some(hub_frame::Frame::Invoke(_))))
            .count();
        tracing::info!(
            "{}: sending the Invokes of its {invokes} pending call(s) again on the resumed stream",
            admitted.key
        );
        let liveness = self.state.config.liveness_timeout();
        let tx = &self.tx;
        let sent = tokio::time::timeout(liveness, async {
            for frame in frames {
                if tx.send(frame).await.is_err() {
                    return false;
                }
            }
            true
        })
        .await;
        match sent {
            Ok(true) => None,
            Ok(false) => Some(Exit::Lost(
                "the stream closed while the pending Invokes were sent again".to_owned(),
            )),
            Err(_) => Some(Exit::Stalled(format!(
                "the connector did not take the re-sent Invokes within {liveness:?}"
            ))),
        }
    }

    /// Relays frames until the stream ends.
    async fn serve(&mut self, admitted: &Admitted) -> Exit {
        let key = &admitted.key;
        let interval = self.state.config.heartbeat_interval;
        let liveness = self.state.config.liveness_timeout();
        let mut pings = tokio::time::interval_at(Instant::now() + interval, interval);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut nonce: u64 = 0;
        let mut last_heard = Instant::now();
        let mut drain_until: Option<Instant> = None;
        let mut drain_poll = tokio::time::interval(DRAIN_POLL);
        let shutdown = self.state.shutdown_token().clone();
        // Made once, not per frame: waiting on a token or a timer registers
        // the waiter, and frames come by the thousand per second.
        let replaced = admitted.replaced.cancelled();
        let denied = admitted.denied.cancelled();
        let shutting_down = shutdown.cancelled();
        let silent = tokio::time::sleep(liveness);
        tokio::pin!(denied, replaced, shutting_down, silent);

        loop {
            tokio::select! {
                biased;
                () = &mut denied => return Exit::Denied,
                () = &mut replaced => return Exit::Replaced,
                // The hub is going away, not the connector: route nothing
                // more here, let the calls in flight finish (within the
                // grace), then say Goodbye. The connector stays up and
                // reconnects, to this hub's successor.
                () = &mut shutting_down, if drain_until.is_none() => {
                    let grace = self.state.config.shutdown_grace;
                    self.state.lock().registry.set_draining(key, admitted.generation);
                    drain_until = Some(Instant::now() + grace);
                }
                () = crate::deadline::sleep_until(drain_until) => return Exit::Drained,
                _ = drain_poll.tick(), if drain_until.is_some() => {
                    if self.state.lock().pending.in_flight(key) == 0 {
                        return Exit::Drained;
                    }
                }
                // Ready once per interval, so it cannot starve the frames
                // below, and a flood of frames cannot starve it.
                _ = pings.tick() => {
                    nonce = nonce.wrapping_add(1);
                    // A full queue means the connector is not reading; its
                    // silence check will tell.
                    let _ = self.tx.try_send(frame_of(hub_frame::Frame::Ping(Ping { nonce })));
                }
                message = self.inbound.message() => {
                    let frame = match message {
                        Ok(Some(frame)) => frame,
                        Ok(None) => return Exit::Lost("the connector closed the stream without a Goodbye".to_owned()),
                        Err(status) => return Exit::Lost(format!(
                            "stream error: {:?}: {}",
                            status.code(),
                            status.message()
                        )),
                    };
                    last_heard = Instant::now();
                    if let Some(exit) = self.handle(key, frame) {
                        return exit;
                    }
                }
                () = &mut silent => {
                    if last_heard.elapsed() >= liveness {
                        return Exit::Silent(liveness);
                    }
                    silent.as_mut().reset(last_heard + liveness);
                }
            }
        }
    }

    /// Handles one frame; `Some` ends the stream.
    fn handle(&mut self, key: &InstanceKey, frame: ConnectorFrame) -> Option<Exit> {
        use connector_frame::Frame;
        match frame.frame {
            Some(Frame::Result(result)) => {
                let request_id = result.request_id.clone();
                let delivery = self.state.lock().pending.resolve(key, result);
                report(key, "Result", &request_id, delivery);
            }
            Some(Frame::Chunk(chunk)) => {
                let request_id = chunk.request_id.clone();
                let delivery = self.state.lock().pending.chunk(key, chunk);
                if delivery == Delivery::Overflow {
                    tracing::warn!(
                        "request {request_id}: its caller cannot take the result; cancelling it at {key}"
                    );
                    self.state
                        .cancel(&request_id, "the caller cannot take the result");
                } else {
                    report(key, "Chunk", &request_id, delivery);
                }
            }
            Some(Frame::Event(event)) if event.request_id.is_empty() => {
                tracing::debug!("{key} event ({}): {}", event.kind, event.json);
            }
            Some(Frame::Event(event)) => {
                let request_id = event.request_id.clone();
                let delivery = self.state.lock().pending.event(key, event);
                if delivery != Delivery::Abandoned {
                    report(key, "Event", &request_id, delivery);
                }
            }
            // Never dropped: connectors use the Pong to learn that every
            // frame they sent before the Ping has been read.
            Some(Frame::Ping(ping)) => {
                self.send(hub_frame::Frame::Pong(Pong { nonce: ping.nonce }))
            }
            Some(Frame::Pong(_)) => {}
            Some(Frame::Goodbye(goodbye)) => return Some(Exit::Goodbye(goodbye.reason)),
            Some(Frame::Register(_)) => {
                tracing::warn!("{key} sent a second Register on an attached stream; ignored");
            }
            Some(
                frame @ (Frame::SyncStarted(_)
                | Frame::SyncBatch(_)
                | Frame::SyncCheckpoint(_)
                | Frame::SyncKnownIds(_)
                | Frame::SyncEnded(_)),
            ) => {
                if let Some(refusal) = self.state.syncs.runs.deliver(key, frame) {
                    tracing::debug!(
                        "{key}: a frame of sync run {} refused: {}",
                        refusal.run_id,
                        refusal
                            .error
                            .as_ref()
                            .map(|e| e.message.as_str())
                            .unwrap_or("")
                    );
                    self.send(hub_frame::Frame::SyncAck(refusal));
                }
            }
            None => tracing::debug!("{key} sent an empty frame; ignored"),
        }
        None
    }

    fn send(&self, frame: hub_frame::Frame) {
        crate::sessions::state::send_soon(self.tx.clone(), frame_of(frame));
    }

    /// Sends a Goodbye and closes the stream gracefully.
    fn goodbye(&mut self, reason: String) {
        let _ = self
            .tx
            .try_send(frame_of(hub_frame::Frame::Goodbye(Goodbye { reason })));
        self.close(Close::Graceful);
    }

    fn close(&mut self, how: Close) {
        if let Some(close) = self.close.take() {
            let _ = close.send(how);
        }
    }
}

/// Logs what happened to a connector's frame about a call, when it went
/// nowhere.
fn report(key: &InstanceKey, what: &str, request_id: &str, delivery: Delivery) {
    match delivery {
        Delivery::Delivered | Delivery::Overflow => {}
        Delivery::Abandoned => {
            tracing::debug!(
                "{key}: {what} for request {request_id}, whose caller gave up; dropped"
            );
        }
        Delivery::Unknown => {
            tracing::info!("{key}: {what} for unknown request {request_id}; dropped");
        }
        Delivery::Foreign(owner) => {
            tracing::warn!(
                "{key}: {what} for request {request_id}, which was sent to {owner}; dropped"
            );
        }
    }
}

fn frame_of(frame: hub_frame::Frame) -> HubFrame {
    HubFrame { frame: Some(frame) }
}

/// The name of a connector frame kind, for messages.
fn frame_name(frame: Option<&connector_frame::Frame>) -> &'static str {
    use connector_frame::Frame;
    match frame {
        None => "an empty frame",
        Some(Frame::Register(_)) => "Register",
        Some(Frame::Result(_)) => "Result",
        Some(Frame::Chunk(_)) => "Chunk",
        Some(Frame::Ping(_)) => "Ping",
        Some(Frame::Pong(_)) => "Pong",
        Some(Frame::Event(_)) => "Event",
        Some(Frame::Goodbye(_)) => "Goodbye",
        Some(Frame::SyncStarted(_)) => "SyncStarted",
        Some(Frame::SyncBatch(_)) => "SyncBatch",
        Some(Frame::SyncCheckpoint(_)) => "SyncCheckpoint",
        Some(Frame::SyncKnownIds(_)) => "SyncKnownIds",
        Some(Frame::SyncEnded(_)) => "SyncEnded",
    }
}

/// The public key a registration proves: with auth, the one the approval
/// check verified; without, the one its credentials verify under as auth
/// would verify them (signed for this very instance, in date, never seen
/// before), if they are sent and sound. A restart proving the key of a
/// live session takes that session's place (see `Registry::admit`), so a
/// replayed or borrowed assertion must not count.
fn proven_key(registration: &Registration, state: &HubState) -> Option<[u8; 32]> {
    let credentials = registration.credentials.as_ref()?;
    if state.trust.is_some() {
        return credentials.public_key.as_ref().try_into().ok();
    }
    let key = registration.key();
    let claim = Claim {
        tenant: &key.tenant,
        connector: &key.connector,
        instance_id: &key.id,
    };
    assertion::verify(Some(credentials), claim, unix_ms(), &state.open_replays)
        .ok()
        .map(|proven| proven.public_key)
}
