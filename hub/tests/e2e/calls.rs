//! Call lifecycle: deadlines, callers going away, lost instances, load.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tonic::Code;

use crate::support::*;

fn hang() -> Behavior {
    Arc::new(|_| Reply::Hang)
}

/// The hub's one log line for each call, once `count` of them are there
/// (bounded wait): `... call request_id=.. connector=.. instance=.. action=..
/// duration_ms=.. outcome=..`, as key-value maps.
async fn call_lines(hub: &Hub, count: usize) -> Vec<std::collections::HashMap<String, String>> {
    let started = Instant::now();
    loop {
        let logs = hub.logs();
        let lines: Vec<_> = logs
            .lines()
            .filter_map(|l| l.split_once(" call request_id=").map(|(_, rest)| rest))
            .map(|rest| {
                format!("request_id={rest}")
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} call lines, wanted {count}; log:\n{logs}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_cancels_the_call_at_the_connector() {
    let hub = Hub::start(&[]);
    let fake = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", hang());
    let mut client = hub.client().await;
    let mut req = tonic::Request::new(request("slow", json!({})));
    req.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.invoke(req).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("instance `a`"), "{status:?}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1000),
        "answered after {elapsed:?}"
    );
    let ids = fake.log.invoke_ids();
    assert_eq!(ids.len(), 1);
    let timeout_ms = fake.log.invokes.lock().unwrap()[0].timeout_ms;
    assert!((200..=300).contains(&timeout_ms), "timeout_ms {timeout_ms}");
    fake.log
        .wait_until("the Cancel", |log| log.cancelled(&ids[0]))
        .await;
    // The connector's late `cancelled` Result is dropped quietly, and the
    // instance keeps serving.
    fake.log
        .wait_until("the cancelled answer", |log| {
            log.answered.lock().unwrap().contains_key(&ids[0])
        })
        .await;
    let lines = call_lines(&hub, 1).await;
    assert_eq!(lines.len(), 1, "one line per call: {lines:?}");
    assert_eq!(lines[0]["outcome"], "deadline_exceeded");
    assert_eq!(lines[0]["instance"], "a");
    assert_eq!(lines[0]["action"], "slow");
    assert_eq!(lines[0]["request_id"], ids[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_has_one_log_line_refused_ones_too() {
    let hub = Hub::start(&[]);
    let _fake = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", Arc::new(|_| Reply::Ok(json!({"ok": true}))));
    let mut client = hub.client().await;
    client
        .invoke(request("get", json!({})))
        .await
        .expect("served");
    let mut unknown = request("get", json!({}));
    unknown.connector = "nope".into();
    let status = client.invoke(unknown).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let lines = call_lines(&hub, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let ok = &lines[0];
    assert_eq!(
        (
            ok["connector"].as_str(),
            ok["instance"].as_str(),
            ok["action"].as_str(),
            ok["outcome"].as_str()
        ),
        ("echo", "a", "get", "ok"),
        "{ok:?}"
    );
    assert!(ok["duration_ms"].parse::<f64>().is_ok(), "{ok:?}");
    let refused = &lines[1];
    assert_eq!(
        (
            refused["connector"].as_str(),
            refused["instance"].as_str(),
            refused["outcome"].as_str()
        ),
        ("nope", "-", "not_found"),
        "{refused:?}"
    );
    assert_ne!(ok["request_id"], refused["request_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_cancels_the_call() {
    let hub = Hub::start(&[]);
    let fake = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", hang());
    let mut client = hub.client().await;
    let call = tokio::spawn(async move { client.invoke(request("slow", json!({}))).await });
    fake.log
        .wait_until("the Invoke", |log| !log.invokes.lock().unwrap().is_empty())
        .await;
    let id = fake.log.invoke_ids()[0].clone();
    assert_eq!(
        fake.log.invokes.lock().unwrap()[0].timeout_ms,
        0,
        "no deadline"
    );
    call.abort();
    let started = Instant::now();
    fake.log
        .wait_until("the Cancel", |log| log.cancelled(&id))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_write_is_unavailable_and_may_or_may_not_have_run() {
    let hub = Hub::start(&["--resume-window", "300ms"]);
    let crash: Behavior = Arc::new(|_| Reply::DropStream);
    let a = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", crash.clone());
    let b = Fake::attach(&hub.url, &Spec::echo("b"))
        .await
        .serve("b", crash);
    let mut client = hub.client().await;
    let mut req = tonic::Request::new(request("put", json!({"x": 1})));
    req.set_timeout(Duration::from_secs(8));
    let started = Instant::now();
    let status = client.invoke(req).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("may or may not have run"),
        "{status:?}"
    );
    assert!(
        status.message().contains("write action `put`"),
        "{status:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1500),
        "failed after {elapsed:?} (resume window 300ms)"
    );
    let invoked = a.log.invokes.lock().unwrap().len() + b.log.invokes.lock().unwrap().len();
    assert_eq!(invoked, 1, "a write is never retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_read_is_retried_once_on_another_instance() {
    let hub = Hub::start(&["--resume-window", "300ms"]);
    let crashed = Arc::new(AtomicBool::new(false));
    let crashed_id = Arc::new(Mutex::new(String::new()));
    let behavior = |id: &'static str| -> Behavior {
        let crashed = Arc::clone(&crashed);
        let crashed_id = Arc::clone(&crashed_id);
        Arc::new(move |_| {
            if crashed.swap(true, Ordering::SeqCst) {
                Reply::Ok(serde_json::Value::Null)
            } else {
                *crashed_id.lock().unwrap() = id.to_owned();
                Reply::DropStream
            }
        })
    };
    let _a = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", behavior("a"));
    let _b = Fake::attach(&hub.url, &Spec::echo("b"))
        .await
        .serve("b", behavior("b"));
    let mut client = hub.client().await;
    let mut req = tonic::Request::new(request("get", json!({"q": 1})));
    req.set_timeout(Duration::from_secs(8));
    let response = client.invoke(req).await.expect("the retry succeeds");
    let out = output(response.get_ref());
    let lost = crashed_id.lock().unwrap().clone();
    assert!(!lost.is_empty());
    assert_ne!(
        out["instance"],
        lost.as_str(),
        "served by the other instance"
    );
    assert_eq!(out["input"], json!({"q": 1}));
    assert_eq!(
        response.get_ref().results[0].instance_id,
        out["instance"].as_str().unwrap()
    );
    // One line for the call, naming both instances it went to.
    let lines = call_lines(&hub, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let served = out["instance"].as_str().unwrap();
    assert_eq!(lines[0]["instance"], format!("{lost},{served}"));
    assert_eq!(lines[0]["outcome"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_are_each_answered_exactly_once() {
    let hub = Hub::start(&[]);
    // A little work per call, so that calls pile up at the instance.
    let busy: Behavior = Arc::new(|_| {
        Reply::After(
            Duration::from_millis(2),
            Box::new(Reply::Ok(serde_json::Value::Null)),
        )
    });
    let fake = Fake::attach(&hub.url, &Spec::echo("a").max_in_flight(32))
        .await
        .serve("a", busy);
    let channel = hub.channel().await;
    let started = Instant::now();
    let calls: Vec<_> = (0..1000)
        .map(|n| {
            let mut client = spoke_proto::v1::hub_client::HubClient::new(channel.clone());
            tokio::spawn(async move {
                let mut req = tonic::Request::new(request("get", json!({"n": n})));
                req.set_timeout(Duration::from_secs(30));
                let response = client.invoke(req).await.expect("answered");
                let out = output(response.get_ref());
                assert_eq!(out["input"]["n"], n);
                response.into_inner().request_id
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for call in calls {
        let id = tokio::time::timeout(Duration::from_secs(40), call)
            .await
            .expect("in time")
            .unwrap();
        assert!(ids.insert(id), "request ids are unique");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let answered = fake.log.answered.lock().unwrap().clone();
    assert_eq!(answered.len(), 1000);
    assert!(answered.values().all(|n| *n == 1));
    let max = fake.log.max_running.load(Ordering::SeqCst);
    assert!(max <= 32, "the hub respects max_in_flight: {max} at once");
    assert!(max > 1, "calls ran concurrently: {max} at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_calls_get_events_and_chunks_and_unary_calls_the_joined_payload() {
    use spoke_proto::v1::invoke_stream_item::Item;
    let hub = Hub::start(&[]);
    let streamed: Behavior = Arc::new(|_| Reply::Streamed {
        events: vec![json!({"pct": 50}), json!({"pct": 100})],
        chunks: vec![r#"{"parts":"#, r#"[1,2]}"#],
    });
    let _fake = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", streamed);
    let mut client = hub.client().await;

    let mut stream = client
        .invoke_stream(request("get", json!({})))
        .await
        .unwrap()
        .into_inner();
    let mut items = Vec::new();
    while let Some(item) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("in time")
        .unwrap()
    {
        items.push(item.item.unwrap());
    }
    assert_eq!(items.len(), 5, "{items:?}");
    let Item::Event(event) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(
        (event.kind.as_str(), event.json.as_str()),
        ("progress", r#"{"pct":50}"#)
    );
    let chunks: Vec<u8> = items[2..4]
        .iter()
        .flat_map(|i| match i {
            Item::Chunk(c) => c.data.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(chunks, br#"{"parts":[1,2]}"#);
    let Item::Result(result) = &items[4] else {
        panic!("{items:?}")
    };
    assert_eq!(result.instance_id, "a");

    // A unary caller gets the chunks joined into the payload.
    let response = client.invoke(request("get", json!({}))).await.unwrap();
    assert_eq!(output(response.get_ref()), json!({"parts": [1, 2]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_fails_calls_over_at_once() {
    use spoke_proto::v1::{Goodbye, connector_frame, hub_frame};
    let hub = Hub::start(&[]); // resume window 2s: a Goodbye does not wait for it
    let mut leaving = Fake::attach(&hub.url, &Spec::echo("a")).await;
    let _b = Fake::attach(&hub.url, &Spec::echo("b"))
        .await
        .serve("b", echo());
    let mut client = hub.client().await;
    let call = tokio::spawn(async move {
        let started = Instant::now();
        let mut req = tonic::Request::new(spoke_proto::v1::InvokeRequest {
            route: Some(spoke_proto::v1::Route {
                target: Some(spoke_proto::v1::route::Target::DisplayName("Echo a".into())),
            }),
            ..request("get", json!({}))
        });
        req.set_timeout(Duration::from_secs(8));
        (client.invoke(req).await, started.elapsed())
    });
    let Some(hub_frame::Frame::Invoke(_)) = leaving.stream.next_non_ping().await else {
        panic!("expected the Invoke")
    };
    leaving
        .stream
        .send(connector_frame::Frame::Goodbye(Goodbye {
            reason: "maintenance".into(),
        }))
        .await;
    let (result, elapsed) = call.await.unwrap();
    // Routed by display name to `a` only: the read cannot move elsewhere.
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("maintenance"), "{status:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    // Unrouted, a read lost to a Goodbye moves to another instance.
    let mut leaving = Fake::attach(&hub.url, &Spec::echo("a")).await;
    let mut client = hub.client().await;
    let call = tokio::spawn(async move {
        // Round-robin may pick either; loop until `a` gets one.
        let mut outs = Vec::new();
        for _ in 0..2 {
            outs.push(client.invoke(request("get", json!({}))).await);
        }
        outs
    });
    let Some(hub_frame::Frame::Invoke(_)) = leaving.stream.next_non_ping().await else {
        panic!("expected the Invoke")
    };
    leaving
        .stream
        .send(connector_frame::Frame::Goodbye(Goodbye {
            reason: "bye".into(),
        }))
        .await;
    for out in call.await.unwrap() {
        let response = out.expect("served by `b`");
        assert_eq!(output(response.get_ref())["instance"], "b");
    }
}

/// The refusal of a connector that did not start the call.
fn refusal() -> Reply {
    Reply::Err {
        code: "unavailable",
        message: "connector is shutting down".into(),
        details: Some(json!({"started": false})),
    }
}

fn refuses() -> Behavior {
    Arc::new(|_| refusal())
}

/// The error of a single-result response.
fn error(response: &spoke_proto::v1::InvokeResponse) -> spoke_proto::v1::Error {
    assert_eq!(response.results.len(), 1, "{response:?}");
    match &response.results[0].outcome {
        Some(spoke_proto::v1::instance_result::Outcome::Error(e)) => e.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn routed(action: &str, target: spoke_proto::v1::route::Target) -> spoke_proto::v1::InvokeRequest {
    spoke_proto::v1::InvokeRequest {
        route: Some(spoke_proto::v1::Route {
            target: Some(target),
        }),
        ..request(action, json!({"w": 1}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_without_starting_is_retried_once_on_another_instance() {
    let hub = Hub::start(&[]);
    // Whichever instance gets the first Invoke refuses it; then both serve.
    let refused = Arc::new(AtomicBool::new(false));
    let first_refuses = || -> Behavior {
        let refused = Arc::clone(&refused);
        Arc::new(move |_| {
            if refused.swap(true, Ordering::SeqCst) {
                Reply::Ok(serde_json::Value::Null)
            } else {
                refusal()
            }
        })
    };
    let a = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", first_refuses());
    let b = Fake::attach(&hub.url, &Spec::echo("b"))
        .await
        .serve("b", first_refuses());
    let mut client = hub.client().await;
    let mut req = tonic::Request::new(request("put", json!({"x": 1})));
    req.set_timeout(Duration::from_secs(8));
    let response = client.invoke(req).await.expect("the retry succeeds");
    let out = output(response.get_ref());
    assert_eq!(out["input"], json!({"x": 1}));
    let (a_ids, b_ids) = (a.log.invoke_ids(), b.log.invoke_ids());
    assert_eq!(
        (a_ids.len(), b_ids.len()),
        (1, 1),
        "one refusal, then one retry on the other instance: {a_ids:?} {b_ids:?}"
    );
    let (first, retry, server) = if a_ids[0].contains('.') {
        (&b_ids[0], &a_ids[0], "a")
    } else {
        (&a_ids[0], &b_ids[0], "b")
    };
    assert_eq!(*retry, format!("{first}.1"));
    assert_eq!(out["instance"], server);
    assert_eq!(response.get_ref().results[0].instance_id, server);
    assert_eq!(response.get_ref().request_id, *first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_retried_only_once_and_only_where_the_route_allows() {
    let hub = Hub::start(&[]);
    let a = Fake::attach(&hub.url, &Spec::echo("a").name("Same").tags(&["all"]))
        .await
        .serve("a", refuses());
    let b = Fake::attach(&hub.url, &Spec::echo("b").name("Same").tags(&["all"]))
        .await
        .serve("b", refuses());
    let invokes = || a.log.invokes.lock().unwrap().len() + b.log.invokes.lock().unwrap().len();
    let mut client = hub.client().await;

    // Unrouted, both refuse: one retry, then the refusal as it is.
    let response = client.invoke(request("put", json!({}))).await.unwrap();
    let e = error(response.get_ref());
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("unavailable", "connector is shutting down")
    );
    assert_eq!(e.details_json, r#"{"started":false}"#);
    assert_eq!(invokes(), 2, "retried once, not more");

    // By display name: retried once too.
    let response = client
        .invoke(routed(
            "get",
            spoke_proto::v1::route::Target::DisplayName("Same".into()),
        ))
        .await
        .unwrap();
    assert_eq!(
        error(response.get_ref()).details_json,
        r#"{"started":false}"#
    );
    assert_eq!(invokes(), 4);

    // An explicit instance: never retried elsewhere.
    let response = client
        .invoke(routed(
            "get",
            spoke_proto::v1::route::Target::Instance("a".into()),
        ))
        .await
        .unwrap();
    assert_eq!(response.get_ref().results[0].instance_id, "a");
    assert_eq!(
        error(response.get_ref()).details_json,
        r#"{"started":false}"#
    );
    assert_eq!(invokes(), 5);

    // A broadcast: each member's refusal is its result.
    let response = client
        .invoke(routed(
            "get",
            spoke_proto::v1::route::Target::Tag("all".into()),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 2);
    for r in &response.results {
        let Some(spoke_proto::v1::instance_result::Outcome::Error(e)) = &r.outcome else {
            panic!("{r:?}")
        };
        assert_eq!(e.details_json, r#"{"started":false}"#);
    }
    assert_eq!(invokes(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_calls_that_may_have_started_are_not_retried() {
    let hub = Hub::start(&[]);
    let unmarked: Behavior = Arc::new(|_| Reply::Err {
        code: "unavailable",
        message: "upstream down".into(),
        details: Some(json!({"started": true})),
    });
    let a = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", unmarked.clone());
    let b = Fake::attach(&hub.url, &Spec::echo("b"))
        .await
        .serve("b", unmarked);
    let mut client = hub.client().await;
    let response = client.invoke(request("get", json!({}))).await.unwrap();
    assert_eq!(error(response.get_ref()).message, "upstream down");
    let invoked = a.log.invokes.lock().unwrap().len() + b.log.invokes.lock().unwrap().len();
    assert_eq!(invoked, 1, "not retried");

    // A single instance that refuses: nowhere else to go, the refusal is the answer.
    drop((a, b));
    let hub = Hub::start(&[]);
    let only = Fake::attach(&hub.url, &Spec::echo("only"))
        .await
        .serve("only", refuses());
    let mut client = hub.client().await;
    let response = client.invoke(request("put", json!({}))).await.unwrap();
    assert_eq!(
        error(response.get_ref()).details_json,
        r#"{"started":false}"#
    );
    assert_eq!(only.log.invokes.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_metadata_names_the_caller_and_carries_the_trace_context() {
    let hub = Hub::start(&[]);
    let fake = Fake::attach(&hub.url, &Spec::echo("a"))
        .await
        .serve("a", echo());
    let mut client = hub.client().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let last_metadata = || {
        let invokes = fake.log.invokes.lock().unwrap();
        let mut m: Vec<(String, String)> = invokes
            .last()
            .expect("an Invoke")
            .metadata
            .clone()
            .into_iter()
            .collect();
        m.sort();
        m
    };
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = p
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v.sort();
        v
    };

    // A client with trace context and no name: its address is the caller;
    // the hub's entries win over the request's own.
    let mut req = tonic::Request::new(spoke_proto::v1::InvokeRequest {
        metadata: [
            ("caller".to_owned(), "spoofed".to_owned()),
            ("ticket".to_owned(), "T-1".to_owned()),
        ]
        .into(),
        ..request("get", json!({}))
    });
    req.metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    req.metadata_mut()
        .insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    client.invoke(req).await.unwrap();
    let metadata = last_metadata();
    let caller = &metadata.iter().find(|(k, _)| k == "caller").unwrap().1;
    assert!(
        caller.starts_with("127.0.0.1:") && caller.len() > "127.0.0.1:".len(),
        "the peer address: {metadata:?}"
    );
    assert_eq!(
        metadata,
        pairs(&[
            ("caller", caller),
            ("ticket", "T-1"),
            ("traceparent", traceparent),
            ("tracestate", "congo=t61rcWkgMzE"),
        ])
    );

    // A client that names itself, without trace context.
    let mut req = tonic::Request::new(request("get", json!({})));
    req.metadata_mut()
        .insert("x-spoke-caller", "billing-job".parse().unwrap());
    client.invoke(req).await.unwrap();
    assert_eq!(last_metadata(), pairs(&[("caller", "billing-job")]));

    // `spoke call` names itself spoke-cli.
    let (code, _, err) = cli(&["call", "echo", "get", "--hub", &hub.url], None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(last_metadata(), pairs(&[("caller", "spoke-cli")]));
}
