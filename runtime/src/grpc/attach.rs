//! One Attach session: dial the hub, register, then read and write frames
//! until the stream is lost or the connector leaves.
//!
//! Two loops run per session:
//!
//! - the **reader** (this session's own future) reads every frame as it
//!   arrives and never waits on invocations: Ping is answered with Pong at
//!   once, Pong acknowledges results, Invoke is handed to the
//!   [`Dispatch`] (which queues it until a slot is free, or ignores it when
//!   its request id is already known in the session, as after a resume,
//!   when the hub re-sends the Invokes of its pending calls), Cancel fires a
//!   token, Drain starts closing. It also watches liveness: when nothing
//!   arrives for two heartbeat intervals, the stream is dropped;
//! - the **writer** (a task) puts frames on the stream in this order of
//!   preference: control frames (Pong, Goodbye), a Ping when the heartbeat
//!   interval has passed, then the outbox (events and results, in the order
//!   they were produced).
//!
//! The reader also follows the instance's approval: a session that starts
//! `PENDING_APPROVAL` gets a second Registered (`ACTIVE`) on the same stream
//! once an administrator approves it. A stream the hub ends with
//! PERMISSION_DENIED ends the session as [`SessionEnd::Refused`]; with
//! UNAUTHENTICATED, RESOURCE_EXHAUSTED, or INVALID_ARGUMENT before
//! Registered, as [`SessionEnd::NotAccepted`] (retried slowly).
//!
//! Because the reader never blocks on a slot, a connector whose every slot
//! is busy still answers heartbeats and still receives Cancels; the hub is
//! kept from sending more than `max_in_flight` by the protocol, and the
//! dispatcher's bounded queue catches a hub that does not keep to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use spoke_proto::PROTOCOL_VERSION;
use spoke_proto::v1::connector_hub_client::ConnectorHubClient;
use spoke_proto::v1::{
    ConnectorFrame, Goodbye, HubFrame, InstanceInfo, Ping, Pong, Register, Registered,
    RegistrationStatus, connector_frame, hub_frame,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::Endpoint;

use crate::grpc::dispatch::Dispatch;
use crate::grpc::identity::InstanceKey;
use crate::grpc::options::AttachOptions;
use crate::grpc::outbox::Outbox;
use crate::grpc::syncs::SyncLink;
use crate::grpc::tls::connect_error;
use crate::logging::error_chain;

/// The heartbeat interval when Registered says 0.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// The shortest heartbeat interval honoured.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// Frames buffered between the writer and the transport.
const OUT_BUFFER: usize = 64;
/// Control frames (Pongs, Goodbye) waiting for the writer.
const CONTROL_BUFFER: usize = 64;
/// When leaving: how long to wait for the hub to acknowledge the last results.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// When leaving: how long to wait for the hub to close its side after Goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// When leaving: how often to check whether the outbox has settled.
const FLUSH_POLL: Duration = Duration::from_millis(20);

/// Everything a session needs; lives as long as `serve`.
pub(crate) struct Link {
    pub(crate) endpoint: Endpoint,
    /// The instance's key: every Register carries an assertion signed with it.
    pub(crate) key: Arc<InstanceKey>,
    pub(crate) options: AttachOptions,
    pub(crate) manifest_json: String,
    /// The connector's name (the manifest's), as the assertion names it.
    pub(crate) connector: String,
    /// Whether the hub has registered this instance ACTIVE at least once in
    /// this process; from then on the registration token is not sent.
    pub(crate) approved_once: AtomicBool,
    pub(crate) dispatch: Arc<Dispatch>,
    /// The sync runs the hub started here.
    pub(crate) syncs: Arc<SyncLink>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) phase: watch::Receiver<Phase>,
    pub(crate) drain: mpsc::UnboundedSender<DrainRequest>,
}

