//! The hub end to end, through real processes on loopback: the `spoke` hub
//! binary, example connectors in `serve` mode, and the `spoke` CLI or a tonic
//! client as callers.

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{ChildGuard, Hub};
use serde_json::{Value, json};
use spoke_proto::v1::hub_client::HubClient;
use spoke_proto::v1::{InvokeRequest, Route, instance_result, invoke_stream_item, route};

const READY: Duration = Duration::from_secs(30);

fn call(hub: &Hub, args: &[&str]) -> Output {
    common::run_with_limit(hub.cli().arg("call").args(args), Duration::from_secs(30))
}

fn ok_json(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        common::stderr(out)
    );
    common::stdout_json(out)
}

/// Three echo instances; each prefixes replies with its own id so the test can see who answered.
fn three_echoes(hub: &Hub) -> Vec<ChildGuard> {
    let specs = [
        ("e1", "Alpha", "blue"),
        ("e2", "Beta", "blue"),
        ("e3", "Beta", "red"),
    ];
    let guards = specs
        .iter()
        .map(|(id, name, tag)| {
            let prefix = format!("{id}:");
            hub.attach(
                "echo",
                &[
                    ("SPOKE_INSTANCE_ID", id),
                    ("SPOKE_DISPLAY_NAME", name),
                    ("SPOKE_TAGS", tag),
                    ("ECHO_PREFIX", &prefix),
                ],
            )
        })
        .collect();
    hub.wait_for_instances("echo", 3, READY);
    guards
}

