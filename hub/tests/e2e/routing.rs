//! Routing: round-robin, by instance, by display name, tag broadcast, and
//! NOT_FOUND naming what exists.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use spoke_proto::v1::{InvokeKind, Route, instance_result, route};
use tonic::Code;

use crate::support::*;

fn routed(action: &str, target: route::Target) -> spoke_proto::v1::InvokeRequest {
    let mut req = request(action, json!({}));
    req.route = Some(Route {
        target: Some(target),
    });
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_routed_by_round_robin_instance_name_and_tag() {
    let hub = Hub::start(&[]);
    let mut served = Vec::new();
    for (id, name, tags) in [
        ("a", "Alpha", &["eu", "prod"][..]),
        ("b", "Beta", &["eu"][..]),
        ("c", "Beta", &["us"][..]),
    ] {
        let spec = Spec::echo(id).name(name).tags(tags);
        served.push(Fake::attach(&hub.url, &spec).await.serve(id, echo()));
    }
    let mut client = hub.client().await;

    // Round-robin spreads evenly over the three.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for n in 0..9 {
        let response = client
            .invoke(request("get", json!({"n": n})))
            .await
            .unwrap();
        let out = output(response.get_ref());
        assert_eq!(out["input"], json!({"n": n}));
        *counts
            .entry(out["instance"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        counts,
        HashMap::from([("a".into(), 3), ("b".into(), 3), ("c".into(), 3)])
    );

    // By instance id.
    for _ in 0..3 {
        let response = client
            .invoke(routed("get", route::Target::Instance("b".into())))
            .await
            .unwrap();
        assert_eq!(output(response.get_ref())["instance"], "b");
    }

    // By display name: round-robin among the instances with that name.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = client
            .invoke(routed("get", route::Target::DisplayName("Beta".into())))
            .await
            .unwrap();
        seen.push(
            output(response.get_ref())["instance"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    seen.sort();
    assert_eq!(seen, ["b", "b", "c", "c"]);

    // By tag: one result per instance, sorted by instance id.
    let response = client
        .invoke(routed("get", route::Target::Tag("eu".into())))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = response
        .results
        .iter()
        .map(|r| r.instance_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    for r in &response.results {
        let Some(instance_result::Outcome::Payload(p)) = &r.outcome else {
            panic!("{r:?}")
        };
        let out: serde_json::Value = serde_json::from_slice(p).unwrap();
        assert_eq!(out["instance"], r.instance_id.as_str());
    }
    let invoked: usize = served
        .iter()
        .map(|s| s.log.invokes.lock().unwrap().len())
        .sum();
    assert_eq!(invoked, 9 + 3 + 4 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_carries_per_instance_errors_in_band() {
    let hub = Hub::start(&[]);
    let ok = Fake::attach(&hub.url, &Spec::echo("a").tags(&["all"]))
        .await
        .serve("a", echo());
    let failing: Behavior = Arc::new(|_| Reply::Err {
        code: "unavailable",
        message: "upstream down".into(),
        details: Some(json!({"retry_after_s": 3})),
    });
    let bad = Fake::attach(&hub.url, &Spec::echo("b").tags(&["all"]))
        .await
        .serve("b", failing);
    let mut client = hub.client().await;
    let response = client
        .invoke(routed("get", route::Target::Tag("all".into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 2);
    assert_eq!(response.results[0].instance_id, "a");
    assert!(matches!(
        response.results[0].outcome,
        Some(instance_result::Outcome::Payload(_))
    ));
    let Some(instance_result::Outcome::Error(e)) = &response.results[1].outcome else {
        panic!("{:?}", response.results[1])
    };
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("unavailable", "upstream down")
    );
    assert_eq!(e.details_json, r#"{"retry_after_s":3}"#);
    drop((ok, bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_not_found_and_say_what_exists() {
    let hub = Hub::start(&[]);
    let _a = Fake::attach(&hub.url, &Spec::echo("a").tags(&["eu"]))
        .await
        .serve("a", echo());
    let _b = Fake::attach(&hub.url, &Spec::echo("b"))
        .await
        .serve("b", echo());
    let mut client = hub.client().await;
    let not_found = |status: tonic::Status| {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        status.message().to_owned()
    };

    let mut req = request("get", json!({}));
    req.connector = "ecoh".into();
    let msg = not_found(client.invoke(req).await.unwrap_err());
    assert!(msg.contains("no connector named `ecoh`"), "{msg}");
    assert!(msg.contains("did you mean `echo`?"), "{msg}");
    assert!(msg.contains("connectors: echo"), "{msg}");

    let msg = not_found(client.invoke(request("gt", json!({}))).await.unwrap_err());
    assert!(msg.contains("no action `gt`"), "{msg}");
    assert!(msg.contains("its actions: get, put, slow"), "{msg}");

    let mut req = request("nope", json!({}));
    req.kind = InvokeKind::SearchOperator.into();
    let msg = not_found(client.invoke(req).await.unwrap_err());
    assert!(msg.contains("its search operators: ext"), "{msg}");

    let msg = not_found(
        client
            .invoke(routed("get", route::Target::Instance("z".into())))
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("its instances: a, b"), "{msg}");

    let msg = not_found(
        client
            .invoke(routed("get", route::Target::Tag("us".into())))
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("tags in use: eu"), "{msg}");

    let msg = not_found(
        client
            .invoke(routed("get", route::Target::DisplayName("Zed".into())))
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("display names: Echo a, Echo b"), "{msg}");

    let describe = client
        .describe(spoke_proto::v1::DescribeRequest {
            connector: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(describe.code(), Code::NotFound);
    assert!(describe.message().contains("connectors: echo"));

    // A search operator that exists is routed like an action.
    let mut req = request("ext", json!({"value": "rs"}));
    req.kind = InvokeKind::SearchOperator.into();
    let response = client.invoke(req).await.unwrap();
    assert_eq!(output(response.get_ref())["input"], json!({"value": "rs"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_without_ready_instances_is_unavailable() {
    let hub = Hub::start(&["--resume-window", "100ms"]);
    let fake = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", echo());
    let mut client = hub.client().await;
    client.invoke(request("get", json!({}))).await.unwrap();
    drop(fake);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match client.invoke(request("get", json!({}))).await {
            Err(status) if status.code() == Code::Unavailable => {
                assert!(status.message().contains("connector `echo`"), "{status:?}");
                break;
            }
            other => {
                assert!(std::time::Instant::now() < deadline, "still {other:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}