/// How a session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The connector said Goodbye and closed: `serve` is done.
    Left,
    /// The stream could not be opened or was lost; attach again.
    Lost {
        /// Whether the hub had answered Registered (the backoff restarts).
        registered: bool,
        /// What happened, for the log.
        reason: String,
        /// Nothing listens at the hub's address (the connection was
        /// refused): the hub process that held the calls' callers is gone.
        hub_gone: bool,
    },
    /// The hub did not accept the registration for now: the instance's
    /// proof (UNAUTHENTICATED), too many registrations or pending
    /// instances (RESOURCE_EXHAUSTED), or a Register it cannot take
    /// (INVALID_ARGUMENT); attach again, slowly.
    NotAccepted {
        /// What the hub did not accept, for the log.
        what: &'static str,
        /// The hub's message.
        message: String,
    },
    /// The hub refused the instance (PERMISSION_DENIED: rejected or
    /// revoked); `serve` stops.
    Refused {
        /// The hub's message.
        message: String,
    },
}

impl SessionEnd {
    /// How a gRPC status ends a session: refusals by what they mean, others
    /// as a lost stream described by `context`.
    fn from_status(status: &tonic::Status, registered: bool, context: &str) -> SessionEnd {
        let message = if status.message().is_empty() {
            format!("{:?}", status.code())
        } else {
            status.message().to_owned()
        };
        match status.code() {
            tonic::Code::PermissionDenied => SessionEnd::Refused { message },
            tonic::Code::Unauthenticated => SessionEnd::NotAccepted {
                what: "the hub did not accept this instance's proof of identity",
                message,
            },
            tonic::Code::ResourceExhausted => SessionEnd::NotAccepted {
                what: "the hub takes no more registrations from here for now",
                message,
            },
            tonic::Code::InvalidArgument if !registered => SessionEnd::NotAccepted {
                what: "the hub cannot accept this instance's Register",
                message,
            },
            _ => SessionEnd::Lost {
                registered,
                reason: format!("{context}: {}", status_text(status)),
                hub_gone: false,
            },
        }
    }
}

/// What the reader asks the writer to send.
#[derive(Debug)]
enum Control {
    Pong(u64),
    /// A Ping now (to acknowledge the last results before leaving).
    Ping,
    /// Send Goodbye, then end the stream.
    Goodbye(String),
}

