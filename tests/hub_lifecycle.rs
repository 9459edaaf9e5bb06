//! The hub's shutdown with a `grpc.health.v1.Health/Watch` stream open: the
//! watcher sees `NOT_SERVING`, its stream ends, and the hub exits at once
//! rather than after its grace (the watch used to hold it for the grace
//! plus 2 s).

mod common;

use std::time::{Duration, Instant};

use common::Hub;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn an_open_health_watch_ends_at_shutdown_and_does_not_hold_the_hub() {
    let mut hub = Hub::start(&["--shutdown-grace", "5s"]);
    let channel = tonic::transport::Channel::from_shared(hub.url.clone())
        .unwrap()
        .connect()
        .await
        .expect("connect to the hub");
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("a status").expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let asked = Instant::now();
    hub.process.signal("TERM");
    let bound = Duration::from_secs(3);
    let next = tokio::time::timeout(bound, watch.message())
        .await
        .expect("the watcher hears of the shutdown at once");
    assert_eq!(
        next.expect("not an error").expect("a status").status,
        ServingStatus::NotServing as i32
    );
    let end = tokio::time::timeout(bound, watch.message())
        .await
        .expect("the watch stream ends at once");
    assert!(matches!(end, Ok(None)), "the stream ends cleanly: {end:?}");
    let status = hub
        .process
        .wait_for(bound)
        .expect("the hub exits well before its 5 s grace");
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < bound, "{:?}", asked.elapsed());
}
