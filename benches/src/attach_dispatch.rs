//! Path 1: dispatch over the Attach stream. A hub-side driver pushes Invokes
//! of the echo action down one connector's stream (the real `serve` of the
//! runtime, in this process, over loopback TCP) and reads the Results;
//! against a raw tonic bidi stream whose client sends back the same bytes.

use std::time::Duration;

use spoke_proto::v1::{
    Encoding, HubFrame, Invoke, InvokeKind, Ping, Pong, connector_frame, hub_frame,
};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::baseline::{self, Msg};
use crate::driver;
use crate::payload::{IN_FLIGHT, SIZES, echo_input};
use crate::report::{Report, Runs, Target};
use crate::stats::Run;
use crate::window::{Link, drive};
use crate::{Opts, echo};

const PATH: &str = "1 attach dispatch";

/// The driver's end of the connector's stream. Request ids are unique in
/// the session (`<round>.<call>`), as the hub's are.
struct AttachLink {
    tx: mpsc::Sender<Result<HubFrame, Status>>,
    rx: Streaming<spoke_proto::v1::ConnectorFrame>,
    payload: Vec<u8>,
    round: u64,
}

impl Link for AttachLink {
    fn new_round(&mut self) {
        self.round += 1;
    }

    async fn send(&mut self, id: u64) {
        let invoke = Invoke {
            request_id: format!("{}.{id}", self.round),
            action: "echo".into(),
            payload: self.payload.clone().into(),
            encoding: Encoding::Json.into(),
            timeout_ms: 0,
            metadata: Default::default(),
            kind: InvokeKind::Action.into(),
            accept: Vec::new(),
        };
        let frame = HubFrame {
            frame: Some(hub_frame::Frame::Invoke(invoke)),
        };
        self.tx
            .send(Ok(frame))
            .await
            .expect("the connector's stream");
    }

    async fn recv(&mut self) -> u64 {
        loop {
            let frame = self
                .rx
                .message()
                .await
                .expect("the connector's stream")
                .expect("the connector stays attached");
            match frame.frame {
                Some(connector_frame::Frame::Result(result)) => {
                    assert!(
                        matches!(
                            result.outcome,
                            Some(spoke_proto::v1::result::Outcome::Payload(_))
                        ),
                        "echo failed: {result:?}"
                    );
                    let call = result.request_id.split_once('.').map(|(_, call)| call);
                    return call.and_then(|c| c.parse().ok()).unwrap_or_else(|| {
                        panic!("a request id the driver never sent: {}", result.request_id)
                    });
                }
                // As the hub does: the Pong tells the connector its results arrived.
                Some(connector_frame::Frame::Ping(Ping { nonce })) => {
                    let pong = HubFrame {
                        frame: Some(hub_frame::Frame::Pong(Pong { nonce })),
                    };
                    self.tx
                        .send(Ok(pong))
                        .await
                        .expect("the connector's stream");
                }
                _ => {}
            }
        }
    }
}

struct RawLink {
    tx: mpsc::Sender<Result<Msg, Status>>,
    rx: Streaming<Msg>,
    payload: Vec<u8>,
}

impl Link for RawLink {
    async fn send(&mut self, id: u64) {
        let msg = Msg {
            id: id.to_string(),
            payload: self.payload.clone(),
        };
        self.tx.send(Ok(msg)).await.expect("the client's stream");
    }

    async fn recv(&mut self) -> u64 {
        let msg = self
            .rx
            .message()
            .await
            .expect("the client's stream")
            .expect("the client stays");
        msg.id.parse().expect("a numeric id")
    }
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    // Spoke: the driver, and the echo connector attached to it.
    // The hub's default heartbeat: the connector pings every 5 s, and the
    // driver's Pongs acknowledge its results.
    let (addr, mut arrivals) = driver::serve(Duration::from_secs(5)).await;
    let instance = echo::instance().await;
    let mut options = spoke::AttachOptions::new(instance.manifest());
    options.hub_url = format!("http://{addr}");
    options.instance.id = "bench".into();
    options.max_in_flight = 64;
    tokio::spawn(spoke::grpc::serve::run_until(
        instance,
        options,
        std::future::pending(),
    ));
    let attached = arrivals.recv().await.expect("the connector attaches");

    let mut spoke_link = AttachLink {
        tx: attached.tx,
        rx: attached.rx,
        payload: Vec::new(),
        round: 0,
    };
    // The baseline: a raw bidi stream.
    let (raw_addr, mut ends) = baseline::serve().await;
    tokio::spawn(baseline::echo_back(baseline::client(raw_addr).await));
    let end = ends.recv().await.expect("the baseline stream");

    let mut raw_link = RawLink {
        tx: end.tx,
        rx: end.rx,
        payload: Vec::new(),
    };

    for (size, size_name) in SIZES {
        let payload = echo_input(size);
        spoke_link.payload.clone_from(&payload);
        raw_link.payload = payload;
        for window in IN_FLIGHT {
            let calls = opts.calls(window);
            // Warm both up, then alternate rounds so drift hits both alike.
            drive(&mut spoke_link, calls / 4 + 1, window).await;

            drive(&mut raw_link, calls / 4 + 1, window).await;

            let (mut spoke_runs, mut raw_runs): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
            for _ in 0..opts.rounds {
                if !crate::spoke_only() {
                    raw_runs.push(drive(&mut raw_link, calls, window).await);
                }
                spoke_runs.push(drive(&mut spoke_link, calls, window).await);
            }
            let case = format!("{size_name}, {window} in flight");
            report.add_runs(
                PATH,
                &case,
                Runs {
                    throughput: (window == 64).then_some(Target::RatioAtLeast { ratio: 0.85 }),
                    p50: (window == 1).then_some(Target::AddedAtMost { added: 10.0 }),
                    note: "baseline: raw tonic bidi echo of the same bytes".to_owned(),
                    ..Runs::new(&spoke_runs, &raw_runs, "calls/s")
                },
            );
        }
    }
}
