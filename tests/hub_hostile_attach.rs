//! An Attach stream whose first frame is not a Register (bytes that are not
//! a `ConnectorFrame` at all, or a frame of another kind) is refused like
//! every other refusal: `INVALID_ARGUMENT` and a hub log line, never a
//! silent `OK`.

mod common;

use std::time::Duration;

use common::Hub;
use common::peer::Raw;
use spoke_proto::v1::connector_hub_client::ConnectorHubClient;
use spoke_proto::v1::{ConnectorFrame, Ping, connector_frame};
use tonic::transport::Channel;
use tonic::{Code, Status};

async fn channel(hub: &Hub) -> Channel {
    Channel::from_shared(hub.url.clone())
        .expect("hub url")
        .connect()
        .await
        .expect("connect to the hub")
}

/// The status the hub ended an Attach with (at once, or as the stream's
/// end, within a bound); an OK end fails the test.
async fn refusal<T>(response: Result<tonic::Response<tonic::Streaming<T>>, Status>) -> Status {
    let mut inbound = match response {
        Err(status) => return status,
        Ok(response) => response.into_inner(),
    };
    match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
        Err(_) => panic!("the hub did not answer within 10 s"),
        Ok(Ok(frame)) => panic!("the stream ended without a status: {:?}", frame.is_some()),
        Ok(Err(status)) => status,
    }
}

#[tokio::test]
async fn garbage_bytes_as_the_first_frame_are_invalid_argument_with_a_log_line() {
    let hub = Hub::start(&[]);
    let mut grpc = tonic::client::Grpc::new(channel(&hub).await);
    grpc.ready().await.expect("ready");
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    // Field 31 with the reserved wire type 7: no ConnectorFrame decodes it.
    tx.send(vec![0xff, 0x01, 0x02, 0x03]).await.unwrap();
    let response = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            "/spoke.v1.ConnectorHub/Attach".parse().unwrap(),
            Raw,
        )
        .await;
    let status = refusal(response).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("must be a Register ConnectorFrame"),
        "{status:?}"
    );
    let line = hub
        .logged(&["refused an unregistered peer attaching from 127.0.0.1:"])
        .await;
    assert!(line.contains("invalid_argument"), "{line}");
    drop(tx);
}

#[tokio::test]
async fn a_first_frame_that_is_not_a_register_is_invalid_argument_with_a_log_line() {
    let hub = Hub::start(&[]);
    let mut client = ConnectorHubClient::new(channel(&hub).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(ConnectorFrame {
        frame: Some(connector_frame::Frame::Ping(Ping { nonce: 7 })),
    })
    .await
    .unwrap();
    let response = client
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let status = refusal(response).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("must be Register, got Ping"),
        "{status:?}"
    );
    hub.logged(&[
        "invalid_argument: the first frame of an Attach stream must be Register, got Ping",
    ])
    .await;
    drop(tx);
}
