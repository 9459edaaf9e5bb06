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

// Multi-threaded: waiting for the hub's exit blocks this thread, and the
// client's connection must keep running meanwhile (its graceful close
// answers the hub's GOAWAY ping).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

/// A connector stopped while no hub listens leaves at once: the results
/// it still holds belong to callers that went with the hub. It says so as
/// a warning with the count, not as an error after waiting 5 s.
#[test]
fn a_connector_stopped_while_the_hub_is_gone_leaves_at_once_and_says_why() {
    let hub = Hub::start(&[]);
    let (mut connector, log) = hub.attach_logged("faults", &[("SPOKE_INSTANCE_ID", "f1")]);
    hub.wait_for_instances("faults", 1, Duration::from_secs(20));
    let mut call = hub
        .cli()
        .args([
            "call",
            "faults",
            "sleep",
            r#"{"ms": 1500}"#,
            "--timeout",
            "10s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spoke call");
    // The call is running on the connector when the hub dies.
    std::thread::sleep(Duration::from_millis(500));
    hub.process.signal("KILL");
    let _ = call.wait();
    // It finishes with nobody to hand the result to.
    std::thread::sleep(Duration::from_millis(1500));

    let asked = Instant::now();
    connector.signal("TERM");
    let status = connector
        .wait_for(Duration::from_secs(10))
        .expect("the connector exits");
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(3),
        "it waited {took:?} for nobody"
    );
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("leaving while no hub listens: the results of 1 call(s) are dropped"),
        "{log}"
    );
    assert!(!log.contains(" ERROR "), "a false error: {log}");
}
