//! The server around the services: health, reflection, listing, shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use spoke_proto::v1::{DescribeRequest, ListConnectorsRequest};
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_for_the_server_and_both_services() {
    let hub = Hub::start(&[]);
    let mut health = HealthClient::new(hub.channel().await);
    for service in ["", "spoke.v1.ConnectorHub", "spoke.v1.Hub"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_in_both_versions() {
    let hub = Hub::start(&[]);
    let channel = hub.channel().await;

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel.clone());
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into()),
        MessageRequest::FileContainingSymbol("spoke.v1.InvokeRequest".into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "spoke.v1.Hub",
        "spoke.v1.ConnectorHub",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for _ in 0..2 {
        let response = responses.next().await.unwrap().unwrap().message_response;
        assert!(
            matches!(response, Some(MessageResponse::FileDescriptorResponse(_))),
            "{response:?}"
        );
    }

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let mut alpha = Alpha::new(channel);
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(AlphaResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    assert!(list.service.iter().any(|s| s.name == "spoke.v1.Hub"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_describe_show_types_instances_and_the_shared_manifest() {
    let hub = Hub::start(&[]);
    let _a = Fake::attach(&hub.url, &Spec::echo("a").tags(&["eu"]))
        .await
        .serve("a", echo());
    let _b = Fake::attach(&hub.url, &Spec::echo("b"))
        .await
        .serve("b", echo());
    let mut client = hub.client().await;
    let list = client
        .list_connectors(ListConnectorsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.connectors.len(), 1);
    let summary = &list.connectors[0];
    assert_eq!(
        (summary.name.as_str(), summary.version.as_str()),
        ("echo", "1.0.0")
    );
    assert_eq!(summary.display_name, "ECHO");
    assert_eq!(summary.instances.len(), 2);
    let a = &summary.instances[0];
    let info = a.info.clone().unwrap();
    assert_eq!(
        (info.id.as_str(), info.tags.as_slice()),
        ("a", &["eu".to_owned()][..])
    );
    assert_eq!(
        info.metadata.get("region").map(String::as_str),
        Some("test"),
        "{info:?}"
    );
    assert_eq!(a.state, "ready");
    assert_eq!(a.tenant, "acme");
    assert_eq!(a.in_flight, 0);
    assert!(a.connected_unix_ms > 1_600_000_000_000);
    assert!(!a.session_id.is_empty());

    let manifest = client
        .describe(DescribeRequest {
            connector: "echo".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .manifest_json;
    assert_eq!(manifest, echo_manifest());

    // The same version with a different manifest: accepted with a warning,
    // and the latest wins.
    let mut changed = Spec::echo("d");
    changed.manifest = manifest_with_version("echo", "1.0.0");
    let _d = Fake::attach(&hub.url, &changed).await.serve("d", echo());
    let manifest = client
        .describe(DescribeRequest {
            connector: "echo".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .manifest_json;
    assert_eq!(manifest, changed.manifest);
    let msg = client
        .invoke(request("put", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(msg.message().contains("its actions: get"), "{msg:?}");
    assert!(
        hub.logs()
            .contains("registered again with a different manifest")
    );

    // A new version: accepted, and the latest wins.
    let mut newer = Spec::echo("c");
    newer.manifest = manifest_with_version("echo", "2.0.0");
    let _c = Fake::attach(&hub.url, &newer).await.serve("c", echo());
    let list = client
        .list_connectors(ListConnectorsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.connectors[0].version, "2.0.0");
    assert_eq!(list.connectors[0].instances.len(), 4);
    let log = hub.logs();
    assert!(log.contains("changes from version 1.0.0 to 2.0.0"), "{log}");
}

fn manifest_with_version(name: &str, version: &str) -> String {
    manifest(name, version, &[("get", "read")], &[])
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_calls_in_flight_says_goodbye_and_exits_zero() {
    let mut hub = Hub::start(&["--shutdown-grace", "3s"]);
    let slow: Behavior =
        Arc::new(|_| Reply::After(Duration::from_millis(800), Box::new(Reply::Ok(Value::Null))));
    let fake = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", slow);
    let mut client = hub.client().await;
    let call = tokio::spawn(async move { client.invoke(request("get", json!({"n": 1}))).await });
    fake.log
        .wait_until("the Invoke", |log| !log.invokes.lock().unwrap().is_empty())
        .await;
    let stopped = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &hub.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    // The call in flight is answered, then the hub says goodbye: it never
    // asks the connector to stop (no Drain), so the connector can wait for
    // the next hub.
    let response = call.await.unwrap().expect("the call in flight is answered");
    assert_eq!(output(response.get_ref())["input"], json!({"n": 1}));
    fake.log
        .wait_until("the Goodbye", |log| {
            !log.goodbyes.lock().unwrap().is_empty()
        })
        .await;
    assert_eq!(
        fake.log.goodbyes.lock().unwrap()[0],
        "the hub is shutting down"
    );
    assert!(fake.log.drains.lock().unwrap().is_empty());
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "the hub waited out its grace although every call was answered"
    );
    let exit = tokio::task::block_in_place(|| hub.wait_exit(Duration::from_secs(8)));
    assert!(exit.success(), "{exit:?}");
}