/// Whether a failed connect was refused: no process listens at the address.
fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl Link {
    /// Runs one session. `session_token` is sent to resume and updated from Registered.
    pub(crate) async fn session(&self, session_token: &mut String) -> SessionEnd {
        let mut phase = self.phase.clone();
        // While dialing, a connector with nothing left to say may just leave;
        // once connected it registers and says Goodbye properly.
        let connected = tokio::select! {
            connected = self.endpoint.connect() => connected,
            () = nothing_left_to_say(&mut phase, &self.outbox) => return SessionEnd::Left,
        };
        let channel = match connected {
            Ok(channel) => channel,
            Err(e) => {
                return SessionEnd::Lost {
                    registered: false,
                    reason: connect_error(&self.options.hub_url, &e),
                    hub_gone: refused(&e),
                };
            }
        };
        let (stream, out, registered) = match self.open(channel, session_token).await {
            Ok(opened) => opened,
            Err(end) => return end,
        };
        tracing::info!(
            session_id = %registered.session_id,
            resumed = registered.resumed,
            instance = %self.options.instance.id,
            hub = %self.options.hub_url,
            "registered with the hub"
        );
        let mut pending = self.note_status(&registered, false);
        if !registered.session_token.is_empty() {
            *session_token = registered.session_token.clone();
        }
        self.dispatch.session_started(registered.resumed);
        let heartbeat = match registered.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT,
            ms => Duration::from_millis(u64::from(ms)).max(MIN_HEARTBEAT),
        };
        self.outbox.attach();
        // After attach: it may queue frames (a SyncStarted said again).
        self.syncs.session_started(registered.resumed);
        let (control, control_rx) = mpsc::channel(CONTROL_BUFFER);
        let stop = CancellationToken::new();
        let writer = tokio::spawn(write(
            out,
            control_rx,
            Arc::clone(&self.outbox),
            heartbeat,
            stop.clone(),
        ));
        let end = self
            .read(
                stream,
                &control,
                heartbeat,
                phase,
                session_token,
                &mut pending,
            )
            .await;
        stop.cancel();
        drop(control);
        let _ = writer.await;
        self.outbox.detach();
        self.syncs.detached();
        end
    }

    /// Logs what a Registered says about approval; returns whether the
    /// instance is pending. `was_pending`: whether it was pending before on
    /// this stream (a change to ACTIVE is the approval).
    fn note_status(&self, registered: &Registered, was_pending: bool) -> bool {
        let instance = &self.options.instance.id;
        match RegistrationStatus::try_from(registered.status) {
            Ok(RegistrationStatus::PendingApproval) => {
                if !was_pending {
                    tracing::warn!(
                        instance = %instance,
                        fingerprint = %self.key.fingerprint(),
                        "this instance is pending approval: the hub routes no calls here until an administrator runs `spoke approve {instance}` (check that `spoke pending` shows key fingerprint {})",
                        self.key.fingerprint()
                    );
                }
                true
            }
            _ => {
                self.approved_once.store(true, Ordering::Relaxed);
                if was_pending {
                    tracing::info!(
                        instance = %instance,
                        fingerprint = %self.key.fingerprint(),
                        "approved: the hub routes calls to this instance now"
                    );
                }
                false
            }
        }
    }

    /// Opens Attach, sends Register and waits for Registered.
    async fn open(
        &self,
        channel: tonic::transport::Channel,
        session_token: &str,
    ) -> Result<
        (
            Streaming<HubFrame>,
            mpsc::Sender<ConnectorFrame>,
            Registered,
        ),
        SessionEnd,
    > {
        let lost = |reason: String| SessionEnd::Lost {
            registered: false,
            reason,
            hub_gone: false,
        };
        let hub = &self.options.hub_url;
        let mut client = ConnectorHubClient::new(channel)
            .max_decoding_message_size(spoke_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(spoke_proto::MAX_MESSAGE_BYTES);
        let (out, out_rx) = mpsc::channel(OUT_BUFFER);
        // Queued before the call, so a hub that reads Register before
        // answering the call's headers gets it.
        let register = self.register(session_token).map_err(lost)?;
        let _ = out.send(register).await;
        let wait = self.options.connect_timeout;
        let response = tokio::time::timeout(wait, client.attach(ReceiverStream::new(out_rx)))
            .await
            .map_err(|_| {
                lost(format!(
                    "the hub at {hub} did not answer Attach within {wait:?}"
                ))
            })?
            .map_err(|status| SessionEnd::from_status(&status, false, "the hub refused Attach"))?;
        let mut stream = response.into_inner();
        let first = tokio::time::timeout(wait, stream.message())
            .await
            .map_err(|_| lost(format!("the hub did not answer Register within {wait:?}")))?
            .map_err(|status| {
                SessionEnd::from_status(&status, false, "the Attach stream failed")
            })?;
        match first.and_then(|f| f.frame) {
            Some(hub_frame::Frame::Registered(registered)) => Ok((stream, out, registered)),
            Some(hub_frame::Frame::Goodbye(Goodbye { reason })) => {
                Err(lost(format!("the hub refused the registration: {reason}")))
            }
            Some(other) => Err(lost(format!(
                "protocol error: the hub answered Register with {} instead of Registered",
                frame_name(&other)
            ))),
            None => Err(lost(
                "the hub closed the stream without answering Register".to_owned(),
            )),
        }
    }

    /// The Register frame, with fresh credentials (and the registration
    /// token until the instance was first registered ACTIVE).
    fn register(&self, session_token: &str) -> Result<ConnectorFrame, String> {
        let o = &self.options;
        let token = match &o.registration_token {
            Some(token) if !self.approved_once.load(Ordering::Relaxed) => token.expose().as_str(),
            _ => "",
        };
        let credentials = self
            .key
            .credentials(&o.tenant, &self.connector, &o.instance.id, token)
            .map_err(|e| e.to_string())?;
        Ok(ConnectorFrame {
            frame: Some(connector_frame::Frame::Register(Register {
                manifest_json: self.manifest_json.clone(),
                protocol_version: PROTOCOL_VERSION,
                sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
                tenant: o.tenant.clone(),
                instance: Some(InstanceInfo {
                    id: o.instance.id.clone(),
                    display_name: o.instance.display_name.clone(),
                    tags: o.instance.tags.clone(),
                    metadata: o
                        .instance
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                }),
                session_token: session_token.to_owned(),
                credentials: Some(credentials),
                max_in_flight: o.max_in_flight,
            })),
        })
    }

    /// The reader loop; see the module docs. `session_token` and `pending`
    /// follow later Registered frames.
    async fn read(
        &self,
        mut stream: Streaming<HubFrame>,
        control: &mpsc::Sender<Control>,
        heartbeat: Duration,
        mut phase: watch::Receiver<Phase>,
        session_token: &mut String,
        pending: &mut bool,
    ) -> SessionEnd {
        let lost = |reason: String| SessionEnd::Lost {
            registered: true,
            reason,
            hub_gone: false,
        };
        let mut last_seen = Instant::now();
        let mut leaving: Option<(String, Instant)> =
            leaving_reason(&mut phase).map(|reason| (reason, Instant::now() + FLUSH_TIMEOUT));
        let mut flush_poll = tokio::time::interval(FLUSH_POLL);
        // One timer for the liveness check, moved on only when it fires: a
        // frame just notes when it came (no timer work per frame).
        let silence = heartbeat * 2;
        let liveness = tokio::time::sleep(silence);
        tokio::pin!(liveness);
        // Likewise one wait for the next phase change, made anew only when
        // it fires.
        let mut phase_changed = Box::pin(next_change(phase.clone()));
        loop {
            tokio::select! {
                biased;
                message = stream.message() => {
                    let frame = match message {
                        Err(status) => return SessionEnd::from_status(&status, true, "the Attach stream failed"),
                        Ok(None) => return lost("the hub closed the Attach stream".to_owned()),
                        Ok(Some(frame)) => frame,
                    };
                    last_seen = Instant::now();
                    match frame.frame {
                        Some(hub_frame::Frame::Ping(Ping { nonce })) => {
                            if control.try_send(Control::Pong(nonce)).is_err() {
                                tracing::debug!(nonce, "writer busy: Pong skipped");
                            }
                        }
                        Some(hub_frame::Frame::Pong(Pong { nonce })) => self.outbox.ack(nonce),
                        Some(hub_frame::Frame::Invoke(invoke)) => self.dispatch.accept(invoke),
                        Some(hub_frame::Frame::Cancel(cancel)) => {
                            self.dispatch.cancel(&cancel.request_id, &cancel.reason);
                        }
                        Some(hub_frame::Frame::StartSync(start)) => self.syncs.start(start),
                        Some(hub_frame::Frame::CancelSync(cancel)) => self.syncs.cancel(&cancel),
                        Some(hub_frame::Frame::SyncAck(ack)) => self.syncs.ack(ack),
                        Some(hub_frame::Frame::Drain(drain)) => {
                            let grace = (drain.grace_ms > 0).then(|| Duration::from_millis(drain.grace_ms));
                            let _ = self.drain.send(DrainRequest { reason: drain.reason, grace });
                        }
                        Some(hub_frame::Frame::Goodbye(Goodbye { reason })) => {
                            return lost(format!("the hub said goodbye ({reason})"));
                        }
                        Some(hub_frame::Frame::Registered(registered)) => {
                            // The approval of a pending instance (or a
                            // hub's change of mind): same session.
                            *pending = self.note_status(&registered, *pending);
                            if !registered.session_token.is_empty() {
                                session_token.clone_from(&registered.session_token);
                            }
                        }
                        None => tracing::debug!("empty frame from the hub ignored"),
                    }
                }
                () = &mut liveness => {
                    if last_seen.elapsed() >= silence {
                        return lost(format!(
                            "nothing heard from the hub for {silence:?} (2 heartbeat intervals)"
                        ));
                    }
                    liveness.as_mut().reset(last_seen + silence);
                }
                changed = &mut phase_changed, if leaving.is_none() => {
                    if changed.is_err() {
                        // `serve` is going away without a goodbye.
                        return SessionEnd::Left;
                    }
                    phase_changed = Box::pin(next_change(phase.clone()));
                    leaving = leaving_reason(&mut phase)
                        .map(|reason| (reason, Instant::now() + FLUSH_TIMEOUT));
                }
                _ = flush_poll.tick(), if leaving.is_some() => {
                    let Some((reason, flush_by)) = &leaving else { continue };
                    if self.outbox.is_settled() || Instant::now() >= *flush_by {
                        if !self.outbox.is_settled() {
                            tracing::warn!(
                                undelivered = self.outbox.undelivered(),
                                "the hub did not acknowledge every result before Goodbye"
                            );
                        }
                        return self.say_goodbye(stream, control, reason.clone()).await;
                    }
                    if self.outbox.needs_ping() {
                        let _ = control.try_send(Control::Ping);
                    }
                }
            }
        }
    }

    /// Sends Goodbye, ends the stream and waits briefly for the hub to close its side.
    async fn say_goodbye(
        &self,
        mut stream: Streaming<HubFrame>,
        control: &mpsc::Sender<Control>,
        reason: String,
    ) -> SessionEnd {
        tracing::info!(%reason, "saying goodbye to the hub");
        let sent = tokio::time::timeout(CLOSE_TIMEOUT, control.send(Control::Goodbye(reason)))
            .await
            .is_ok_and(|r| r.is_ok());
        if sent {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                while let Ok(Some(frame)) = stream.message().await {
                    if let Some(hub_frame::Frame::Pong(Pong { nonce })) = frame.frame {
                        self.outbox.ack(nonce);
                    }
                }
            })
            .await;
        }
        SessionEnd::Left
    }
}

