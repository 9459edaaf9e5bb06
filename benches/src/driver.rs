//! A hub-side driver: a `spoke.v1.ConnectorHub` server that admits each
//! connector with `Registered` and then hands its stream to the benchmark,
//! which pushes Invokes down it and reads the Results, as the real hub does
//! but with nothing else in the way (no routing, no client).

use std::net::SocketAddr;
use std::time::Duration;

use spoke_proto::v1::connector_hub_server::{ConnectorHub, ConnectorHubServer};
use spoke_proto::v1::{
    ConnectorFrame, HubFrame, Registered, RegistrationStatus, connector_frame, hub_frame,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// One admitted connector: when its Register arrived, and the driver's
/// end of its stream.
pub struct Attached {
    pub registered_at: Instant,
    pub instance_id: String,
    pub tx: mpsc::Sender<Result<HubFrame, Status>>,
    pub rx: Streaming<ConnectorFrame>,
}

struct Driver {
    attached: mpsc::Sender<Attached>,
    heartbeat: Duration,
}

#[tonic::async_trait]
impl ConnectorHub for Driver {
    type AttachStream = ReceiverStream<Result<HubFrame, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<ConnectorFrame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut rx = request.into_inner();
        let (tx, out) = mpsc::channel(1024);
        let attached = self.attached.clone();
        let heartbeat_interval_ms = self.heartbeat.as_millis() as u32;
        tokio::spawn(async move {
            let Ok(Some(first)) = rx.message().await else {
                return;
            };
            let registered_at = Instant::now();
            let Some(connector_frame::Frame::Register(register)) = first.frame else {
                return;
            };
            let registered = Registered {
                session_id: format!("s-{}", register.instance.as_ref().map_or("", |i| &i.id)),
                session_token: "t".into(),
                heartbeat_interval_ms,
                status: RegistrationStatus::Active.into(),
                resumed: false,
            };
            let frame = HubFrame {
                frame: Some(hub_frame::Frame::Registered(registered)),
            };
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
            let _ = attached
                .send(Attached {
                    registered_at,
                    instance_id: register.instance.map(|i| i.id).unwrap_or_default(),
                    tx,
                    rx,
                })
                .await;
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }
}

/// Serves the driver on a fresh loopback port, asking connectors for
/// `heartbeat` pings; admitted connectors arrive on the receiver.
pub async fn serve(heartbeat: Duration) -> (SocketAddr, mpsc::Receiver<Attached>) {
    let (addr, incoming) = crate::listen::loopback();
    let (attached, arrivals) = mpsc::channel(1024);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                ConnectorHubServer::new(Driver {
                    attached,
                    heartbeat,
                })
                .max_decoding_message_size(spoke_proto::MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming(incoming)
            .await
            .expect("the driver");
    });
    (addr, arrivals)
}