fn served_by(reply: &Value) -> String {
    reply
        .as_str()
        .expect("echo replies with a string")
        .split(':')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn routing_round_robin_instance_display_name_and_tag() {
    let hub = Hub::start(&[]);
    let _echoes = three_echoes(&hub);

    let mut counts = BTreeMap::new();
    for _ in 0..6 {
        let reply = ok_json(&call(&hub, &["echo", "echo", r#"{"text":"x"}"#]));
        *counts.entry(served_by(&reply)).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            ("e1".to_owned(), 2),
            ("e2".to_owned(), 2),
            ("e3".to_owned(), 2)
        ]),
        "round-robin"
    );

    for id in ["e1", "e2", "e3"] {
        let reply = ok_json(&call(
            &hub,
            &["echo", "echo", r#"{"text":"x"}"#, "--instance", id],
        ));
        assert_eq!(reply, json!(format!("{id}:x")));
    }

    let alpha = ok_json(&call(
        &hub,
        &["echo", "echo", r#"{"text":"x"}"#, "--name", "Alpha"],
    ));
    assert_eq!(alpha, json!("e1:x"));
    let mut betas = std::collections::BTreeSet::new();
    for _ in 0..4 {
        betas.insert(served_by(&ok_json(&call(
            &hub,
            &["echo", "echo", r#"{"text":"x"}"#, "--name", "Beta"],
        ))));
    }
    assert_eq!(betas, ["e2".to_owned(), "e3".to_owned()].into());

    let blue = ok_json(&call(
        &hub,
        &["echo", "echo", r#"{"text":"x"}"#, "--tag", "blue"],
    ));
    assert_eq!(
        blue,
        json!([{"instance": "e1", "output": "e1:x"}, {"instance": "e2", "output": "e2:x"}])
    );
}

#[test]
fn unknown_names_are_not_found_and_name_what_exists() {
    let hub = Hub::start(&[]);
    let _echo = hub.attach("echo", &[("SPOKE_INSTANCE_ID", "only")]);
    hub.wait_for_instances("echo", 1, READY);
    for (args, names) in [
        (vec!["nope", "echo", "{}"], "echo"),
        (vec!["echo", "nope", "{}"], "echo"),
        (
            vec!["echo", "echo", r#"{"text":"x"}"#, "--instance", "ghost"],
            "only",
        ),
    ] {
        let out = call(&hub, &args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            common::stderr(&out)
        );
        let err = common::stderr(&out);
        assert!(err.starts_with("error[not_found]: "), "{err}");
        assert!(err.contains(names), "{args:?} should name `{names}`: {err}");
    }
    let out = call(&hub, &["echo", "echo", r#"{"text": 5}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).starts_with("error[invalid_input]: $.text"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn a_connector_killed_mid_call_gives_unavailable_promptly() {
    let hub = Hub::start(&["--heartbeat-interval", "1s"]);
    let faults = hub.attach("faults", &[("SPOKE_INSTANCE_ID", "f1")]);
    hub.wait_for_instances("faults", 1, READY);
    let mut caller = hub.cli();
    caller.args(["call", "faults", "sleep", r#"{"ms": 20000}"#]);
    let caller =
        std::thread::spawn(move || common::run_with_limit(&mut caller, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(500));
    faults.signal("KILL");
    let killed = Instant::now();
    let out = caller.join().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "took {:?}",
        killed.elapsed()
    );
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.starts_with("error[unavailable]: ") && err.contains("may or may not have run"),
        "{err}"
    );
}

#[test]
fn deadlines_end_calls_promptly() {
    let hub = Hub::start(&[]);
    let _faults = hub.attach("faults", &[("SPOKE_INSTANCE_ID", "f1")]);
    hub.wait_for_instances("faults", 1, READY);
    let began = Instant::now();
    let out = call(
        &hub,
        &["faults", "sleep", r#"{"ms": 20000}"#, "--timeout", "500ms"],
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        common::stderr(&out).contains("deadline_exceeded"),
        "{}",
        common::stderr(&out)
    );
    // The connector was told to cancel and keeps serving.
    let reply = ok_json(&call(&hub, &["faults", "add", r#"{"a": 2, "b": 3}"#]));
    assert_eq!(reply, json!(5));
}

#[test]
fn connectors_re_register_after_the_hub_restarts() {
    let first = Hub::start(&["--heartbeat-interval", "500ms"]);
    let listen = first.authority().to_owned();
    let _echo = first.attach("echo", &[("SPOKE_INSTANCE_ID", "stable")]);
    first.wait_for_instances("echo", 1, READY);
    assert_eq!(
        ok_json(&call(&first, &["echo", "echo", r#"{"text":"before"}"#])),
        json!("before")
    );
    let connector_url = first.url.clone();
    drop(first);

    // Down for 3 s: with a backoff capped at 10 s the connector would still
    // be waiting to retry well after the hub's return; capped at 1 s, it
    // re-registers within about a second, however long the outage.
    std::thread::sleep(Duration::from_secs(3));
    let second = Hub::start_on(&listen, &["--heartbeat-interval", "500ms"]);
    assert_eq!(second.url, connector_url, "same address");
    let back = Instant::now();
    loop {
        let out = call(&second, &["echo", "echo", r#"{"text":"after"}"#]);
        if out.status.code() == Some(0) {
            assert_eq!(common::stdout_json(&out), json!("after"));
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "no success within 2 s of the hub's return: {}",
            common::stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_thousand_concurrent_calls_are_each_answered_exactly_once() {
    let hub = Hub::start(&[]);
    let _echo = hub.attach(
        "echo",
        &[
            ("SPOKE_INSTANCE_ID", "busy"),
            ("SPOKE_MAX_IN_FLIGHT", "128"),
        ],
    );
    hub.wait_for_instances("echo", 1, READY);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = HubClient::connect(hub.url.clone()).await.expect("connect");
        let calls = (0..1000).map(|i| {
            let mut client = client.clone();
            async move {
                let request = InvokeRequest {
                    connector: "echo".into(),
                    action: "echo".into(),
                    payload: format!(r#"{{"text":"call-{i}"}}"#).into_bytes(),
                    ..Default::default()
                };
                let response = client
                    .invoke(request)
                    .await
                    .map_err(|s| format!("call {i}: {s}"))?
                    .into_inner();
                match response.results.as_slice() {
                    [one] => match &one.outcome {
                        Some(instance_result::Outcome::Payload(bytes)) => {
                            Ok((i, serde_json::from_slice::<Value>(bytes).unwrap()))
                        }
                        other => Err(format!("call {i}: {other:?}")),
                    },
                    many => Err(format!("call {i}: {} results", many.len())),
                }
            }
        });
        let results = tokio::time::timeout(
            Duration::from_secs(60),
            futures_util::future::join_all(calls),
        )
        .await
        .expect("1,000 calls within 60 s");
        let mut seen = std::collections::HashSet::new();
        for result in results {
            let (i, reply) = result.expect("every call succeeds");
            assert_eq!(
                reply,
                json!(format!("call-{i}")),
                "each call gets its own answer"
            );
            assert!(seen.insert(i), "call {i} answered twice");
        }
        assert_eq!(seen.len(), 1000);
    });
}

#[test]
fn calls_refused_by_a_connector_shutting_down_are_served_by_another_instance() {
    let hub = Hub::start(&[]);
    let mut f1 = hub.attach(
        "faults",
        &[("SPOKE_INSTANCE_ID", "f1"), ("SPOKE_SHUTDOWN_GRACE", "20s")],
    );
    let _f2 = hub.attach("faults", &[("SPOKE_INSTANCE_ID", "f2")]);
    hub.wait_for_instances("faults", 2, READY);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = HubClient::connect(hub.url.clone()).await.expect("connect");
        let add = |target: Option<route::Target>| InvokeRequest {
            connector: "faults".into(),
            action: "add".into(),
            payload: br#"{"a": 2, "b": 3}"#.to_vec(),
            route: target.map(|t| Route { target: Some(t) }),
            ..Default::default()
        };
        // f1 starts a long call, which keeps it attached while it shuts down.
        let mut long = client
            .invoke_stream(InvokeRequest {
                connector: "faults".into(),
                action: "sleep".into(),
                payload: br#"{"ms": 5000}"#.to_vec(),
                route: Some(Route {
                    target: Some(route::Target::Instance("f1".into())),
                }),
                ..Default::default()
            })
            .await
            .expect("streamed call")
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), long.message())
            .await
            .expect("the sleeping event in time")
            .expect("stream")
            .expect("an item");
        assert!(
            matches!(first.item, Some(invoke_stream_item::Item::Event(_))),
            "{first:?}"
        );
        f1.signal("TERM");

        // Once f1 takes no new work, a call routed to it gets its refusal
        // as is (never started), since it may not go elsewhere.
        let refused_at = Instant::now();
        loop {
            let response = client
                .invoke(add(Some(route::Target::Instance("f1".into()))))
                .await
                .expect("routed call")
                .into_inner();
            match &response.results[0].outcome {
                Some(instance_result::Outcome::Error(e)) => {
                    assert_eq!(
                        (e.code.as_str(), e.message.as_str()),
                        ("unavailable", "connector is shutting down")
                    );
                    assert_eq!(
                        serde_json::from_str::<Value>(&e.details_json).unwrap(),
                        json!({"started": false})
                    );
                    break;
                }
                other => {
                    assert!(
                        refused_at.elapsed() < Duration::from_secs(5),
                        "f1 still takes work 5 s after SIGTERM: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }

        // Round-robin still sends every other call to f1 (it is attached),
        // and each of its refusals is retried on f2.
        for _ in 0..4 {
            let response = client.invoke(add(None)).await.expect("served").into_inner();
            let [one] = response.results.as_slice() else {
                panic!("{response:?}")
            };
            assert_eq!(one.instance_id, "f2", "{one:?}");
            assert!(
                matches!(&one.outcome, Some(instance_result::Outcome::Payload(p)) if p == b"5"),
                "{one:?}"
            );
        }
        assert!(
            refused_at.elapsed() < Duration::from_secs(4),
            "the calls ran while f1 was still attached"
        );

        // f1 finishes its running call before it leaves.
        let mut last = None;
        while let Some(item) = tokio::time::timeout(Duration::from_secs(15), long.message())
            .await
            .expect("the long call ends in time")
            .expect("stream")
        {
            last = item.item;
        }
        let Some(invoke_stream_item::Item::Result(result)) = last else {
            panic!("expected the result, got {last:?}")
        };
        assert_eq!(result.instance_id, "f1");
        let Some(instance_result::Outcome::Payload(payload)) = &result.outcome else {
            panic!("{result:?}")
        };
        assert_eq!(
            serde_json::from_slice::<Value>(payload).unwrap(),
            json!({"slept_ms": 5000})
        );
    });
    let status = f1.wait_for(Duration::from_secs(10)).expect("f1 exits");
    assert!(status.success(), "{status:?}");
}