/// Resolves when the phase changes after what `phase` has seen.
async fn next_change(mut phase: watch::Receiver<Phase>) -> Result<(), watch::error::RecvError> {
    phase.changed().await
}

/// The Goodbye reason when the phase is `Leaving`.
fn leaving_reason(phase: &mut watch::Receiver<Phase>) -> Option<String> {
    match &*phase.borrow_and_update() {
        Phase::Leaving(reason) => Some(reason.clone()),
        _ => None,
    }
}

/// Resolves when `serve` is leaving and the outbox holds nothing to deliver,
/// so a connection attempt is pointless.
async fn nothing_left_to_say(phase: &mut watch::Receiver<Phase>, outbox: &Outbox) {
    loop {
        if leaving_reason(phase).is_some() && outbox.is_settled() {
            return;
        }
        if phase.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The writer task; see the module docs.
async fn write(
    out: mpsc::Sender<ConnectorFrame>,
    mut control: mpsc::Receiver<Control>,
    outbox: Arc<Outbox>,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let ping = |nonce| ConnectorFrame {
        frame: Some(connector_frame::Frame::Ping(Ping { nonce })),
    };
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Made once, not per frame (waiting on a token registers the waiter).
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let mut last = false;
        let frame = tokio::select! {
            biased;
            () = &mut stopped => return,
            command = control.recv() => match command {
                Some(Control::Pong(nonce)) => ConnectorFrame {
                    frame: Some(connector_frame::Frame::Pong(Pong { nonce })),
                },
                Some(Control::Ping) => {
                    ticker.reset();
                    ping(outbox.next_ping_nonce())
                }
                Some(Control::Goodbye(reason)) => {
                    last = true;
                    ConnectorFrame {
                        frame: Some(connector_frame::Frame::Goodbye(Goodbye { reason })),
                    }
                }
                None => return,
            },
            _ = ticker.tick() => ping(outbox.next_ping_nonce()),
            frame = outbox.pop() => frame,
        };
        // A large result goes as Chunks, then its Result: all of it before
        // any other frame, so no Ping can split it.
        for frame in spoke_proto::chunks::in_pieces(frame) {
            tokio::select! {
                biased;
                () = &mut stopped => return,
                sent = out.send(frame) => if sent.is_err() { return },
            }
        }
        if last {
            // Dropping `out` ends the request stream: the hub sees end-of-stream.
            return;
        }
    }
}

fn status_text(status: &tonic::Status) -> String {
    let mut text = format!("{:?}", status.code());
    if !status.message().is_empty() {
        text.push_str(": ");
        text.push_str(status.message());
    }
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&error_chain(source));
    }
    text
}

