//! The raw tonic baselines: `baseline.Echo` (proto/baseline.proto), served
//! and called the plainest way.

use std::net::SocketAddr;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

tonic::include_proto!("baseline");

pub use echo_client::EchoClient;
use echo_server::{Echo, EchoServer};

/// One accepted `Stream` call: the driver's end (send to the client, read
/// its answers).
pub struct StreamEnd {
    pub tx: mpsc::Sender<Result<Msg, Status>>,
    pub rx: Streaming<Msg>,
}

struct Service {
    streams: mpsc::Sender<StreamEnd>,
}

#[tonic::async_trait]
impl Echo for Service {
    type StreamStream = ReceiverStream<Result<Msg, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<Msg>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let (tx, rx) = mpsc::channel(1024);
        let end = StreamEnd {
            tx,
            rx: request.into_inner(),
        };
        self.streams
            .send(end)
            .await
            .map_err(|_| Status::unavailable("the driver is gone"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn unary(&self, request: Request<Msg>) -> Result<Response<Msg>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    async fn bounce(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Serves `baseline.Echo` on a fresh loopback port; the driver ends of
/// `Stream` calls arrive on the returned receiver.
pub async fn serve() -> (SocketAddr, mpsc::Receiver<StreamEnd>) {
    let (addr, incoming) = crate::listen::loopback();
    let (streams, ends) = mpsc::channel(8);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(Service { streams }))
            .serve_with_incoming(incoming)
            .await
            .expect("the baseline server");
    });
    (addr, ends)
}

/// Serves `baseline.Echo` for large payloads (path 12): messages up to
/// Spoke's largest assembled result, HTTP/2 frames as large as the hub's.
pub async fn serve_large() -> SocketAddr {
    let (addr, incoming) = crate::listen::loopback();
    let (streams, _ends) = mpsc::channel(1);
    let limit = spoke_proto::MAX_ASSEMBLED_BYTES + spoke_proto::RESPONSE_SLACK_BYTES;
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .max_frame_size(Some(spoke_proto::MAX_FRAME_BYTES))
            .add_service(
                EchoServer::new(Service { streams })
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
            )
            .serve_with_incoming(incoming)
            .await
            .expect("the baseline server");
    });
    addr
}

/// A client of [`serve_large`] at `addr`, with the same limits.
pub async fn client_large(addr: SocketAddr) -> EchoClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .tcp_nodelay(true)
        .max_frame_size(spoke_proto::MAX_FRAME_BYTES)
        .connect()
        .await
        .expect("connect to the baseline");
    let limit = spoke_proto::MAX_ASSEMBLED_BYTES + spoke_proto::RESPONSE_SLACK_BYTES;
    EchoClient::new(channel)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
}

/// A client at `addr`.
pub async fn client(addr: SocketAddr) -> EchoClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect to the baseline");
    EchoClient::new(channel)
}

/// The client side of `Stream`: sends back every message it receives,
/// until the stream ends.
pub async fn echo_back(mut client: EchoClient<tonic::transport::Channel>) {
    let (tx, rx) = mpsc::channel(1024);
    let mut inbound = client
        .stream(ReceiverStream::new(rx))
        .await
        .expect("open the stream")
        .into_inner();
    while let Ok(Some(msg)) = inbound.message().await {
        if tx.send(msg).await.is_err() {
            break;
        }
    }
}
