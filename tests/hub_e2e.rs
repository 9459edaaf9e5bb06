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
fn a_connector_killed_mid_read_gives_unavailable_once_no_restart_comes() {
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
    // The session waits out its resume window (1 s), then the read waits
    // up to 5 s for a restart of the instance to run on; none comes.
    let took = killed.elapsed();
    assert!(
        took > Duration::from_secs(5) && took < Duration::from_secs(9),
        "took {took:?}"
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
    // The connector logs each call it answers (at debug): every call runs
    // there exactly once.
    let (_echo, log) = hub.attach_logged(
        "echo",
        &[
            ("SPOKE_INSTANCE_ID", "busy"),
            ("SPOKE_MAX_IN_FLIGHT", "128"),
            ("RUST_LOG", "warn,spoke_runtime::grpc::dispatch=debug"),
        ],
    );
    hub.wait_for_instances("echo", 1, READY);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let request_ids = runtime.block_on(async {
        let client = HubClient::connect(hub.url.clone()).await.expect("connect");
        let calls = (0..1000).map(|i| {
            let mut client = client.clone();
            async move {
                let request = InvokeRequest {
                    connector: "echo".into(),
                    action: "echo".into(),
                    payload: format!(r#"{{"text":"call-{i}"}}"#).into_bytes().into(),
                    ..Default::default()
                };
                let response = client
                    .invoke(request)
                    .await
                    .map_err(|s| format!("call {i}: {s}"))?
                    .into_inner();
                match response.results.as_slice() {
                    [one] => match &one.outcome {
                        Some(instance_result::Outcome::Payload(bytes)) => Ok((
                            i,
                            response.request_id.clone(),
                            serde_json::from_slice::<Value>(bytes).unwrap(),
                        )),
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
        let mut ids = std::collections::HashSet::new();
        for result in results {
            let (i, request_id, reply) = result.expect("every call succeeds");
            assert_eq!(
                reply,
                json!(format!("call-{i}")),
                "each call gets its own answer"
            );
            assert!(ids.insert(request_id), "a request id was used twice");
        }
        ids
    });
    // Each of the hub's request ids was answered once by the connector.
    let started = Instant::now();
    let answered = loop {
        let text = log.lock().unwrap().clone();
        let answered: Vec<String> = text
            .lines()
            .filter(|l| l.contains("answered: ok"))
            .filter_map(|l| {
                let rest = l.split_once("request_id=")?.1;
                Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
            })
            .collect();
        if answered.len() >= 1000 || started.elapsed() > Duration::from_secs(5) {
            break answered;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(answered.len(), 1000, "answers logged by the connector");
    let distinct: std::collections::HashSet<String> = answered.into_iter().collect();
    assert_eq!(distinct, request_ids, "every call ran once, and only those");
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
            payload: br#"{"a": 2, "b": 3}"#.to_vec().into(),
            route: target.map(|t| Route { target: Some(t) }),
            ..Default::default()
        };
        // f1 starts a long call, which keeps it attached while it shuts down.
        let mut long = client
            .invoke_stream(InvokeRequest {
                connector: "faults".into(),
                action: "sleep".into(),
                payload: br#"{"ms": 5000}"#.to_vec().into(),
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
                matches!(&one.outcome, Some(instance_result::Outcome::Payload(p)) if p.as_ref() == b"5"),
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

#[test]
fn a_hub_stopped_gracefully_answers_calls_in_flight_and_its_connectors_wait_for_the_next() {
    let first = Hub::start(&["--heartbeat-interval", "500ms", "--shutdown-grace", "5s"]);
    let listen = first.authority().to_owned();
    let mut faults = first.attach("faults", &[("SPOKE_INSTANCE_ID", "stays")]);
    first.wait_for_instances("faults", 1, READY);
    // A call in flight when the hub is told to stop...
    let mut caller = first.cli();
    caller.args(["call", "faults", "sleep", r#"{"ms": 1000}"#]);
    let caller =
        std::thread::spawn(move || common::run_with_limit(&mut caller, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(300));
    let mut first = first;
    first.process.signal("TERM");
    // ...is answered before the hub exits, cleanly.
    let out = caller.join().unwrap();
    assert_eq!(ok_json(&out), json!({"slept_ms": 1000}));
    let status = first
        .process
        .wait_for(Duration::from_secs(10))
        .expect("the hub exits after its calls are answered");
    assert!(status.success(), "{status}");
    // The connector did not go with it.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        faults.child.try_wait().unwrap().is_none(),
        "the connector exited with the hub"
    );
    let second = Hub::start_on(&listen, &["--heartbeat-interval", "500ms"]);
    let back = Instant::now();
    loop {
        let out = call(&second, &["faults", "add", r#"{"a": 2, "b": 3}"#]);
        if out.status.code() == Some(0) {
            assert_eq!(common::stdout_json(&out), json!(5));
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
fn a_result_finished_while_the_connector_was_cut_off_is_delivered_after_it_resumes() {
    let hub = Hub::start(&["--heartbeat-interval", "1s", "--resume-window", "5s"]);
    let proxy = common::proxy::Proxy::start(hub.authority());
    let mut cmd = common::example("faults");
    cmd.arg("serve")
        .env("SPOKE_HUB_URL", &proxy.url)
        .env("SPOKE_INSTANCE_ID", "cut")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    let _faults = ChildGuard {
        child: cmd.spawn().expect("start faults"),
    };
    hub.wait_for_instances("faults", 1, READY);
    let mut caller = hub.cli();
    caller.args(["call", "faults", "sleep", r#"{"ms": 1200}"#]);
    let caller =
        std::thread::spawn(move || common::run_with_limit(&mut caller, Duration::from_secs(30)));
    // Cut the connector off while the call runs, and keep it off until well
    // after the call has finished: its result waits in the outbox.
    std::thread::sleep(Duration::from_millis(300));
    proxy.cut();
    std::thread::sleep(Duration::from_millis(1700));
    proxy.open();
    let out = caller.join().unwrap();
    assert_eq!(ok_json(&out), json!({"slept_ms": 1200}));
}

#[test]
fn cancellation_and_deadlines_reach_the_action_through_the_hub() {
    let hub = Hub::start(&[]);
    let (_faults, log) = hub.attach_logged(
        "faults",
        &[
            ("SPOKE_INSTANCE_ID", "f1"),
            ("RUST_LOG", "warn,spoke_runtime::grpc::dispatch=debug"),
        ],
    );
    hub.wait_for_instances("faults", 1, READY);
    // The connector's line for the answer it gave: `answered: <message> ... code="<code>"`.
    let wait_for_answer = |what: &str| {
        let started = Instant::now();
        loop {
            let text = log.lock().unwrap().clone();
            if let Some(line) = text
                .lines()
                .find(|l| l.contains("answered: ") && l.contains(what))
            {
                return line.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the action never saw {what}; connector log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // A streaming caller that goes away: the action's token is cancelled.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = HubClient::connect(hub.url.clone()).await.expect("connect");
        let mut stream = client
            .invoke_stream(InvokeRequest {
                connector: "faults".into(),
                action: "sleep".into(),
                payload: br#"{"ms": 20000}"#.to_vec().into(),
                ..Default::default()
            })
            .await
            .expect("streamed call")
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the sleeping event in time")
            .expect("stream")
            .expect("an item");
        assert!(
            matches!(first.item, Some(invoke_stream_item::Item::Event(_))),
            "{first:?}"
        );
        drop(stream);
        drop(client);
    });
    // The action itself saw the cancellation: the message is its own.
    let line = wait_for_answer("code=\"cancelled\"");
    assert!(line.contains("answered: sleep stopped after"), "{line}");
    assert!(line.contains("of 20000"), "{line}");

    // A deadline: the action is stopped when it passes.
    let out = call(
        &hub,
        &["faults", "sleep", r#"{"ms": 20000}"#, "--timeout", "500ms"],
    );
    assert!(common::stderr(&out).contains("deadline_exceeded"));
    wait_for_answer("code=\"deadline_exceeded\"");
}

#[test]
fn large_results_travel_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    // 6 MiB: over the 4 MiB default message limit of gRPC, in 1 MiB chunks.
    let text: String = (0..6 * 1024 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    std::fs::write(dir.path().join("big.txt"), &text).unwrap();
    let hub = Hub::start(&[]);
    let root = dir.path().display().to_string();
    let _files = hub.attach(
        "files",
        &[
            ("SPOKE_INSTANCE_ID", "big"),
            ("FILES_ROOT", &root),
            ("FILES_MAX_BYTES", "16777216"),
        ],
    );
    hub.wait_for_instances("files", 1, READY);
    // Unary: the hub joins the chunks.
    let reply = ok_json(&call(&hub, &["files", "read", r#"{"path": "big.txt"}"#]));
    assert_eq!(reply["content"].as_str().map(str::len), Some(text.len()));
    assert!(reply["content"] == text.as_str());
    // `spoke call --events` streams the call: the CLI joins the chunks.
    let reply = ok_json(&call(
        &hub,
        &["files", "read", r#"{"path": "big.txt"}"#, "--events"],
    ));
    assert!(reply["content"] == text.as_str());
    // Streaming: the chunks arrive in order, then an empty result.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = HubClient::connect(hub.url.clone())
            .await
            .expect("connect")
            .max_decoding_message_size(8 * 1024 * 1024);
        let mut stream = client
            .invoke_stream(InvokeRequest {
                connector: "files".into(),
                action: "read".into(),
                payload: br#"{"path": "big.txt"}"#.to_vec().into(),
                ..Default::default()
            })
            .await
            .expect("streamed call")
            .into_inner();
        let (mut joined, mut chunks, mut last) = (Vec::new(), 0u64, None);
        while let Some(item) = stream.message().await.expect("stream") {
            match item.item {
                Some(invoke_stream_item::Item::Chunk(chunk)) => {
                    assert_eq!(chunk.seq, chunks, "in order");
                    chunks += 1;
                    joined.extend_from_slice(&chunk.data);
                }
                Some(invoke_stream_item::Item::Result(result)) => last = Some(result),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(chunks >= 6, "{chunks} chunks");
        let last = last.expect("a final result");
        assert_eq!(
            last.outcome,
            Some(instance_result::Outcome::Payload(Vec::new().into()))
        );
        let reply: Value = serde_json::from_slice(&joined).unwrap();
        assert!(reply["content"] == text.as_str());
    });
}

/// The `event: <json>` lines of a stderr, with each event's request id
/// replaced by `ID` (the hub's and the connector binary's ids differ),
/// as text: the format itself is compared, key order included.
fn event_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(|json| {
            let event: Value = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("an event line is not JSON ({e}): {json}"));
            let id = event["request_id"].as_str().expect("a request id");
            assert!(!id.is_empty(), "{json}");
            json.replacen(
                &format!("\"request_id\":\"{id}\""),
                "\"request_id\":\"ID\"",
                1,
            )
        })
        .collect()
}

#[test]
fn call_events_and_progress_stream_through_the_hub_as_the_connector_binary_prints_them() {
    let hub = Hub::start(&[]);
    let _faults = hub.attach(
        "faults",
        &[("SPOKE_INSTANCE_ID", "f1"), ("FAULTS_LABEL", "batch")],
    );
    hub.wait_for_instances("faults", 1, READY);
    let input = r#"{"steps": 3}"#;

    // The connector binary's own `call`, for the format to mirror.
    let local = common::run(
        common::example("faults")
            .env("FAULTS_LABEL", "batch")
            .args(["call", "progress", input]),
    );
    assert_eq!(local.status.code(), Some(0), "{}", common::stderr(&local));
    let expected = event_lines(&common::stderr(&local));
    assert_eq!(expected.len(), 4, "{}", common::stderr(&local));

    // --events: every event, in order, in the same format; stdout as ever.
    let out = call(&hub, &["faults", "progress", input, "--events"]);
    assert_eq!(ok_json(&out), json!(3));
    let stderr = common::stderr(&out);
    assert_eq!(event_lines(&stderr), expected, "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        4,
        "nothing else on stderr: {stderr}"
    );
    // The events carry the hub's request id for the call.
    let first: Value = serde_json::from_str(
        stderr
            .lines()
            .next()
            .unwrap()
            .strip_prefix("event: ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["action"], "progress");
    assert!(!first["request_id"].as_str().unwrap().starts_with("cli-"));

    // --progress: the progress events only.
    let out = call(&hub, &["faults", "progress", input, "--progress"]);
    assert_eq!(ok_json(&out), json!(3));
    let progress = event_lines(&common::stderr(&out));
    assert_eq!(progress, expected[..3], "{}", common::stderr(&out));
    assert!(progress.iter().all(|l| l.contains(r#""type":"progress""#)));

    // Without either: no events (a unary call).
    let out = call(&hub, &["faults", "progress", input]);
    assert_eq!(ok_json(&out), json!(3));
    assert!(event_lines(&common::stderr(&out)).is_empty());

    // An action error: the events, then the error, exit 1, as without --events.
    let out = call(
        &hub,
        &[
            "faults",
            "sleep",
            r#"{"ms": 20000}"#,
            "--events",
            "--timeout",
            "500ms",
        ],
    );
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let sleeping = event_lines(&stderr);
    assert_eq!(sleeping.len(), 1, "{stderr}");
    assert!(sleeping[0].contains(r#""name":"sleeping""#), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("error[deadline_exceeded]: "),
        "{stderr}"
    );
    let out = call(
        &hub,
        &[
            "faults",
            "fail",
            r#"{"code":"not_found","message":"gone"}"#,
            "--events",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        common::stderr(&out),
        "error[not_found]: gone\ndetails: {\"requested\":\"not_found\"}\n"
    );

    // A broadcast: every member's events, and the usual array.
    let _f2 = hub.attach(
        "faults",
        &[("SPOKE_INSTANCE_ID", "f2"), ("SPOKE_TAGS", "all")],
    );
    let _f3 = hub.attach(
        "faults",
        &[("SPOKE_INSTANCE_ID", "f3"), ("SPOKE_TAGS", "all")],
    );
    hub.wait_for_instances("faults", 3, READY);
    let out = call(
        &hub,
        &[
            "faults",
            "progress",
            r#"{"steps": 2}"#,
            "--tag",
            "all",
            "--progress",
        ],
    );
    assert_eq!(
        ok_json(&out),
        json!([{"instance": "f2", "output": 2}, {"instance": "f3", "output": 2}])
    );
    let stderr = common::stderr(&out);
    let ids: std::collections::BTreeSet<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(event_lines(&stderr).len(), 4, "{stderr}");
    assert_eq!(ids.len(), 2, "one request id per member: {stderr}");
}

#[test]
fn the_call_log_line_gives_duration_ms_to_the_microsecond() {
    let hub = Hub::start(&[]);
    let _echo = hub.attach("echo", &[("SPOKE_INSTANCE_ID", "d1")]);
    hub.wait_for_instances("echo", 1, READY);
    ok_json(&call(&hub, &["echo", "echo", r#"{"text":"x"}"#]));
    let started = Instant::now();
    let line = loop {
        let log = hub.log_text();
        if let Some(line) = log.lines().find(|l| {
            l.contains(" call ") && l.contains("connector=echo") && l.contains("outcome=ok")
        }) {
            break line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no call line in the hub's log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let value = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("duration_ms="))
        .unwrap_or_else(|| panic!("no duration_ms in {line}"));
    let (whole, fraction) = value
        .split_once('.')
        .unwrap_or_else(|| panic!("duration_ms={value} has no decimals: {line}"));
    assert!(
        !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.len() == 3
            && fraction.bytes().all(|b| b.is_ascii_digit()),
        "duration_ms={value} is not milliseconds to the microsecond: {line}"
    );
    assert!(value.parse::<f64>().unwrap() > 0.0, "{line}");
}

#[test]
fn describe_leaves_hidden_actions_out_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    // A hub without auth: every caller could see hidden actions.
    let hub = Hub::start(&[]);
    let _files = hub.attach(
        "files",
        &[("SPOKE_INSTANCE_ID", "h1"), ("FILES_ROOT", &root)],
    );
    hub.wait_for_instances("files", 1, READY);
    let describe = |extra: &[&str]| {
        let out = common::run(hub.cli().args(["describe", "files"]).args(extra));
        let manifest = ok_json(&out);
        assert_eq!(manifest["name"], "files");
        let names: Vec<String> = manifest["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect();
        names
    };
    let shown = describe(&[]);
    assert!(shown.contains(&"list".to_owned()), "{shown:?}");
    assert!(!shown.contains(&"delete".to_owned()), "{shown:?}");
    for flag in ["--hidden", "--all"] {
        let all = describe(&[flag]);
        assert!(all.contains(&"delete".to_owned()), "{flag}: {all:?}");
        assert_eq!(all.len(), shown.len() + 1, "{flag}: {all:?}");
    }
    // The hidden action can still be called on this hub.
    let out = call(&hub, &["files", "delete", r#"{"path": "nope"}"#]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(common::stderr(&out).starts_with("error[not_found]"));
}