fn frame_name(frame: &hub_frame::Frame) -> &'static str {
    match frame {
        hub_frame::Frame::Registered(_) => "Registered",
        hub_frame::Frame::Invoke(_) => "Invoke",
        hub_frame::Frame::Cancel(_) => "Cancel",
        hub_frame::Frame::Ping(_) => "Ping",
        hub_frame::Frame::Pong(_) => "Pong",
        hub_frame::Frame::Drain(_) => "Drain",
        hub_frame::Frame::Goodbye(_) => "Goodbye",
        hub_frame::Frame::StartSync(_) => "StartSync",
        hub_frame::Frame::CancelSync(_) => "CancelSync",
        hub_frame::Frame::SyncAck(_) => "SyncAck",
    }
}

/// Where a `serve` is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Taking work.
    Serving,
    /// Taking no new work; waiting for running calls.
    Closing,
    /// Every call is answered: flush, say Goodbye (with this reason), close.
    Leaving(String),
}

/// A Drain from the hub.
#[derive(Debug)]
pub(crate) struct DrainRequest {
    pub(crate) reason: String,
    pub(crate) grace: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use spoke_proto::v1::{Result as ResultFrame, result::Outcome};

    use super::*;

    fn result_of(payload: Vec<u8>) -> ConnectorFrame {
        ConnectorFrame {
            frame: Some(connector_frame::Frame::Result(ResultFrame {
                request_id: "r1".into(),
                outcome: Some(Outcome::Payload(payload.into())),
                duration_us: 7,
                ..ResultFrame::default()
            })),
        }
    }

    #[test]
    fn small_results_go_whole() {
        let frame = result_of(vec![b'x'; spoke_proto::CHUNK_THRESHOLD]);
        let pieces = spoke_proto::chunks::in_pieces(frame.clone());
        assert_eq!(pieces, vec![frame]);
    }

    #[test]
    fn large_results_go_in_chunks_then_an_empty_chunked_result() {
        let payload: Vec<u8> = (0..spoke_proto::CHUNK_BYTES * 2 + 10)
            .map(|i| (i % 251) as u8)
            .collect();
        let pieces = spoke_proto::chunks::in_pieces(result_of(payload.clone()));
        assert_eq!(pieces.len(), 4);
        let mut joined = Vec::new();
        for (seq, piece) in pieces[..3].iter().enumerate() {
            let Some(connector_frame::Frame::Chunk(chunk)) = &piece.frame else {
                panic!("expected a Chunk, got {piece:?}");
            };
            assert_eq!(chunk.request_id, "r1");
            assert_eq!(chunk.seq, seq as u64);
            assert!(chunk.data.len() <= spoke_proto::CHUNK_BYTES);
            joined.extend_from_slice(&chunk.data);
        }
        assert_eq!(joined, payload);
        let Some(connector_frame::Frame::Result(last)) = &pieces[3].frame else {
            panic!("expected the Result last");
        };
        assert!(last.chunked);
        assert_eq!(last.outcome, Some(Outcome::Payload(Default::default())));
        assert_eq!(last.duration_us, 7);
    }

    #[test]
    fn errors_and_other_frames_go_whole() {
        let ping = ConnectorFrame {
            frame: Some(connector_frame::Frame::Ping(Ping { nonce: 1 })),
        };
        assert_eq!(spoke_proto::chunks::in_pieces(ping.clone()), vec![ping]);
    }
}
